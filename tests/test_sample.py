"""Sampling: filtering and drawing, the hand-fused step, seeded and streamed generation."""

import pytest
import torch
from conftest import TINY_LAYOUT, tiny_model

from chargen import precision
from chargen.model import CharRNN, map_hidden
from chargen.sampling import fused
from chargen.sampling.draw import SampleConfig, choose, filter_logits
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import (
    PARALLEL_STREAMS,
    _StopFilter,
    generate,
    generate_text,
)
from chargen.training.loop import TrainConfig, TrainState, train
from chargen.vocab import Vocab


def test_temperature_zero_is_argmax():
    logits = torch.randn(5, 30)
    assert torch.equal(choose(logits, SampleConfig(temperature=0)), logits.argmax(-1))


def test_greedy_generation_follows_the_model_argmax():
    model = tiny_model("gru").eval()
    prime = torch.tensor([1, 2, 3])
    ids = [int(t) for t in generate(model, prime, SampleConfig(temperature=0, length=5, precision="fp32"))]
    seq = prime.tolist()
    for expected in ids:
        logits, _ = model(torch.tensor([seq]), model.init_hidden(1))
        assert logits[0, -1].argmax().item() == expected
        seq.append(expected)


def test_same_seed_same_sample():
    model = tiny_model("lstm")
    cfg = SampleConfig(temperature=1.0, length=50, num_samples=3)
    runs = [torch.stack(list(generate(model, torch.tensor([0]), cfg, torch.Generator().manual_seed(7))))
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = torch.stack(list(generate(model, torch.tensor([0]), cfg, torch.Generator().manual_seed(8))))
    assert not torch.equal(runs[0], other)


def test_top_k_never_emits_excluded_tokens():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    allowed = logits.topk(5, dim=-1).indices
    cfg = SampleConfig(top_k=5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        ids = choose(logits, cfg, gen)
        assert all(ids[b] in allowed[b] for b in range(4))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_top_p_keeps_the_smallest_set_reaching_p(p):
    torch.manual_seed(1)
    logits = torch.randn(3, 40) * 3
    kept = torch.isfinite(filter_logits(logits, top_p=p))
    probs = logits.softmax(-1)
    for b in range(3):
        order = probs[b].argsort(descending=True)
        n = int(kept[b].sum())
        assert set(order[:n].tolist()) == set(kept[b].nonzero().flatten().tolist())
        assert probs[b, order[:n]].sum() >= p - 1e-5  # the kept set reaches p ...
        assert n == 1 or probs[b, order[: n - 1]].sum() < p  # ... and is the smallest that does
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        ids = choose(logits, SampleConfig(top_p=p), gen)
        assert kept[torch.arange(3), ids].all()


def test_top_p_one_keeps_everything():
    logits = torch.randn(2, 10)
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)


def test_sample_config_validation():
    for bad in [dict(temperature=-0.1), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=0), dict(num_samples=0)]:
        with pytest.raises(ValueError):
            SampleConfig(**bad)


TWO_PATTERNS = ("abcd" * 8 + "wxyz" * 8) * 30


@pytest.fixture(scope="module")
def two_pattern_model():
    """A tiny model trained until it continues either pattern of TWO_PATTERNS (about 0.2 s)."""
    vocab = Vocab.from_text(TWO_PATTERNS)
    ids = vocab.encode(TWO_PATTERNS)
    model = tiny_model(vocab_size=len(vocab))
    config = TrainConfig(**TINY_LAYOUT, steps=80, lr=1e-2, warmup=1, eval_every=1000)
    train(model, torch.optim.Adam(model.parameters()), ids, ids, config, TrainState())
    return model, vocab


def sample_text(model, vocab, prime, config, seed=0, stop=None) -> list[str]:
    """Each sample's whole text from generate_text."""
    pieces = list(generate_text(model, vocab, prime, config, torch.Generator().manual_seed(seed), stop=stop))
    return ["".join(p[i] for p in pieces) for i in range(config.num_samples)]


