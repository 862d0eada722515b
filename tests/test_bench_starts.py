"""bench/starts.py's pieces: the variants it trains and the yardstick it judges them by."""

import torch

from bench import starts
from chargen import model


def test_a_variant_is_options_of_chargen_train():
    assert starts.options("default") == {} and starts.options("+1bias") == {}
    assert starts.options("lr=5e-3,dropout=0.1,cell=\"gru\"") == {"lr": 5e-3, "dropout": 0.1, "cell": "gru"}


def test_plus_one_bias_puts_back_the_old_forget_gate_slices_and_nothing_else(monkeypatch):
    monkeypatch.setattr(model.CharRNN, "__init__", model.CharRNN.__init__)  # undone after the test
    config = model.ModelConfig(vocab_size=7, hidden_size=8, num_layers=2, embed_dim=4)
    torch.manual_seed(0)
    plain = model.CharRNN(config)
    starts.put_back_forget_gate_bias()
    torch.manual_seed(0)
    patched = model.CharRNN(config)
    for (name, a), (_, b) in zip(plain.named_parameters(), patched.named_parameters()):
        if name.startswith("rnn.bias"):
            assert torch.equal(b[8:16], torch.full((8,), 0.5)), name
            assert torch.equal(a[:8], b[:8]) and torch.equal(a[16:], b[16:]), name
        else:
            assert torch.equal(a, b), name


def test_the_bigram_yardstick_tells_the_corpus_from_noise():
    text = "to be or not to be, that is the question " * 50
    yardstick = starts.Bigram(text)
    assert yardstick.bits("to be or not to be") < 2 < yardstick.bits("qxzqe ,tbq,oz")
