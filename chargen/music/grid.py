"""The music time grid: the constants, notes on the step timeline, and the tokens every vocabulary shares.

chargen hears music on one grid: STEPS_PER_BEAT steps per quarter note. A file's
notes (read by chargen.music.midifile) are quantized to it here, overlong rests are
cut, and tempo changes are binned; both token vocabularies (durations, version 3, in
chargen.music.durations; note-offs, versions 1 and 2, in chargen.music.noteoffs) build
their tokens on what this module defines. No mido here, and no vocabulary.

    plan = plan_notes(notes, tempos)      # notes in beats -> a Plan on the step grid
    beats2steps(1.5)                      # 36: the one place time is quantized
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Iterable, NamedTuple, Optional

from chargen.errors import MidiError

STEPS_PER_BEAT = 24  # one step = 1/24 quarter note: 32nds (3) and triplet 16ths (4) are exact
MAX_SHIFT_STEPS = 96  # longest single shift token: one 4/4 bar; longer gaps repeat it
MAX_DURATION_STEPS = 96  # longest single dur token: one 4/4 bar; longer notes add dur tokens up
MAX_REST_STEPS = 16 * STEPS_PER_BEAT  # silences longer than 4 bars are shortened to this
MAX_NOTE_STEPS = 32 * STEPS_PER_BEAT  # a note lasts at most 8 bars
DEFAULT_DURATION_STEPS = STEPS_PER_BEAT  # a note before any dur: token lasts one beat
DRUM_STEPS = STEPS_PER_BEAT // 4  # drums are one-shots: decoded as sixteenth notes
MAX_COPIES = 6  # copies of one pitch one instrument sounds at once (unisons); one more cuts the oldest
VELOCITY_BIN_WIDTH = 4  # 32 bins over 1..127; a bin decodes to its top value - 1
DEFAULT_VELOCITY = 63
DEFAULT_BPM = 120  # the MIDI default tempo (500000 microseconds per beat)
RELEASE_SECONDS = 0.25  # a piece cut at --seconds lets its sounding notes ring this much longer
PIECE_TOKEN = "<piece>"
# Tempo bins in BPM: 1 BPM apart up to 60, then 2, 4 and 8: every bin is within ~1.7%.
TEMPO_BPMS = (
    list(range(20, 61))
    + list(range(62, 121, 2))
    + list(range(124, 241, 4))
    + list(range(248, 361, 8))
)
VELOCITIES = list(range(VELOCITY_BIN_WIDTH - 1, 128, VELOCITY_BIN_WIDTH))  # 3, 7, ..., 127



class TimedNote(NamedTuple):
    """A note on the beat timeline: times in beats as read from a file, in steps once quantized."""

    start: float
    end: float
    pitch: int
    velocity: int
    program: int
    is_drum: bool


class Plan(NamedTuple):
    """A piece ready to become tokens: what encoding writes and decoding plays back."""

    notes: list[TimedNote]  # quantized, in steps, on the timeline with overlong rests cut
    tempos: list[tuple[int, int]]  # (step, tempo bin) changes on that timeline, from step 0
    cuts: list[tuple[float, float]]  # [from, to) step intervals cut out of the original timeline
    cut: int  # notes cut by MAX_COPIES, or drum hits merged on one step


# -- the time grid -----------------------------------------------------------------


def bpm2bin(bpm: float) -> int:
    """The tempo bin (a BPM in TEMPO_BPMS) nearest to `bpm`, clamped to the range."""
    i = bisect.bisect_left(TEMPO_BPMS, bpm)
    if i == 0:
        return TEMPO_BPMS[0]
    if i == len(TEMPO_BPMS):
        return TEMPO_BPMS[-1]
    below, above = TEMPO_BPMS[i - 1], TEMPO_BPMS[i]
    return below if bpm - below <= above - bpm else above


def velocity2bin(velocity: int) -> int:
    """The velocity token value (3, 7, ..., 127) of a MIDI velocity 1-127."""
    return VELOCITIES[min(max(velocity - 1, 0) // VELOCITY_BIN_WIDTH, len(VELOCITIES) - 1)]


def beats2steps(beats: float) -> int:
    """Beats (quarter notes) -> whole time steps: the one place time is quantized."""
    return round(beats * STEPS_PER_BEAT)


def seconds_per_step(bpm: float) -> float:
    return 60.0 / (bpm * STEPS_PER_BEAT)


def quantize_notes(notes: list[TimedNote]) -> tuple[list[TimedNote], int]:
    """(notes on the step grid, notes cut), as decoding will play them.

    Notes become at least one step and at most MAX_NOTE_STEPS long. An
    instrument may sound up to MAX_COPIES copies of one pitch at once (unison
    doublings, overlapping re-strikes, a short note inside a long one); a copy
    struck while MAX_COPIES sound cuts the oldest one short, as decoding does.
    Drums are one-shots: hits of one drum on one step merge.
    """
    by_key: dict[tuple, list[TimedNote]] = {}
    for n in notes:
        start = beats2steps(n.start)
        end = min(max(beats2steps(n.end), start + 1), start + MAX_NOTE_STEPS)
        key = (n.is_drum, n.program, n.pitch)
        by_key.setdefault(key, []).append(n._replace(start=start, end=end))
    out, cut = [], 0
    for (is_drum, _, _), group in by_key.items():
        group.sort()
        if is_drum:  # the loudest of the hits on one step
            loudest: dict[float, TimedNote] = {}
            for n in group:
                if n.start not in loudest or n.velocity > loudest[n.start].velocity:
                    loudest[n.start] = n
            cut += len(group) - len(loudest)
            out.extend(loudest.values())
            continue
        kept, sounding = [], []  # sounding: indices into kept, oldest (first struck) first
        for n in group:
            sounding = [i for i in sounding if kept[i].end > n.start]
            if len(sounding) == MAX_COPIES:
                oldest = sounding.pop(0)
                cut += 1
                kept[oldest] = kept[oldest]._replace(end=n.start)
            sounding.append(len(kept))
            kept.append(n)
        out.extend(n for n in kept if n.end > n.start)
    out.sort()
    return out, cut


def find_cuts(notes: list[TimedNote]) -> list[tuple[float, float]]:
    """The [from, to) step intervals cut out of the timeline: leading silence and overlong rests."""
    cuts = [(0, notes[0].start)] if notes[0].start > 0 else []
    sounding_until = notes[0].end
    for n in notes:
        if n.start - sounding_until > MAX_REST_STEPS:
            cuts.append((sounding_until + MAX_REST_STEPS, n.start))
        sounding_until = max(sounding_until, n.end)
    return cuts


def warp(step: float, cuts: list[tuple[float, float]]) -> float:
    """A position on the original step timeline -> the same position once `cuts` are removed."""
    return step - sum(min(max(step - a, 0), b - a) for a, b in cuts)


def plan_notes(notes: list[TimedNote], tempos: list[tuple[float, float]]) -> Plan:
    """The Plan of notes and (beat, bpm) tempo changes read from a file (times in beats).

    Raises MidiError("no notes") for a piece without notes.
    """
    if not notes:
        raise MidiError("no notes")
    notes, cut = quantize_notes(notes)
    cuts = find_cuts(notes)
    notes = [n._replace(start=warp(n.start, cuts), end=warp(n.end, cuts)) for n in notes]
    steps = sorted(((round(warp(beats2steps(b), cuts)), bpm2bin(bpm)) for b, bpm in tempos),
                   key=lambda s: s[0])
    return Plan(notes, [(0, DEFAULT_BPM)] + steps, cuts, cut)


def beats2seconds(tempos: list[tuple[float, float]]):
    """A function mapping a position in beats to seconds under a tempo map [(beat, bpm), ...]."""
    marks = [(0.0, 0.0, DEFAULT_BPM)]  # (beat, seconds at that beat, bpm from there)
    for beat, bpm in sorted(tempos, key=lambda t: t[0]):
        b0, s0, bpm0 = marks[-1]
        marks.append((beat, s0 + (beat - b0) * 60.0 / bpm0, bpm))
    starts = [m[0] for m in marks]

    def convert(beat: float) -> float:
        b0, s0, bpm0 = marks[bisect.bisect_right(starts, beat) - 1]
        return s0 + (beat - b0) * 60.0 / bpm0

    return convert


# -- tokens every vocabulary shares ---------------------------------------------------

# The token groups of every vocabulary, (name, range text, tokens); each lists them in its own order.
PIECE_GROUP = ("piece", "<piece>: start of a piece", [PIECE_TOKEN])
TEMPO_GROUP = ("tempo", "tempo:20 .. tempo:360 (BPM)", [f"tempo:{b}" for b in TEMPO_BPMS])
PROGRAM_GROUP = ("program", "prog:0 .. prog:127 (GM instrument)", [f"prog:{p}" for p in range(128)])
VELOCITY_GROUP = ("velocity", "vel:3 .. vel:127 (32 bins)", [f"vel:{v}" for v in VELOCITIES])
SHIFT_GROUP = ("time shift", f"shift:1 .. shift:{MAX_SHIFT_STEPS} (1/{STEPS_PER_BEAT} beat)",
               [f"shift:{n}" for n in range(1, MAX_SHIFT_STEPS + 1)])
DRUM_GROUP = ("drum hit", "drum:0 .. drum:127 (channel 10 key)", [f"drum:{p}" for p in range(128)])


def shift_tokens(steps: int) -> list[str]:
    """Time shift tokens covering `steps`, longest first."""
    full, rest = divmod(steps, MAX_SHIFT_STEPS)
    return [f"shift:{MAX_SHIFT_STEPS}"] * full + ([f"shift:{rest}"] if rest else [])


class TokenWriter:
    """A piece's tokens written in time order, from PIECE_TOKEN on: shift tokens move time on,
    and a state (tempo, program, velocity, a duration) is written only when it changes. Every
    vocabulary's encoder writes through one, adding its note tokens to `tokens`."""

    def __init__(self):
        self.tokens = [PIECE_TOKEN]
        self.now = 0  # the step the tokens have reached
        self._states: dict[str, int] = {}

    def at(self, step: int) -> None:
        """Move time on to `step` (a step already reached writes nothing)."""
        if step > self.now:
            self.tokens += shift_tokens(step - self.now)
            self.now = step

    def tempo(self, step: int, bpm_bin: int) -> None:
        """A tempo change at `step`."""
        self.at(step)
        self.state("tempo", bpm_bin)

    def event(self, step: int, program: Optional[int]) -> None:
        """Move to a note event at `step`, on `program` (None for a drum, which has none)."""
        self.at(step)
        if program is not None:
            self.state("prog", program)

    def state(self, kind: str, value: int, spell: Optional[Callable[[int], list[str]]] = None) -> None:
        """Set `kind` to `value`: its token ("kind:value", or spell(value)) unless it holds that value already."""
        if self._states.get(kind) != value:
            self._states[kind] = value
            self.tokens += spell(value) if spell else [f"{kind}:{value}"]


