"""The MIDI event vocabulary and the token timeline: no mido, no files.

Tokens (see docs/midi.md for the full list and the reasons):

    <piece>     start of a piece          tempo:N   tempo bin, BPM
    prog:N      instrument (GM program)   vel:N     velocity bin for next onsets
    on:P off:P  pitched note on / off     drum:P    drum hit (channel 10), no off
    shift:N     advance N steps of 1/STEPS_PER_BEAT beat

chargen.midi turns MIDI files into the step-timeline notes handled here and
back; this module turns those notes into tokens and tokens into notes.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Iterable, NamedTuple, Sequence

from chargen.vocab import Vocab

MIDI_VOCAB_VERSION = 1
STEPS_PER_BEAT = 24  # one step = 1/24 quarter note: 32nds (3) and triplet 16ths (4) are exact
MAX_SHIFT_STEPS = 96  # longest single shift token: one 4/4 bar; longer gaps repeat it
MAX_REST_STEPS = 16 * STEPS_PER_BEAT  # silences longer than 4 bars are shortened to this
MAX_NOTE_STEPS = 32 * STEPS_PER_BEAT  # a note still sounding after 8 bars is closed
DRUM_STEPS = STEPS_PER_BEAT // 4  # drums are one-shots: decoded as sixteenth notes
MAX_COPIES = 4  # copies of one pitch one instrument sounds at once (unisons); a fifth cuts the oldest
VELOCITY_BIN_WIDTH = 4  # 32 bins over 1..127; a bin decodes to its top value - 1
DEFAULT_VELOCITY = 63
DEFAULT_BPM = 120  # the MIDI default tempo (500000 microseconds per beat)
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


# -- the vocabulary ------------------------------------------------------------

_GROUPS = [
    ("piece", "<piece>: start of a piece", [PIECE_TOKEN]),
    ("tempo", "tempo:20 .. tempo:360 (BPM)", [f"tempo:{b}" for b in TEMPO_BPMS]),
    ("program", "prog:0 .. prog:127 (GM instrument)", [f"prog:{p}" for p in range(128)]),
    ("velocity", "vel:3 .. vel:127 (32 bins)", [f"vel:{v}" for v in VELOCITIES]),
    ("time shift", f"shift:1 .. shift:{MAX_SHIFT_STEPS} (1/{STEPS_PER_BEAT} beat)",
     [f"shift:{n}" for n in range(1, MAX_SHIFT_STEPS + 1)]),
    ("note on", "on:0 .. on:127 (pitch)", [f"on:{p}" for p in range(128)]),
    ("note off", "off:0 .. off:127 (pitch)", [f"off:{p}" for p in range(128)]),
    ("drum hit", "drum:0 .. drum:127 (channel 10 key)", [f"drum:{p}" for p in range(128)]),
]
_VOCABULARY = [token for _, _, tokens in _GROUPS for token in tokens]
_VOCABULARY_SET = frozenset(_VOCABULARY)


def vocabulary() -> list[str]:
    """The fixed, ordered list of every MIDI token."""
    return list(_VOCABULARY)


def midi_vocab() -> Vocab:
    """The MIDI Vocab every MIDI model uses."""
    return Vocab(vocabulary(), kind="midi", version=MIDI_VOCAB_VERSION)


def describe_tokens() -> list[tuple[str, str, int]]:
    """(group name, range text, token count) for each token group, in vocabulary order."""
    return [(name, text, len(tokens)) for name, text, tokens in _GROUPS]


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


def quantize_notes(notes: list[TimedNote]) -> tuple[list[TimedNote], int, int]:
    """(notes on the step grid, notes re-paired, notes cut), as decoding will play them.

    Notes become at least one step and at most MAX_NOTE_STEPS long. An
    instrument may sound up to MAX_COPIES copies of one pitch at once (unison
    doublings, overlapping re-strikes). Tokens pair each off:P with the oldest
    sounding copy (first in, first out), so within one instrument and pitch the
    k-th onset ends at the k-th release: a nested overlap (a short copy inside
    a long one) is re-paired here. A copy struck while MAX_COPIES sound cuts
    the oldest one short. Drums are one-shots: hits of one drum on one step merge.
    """
    by_key: dict[tuple, list[TimedNote]] = {}
    for n in notes:
        start = beats2steps(n.start)
        end = min(max(beats2steps(n.end), start + 1), start + MAX_NOTE_STEPS)
        key = (n.is_drum, n.program, n.pitch)
        by_key.setdefault(key, []).append(n._replace(start=start, end=end))
    out, repaired, cut = [], 0, 0
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
        kept, sounding = [], deque()  # sounding: indices into kept, oldest first
        for n, end in zip(group, sorted(n.end for n in group)):
            end = min(end, n.start + MAX_NOTE_STEPS)
            repaired += end != n.end
            while sounding and kept[sounding[0]].end <= n.start:
                sounding.popleft()
            if len(sounding) == MAX_COPIES:
                oldest = sounding.popleft()
                cut += 1
                repaired -= kept[oldest].end != group[oldest].end  # count each note once
                kept[oldest] = kept[oldest]._replace(end=n.start)
            sounding.append(len(kept))
            kept.append(n._replace(end=end))
        out.extend(n for n in kept if n.end > n.start)
    out.sort()
    return out, repaired, cut


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


def notes_to_tokens(notes: list[TimedNote], tempos: list[tuple[int, int]]) -> list[str]:
    """The token list of quantized notes and (step, tempo bin) changes, from PIECE_TOKEN on.

    This is the one place notes become tokens; notes must already be paired
    first in, first out and respect MAX_COPIES (see quantize_notes).
    """
    # (step, order, is_drum, program, pitch, end, velocity): at one step, the
    # tempo comes first, then note-offs, then onsets, each grouped by
    # instrument. Copies of one pitch starting together go shortest first, so
    # the first off:P (closing the oldest copy) ends the right one.
    events = [(step, 0, False, 0, 0, 0, bpm) for step, bpm in dict(tempos).items()]
    for n in notes:
        if not n.is_drum:
            events.append((n.end, 1, False, n.program, n.pitch, 0, 0))
        events.append((n.start, 2, n.is_drum, n.program, n.pitch, n.end, n.velocity))
    events.sort()

    tokens, now, tempo, program, velocity = [PIECE_TOKEN], 0, None, None, None
    for step, order, is_drum, prog, pitch, _, value in events:
        if step > now:
            tokens += shift_tokens(step - now)
            now = step
        if order == 0:
            if value != tempo:
                tempo = value
                tokens.append(f"tempo:{tempo}")
            continue
        if not is_drum and prog != program:
            program = prog
            tokens.append(f"prog:{program}")
        if order == 1:
            tokens.append(f"off:{pitch}")
            continue
        if velocity2bin(value) != velocity:
            velocity = velocity2bin(value)
            tokens.append(f"vel:{velocity}")
        tokens.append(f"{'drum' if is_drum else 'on'}:{pitch}")
    return tokens


def shift_tokens(steps: int) -> list[str]:
    """Time shift tokens covering `steps`, longest first."""
    full, rest = divmod(steps, MAX_SHIFT_STEPS)
    return [f"shift:{MAX_SHIFT_STEPS}"] * full + ([f"shift:{rest}"] if rest else [])


def first_piece(tokens: Iterable[str]) -> Iterable[tuple[str, int]]:
    """(kind, value) of each known token of the first piece; unknown tokens are skipped.

    Leading PIECE_TOKENs are skipped; the next one after any music ends the piece.
    """
    started = False
    for token in tokens:
        if token == PIECE_TOKEN:
            if started:
                return
            continue
        if token not in _VOCABULARY_SET:
            continue
        started = True
        kind, _, value = token.partition(":")
        yield kind, int(value)


def tokens_to_notes(tokens: Iterable[str]) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """(notes, tempo changes, end step) played by a token list, times in steps.

    Each instrument may sound up to MAX_COPIES copies of a pitch: off:P ends
    the oldest sounding copy of P on the current program (first in, first
    out). Repairs as it goes: an off with nothing sounding is dropped, an on
    while MAX_COPIES copies sound ends the oldest there, a note open for more
    than MAX_NOTE_STEPS is closed at that length, and notes open at the end
    close there (at least one step after their onset).
    """
    now, program, velocity = 0, 0, DEFAULT_VELOCITY
    tempos = [(0, DEFAULT_BPM)]
    # (program, pitch) -> sounding copies as (start, velocity), oldest first
    sounding: dict[tuple[int, int], deque[tuple[int, int]]] = {}
    notes: list[TimedNote] = []

    def close(key, end):
        start, vel = sounding[key].popleft()
        if not sounding[key]:
            del sounding[key]
        if end > start:
            notes.append(TimedNote(start, end, key[1], vel, key[0], False))

    for kind, value in first_piece(tokens):
        key = (program, value)
        if kind == "shift":
            now += value
            for copies_key, copies in list(sounding.items()):
                # strictly longer: an off at exactly MAX_NOTE_STEPS still closes its own copy
                while copies_key in sounding and now - copies[0][0] > MAX_NOTE_STEPS:
                    close(copies_key, copies[0][0] + MAX_NOTE_STEPS)
        elif kind == "tempo":
            tempos.append((now, value))
        elif kind == "prog":
            program = value
        elif kind == "vel":
            velocity = value
        elif kind == "on":
            if len(sounding.get(key, ())) == MAX_COPIES:
                close(key, now)
            sounding.setdefault(key, deque()).append((now, velocity))
        elif kind == "off" and key in sounding:
            close(key, max(now, sounding[key][0][0] + 1))
        elif kind == "drum":
            notes.append(TimedNote(now, now + DRUM_STEPS, value, velocity, 0, True))
    for key, copies in list(sounding.items()):
        for start, _ in list(copies):
            close(key, max(now, start + 1))
    return notes, tempos, now


def seconds_per_step(bpm: float) -> float:
    return 60.0 / (bpm * STEPS_PER_BEAT)


def tokens_duration(tokens: Sequence[str]) -> float:
    """Seconds of music in the first piece of `tokens`, following its tempo tokens."""
    seconds, bpm = 0.0, DEFAULT_BPM
    for kind, value in first_piece(tokens):
        if kind == "tempo":
            bpm = value
        elif kind == "shift":
            seconds += value * seconds_per_step(bpm)
    return seconds
