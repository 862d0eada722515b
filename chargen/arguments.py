"""The range of every generation argument, written once.

The Python API, the server's request parser, the command line's option types, the
sampler and the MIDI writer all check an argument through its Range here, so they
accept the same values and refuse the rest in the same words:

    TEMPERATURE.check(0.8)                 # 0.8
    TOP_P.check(1.5)                       # ArgumentError: top_p must be a number in (0, 1], got 1.5
    LENGTH.check(5000, high=2000)          # a caller's own, lower ceiling (the server's limits)

A Range knows only numbers. What an argument means (a prime, a stop string, a state)
is checked where it is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from chargen.errors import ArgumentError

# nan and inf slip through every comparison-based range check; integers beyond 64 bits
# through none of what a seed, a checkpoint's int64 or a tensor size can hold.
MAX_INT = 2**63 - 1
MAX_SIZE = 65_536  # layers, hidden units, embedding, parallel samples: far past what fits in memory
MAX_SECONDS = 86_400.0  # music to generate or to prime with: a day


@dataclass(frozen=True)
class Range:
    """The values one argument may take: `low` to `high`, both included unless `low_open`.

    An integer Range takes Python ints only (not bools, not 3.0); a real one takes ints and
    floats, and never nan or infinity.
    """

    name: str  # the Python parameter, as messages name it
    low: float
    high: float = math.inf
    integer: bool = False
    low_open: bool = False

    def describe(self, high: Optional[float] = None) -> str:
        """What the argument must be, as the end of "<name> must be ...": "an integer >= 1"."""
        high = self.high if high is None else high
        if self.integer:
            if high >= MAX_INT:  # the 64-bit ceiling goes unsaid unless a value passes it
                return f"an integer >= {self.low}"
            return f"an integer between {self.low} and {high}"
        if high == math.inf:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {high:g}]"

    def check(self, value, name: Optional[str] = None, high: Optional[float] = None):
        """`value` (a float, for a real Range) if it is in range, else an ArgumentError naming
        `name` (default: the Range's own). `high` lowers the ceiling for one caller."""
        name = name or self.name
        high = self.high if high is None else min(high, self.high)
        if not self.contains(value, high):
            if self.integer and isinstance(value, int) and value > high >= MAX_INT:
                raise ArgumentError(name, f"must be at most {MAX_INT} (64 bits), got {value}")
            raise ArgumentError(name, f"must be {self.describe(high)}, got {value!r}")
        return value if self.integer else float(value)

    def contains(self, value, high: Optional[float] = None) -> bool:
        high = self.high if high is None else high
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if not self.integer:
            try:
                value = float(value)  # an int too large for a float is out of every real range
            except OverflowError:
                return False
            if not math.isfinite(value):
                return False
        too_low = value <= self.low if self.low_open else value < self.low
        return not too_low and value <= high


# -- drawing tokens (chargen/sampling/draw.py) ----------------------------------------------

TEMPERATURE = Range("temperature", 0.0)  # 0 is greedy
TOP_K = Range("top_k", 1, MAX_INT, integer=True)
TOP_P = Range("top_p", 0.0, 1.0, low_open=True)
LENGTH = Range("length", 0, MAX_INT, integer=True)  # tokens after the prime
SAMPLES = Range("n", 1, MAX_SIZE, integer=True)  # samples drawn side by side
SEED = Range("seed", 0, MAX_INT, integer=True)  # torch seeds are 64-bit
BEAM = Range("beam", 1, MAX_SIZE, integer=True)  # beam search: its streams step side by side, as samples do

# -- music ----------------------------------------------------------------------------------

SECONDS = Range("seconds", 0.0, MAX_SECONDS, low_open=True)  # new music per sample
PRIME_SECONDS = Range("prime_seconds", 0.0, MAX_SECONDS, low_open=True)  # of a MIDI prime to continue
# Beats per minute. Not below 4: a MIDI tempo is at most 2**24 - 1 microseconds per beat (3.58 BPM).
TEMPO = Range("tempo", 4.0, 1000.0)
PROGRAM = Range("program", 0, 127, integer=True)  # General MIDI

# -- scoring ---------------------------------------------------------------------------------

BATCH_SIZE = Range("batch_size", 1, MAX_INT, integer=True)  # streams scored side by side
SCORE_BATCH_SIZE = 32  # a file's streams by default (`chargen eval`, Model.score_file)

DEFAULT_PRIME_SECONDS = 10.0  # how much of a MIDI prime a music model continues
MAX_MUSIC_TOKENS = 1_000_000  # music with seconds and no length: a bound for a model that never moves time on