@pytest.mark.parametrize("streams", [1, PARALLEL_STREAMS])  # the fused step, and the model's own
def test_sample_continues_the_pattern_its_prime_starts(two_pattern_model, streams):
    """The prime sets the model's state: one model, two primes, two different continuations."""
    model, vocab = two_pattern_model
    config = SampleConfig(temperature=0, length=8, num_samples=streams)
    assert sample_text(model, vocab, "ab", config) == ["cdabcdab"] * streams
    assert sample_text(model, vocab, "wx", config) == ["yzwxyzwx"] * streams


def test_generate_text_ends_each_sample_at_the_stop_string():
    """With a stop string, each sample is the same sample without one, cut before the first stop."""
    vocab = Vocab.from_text("ab\n")
    model = tiny_model(vocab_size=3)
    config = SampleConfig(length=40, num_samples=4)
    whole = sample_text(model, vocab, "ab", config, seed=0)
    cut = sample_text(model, vocab, "ab", config, seed=0, stop="\n")
    assert all(len(text) == 40 for text in whole)
    assert cut == [text.split("\n")[0] for text in whole]
    assert any(0 < len(text) < 40 for text in cut), "the seed should stop some sample midway"
    held = sample_text(model, vocab, "ab", config, seed=0, stop="\nzz")  # never matches: nothing cut
    assert held == whole


def test_stop_filter_holds_back_partial_matches():
    f = _StopFilter("END")
    out = "".join(f.feed(c) for c in "abcENxyEN") + f.flush()
    assert out == "abcENxyEN"
    f = _StopFilter("END")
    out = "".join(f.feed(c) for c in "abENDcd")
    assert out == "ab" and f.done


# -- the hand-fused single step that generate() uses ------------------------------------


def biased_model(cell: str) -> CharRNN:
    model = tiny_model(cell, vocab_size=11)
    with torch.no_grad():  # non-zero biases everywhere, so a misplaced bias would show
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("streams", [1, 4])
def test_fused_step_equals_model_forward(cell, streams):
    model = biased_model(cell)
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
@pytest.mark.parametrize("streams", [2, PARALLEL_STREAMS])  # the fused path, and the model's own
def test_generate_matches_step_by_step_model(cell, streams):
    """generate() draws the same greedy tokens as feeding the model one token at a time."""
    model = biased_model(cell)
    prime = torch.tensor([1, 2, 3])
    config = SampleConfig(temperature=0, length=20, num_samples=streams, precision="fp32")
    drawn = torch.stack(list(generate(model, prime, config)))
    with torch.no_grad():
        logits, hidden = model(prime.unsqueeze(0).expand(streams, -1), model.init_hidden(streams))
        expected = []
        for _ in range(20):
            ids = logits[:, -1].argmax(-1)
            expected.append(ids)
            logits, hidden = model(ids.unsqueeze(1), hidden)
    assert torch.equal(drawn, torch.stack(expected))


def test_choose_draws_from_the_filtered_distribution():
    logits = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).log().expand(20000, -1)  # token 1 has probability 0
    counts = torch.bincount(choose(logits, SampleConfig(), torch.Generator().manual_seed(0)), minlength=4) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.015, rtol=0)
    top1 = choose(logits, SampleConfig(top_k=1), torch.Generator().manual_seed(0))
    assert bool((top1 == 2).all())


# -- bf16 sampling -------------------------------------------------------------------------

needs_bf16 = pytest.mark.skipif(not precision.bf16_support("cpu")[1], reason="bf16 does not work on this machine")


