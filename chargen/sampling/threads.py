"""How many threads one-stream sampling runs on: one, or more where a timing says they pay.

One stream reads every recurrent weight once per character (6 MB for a 2x512 LSTM
in bf16), so its speed is set by memory traffic. A second core adds its own
bandwidth and cache, which sped up bf16 sampling on a 2-core Zen 5 VM by 1.1-1.9x
(docs/benchmarks.md), but a core that is busy with another process makes every
product wait for a thread that is not running: 20x slower. No fixed choice is
right everywhere, so StepThreads times a few steps on 1, 2, 4 and all of torch's
threads and picks the fastest of those that give bitwise the same numbers as one
thread (a seed must give the same text whatever the choice). If steps later slow
down (another process took a core), it falls back to one thread for the rest of
the generation.

    run = StepThreads(step, tokens=10_000)
    logits = run(ids)   # step(ids) on the chosen number of threads

The choice is remembered for a minute per model shape, so a server's many short
requests share one probe; a generation too short to pay for a probe (and with
nothing remembered) runs on one thread.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

PROBE_ABOVE_TOKENS = 2_000  # shorter generations skip the probe (about 60 ms of steps)
PROBE_STEPS = 24  # timed steps per try, after WARM_STEPS untimed ones
WARM_STEPS = 4
REMEMBER_SECONDS = 60.0
CHECK_EVERY = 512  # steps between checks that more threads still pay
SLOWER_THAN_PROBE = 2.0  # fall back to one thread when steps take this much longer than probed
FASTER_BY = 0.9  # more threads must take at most this fraction of one thread's time

_clock = time.perf_counter  # tests replace it
_remembered: dict[tuple, tuple[int, float, float]] = {}  # (shape, threads) -> (choice, seconds per step, when)


class StepThreads:
    """Runs a FusedStep on the number of threads that a timing found faster."""

    def __init__(self, step, tokens: int):
        self.step = step
        self.most = torch.get_num_threads()
        self.threads, self.probed_seconds = self._choose(tokens)
        self.count, self.spent = 0, 0.0

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if self.threads == 1:
            with num_threads(1):
                return self.step(ids)
        start = _clock()
        with num_threads(self.threads):
            logits = self.step(ids)
        self.spent += _clock() - start
        self.count += 1
        if self.count == CHECK_EVERY:
            if self.spent / self.count > SLOWER_THAN_PROBE * self.probed_seconds:
                self.threads = 1  # the machine got busy: one thread is the safe choice now
                _remembered[(self.step.signature, self.most)] = (1, 0.0, _clock())
            self.count, self.spent = 0, 0.0
        return logits

    def _choose(self, tokens: int) -> tuple[int, float]:
        """(threads, seconds per step at that count): remembered, probed, or 1 for a short run."""
        if self.most == 1:
            return 1, 0.0
        key = (self.step.signature, self.most)
        remembered = _remembered.get(key)
        if remembered is not None and _clock() - remembered[2] < REMEMBER_SECONDS:
            return remembered[0], remembered[1]
        if tokens < PROBE_ABOVE_TOKENS:
            return 1, 0.0
        threads, seconds = probe(self.step, self.most)
        _remembered[key] = (threads, seconds, _clock())
        return threads, seconds


def probe(step, most: int) -> tuple[int, float]:
    """(threads, seconds per step): of 1, 2, 4 and `most` threads (up to `most`), the fastest
    that gives the same logits as one thread, bit for bit, and beats one thread by 10%; else 1.
    The step's state is restored afterwards."""
    counts = sorted({1, most} | {n for n in (2, 4) if n < most})
    state = [t.clone() for t in step.state]
    ids = torch.zeros(step.h.shape[1], dtype=torch.long)
    seconds, logits = dict.fromkeys(counts, float("inf")), {}
    for _ in range(2):  # interleaved, best of two: a moment's noise hits every count alike
        for n in counts:
            for saved, live in zip(state, step.state):
                live.copy_(saved)
            with num_threads(n):
                for _ in range(WARM_STEPS):
                    step(ids)
                start = _clock()
                for _ in range(PROBE_STEPS):
                    out = step(ids)
                seconds[n] = min(seconds[n], (_clock() - start) / PROBE_STEPS)
            logits[n] = out.clone()
    for saved, live in zip(state, step.state):
        live.copy_(saved)
    same = [n for n in counts if torch.equal(logits[n], logits[1])]
    fastest = min(same, key=lambda n: seconds[n])
    if seconds[fastest] <= FASTER_BY * seconds[1]:
        return fastest, seconds[fastest]
    return 1, seconds[1]


@contextmanager
def num_threads(n: int):
    """Run a block with torch's intra-op thread count set to n, then restore it."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)