class TokenReader:
    """A piece's tokens played back in order: the step reached, the program and velocity in
    force, the tempo changes, and the drum hits (one-shots, alike in every vocabulary). Every
    vocabulary's decoder reads through one and plays its own note tokens itself."""

    def __init__(self):
        self.now, self.program, self.velocity = 0, 0, DEFAULT_VELOCITY
        self.tempos: list[tuple[int, int]] = [(0, DEFAULT_BPM)]  # (step, tempo bin) changes
        self.notes: list[TimedNote] = []

    def read(self, kind: str, value: int) -> bool:
        """Play one token every vocabulary shares; False for a token of the vocabulary's own."""
        if kind == "shift":
            self.now += value
        elif kind == "tempo":
            self.tempos.append((self.now, value))
        elif kind == "prog":
            self.program = value
        elif kind == "vel":
            self.velocity = value
        elif kind == "drum":
            self.notes.append(TimedNote(self.now, self.now + DRUM_STEPS, value, self.velocity, 0, True))
        else:
            return False
        return True


def first_piece(tokens: Iterable[str], known: frozenset[str]) -> Iterable[tuple[str, int]]:
    """(kind, value) of each token of the first piece that is in `known`; others are skipped.

    Leading PIECE_TOKENs are skipped; the next one after any music ends the piece.
    """
    started = False
    for token in tokens:
        if token == PIECE_TOKEN:
            if started:
                return
            continue
        if token not in known:
            continue
        started = True
        kind, _, value = token.partition(":")
        yield kind, int(value)


# -- a length in seconds ---------------------------------------------------------------


def step_after_seconds(tempos: list[tuple[int, float]], start: int, seconds: float) -> int:
    """The first whole step at or after `seconds` past step `start`, under (step, bpm) tempo changes."""
    changes = sorted(dict(tempos).items())  # of two changes at one step, the later holds
    bpm = DEFAULT_BPM
    for step, value in changes:
        if step <= start:
            bpm = value
    now, left = start, seconds
    for step, value in changes:
        if step <= now:
            continue
        span = (step - now) * seconds_per_step(bpm)
        if span >= left - 1e-9:
            break
        now, left, bpm = step, left - span, value
    return now + math.ceil(left / seconds_per_step(bpm) - 1e-9)


def end_notes_at(notes: list[TimedNote], tempos: list[tuple[int, float]], limit: int) -> list[TimedNote]:
    """The notes struck before step `limit`, each sounding at most RELEASE_SECONDS past it."""
    bpm = DEFAULT_BPM
    for step, value in sorted(tempos, key=lambda change: change[0]):
        if step <= limit:
            bpm = value
    release = max(1, round(RELEASE_SECONDS / seconds_per_step(bpm)))
    return [n._replace(end=min(n.end, limit + release)) for n in notes if n.start < limit]
