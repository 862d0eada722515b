"""The note-off event vocabulary (versions 1 and 2), kept so that older music checkpoints load and sample.

New runs use the duration vocabulary of chargen.music.durations (version 3). Here
every note is two events, an onset and an end, and the model has to remember
every sounding note to close it:

    on:P off:P  pitched note on / off (the oldest sounding copy of P ends)
    copy:K      the next off:P ends the copy of P with K older copies sounding (version 2 only)

plus the tokens both vocabularies share (<piece>, tempo:, prog:, vel:, shift:,
drum:). See docs/midi.md for the reasons and the worked example.
"""

from __future__ import annotations

from typing import Iterable

from chargen.music import grid
from chargen.music.grid import (
    MAX_COPIES,
    MAX_NOTE_STEPS,
    TimedNote,
    TokenReader,
    TokenWriter,
    first_piece,
    velocity2bin,
)

GROUPS = [  # in vocabulary order (a token's id is its place here), grid's groups shared
    grid.PIECE_GROUP,
    grid.TEMPO_GROUP,
    grid.PROGRAM_GROUP,
    grid.VELOCITY_GROUP,
    grid.SHIFT_GROUP,
    ("note on", "on:0 .. on:127 (pitch)", [f"on:{p}" for p in range(128)]),
    ("note off", "off:0 .. off:127 (pitch)", [f"off:{p}" for p in range(128)]),
    grid.DRUM_GROUP,
    # Version 2 appended these, so that every version 1 token kept its id.
    ("off copy", f"copy:1 .. copy:{MAX_COPIES - 1} (next off ends a newer copy)",
     [f"copy:{k}" for k in range(1, MAX_COPIES)]),
]


def groups(version: int) -> list[tuple[str, str, list[str]]]:
    """(name, range text, tokens) of each token group of version 1 or 2, in vocabulary order."""
    return GROUPS if version == 2 else GROUPS[:-1]


def notes_to_tokens(notes: list[TimedNote], tempos: list[tuple[int, int]]) -> list[str]:
    """The version 2 token list of quantized notes and (step, tempo bin) changes, from PIECE_TOKEN on.

    Notes must already respect MAX_COPIES (see quantize_notes). off:P ends the
    oldest sounding copy of P; when the note ending is a newer copy, copy:K (K
    older copies sound) comes first.
    """
    # (step, order, is_drum, program, pitch, start, end, velocity): at one
    # step, the tempo comes first, then note-offs (oldest copy first), then
    # onsets, each grouped by instrument. Copies of one pitch starting together
    # go shortest first, so the common case needs no copy: token.
    events = [(step, 0, False, 0, 0, 0, 0, bpm) for step, bpm in dict(tempos).items()]
    for n in notes:
        if not n.is_drum:
            events.append((n.end, 1, False, n.program, n.pitch, n.start, n.end, n.velocity))
        events.append((n.start, 2, n.is_drum, n.program, n.pitch, n.start, n.end, n.velocity))
    events.sort()

    out = TokenWriter()
    sounding: dict[tuple[int, int], list[tuple]] = {}  # (program, pitch) -> copies, oldest first
    for step, order, is_drum, prog, pitch, start, end, value in events:
        if order == 0:
            out.tempo(step, value)
            continue
        out.event(step, None if is_drum else prog)
        if order == 1:
            copies = sounding[(prog, pitch)]
            older = copies.index((start, end, value))  # copies sounding that were struck before it
            assert older < MAX_COPIES, "notes_to_tokens needs notes within MAX_COPIES"
            out.tokens += [f"copy:{older}", f"off:{pitch}"] if older else [f"off:{pitch}"]
            del copies[older]
            continue
        out.state("vel", velocity2bin(value))
        out.tokens.append(f"{'drum' if is_drum else 'on'}:{pitch}")
        if not is_drum:
            sounding.setdefault((prog, pitch), []).append((start, end, value))
    return out.tokens


def tokens_to_notes(tokens: Iterable[str], known: frozenset[str]) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """(notes, tempo changes, end step) played by a version 1 or 2 token list, times in steps.

    Each instrument may sound up to MAX_COPIES copies of a pitch: off:P ends
    the oldest sounding copy of P on the current program, or, right after
    copy:K, the copy with K older copies sounding (the newest if fewer do).
    Repairs as it goes: an off with nothing sounding is dropped, a copy:K not
    followed by an off is ignored, an on while MAX_COPIES copies sound ends the
    oldest there, a note open for more than MAX_NOTE_STEPS is closed at that
    length, and notes open at the end close there (at least one step after
    their onset).
    """
    play, pending_copy = TokenReader(), 0
    # (program, pitch) -> sounding copies as (start, velocity), oldest first
    sounding: dict[tuple[int, int], list[tuple[int, int]]] = {}
    notes = play.notes

    def close(key, end, copy=0):
        start, vel = sounding[key].pop(copy)
        if not sounding[key]:
            del sounding[key]
        if end > start:
            notes.append(TimedNote(start, end, key[1], vel, key[0], False))

    for kind, value in first_piece(tokens, known):
        key = (play.program, value)
        copy, pending_copy = pending_copy, 0  # copy:K applies to the token right after it only
        if play.read(kind, value):
            if kind == "shift":
                for copies_key, copies in list(sounding.items()):
                    # strictly longer: an off at exactly MAX_NOTE_STEPS still closes its own copy
                    while copies_key in sounding and play.now - copies[0][0] > MAX_NOTE_STEPS:
                        close(copies_key, copies[0][0] + MAX_NOTE_STEPS)
        elif kind == "on":
            if len(sounding.get(key, ())) == MAX_COPIES:
                close(key, play.now)
            sounding.setdefault(key, []).append((play.now, play.velocity))
        elif kind == "copy":
            pending_copy = value
        elif kind == "off" and key in sounding:
            copy = min(copy, len(sounding[key]) - 1)
            close(key, max(play.now, sounding[key][copy][0] + 1), copy)
    for key, copies in list(sounding.items()):
        for start, _ in list(copies):
            close(key, max(play.now, start + 1))
    return notes, play.tempos, play.now
