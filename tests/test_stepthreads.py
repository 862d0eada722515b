"""Sampling's thread count: chosen once per model by timing, never changed while sampling, never changing the text."""

import string
import threading

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_model

import chargen
from chargen.model import CharRNN, ModelConfig
from chargen.precision import choose_precision
from chargen.sampling import threads as stepthreads
from chargen.sampling.draw import SampleConfig
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import PARALLEL_STREAMS, generate
from chargen.sampling.threads import PROBE_ABOVE_TOKENS, choose_threads, probe
from chargen.vocab import Vocab

FP32 = choose_precision("fp32")
VOCAB = Vocab.from_text(string.ascii_letters + " \n.,:;!?'-&$3")  # 65 characters, as Tiny Shakespeare has


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def default_model():
    """The default 2x512 LSTM: big enough that the math library splits its products across threads."""
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=len(VOCAB))).eval()


def fake_clock(seconds_per_call: dict):
    """A clock that moves on by seconds_per_call[current thread count] each time it is read."""
    now = [0.0]

    def clock():
        now[0] += seconds_per_call[torch.get_num_threads()]
        return now[0]

    return clock


class CountingStep:
    """A stand-in for FusedStep: counts calls, and its logits may depend on the thread count."""

    def __init__(self, differs_by_threads=False, differs_at=(), device="cpu"):
        self.h = torch.zeros(1, 1, 4, device=device)
        self.c = None
        self.calls = 0
        self.differs = differs_by_threads
        self.differs_at = differs_at
        self.devices = set()

    @property
    def state(self):
        return [self.h]

    def __call__(self, ids):
        self.calls += 1
        self.devices.add(ids.device)
        self.h += 1
        threads = torch.get_num_threads()
        extra = threads if self.differs or threads in self.differs_at else 0
        return self.h[0] + extra


# -- the probe ------------------------------------------------------------------------------


def test_more_threads_are_chosen_when_faster_and_the_logits_are_equal(two_threads):
    step = CountingStep()
    assert probe(step, 2, fake_clock({1: 1.0, 2: 0.5}))[0] == 2
    assert torch.equal(step.h, torch.zeros(1, 1, 4)), "the probe must leave the state as it found it"


def test_more_threads_that_change_the_numbers_are_never_chosen(two_threads):
    assert probe(CountingStep(differs_by_threads=True), 2, fake_clock({1: 1.0, 2: 0.1}))[0] == 1


def test_more_threads_that_are_not_faster_are_not_chosen(two_threads):
    assert probe(CountingStep(), 2, fake_clock({1: 1.0, 2: 0.95}))[0] == 1


def test_of_several_thread_counts_the_fastest_that_keeps_the_numbers_wins():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        clock = fake_clock({1: 1.0, 2: 0.7, 4: 0.5})
        assert probe(CountingStep(), 4, clock)[0] == 4
        assert probe(CountingStep(differs_at=(4,)), 4, clock)[0] == 2
    finally:
        torch.set_num_threads(before)


def test_the_probe_feeds_ids_on_the_steps_own_device(two_threads):
    """Issue 21: the probe built its ids on the CPU, and a GPU model's step failed on them."""
    step = CountingStep(device="meta")
    with pytest.raises(NotImplementedError):  # meta tensors hold no numbers to compare at the end
        probe(step, 2, fake_clock({1: 1.0, 2: 0.5}))
    assert step.devices == {torch.device("meta")}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_threads_the_probe_accepts_keep_the_numbers_step_after_step(two_threads, dtype):
    """The probe compares one step's logits; on this machine's real kernels, two threads it
    accepts must then match one thread at every step (a 2x256 LSTM, 30 steps, fed back)."""
    model = tiny_model(vocab_size=65, num_layers=2, hidden_size=256).eval()
    with torch.inference_mode():
        steps = {n: FusedStep(model, model.init_hidden(1), dtype) for n in (1, 2)}
        threads, _ = probe(steps[2], 2, fake_clock({1: 1.0, 2: 0.5}))  # two "faster": only the numbers decide
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


# -- the choice -----------------------------------------------------------------------------


def test_short_runs_take_one_thread_many_streams_all_and_only_long_one_stream_runs_probe(two_threads, monkeypatch):
    probed = []
    monkeypatch.setattr(stepthreads, "probe", lambda step, most, clock: probed.append(most) or (2, 0.0))
    model = tiny_model()
    assert choose_threads(model, FP32, PROBE_ABOVE_TOKENS - 1) == 1
    assert choose_threads(model, FP32, 10**6, streams=PARALLEL_STREAMS) == 2
    assert choose_threads(model, FP32, 10**6, most=1) == 1
    assert probed == []
    assert choose_threads(model, FP32, PROBE_ABOVE_TOKENS) == 2 and probed == [2]


