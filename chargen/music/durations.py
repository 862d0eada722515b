"""The duration vocabulary (version 3, the one new music runs use): notes <-> tokens.

Every note is one token, played for the duration set before it, so no note can lack
an end:

    <piece>     start of a piece          tempo:N   tempo bin, BPM
    prog:N      instrument (GM program)   vel:N     velocity bin for the next notes
    dur:N       duration of the next notes, N steps (a run of dur: tokens adds up)
    note:P      a pitched note            drum:P    drum hit (channel 10), a one-shot
    shift:N     advance N steps of 1/STEPS_PER_BEAT beat

The grid and the shared tokens live in chargen.music.grid; chargen.music.vocabulary
picks this module or chargen.music.noteoffs by a checkpoint's vocabulary version.
See docs/midi.md for the token list, the reasons and the measured round trip.
"""

from __future__ import annotations

from typing import Iterable

from chargen.music.grid import (
    DEFAULT_BPM,
    DEFAULT_DURATION_STEPS,
    DEFAULT_VELOCITY,
    DRUM_STEPS,
    MAX_COPIES,
    MAX_DURATION_STEPS,
    MAX_NOTE_STEPS,
    MAX_SHIFT_STEPS,
    PIECE_TOKEN,
    STEPS_PER_BEAT,
    TEMPO_BPMS,
    VELOCITIES,
    TimedNote,
    first_piece,
    shift_tokens,
    velocity2bin,
)

VERSION = 3

GROUPS = [
    ("piece", "<piece>: start of a piece", [PIECE_TOKEN]),
    ("tempo", "tempo:20 .. tempo:360 (BPM)", [f"tempo:{b}" for b in TEMPO_BPMS]),
    ("program", "prog:0 .. prog:127 (GM instrument)", [f"prog:{p}" for p in range(128)]),
    ("velocity", "vel:3 .. vel:127 (32 bins)", [f"vel:{v}" for v in VELOCITIES]),
    ("duration", f"dur:1 .. dur:{MAX_DURATION_STEPS} (1/{STEPS_PER_BEAT} beat, next notes)",
     [f"dur:{n}" for n in range(1, MAX_DURATION_STEPS + 1)]),
    ("time shift", f"shift:1 .. shift:{MAX_SHIFT_STEPS} (1/{STEPS_PER_BEAT} beat)",
     [f"shift:{n}" for n in range(1, MAX_SHIFT_STEPS + 1)]),
    ("note", "note:0 .. note:127 (pitch)", [f"note:{p}" for p in range(128)]),
    ("drum hit", "drum:0 .. drum:127 (channel 10 key)", [f"drum:{p}" for p in range(128)]),
]



def duration_tokens(steps: int) -> list[str]:
    """Duration tokens adding up to `steps`, longest first."""
    full, rest = divmod(steps, MAX_DURATION_STEPS)
    return [f"dur:{MAX_DURATION_STEPS}"] * full + ([f"dur:{rest}"] if rest else [])


def notes_to_tokens(notes: list[TimedNote], tempos: list[tuple[int, int]]) -> list[str]:
    """The token list of a Plan's notes and tempo changes, from PIECE_TOKEN on.

    This is the one place notes become tokens. In version 3, each note is a
    note:P (or drum:P) token; program, velocity and duration are states, written
    when they change. At one step the tempo comes first, then the onsets
    grouped by instrument, then by velocity and duration, pitches rising, so a
    chord of equal notes costs one token per note.
    """
    events = [(step, 0, False, 0, bpm, 0, 0) for step, bpm in dict(tempos).items()]
    for n in notes:
        events.append((n.start, 1, n.is_drum, n.program, velocity2bin(n.velocity),
                       0 if n.is_drum else n.end - n.start, n.pitch))
    events.sort()

    tokens, now, tempo, program, velocity, duration = [PIECE_TOKEN], 0, None, None, None, None
    for step, order, is_drum, prog, value, length, pitch in events:
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
        if value != velocity:
            velocity = value
            tokens.append(f"vel:{velocity}")
        if not is_drum and length != duration:
            duration = length
            tokens += duration_tokens(duration)
        tokens.append(f"{'drum' if is_drum else 'note'}:{pitch}")
    return tokens


def tokens_to_notes(tokens: Iterable[str], known: frozenset[str]) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """(notes, tempo changes, end step) played by a token list, times in steps.

    Only the first piece is read, and tokens outside the vocabulary are
    skipped. In version 3 every note:P lasts the current duration: the last
    run of dur: tokens, added up and capped at MAX_NOTE_STEPS (one beat before
    any), so every note has an end. A note struck while MAX_COPIES copies of
    its pitch sound on its instrument cuts the oldest there, as encoding does.
    """
    now, program, velocity, duration = 0, 0, DEFAULT_VELOCITY, DEFAULT_DURATION_STEPS
    tempos = [(0, DEFAULT_BPM)]
    notes: list[TimedNote] = []
    sounding: dict[tuple[int, int], list[int]] = {}  # (program, pitch) -> indices into notes, oldest first
    previous = None
    for kind, value in first_piece(tokens, known):
        if kind == "dur":
            duration = min(duration + value if previous == "dur" else value, MAX_NOTE_STEPS)
        elif kind == "shift":
            now += value
        elif kind == "tempo":
            tempos.append((now, value))
        elif kind == "prog":
            program = value
        elif kind == "vel":
            velocity = value
        elif kind == "note":
            copies = [i for i in sounding.get((program, value), []) if notes[i].end > now]
            if len(copies) == MAX_COPIES:
                oldest = copies.pop(0)
                notes[oldest] = notes[oldest]._replace(end=now)
            sounding[(program, value)] = copies + [len(notes)]
            notes.append(TimedNote(now, now + duration, value, velocity, program, False))
        elif kind == "drum":
            notes.append(TimedNote(now, now + DRUM_STEPS, value, velocity, 0, True))
        previous = kind
    return [n for n in notes if n.end > n.start], tempos, now
