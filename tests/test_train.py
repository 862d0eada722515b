import math

import pytest
import torch
from conftest import TINY_LAYOUT, tiny_model

from chargen.errors import TrainingError
from chargen.training.loop import TrainConfig, TrainState, learning_rate, train
from chargen.training.run import make_optimizer
from chargen.training.validation import evaluate
from chargen.vocab import Vocab

REPETITIVE = "abcdefgh" * 200


def _setup(cell="lstm", dropout=0.0, **config):
    vocab = Vocab.from_text(REPETITIVE)
    ids = vocab.encode(REPETITIVE)
    model = tiny_model(cell, vocab_size=len(vocab), dropout=dropout)
    cfg = TrainConfig(**TINY_LAYOUT, lr=1e-2, warmup=1, eval_every=1000, **config)
    return model, make_optimizer(model, cfg), ids, cfg


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_loss_falls_on_a_repetitive_corpus(cell):
    model, opt, ids, cfg = _setup(cell, steps=40)
    before = evaluate(model, ids, 4, 16)
    state = train(model, opt, ids, ids, cfg, TrainState())
    after = evaluate(model, ids, 4, 16)
    assert state.step == 40
    assert before > 2.5  # about log2(8) = 3 bits before training
    assert after < 0.5 * before


def test_same_seed_same_model():
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        model, opt, ids, cfg = _setup(dropout=0.2, steps=10)
        train(model, opt, ids, ids, cfg, TrainState())
        results.append(model.state_dict())
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key]), key


def test_budgets_stop_training():
    model, opt, ids, cfg = _setup(epochs=1)
    events = []
    state = train(model, opt, ids, ids, cfg, TrainState(), lambda e, i: events.append(e))
    # 1600 tokens -> 4 streams of 400 -> ceil(399 / 16) = 25 windows per epoch
    assert state.step == 25 and state.epoch == 1 and state.window == 0
    assert events.count("eval") == 1 and events[-1] == "stop"


def test_should_stop_ends_after_the_current_step():
    model, opt, ids, cfg = _setup(steps=50)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= 3

    state = train(model, opt, ids, ids, cfg, TrainState(), should_stop=stop)
    assert state.step == 3


def test_diverging_loss_raises_and_keeps_the_model():
    """The divergence check comes before the optimizer step: the bad step changes no weight."""
    model, opt, ids, cfg = _setup(steps=5)
    with torch.no_grad():
        model.head.bias[0] = float("nan")  # every logit row, so the first step's loss, is NaN
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingError, match="diverged"):
        train(model, opt, ids, ids, cfg, TrainState())
    # A step taken with NaN gradients would make every weight NaN, or move it.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshot[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert not opt.state, "the optimizer took a step"


def test_validation_in_bits_matches_cross_entropy():
    model, _, ids, _ = _setup()
    model.eval()
    bits = evaluate(model, ids[:65], batch_size=1, seq_len=64)
    logits, _ = model(ids[:64].long().unsqueeze(0), model.init_hidden(1))
    nats = torch.nn.functional.cross_entropy(logits[0], ids[1:65].long()).item()
    assert bits == pytest.approx(nats / math.log(2), rel=1e-5)


def test_learning_rate_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, lr_min=0.1, warmup=10, steps=100)
    assert learning_rate(cfg, 0.0, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 0.1, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert learning_rate(cfg, 1.0, 100) == pytest.approx(0.1)


def test_train_config_validation_and_default_budget():
    assert TrainConfig().epochs == 10
    assert TrainConfig(steps=5).epochs is None
    for bad in [dict(seq_len=0), dict(lr=-1.0), dict(clip=0.0), dict(val_frac=1.0), dict(steps=0)]:
        with pytest.raises(ValueError):
            TrainConfig(**bad)


# -- bf16 mixed precision -----------------------------------------------------------------

from chargen import precision as precisions  # noqa: E402

needs_bf16 = pytest.mark.skipif(not precisions.bf16_support("cpu")[1], reason="bf16 does not work on this machine")


@needs_bf16
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bf16_training_loss_falls_and_keeps_fp32_weights_and_state(cell):
    model, opt, ids, cfg = _setup(cell, steps=40, precision="bf16")
    before = evaluate(model, ids, 4, 16)
    state = train(model, opt, ids, ids, cfg, TrainState())
    after = evaluate(model, ids, 4, 16)
    assert after < 0.5 * before
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(s.dtype == torch.float32 for group in opt.state.values() for s in group.values() if s.dim() > 0)
    hidden = state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)
    assert all(h.dtype == torch.float32 for h in hidden)


