"""How many threads sampling runs on: chosen once per model, by timing a few steps, never changed while sampling.

One stream reads every recurrent weight once per character (6 MB for a 2x512 LSTM
in bf16), so its speed is set by memory traffic. A second core adds its own
bandwidth and cache, which sped up bf16 sampling on a 2-core Zen 5 VM by 1.1-1.9x
(docs/benchmarks.md), but a core that is busy with another process makes every
product wait for a thread that is not running: 20x slower. No fixed choice is
right everywhere, so choose_threads() times a few steps on 1, 2, 4 and all of
torch's threads and picks the fastest of those that give bitwise the same numbers
as one thread, for the step and for reading a prime (a seed must give the same
text whatever the choice).

    threads = choose_threads(model, precision, tokens=10_000, streams=1)
    torch.set_num_threads(threads)   # once, by the command that owns the process

torch's thread count belongs to the process: a thread takes its own count from the
process's when it first runs a parallel product, and keeps it. So the count is set
once, before sampling starts (`chargen sample` before generating, `chargen serve`
before its request threads exist), and nothing here changes it while generating:
a count switched around every step (as chargen once did) leaked into threads that
started meanwhile, and let products run at counts no probe had checked. The Python
API samples at the caller's count; Model.sampling_threads() gives the commands' choice.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

import torch

from chargen.model import CharRNN
from chargen.precision import Precision
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import PARALLEL_STREAMS, read

PROBE_ABOVE_TOKENS = 2_000  # shorter generations skip the probe (about 60 ms of steps) and run on one thread
PROBE_STEPS = 24  # timed steps per try, after WARM_STEPS untimed ones
WARM_STEPS = 4
FASTER_BY = 0.9  # more threads must take at most this fraction of one thread's time
PRIME_CHECK_TOKENS = 64  # the prime read compared across thread counts


def choose_threads(model: CharRNN, precision: Precision, tokens: int, streams: int = 1, most: int | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> int:
    """The thread count to generate `streams` samples of `tokens` tokens on.

    All of torch's threads (`most`) for many streams, where the products dominate and
    run through the model's own kernels; one thread for a generation too short to pay
    for a probe; otherwise what probe() finds, provided reading a prime gives the same
    numbers at that count as on one thread. Call it in the thread that will sample,
    before sampling: the probe itself switches this thread's count while it times.
    """
    most = most or torch.get_num_threads()
    if most == 1:
        return 1
    if streams >= PARALLEL_STREAMS:
        return most
    if tokens < PROBE_ABOVE_TOKENS:
        return 1
    with torch.inference_mode():
        step = FusedStep(model, model.init_hidden(streams), precision.dtype)
        threads, _ = probe(step, most, clock)
        if threads > 1 and not _reads_agree(model, precision, threads):
            return 1
    return threads


def probe(step, most: int, clock: Callable[[], float] = time.perf_counter) -> tuple[int, float]:
    """(threads, seconds per step): of 1, 2, 4 and `most` threads (up to `most`), the fastest
    that gives the same logits as one thread, bit for bit, and beats one thread by 10%; else 1.
    The step's state is restored afterwards."""
    counts = sorted({1, most} | {n for n in (2, 4) if n < most})
    state = [t.clone() for t in step.state]
    ids = torch.zeros(step.h.shape[1], dtype=torch.long, device=step.h.device)
    seconds, logits = dict.fromkeys(counts, float("inf")), {}
    for _ in range(2):  # interleaved, best of two: a moment's noise hits every count alike
        for n in counts:
            for saved, live in zip(state, step.state):
                live.copy_(saved)
            with num_threads(n):
                for _ in range(WARM_STEPS):
                    step(ids)
                start = clock()
                for _ in range(PROBE_STEPS):
                    out = step(ids)
                seconds[n] = min(seconds[n], (clock() - start) / PROBE_STEPS)
            logits[n] = out.clone()
    for saved, live in zip(state, step.state):
        live.copy_(saved)
    same = [n for n in counts if torch.equal(logits[n], logits[1])]
    fastest = min(same, key=lambda n: seconds[n])
    if seconds[fastest] <= FASTER_BY * seconds[1]:
        return fastest, seconds[fastest]
    return 1, seconds[1]


def _reads_agree(model: CharRNN, precision: Precision, threads: int) -> bool:
    """Whether reading a prime through the model gives the same numbers on `threads` threads as on one."""
    device = model.head.weight.device
    ids = (torch.arange(PRIME_CHECK_TOKENS, device=device) % model.config.vocab_size).unsqueeze(0)  # (1, T)
    results = []
    for n in (1, threads):
        with num_threads(n):
            logits, hidden = read(model, ids, model.init_hidden(1), precision)
        results.append(logits)
    return torch.equal(*results)


@contextmanager
def num_threads(n: int):
    """Run a block with this thread's torch intra-op thread count set to n, then restore it.

    For the probe only (once per model and process); never around a sampling step.
    """
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)
