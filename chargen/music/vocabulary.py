"""The MIDI vocabularies by version, and recognizing MIDI files, without mido.

A music checkpoint records its vocabulary `version`; every function here that reads
or writes tokens takes it, and hands the work to the module of that version:

    version 3   note durations (new runs)       chargen.music.durations
    version 1-2 note-offs (older checkpoints)   chargen.music.noteoffs

Both build on chargen.music.grid (the time grid and the tokens they share);
chargen.music.midifile turns MIDI files into the grid's notes and back.

    vocab = midi_vocab()                               # the Vocab of new runs
    notes, tempos, end = tokens_to_notes(tokens, vocab.version)
"""

from __future__ import annotations

import functools
import math
import os
import stat
from collections import Counter
from typing import Iterable, Optional, Sequence

from chargen.errors import MidiError
from chargen.music import durations, noteoffs
from chargen.music.grid import DEFAULT_BPM, TimedNote, first_piece, seconds_per_step
from chargen.vocab import Vocab

MIDI_VOCAB_VERSION = durations.VERSION  # the vocabulary of new runs
VOCAB_VERSIONS = (1, 2, 3)  # every version that loads and samples
MIDI_EXTENSIONS = (".mid", ".midi", ".kar")


# -- recognizing MIDI files ---------------------------------------------------------


def has_midi_extension(path) -> bool:
    """Whether a file's name says MIDI (.mid, .midi, .kar, in any case)."""
    return str(path).lower().endswith(MIDI_EXTENSIONS)


def starts_like_midi(head: bytes) -> bool:
    """Whether a file's first 12 bytes are a Standard MIDI File's, or a RIFF RMID wrapper's."""
    return head.startswith(b"MThd") or (head[:4] == b"RIFF" and head[8:12] == b"RMID")


def is_midi_file(path) -> bool:
    """Whether `path` is a regular file that starts like MIDI. Nothing else is opened: reading
    a pipe would consume what it holds, and a FIFO or a device could block."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(12)
    except (OSError, ValueError):  # ValueError: a name with a NUL byte
        return False
    return starts_like_midi(head)


def looks_like_midi(path) -> bool:
    """Whether a path names a MIDI file, by its extension or its first bytes: the one test
    the corpus loader and the command line use."""
    return has_midi_extension(path) or is_midi_file(path)


# -- versions ------------------------------------------------------------------------


def check_version(version: int) -> None:
    """MidiError unless `version` is a MIDI vocabulary this chargen reads."""
    if version not in VOCAB_VERSIONS:
        raise MidiError(f"MIDI vocabulary version {version} is not supported "
                        f"(this chargen reads versions {', '.join(map(str, VOCAB_VERSIONS))})")


def _groups(version: int) -> list[tuple[str, str, list[str]]]:
    check_version(version)
    return durations.GROUPS if version == durations.VERSION else noteoffs.groups(version)


def vocabulary(version: int = MIDI_VOCAB_VERSION) -> list[str]:
    """The fixed, ordered list of every token of a vocabulary version."""
    return [token for _, _, tokens in _groups(version) for token in tokens]


def midi_vocab(version: int = MIDI_VOCAB_VERSION) -> Vocab:
    """The MIDI Vocab of a vocabulary version (new runs: MIDI_VOCAB_VERSION)."""
    return Vocab(vocabulary(version), kind="midi", version=version)


def describe_tokens(version: int = MIDI_VOCAB_VERSION) -> list[tuple[str, str, int]]:
    """(group name, range text, token count) for each token group, in vocabulary order."""
    return [(name, text, len(tokens)) for name, text, tokens in _groups(version)]


@functools.cache
def _known(version: int) -> frozenset[str]:
    return frozenset(vocabulary(version))


# -- notes <-> tokens, in the version's vocabulary ------------------------------------------


def notes_to_tokens(notes: list[TimedNote], tempos: list[tuple[int, int]],
                    version: int = MIDI_VOCAB_VERSION) -> list[str]:
    """The token list of a Plan's notes and tempo changes (see chargen.music.grid), from <piece> on."""
    check_version(version)
    module = durations if version == durations.VERSION else noteoffs
    return module.notes_to_tokens(notes, tempos)


def tokens_to_notes(tokens: Iterable[str], version: int = MIDI_VOCAB_VERSION
                    ) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """(notes, tempo changes, end step) played by the first piece of a token list, times in steps.

    Tokens outside the version's vocabulary are skipped; every note gets an end.
    """
    check_version(version)
    module = durations if version == durations.VERSION else noteoffs
    return module.tokens_to_notes(tokens, _known(version))