@needs_bf16
@pytest.mark.parametrize("packed", [True, False])  # oneDNN's packed bf16 product, and the plain fallback
@pytest.mark.parametrize("bf16_head", [False, True])  # a small output layer stays fp32; a big one is bf16
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("streams", [1, 4])
def test_bf16_fused_step_follows_the_model_under_bf16_autocast(cell, streams, packed, bf16_head, monkeypatch):
    if not packed:
        monkeypatch.setattr(fused, "_packed_bf16_available", lambda: False)
    if bf16_head:
        monkeypatch.setattr(fused, "SMALL_HEAD_BYTES", 0)
    model = biased_model(cell)
    prime = torch.randint(0, 11, (streams, 3))
    with torch.no_grad():
        _, hidden = model(prime, model.init_hidden(streams))
        step = FusedStep(model, hidden, torch.bfloat16)
        fp32_step = FusedStep(model, hidden)
        assert (step.head is not None) == bf16_head
        products = [p for layer in step.layers for p in layer if isinstance(p, fused.Bf16Linear)]
        products += [step.head] if bf16_head else []
        assert products and all((p.packed is not None) == packed for p in products)
        for _ in range(6):
            ids = torch.randint(0, 11, (streams,))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                expected, hidden = model(ids.unsqueeze(1), hidden)
            logits, exact = step(ids), fp32_step(ids)
            assert logits.dtype == torch.float32 and step.h.dtype == torch.float32
            torch.testing.assert_close(logits, expected[:, -1].float(), rtol=0, atol=0.05)
        assert not torch.equal(logits, exact), "the bf16 step should not compute in fp32"


@needs_bf16
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_many_streams_in_bf16_draw_what_the_model_under_autocast_draws(cell):
    """From PARALLEL_STREAMS up, a bf16 LSTM or RNN steps through a bf16 copy of itself
    (cast once, not every step): it draws the tokens the model under autocast draws."""
    model = biased_model(cell)
    prime = torch.tensor([1, 2, 3])
    config = SampleConfig(length=25, num_samples=PARALLEL_STREAMS, precision="bf16")
    drawn = torch.stack(list(generate(model, prime, config, torch.Generator().manual_seed(7))))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, hidden = model(prime.unsqueeze(0).expand(PARALLEL_STREAMS, -1), model.init_hidden(PARALLEL_STREAMS))
        hidden = map_hidden(torch.Tensor.float, hidden)  # read() hands the state on in fp32
        expected = []
        for _ in range(25):
            ids = choose(logits[:, -1].float(), config, generator)
            expected.append(ids)
            logits, hidden = model(ids.unsqueeze(1), hidden)
    assert torch.equal(drawn, torch.stack(expected))
    assert len(set(drawn.flatten().tolist())) > 3, "the tokens should vary, or the test shows little"


@needs_bf16
def test_same_seed_same_sample_in_bf16():
    model = biased_model("lstm")
    config = SampleConfig(length=60, precision="bf16")
    runs = [torch.stack(list(generate(model, torch.tensor([0]), config, torch.Generator().manual_seed(5)))) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_tiny_positive_temperature_draws_like_greedy():
    """Issue 14.7: logits / 1e-45 overflowed to inf, softmax gave NaN, and every draw was the last token."""
    torch.manual_seed(2)
    logits = torch.randn(6, 30) * 5
    for temperature in (1e-45, 1e-30, 1e-8):
        drawn = choose(logits, SampleConfig(temperature=temperature), torch.Generator().manual_seed(0))
        assert torch.equal(drawn, logits.argmax(-1)), temperature


def test_music_seconds_count_only_the_new_music():
    """Issue 10, bug 3: with a MIDI prime, --seconds counted the prime too, so a 3-second
    request after a 10-second prime stopped at once. Here the model can only emit the
    shortest time shift (1/24 beat), so the new music grows by a known amount per token."""
    from chargen.music.grid import DEFAULT_BPM, seconds_per_step
    from chargen.music.vocabulary import midi_vocab
    from chargen.sampling.generate import generate_music

    vocab = midi_vocab()
    model = tiny_model("gru", vocab_size=len(vocab))
    with torch.no_grad():  # the head ignores the state and always prefers "shift:1"
        model.head.weight.zero_()
        model.head.bias.fill_(-50).index_fill_(0, torch.tensor([vocab.index["shift:1"]]), 50)
    prime = ["<piece>"] + ["shift:96"] * 5 + ["shift:1"]  # 20 beats: 10 s at 120 BPM
    step = seconds_per_step(DEFAULT_BPM)
    samples = generate_music(model, vocab, prime, SampleConfig(length=100_000, temperature=0.5), seconds=3.0)
    new = samples[0][len(prime):]
    assert set(new) == {"shift:1"}
    assert 3.0 <= len(new) * step < 3.0 + 32 * step  # checked every 32 tokens: at most 32 over
