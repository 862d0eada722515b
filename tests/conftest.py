"""Small, explicit fixtures: a tiny text corpus on disk and a tiny model."""

import pytest
import torch

from chargen.model import CharRNN, ModelConfig

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 20


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than two on a busy, shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_corpus(tmp_path):
    """A short real-looking text file (about 2,700 characters)."""
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def tiny_model(cell="lstm", vocab_size=20, num_layers=2, hidden_size=8, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab_size=vocab_size, cell=cell, num_layers=num_layers,
                               hidden_size=hidden_size, embed_dim=6, dropout=dropout))


TINY_TRAIN_ARGS = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch-size", "4",
                   "--seq-len", "16", "--eval-every", "5"]