def tokens_to_notes_after(tokens: Sequence[str], prime_length: int, version: int = MIDI_VOCAB_VERSION
                          ) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """Like tokens_to_notes, but only the notes struck after the first `prime_length` tokens
    (a sample without its prime), with time counted from the end of the prime.

    The tempo in force where the prime ends becomes the starting tempo. Notes of
    the prime that sound on past its end are left out with it.
    """
    notes, tempos, end = tokens_to_notes(tokens, version)
    prime_notes, _, cut = tokens_to_notes(tokens[:prime_length], version)
    # Notes struck at the prime's last step belong to the prime; new notes may start on that step too.
    in_prime = Counter((n.pitch, n.program, n.is_drum) for n in prime_notes if n.start == cut)
    kept = []
    for n in notes:
        if n.start < cut:
            continue
        key = (n.pitch, n.program, n.is_drum)
        if n.start == cut and in_prime[key]:
            in_prime[key] -= 1
            continue
        kept.append(n._replace(start=n.start - cut, end=n.end - cut))
    start_bpm = [bpm for step, bpm in tempos if step <= cut][-1]
    later = [(step - cut, bpm) for step, bpm in tempos if step > cut]
    return kept, [(0, start_bpm)] + later, end - cut


class Clock:
    """The seconds of music tokens have played, read one token at a time: each shift moves
    time on at the tempo the last tempo token set (DEFAULT_BPM before any). Tokens outside
    the version's vocabulary move nothing. tokens_duration, midifile.read_prime and a
    sampler that stops at so many seconds all keep time with it.

        clock = Clock(version)
        for token in tokens:
            clock.read(token)        # clock.seconds: the music so far
    """

    def __init__(self, version: int = MIDI_VOCAB_VERSION):
        check_version(version)
        self.known = _known(version)
        self.seconds, self.bpm = 0.0, DEFAULT_BPM

    def read(self, token: str) -> float:
        """Take one token into account; the seconds played so far."""
        if token in self.known:
            kind, _, value = token.partition(":")
            self.step(kind, int(value) if value else 0)
        return self.seconds

    def step(self, kind: str, value: int) -> None:
        """Take one parsed token (kind, value) into account, as grid.first_piece yields them."""
        if kind == "tempo":
            self.bpm = value
        elif kind == "shift":
            self.seconds += value * seconds_per_step(self.bpm)
class TimeLimit:
    """Ends a token list being written at `seconds` of music: the last note starts before it.

    Fed each new token, its Clock keeps a running total (at a fixed `tempo` when the file
    will be written at one), so a long sample costs one update per token, not a walk of
    the list. The shift that reaches the limit is shortened to end on it (to the next
    whole step) and ends the list:

        limit = TimeLimit(30.0, version, bpm=bpm_where_the_prime_ends)
        token, done = limit.take("shift:24")     # ("shift:24", False) until 30 s are reached
    """

    def __init__(self, seconds: float, version: int = MIDI_VOCAB_VERSION, bpm: float = DEFAULT_BPM,
                 tempo: Optional[float] = None):
        self.seconds, self.tempo = seconds, tempo
        self.clock = Clock(version)
        self.clock.bpm = tempo or bpm

    def take(self, token: str) -> tuple[Optional[str], bool]:
        """(the token to write, or None; whether the list ends with it)."""
        kind, _, value = token.partition(":")
        if kind == "shift" and token in self.clock.known:
            step = seconds_per_step(self.clock.bpm)
            remaining = self.seconds - self.clock.seconds
            if int(value) * step >= remaining - 1e-9:
                steps = math.ceil(remaining / step - 1e-9)
                return (f"shift:{steps}" if steps > 0 else None), True
        self.clock.read(token)
        if self.tempo is not None:  # the file is written at one tempo: its tempo tokens change nothing
            self.clock.bpm = self.tempo
        return token, False


NOTE_KINDS = ("note", "on", "drum")  # one token per note struck, in every version (off: ends one)


def is_note(token: str) -> bool:
    """Whether a token strikes a note (a pitched onset or a drum hit): bits per note count these."""
    return token.partition(":")[0] in NOTE_KINDS


def tokens_duration(tokens: Sequence[str], version: int = MIDI_VOCAB_VERSION) -> float:
    """Seconds of music in the first piece of `tokens` (its time shifts), following its tempo tokens."""
    clock = Clock(version)
    for kind, value in first_piece(tokens, clock.known):
        clock.step(kind, value)
    return clock.seconds
