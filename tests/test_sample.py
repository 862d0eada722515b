import pytest
import torch

from chargen.sample import SampleConfig, _StopFilter, choose, filter_logits, generate, generate_text
from chargen.vocab import Vocab
from conftest import tiny_model


def test_temperature_zero_is_argmax():
    logits = torch.randn(5, 30)
    assert torch.equal(choose(logits, SampleConfig(temperature=0)), logits.argmax(-1))


def test_greedy_generation_follows_the_model_argmax():
    model = tiny_model("gru").eval()
    prime = torch.tensor([1, 2, 3])
    ids = [int(t) for t in generate(model, prime, SampleConfig(temperature=0, length=5))]
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


def test_generate_text_starts_from_the_prime_and_stops():
    vocab = Vocab.from_text("ab\n")
    model = tiny_model("lstm", vocab_size=3)
    pieces = list(generate_text(model, vocab, "ab", SampleConfig(length=40, num_samples=2),
                                torch.Generator().manual_seed(0), stop="\n"))
    texts = ["".join(p[i] for p in pieces) for i in range(2)]
    assert all("\n" not in t for t in texts)
    assert all(len(t) <= 40 for t in texts)


def test_stop_filter_holds_back_partial_matches():
    f = _StopFilter("END")
    out = "".join(f.feed(c) for c in "abcENxyEN") + f.flush()
    assert out == "abcENxyEN"
    f = _StopFilter("END")
    out = "".join(f.feed(c) for c in "abENDcd")
    assert out == "ab" and f.done
