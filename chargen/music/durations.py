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

from chargen.music import grid
from chargen.music.grid import (
    DEFAULT_DURATION_STEPS,
    MAX_COPIES,
    MAX_DURATION_STEPS,
    MAX_NOTE_STEPS,
    STEPS_PER_BEAT,
    TimedNote,
    TokenReader,
    TokenWriter,
    first_piece,
    velocity2bin,
)

VERSION = 3

GROUPS = [  # in vocabulary order (a token's id is its place here), grid's groups shared
    grid.PIECE_GROUP,
    grid.TEMPO_GROUP,
    grid.PROGRAM_GROUP,
    grid.VELOCITY_GROUP,
    ("duration", f"dur:1 .. dur:{MAX_DURATION_STEPS} (1/{STEPS_PER_BEAT} beat, next notes)",
     [f"dur:{n}" for n in range(1, MAX_DURATION_STEPS + 1)]),
    grid.SHIFT_GROUP,
    ("note", "note:0 .. note:127 (pitch)", [f"note:{p}" for p in range(128)]),
    grid.DRUM_GROUP,
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

    out = TokenWriter()
    for step, order, is_drum, prog, value, length, pitch in events:
        if order == 0:
            out.tempo(step, value)
            continue
        out.event(step, None if is_drum else prog)
        out.state("vel", value)
        if not is_drum:
            out.state("dur", length, duration_tokens)
        out.tokens.append(f"{'drum' if is_drum else 'note'}:{pitch}")
    return out.tokens


def tokens_to_notes(tokens: Iterable[str], known: frozenset[str]) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """(notes, tempo changes, end step) played by a token list, times in steps.

    Only the first piece is read, and tokens outside the vocabulary are
    skipped. In version 3 every note:P lasts the current duration: the last
    run of dur: tokens, added up and capped at MAX_NOTE_STEPS (one beat before
    any), so every note has an end. A note struck while MAX_COPIES copies of
    its pitch sound on its instrument cuts the oldest there, as encoding does.
    """
    play, duration = TokenReader(), DEFAULT_DURATION_STEPS
    notes = play.notes
    sounding: dict[tuple[int, int], list[int]] = {}  # (program, pitch) -> indices into notes, oldest first
    previous = None
    for kind, value in first_piece(tokens, known):
        if kind == "dur":
            duration = min(duration + value if previous == "dur" else value, MAX_NOTE_STEPS)
        elif kind == "note":
            now, program = play.now, play.program
            copies = [i for i in sounding.get((program, value), []) if notes[i].end > now]
            if len(copies) == MAX_COPIES:
                oldest = copies.pop(0)
                notes[oldest] = notes[oldest]._replace(end=now)
            sounding[(program, value)] = copies + [len(notes)]
            notes.append(TimedNote(now, now + duration, value, play.velocity, program, False))
        else:
            play.read(kind, value)
        previous = kind
    return [n for n in notes if n.end > n.start], play.tempos, play.now
