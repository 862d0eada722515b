"""One-stream sampling picks one thread or all by timing both, and never changes the text."""

import pytest
import torch
from conftest import tiny_model

from chargen.sampling import threads as stepthreads
from chargen.sampling.draw import SampleConfig
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import generate
from chargen.sampling.threads import PROBE_ABOVE_TOKENS, StepThreads, probe


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    stepthreads._remembered.clear()
    yield
    stepthreads._remembered.clear()
    torch.set_num_threads(before)


def fake_clock(monkeypatch, seconds_per_call: dict):
    """A clock that moves on by seconds_per_call[current thread count] each time it is read."""
    now = [0.0]

    def clock():
        now[0] += seconds_per_call[torch.get_num_threads()]
        return now[0]

    monkeypatch.setattr(stepthreads, "_clock", clock)
    return seconds_per_call


class CountingStep:
    """A stand-in for FusedStep: counts calls, and its logits may depend on the thread count."""

    def __init__(self, differs_by_threads=False, differs_at=()):
        self.h = torch.zeros(1, 1, 4)
        self.c = None
        self.signature = ("fake", differs_by_threads, differs_at)
        self.calls = 0
        self.differs = differs_by_threads
        self.differs_at = differs_at

    @property
    def state(self):
        return [self.h]

    def __call__(self, ids):
        self.calls += 1
        self.h += 1
        threads = torch.get_num_threads()
        extra = threads if self.differs or threads in self.differs_at else 0
        return self.h[0] + extra


def test_more_threads_are_chosen_when_faster_and_the_logits_are_equal(two_threads, monkeypatch):
    fake_clock(monkeypatch, {1: 1.0, 2: 0.5})
    step = CountingStep()
    assert probe(step, 2)[0] == 2
    assert torch.equal(step.h, torch.zeros(1, 1, 4)), "the probe must leave the state as it found it"


def test_more_threads_that_change_the_numbers_are_never_chosen(two_threads, monkeypatch):
    fake_clock(monkeypatch, {1: 1.0, 2: 0.1})
    assert probe(CountingStep(differs_by_threads=True), 2)[0] == 1


def test_more_threads_that_are_not_faster_are_not_chosen(two_threads, monkeypatch):
    fake_clock(monkeypatch, {1: 1.0, 2: 0.95})
    assert probe(CountingStep(), 2)[0] == 1


def test_of_several_thread_counts_the_fastest_that_keeps_the_numbers_wins(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        fake_clock(monkeypatch, {1: 1.0, 2: 0.7, 4: 0.5})
        assert probe(CountingStep(), 4)[0] == 4
        assert probe(CountingStep(differs_at=(4,)), 4)[0] == 2
    finally:
        torch.set_num_threads(before)


def test_a_short_generation_skips_the_probe_and_a_long_one_is_remembered(two_threads, monkeypatch):
    fake_clock(monkeypatch, {1: 1.0, 2: 0.5})
    step = CountingStep()
    assert StepThreads(step, PROBE_ABOVE_TOKENS - 1).threads == 1 and step.calls == 0
    assert StepThreads(step, PROBE_ABOVE_TOKENS).threads == 2 and step.calls > 0
    calls = step.calls
    assert StepThreads(step, 10).threads == 2 and step.calls == calls, "a remembered choice needs no probe"


def test_falls_back_to_one_thread_when_steps_slow_down(two_threads, monkeypatch):
    speeds = fake_clock(monkeypatch, {1: 1.0, 2: 0.5})
    run = StepThreads(CountingStep(), PROBE_ABOVE_TOKENS)
    assert run.threads == 2
    speeds[2] = 0.5 * 24 * 3  # each step now 3x the probed time (the probe times 24 steps per clock pair)
    for _ in range(stepthreads.CHECK_EVERY):
        run(torch.zeros(1, dtype=torch.long))
    assert run.threads == 1
    assert StepThreads(CountingStep(), PROBE_ABOVE_TOKENS).threads == 1, "the fallback is remembered"


def test_one_thread_is_used_where_torch_has_one(monkeypatch):
    torch.set_num_threads(1)
    step = CountingStep()
    assert StepThreads(step, 10 * PROBE_ABOVE_TOKENS).threads == 1 and step.calls == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_threads_the_probe_accepts_keep_the_numbers_step_after_step(two_threads, monkeypatch, dtype):
    """The probe compares one step's logits; on this machine's real kernels, two threads it
    accepts must then match one thread at every step (a 2x256 LSTM, 30 steps, fed back)."""
    fake_clock(monkeypatch, {1: 1.0, 2: 0.5})  # two threads "faster": only the numbers decide
    model = tiny_model(vocab_size=65, num_layers=2, hidden_size=256).eval()
    with torch.inference_mode():
        steps = {n: FusedStep(model, model.init_hidden(1), dtype) for n in (1, 2)}
        threads, _ = probe(steps[2], 2)
        if threads == 1:  # this CPU's kernels differ by thread count: the probe kept one thread
            assert not torch.equal(*(_one_step(steps[n], n) for n in (1, 2)))
            return
        ids = torch.tensor([3])
        for _ in range(30):
            outs = {n: _one_step(steps[n], n, ids) for n in (1, 2)}
            assert torch.equal(outs[1], outs[2])
            ids = outs[1].argmax(-1)


def _one_step(step, threads, ids=torch.tensor([0])):
    with stepthreads.num_threads(threads):
        return step(ids).clone()


def test_a_seed_gives_the_same_sample_whichever_thread_count_is_chosen(two_threads, monkeypatch):
    monkeypatch.setattr(stepthreads, "CHECK_EVERY", 10**9)  # the fake clock would trip the slow-down check
    model = tiny_model(vocab_size=30).eval()
    config = SampleConfig(length=PROBE_ABOVE_TOKENS, temperature=1.0, precision="fp32")
    runs = []
    for faster in (1, 2):  # a clock that makes one thread faster, then one that makes two faster
        stepthreads._remembered.clear()
        fake_clock(monkeypatch, {1: 1.0 if faster == 1 else 2.0, 2: 1.0 if faster == 2 else 2.0})
        runs.append(torch.stack(list(generate(model, torch.tensor([1]), config, torch.Generator().manual_seed(3)))))
        assert stepthreads._remembered and next(iter(stepthreads._remembered.values()))[0] == faster
    assert torch.equal(runs[0], runs[1])