def test_threads_that_read_a_prime_differently_are_never_chosen(two_threads, monkeypatch):
    real_read = stepthreads.read

    def read_by_thread_count(model, ids, hidden, precision):
        logits, hidden = real_read(model, ids, hidden, precision)
        return logits + torch.get_num_threads(), hidden

    monkeypatch.setattr(stepthreads, "read", read_by_thread_count)
    assert choose_threads(tiny_model(), FP32, PROBE_ABOVE_TOKENS, clock=fake_clock({1: 1.0, 2: 0.5})) == 1
    monkeypatch.setattr(stepthreads, "read", real_read)
    assert choose_threads(tiny_model(), FP32, PROBE_ABOVE_TOKENS, clock=fake_clock({1: 1.0, 2: 0.5})) == 2


def test_a_model_times_its_threads_once(two_threads, monkeypatch):
    calls = []
    monkeypatch.setattr(stepthreads, "choose_threads", lambda *a, **k: calls.append(a) or 2)
    model = chargen.Model(tiny_model(vocab_size=len(VOCAB)), VOCAB)
    assert [model.sampling_threads(5000) for _ in range(3)] == [2, 2, 2] and len(calls) == 1
    assert model.sampling_threads(5000, n=3) == 2 and len(calls) == 2  # another batch, another probe


def test_a_seed_gives_the_same_sample_whichever_thread_count_is_chosen(two_threads, default_model):
    """On the default 2x512 model, whose products the math library does split across threads."""
    config = SampleConfig(length=300, temperature=1.0, precision="fp32")
    runs = {}
    for faster in (1, 2):  # a clock that makes one thread faster, then one that makes two faster
        clock = fake_clock({1: faster, 2: 3 - faster})
        threads = choose_threads(default_model, FP32, PROBE_ABOVE_TOKENS, clock=clock)
        with stepthreads.num_threads(threads):
            runs[threads] = torch.stack(list(generate(default_model, torch.tensor([1]), config,
                                                      torch.Generator().manual_seed(3))))
    assert set(runs) <= {1, 2} and len(runs) >= 1
    if len(runs) == 2:  # this CPU gives the same numbers on two threads: both counts were used
        assert torch.equal(runs[1], runs[2])


# -- never changed while sampling ------------------------------------------------------------


def test_sampling_never_changes_torchs_thread_count(two_threads, default_model, monkeypatch):
    changes = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: changes.append(n))
    for streams in (1, PARALLEL_STREAMS):
        config = SampleConfig(length=10, num_samples=streams, precision="fp32")
        list(generate(default_model, torch.tensor([1]), config, torch.Generator().manual_seed(1)))
    model = chargen.Model(default_model, VOCAB, precision="fp32")
    model.generate("abc", length=10, seed=1)
    list(model.stream(length=10, seed=1))
    model.prime_state("abc")
    assert changes == []


def test_a_thread_started_while_another_samples_gets_the_process_thread_count(two_threads, default_model,
                                                                            monkeypatch):
    """Issue 21: steps switched torch to one thread and back around every character, so a thread
    that began its first product meanwhile kept one thread for its life."""
    seen = []
    real_step = FusedStep.__call__

    def step_that_starts_a_thread(self, ids):
        if not seen:  # inside the first step, start a thread and let it run its first product
            def newcomer():
                torch.ones(64, 64) @ torch.ones(64, 64)
                seen.append(torch.get_num_threads())

            thread = threading.Thread(target=newcomer)
            thread.start()
            thread.join()
        return real_step(self, ids)

    monkeypatch.setattr(FusedStep, "__call__", step_that_starts_a_thread)
    config = SampleConfig(length=5, precision="fp32")
    list(generate(default_model, torch.tensor([1]), config, torch.Generator().manual_seed(1)))
    assert seen == [2]


def test_two_threads_sampling_at_once_each_repeat_their_single_threaded_text(two_threads, default_model):
    """Issue 21: two generations at once on the 2x512 model, on two threads each, give each the
    text it gives alone."""
    model = chargen.Model(default_model, VOCAB, precision="fp32")
    seeds, length = (5, 6), 400
    alone = {seed: model.generate("abc", length=length, seed=seed) for seed in seeds}
    together, start = {}, threading.Barrier(len(seeds))

    def sample(seed):
        start.wait()
        together[seed] = model.generate("abc", length=length, seed=seed)

    workers = [threading.Thread(target=sample, args=(seed,)) for seed in seeds]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert together == alone and alone[5] != alone[6]


def test_chargen_sample_sets_the_thread_count_once_before_generating(session_text_run, monkeypatch):
    from chargen.cli import cli

    changes = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: changes.append(n))
    monkeypatch.setattr(chargen.Model, "sampling_threads", lambda self, length, n: 7 if length >= 3000 else 1)
    for length, expected in (("3000", [7]), ("10", [1])):
        changes.clear()
        result = CliRunner().invoke(cli, ["sample", str(session_text_run), "--length", length, "--seed", "1"])
        assert result.exit_code == 0, result.output
        assert changes == expected
