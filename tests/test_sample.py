"""Sampling: the hand-fused step used by generate() must compute exactly what the model does."""

import pytest
import torch

from chargen.model import CharRNN, ModelConfig
from chargen.sample import FusedStep, SampleConfig, generate


def tiny_model(cell: str) -> CharRNN:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=11, cell=cell, num_layers=2, hidden_size=8, embed_dim=5))
    with torch.no_grad():  # non-zero biases everywhere, so a misplaced bias would show
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("streams", [1, 4])
def test_fused_step_equals_model_forward(cell, streams):
    model = tiny_model(cell)
    prime = torch.randint(0, 11, (streams, 3))
    with torch.no_grad():
        _, hidden = model(prime, model.init_hidden(streams))
        step = FusedStep(model, hidden)
        for _ in range(6):
            ids = torch.randint(0, 11, (streams,))
            expected, hidden = model(ids.unsqueeze(1), hidden)
            logits = step(ids)
            torch.testing.assert_close(logits, expected[:, -1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(step.hidden, hidden, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generate_matches_step_by_step_model(cell):
    """generate() (fused) draws the same greedy tokens as feeding the model one token at a time."""
    model = tiny_model(cell)
    prime = torch.tensor([1, 2, 3])
    drawn = torch.stack(list(generate(model, prime, SampleConfig(temperature=0, length=20, num_samples=2))))
    with torch.no_grad():
        logits, hidden = model(prime.unsqueeze(0).expand(2, -1), model.init_hidden(2))
        expected = []
        for _ in range(20):
            ids = logits[:, -1].argmax(-1)
            expected.append(ids)
            logits, hidden = model(ids.unsqueeze(1), hidden)
    assert torch.equal(drawn, torch.stack(expected))


def test_generate_same_seed_same_sample():
    model = tiny_model("lstm")
    config = SampleConfig(temperature=1.0, length=30)
    run = lambda: torch.cat(list(generate(model, torch.tensor([0]), config, torch.Generator().manual_seed(3))))  # noqa: E731
    assert torch.equal(run(), run())


def test_choose_draws_from_the_filtered_distribution():
    from chargen.sample import choose

    logits = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).log().expand(20000, -1)  # token 1 has probability 0
    counts = torch.bincount(choose(logits, SampleConfig(), torch.Generator().manual_seed(0)), minlength=4) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.015, rtol=0)
    top1 = choose(logits, SampleConfig(top_k=1), torch.Generator().manual_seed(0))
    assert bool((top1 == 2).all())