@needs_bf16
def test_bf16_really_computes_in_bf16():
    """The same seed and steps in fp32 and bf16 give close but different weights."""
    finals = {}
    for name in ("fp32", "bf16"):
        model, opt, ids, cfg = _setup(steps=5, precision=name)
        train(model, opt, ids, ids, cfg, TrainState())
        finals[name] = model.head.weight.detach().clone()
    assert not torch.equal(finals["fp32"], finals["bf16"])
    torch.testing.assert_close(finals["fp32"], finals["bf16"], atol=0.05, rtol=0)


@needs_bf16
def test_bf16_evaluation_is_close_to_fp32():
    model, _, ids, _ = _setup()
    fp32 = evaluate(model, ids, 4, 16)
    bf16 = evaluate(model, ids, 4, 16, precision=precisions.choose_precision("bf16"))
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.02)


REGULARIZED = dict(weight_drop=0.3, embed_dropout=0.1, locked_dropout=0.2)


@pytest.mark.parametrize("cell, precision, regularization", [
    pytest.param("lstm", "bf16", {}, marks=needs_bf16),
    pytest.param("gru", "bf16", {}, marks=needs_bf16),
    ("lstm", "fp32", REGULARIZED),
    pytest.param("gru", "bf16", REGULARIZED, marks=needs_bf16),
])
def test_resume_is_bitwise_exact_under_bf16_and_regularization(tmp_path, cell, precision, regularization):
    """Stopped mid-epoch between checkpoints (carried hidden state, dropout on), resumed:
    the same fp32 weights and optimizer state as a run never stopped, with bf16 products
    and with weight-drop and locked dropout drawing their masks."""
    from chargen.training import checkpoint
    from chargen.training import resume as resumes
    from chargen.training import run as runs

    corpus = tmp_path / "tiny.txt"
    corpus.write_text(REPETITIVE[:900] + "the quick brown fox jumps over the lazy dog\n" * 10, encoding="utf-8")
    model_options = dict(cell=cell, num_layers=2, hidden_size=16, embed_dim=8, dropout=0.3) | regularization

    def config():
        return TrainConfig(eval_every=7, seq_len=16, batch_size=4, warmup=5, steps=40, precision=precision,
                           weight_decay=0.1 if regularization else 0.0)

    whole = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "a"), device="cpu")
    runs.execute(whole)
    assert whole.state.epoch >= 1, "the budget should cross an epoch boundary"
    part = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "b"), device="cpu")
    calls = iter(range(1, 10_000))
    runs.execute(part, should_stop=lambda: next(calls) == 17)
    torch.manual_seed(12345)  # whatever the process did meanwhile must not matter
    resumed = resumes.resume_run(str(tmp_path / "b"), {}, device="cpu")
    assert resumed.state.step == 17 and resumed.precision.name == precision
    runs.execute(resumed)

    a, b = checkpoint.load(tmp_path / "a" / "last.pt"), checkpoint.load(tmp_path / "b" / "last.pt")
    assert a["state"]["step"] == b["state"]["step"] == 40
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key
    for sa, sb in zip(a["optimizer_state"]["state"].values(), b["optimizer_state"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["state"]["history"] == b["state"]["history"]


def test_weight_decay_is_decoupled_from_the_gradient():
    """AdamW: a weight with zero gradient still shrinks by lr * weight_decay per step
    (Adam's L2 penalty would go through the moment estimates instead)."""
    model, _, _, _ = _setup()
    cfg = TrainConfig(lr=0.1, weight_decay=0.5)
    opt = make_optimizer(model, cfg)
    before = model.head.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(model.head.weight.detach(), before * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_regularized_training_loss_falls(cell):
    model, opt, ids, cfg = _setup(cell, steps=40)
    model = tiny_model(cell, vocab_size=model.config.vocab_size, hidden_size=16, **REGULARIZED)
    opt = make_optimizer(model, cfg)
    before = evaluate(model, ids, 4, 16)
    train(model, opt, ids, ids, cfg, TrainState())
    assert evaluate(model, ids, 4, 16) < 0.7 * before
