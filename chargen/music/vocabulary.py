"""The MIDI event vocabulary and the token timeline: no mido, no parsing.

New music runs use the duration vocabulary (version 3): every note is one
token, played for the duration set before it, so no note can lack an end.

    <piece>     start of a piece          tempo:N   tempo bin, BPM
    prog:N      instrument (GM program)   vel:N     velocity bin for the next notes
    dur:N       duration of the next notes, N steps (a run of dur: tokens adds up)
    note:P      a pitched note            drum:P    drum hit (channel 10), a one-shot
    shift:N     advance N steps of 1/STEPS_PER_BEAT beat

Checkpoints of the note-off vocabulary (versions 1 and 2, on:P ... off:P) keep
working: every function that reads or writes tokens takes the vocabulary's
`version`, and versions 1 and 2 go to chargen.miditokens_v2.

chargen.midi turns MIDI files into the step-timeline notes handled here and
back; this module turns those notes into tokens and tokens into notes, and
tells a MIDI file by its name or first bytes (so a text run never imports mido). See
docs/midi.md for the token list, the reasons and the measured round trip.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter
from typing import Iterable, NamedTuple, Sequence

from chargen.errors import MidiError
from chargen.vocab import Vocab

DURATION_VERSION = 3  # the vocabulary this module encodes: note durations (1 and 2, note-offs: miditokens_v2)
MIDI_VOCAB_VERSION = DURATION_VERSION  # the vocabulary of new runs
VOCAB_VERSIONS = (1, 2, 3)  # every version that loads and samples
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
PIECE_TOKEN = "<piece>"
MIDI_EXTENSIONS = (".mid", ".midi", ".kar")
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


# -- recognizing MIDI files ---------------------------------------------------------


def is_midi_file(path) -> bool:
    """True when the file starts like a Standard MIDI File (or a RIFF RMID wrapper)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(b"MThd") or (head[:4] == b"RIFF" and head[8:12] == b"RMID")


# -- the vocabularies ------------------------------------------------------------

_GROUPS = [
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


def check_version(version: int) -> None:
    """MidiError unless `version` is a MIDI vocabulary this chargen reads."""
    if version not in VOCAB_VERSIONS:
        raise MidiError(f"MIDI vocabulary version {version} is not supported "
                        f"(this chargen reads versions {', '.join(map(str, VOCAB_VERSIONS))})")


def _groups(version: int) -> list[tuple[str, str, list[str]]]:
    check_version(version)
    if version == DURATION_VERSION:
        return _GROUPS
    from chargen.music import noteoffs as miditokens_v2  # imported on use: it builds on this module's grid

    return miditokens_v2.groups(version)


def vocabulary(version: int = MIDI_VOCAB_VERSION) -> list[str]:
    """The fixed, ordered list of every token of a vocabulary version."""
    return [token for _, _, tokens in _groups(version) for token in tokens]


def midi_vocab(version: int = MIDI_VOCAB_VERSION) -> Vocab:
    """The MIDI Vocab of a vocabulary version (new runs: MIDI_VOCAB_VERSION)."""
    return Vocab(vocabulary(version), kind="midi", version=version)


def describe_tokens(version: int = MIDI_VOCAB_VERSION) -> list[tuple[str, str, int]]:
    """(group name, range text, token count) for each token group, in vocabulary order."""
    return [(name, text, len(tokens)) for name, text, tokens in _groups(version)]


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


# -- notes <-> tokens ---------------------------------------------------------------


def shift_tokens(steps: int) -> list[str]:
    """Time shift tokens covering `steps`, longest first."""
    full, rest = divmod(steps, MAX_SHIFT_STEPS)
    return [f"shift:{MAX_SHIFT_STEPS}"] * full + ([f"shift:{rest}"] if rest else [])


def duration_tokens(steps: int) -> list[str]:
    """Duration tokens adding up to `steps`, longest first."""
    full, rest = divmod(steps, MAX_DURATION_STEPS)
    return [f"dur:{MAX_DURATION_STEPS}"] * full + ([f"dur:{rest}"] if rest else [])


def notes_to_tokens(notes: list[TimedNote], tempos: list[tuple[int, int]],
                    version: int = MIDI_VOCAB_VERSION) -> list[str]:
    """The token list of a Plan's notes and tempo changes, from PIECE_TOKEN on.

    This is the one place notes become tokens. In version 3, each note is a
    note:P (or drum:P) token; program, velocity and duration are states, written
    when they change. At one step the tempo comes first, then the onsets
    grouped by instrument, then by velocity and duration, pitches rising, so a
    chord of equal notes costs one token per note.
    """
    check_version(version)
    if version != DURATION_VERSION:
        from chargen.music import noteoffs as miditokens_v2

        return miditokens_v2.notes_to_tokens(notes, tempos)
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


@functools.cache
def _known(version: int) -> frozenset[str]:
    return frozenset(vocabulary(version))


def tokens_to_notes(tokens: Iterable[str], version: int = MIDI_VOCAB_VERSION
                    ) -> tuple[list[TimedNote], list[tuple[int, int]], int]:
    """(notes, tempo changes, end step) played by a token list, times in steps.

    Only the first piece is read, and tokens outside the vocabulary are
    skipped. In version 3 every note:P lasts the current duration: the last
    run of dur: tokens, added up and capped at MAX_NOTE_STEPS (one beat before
    any), so every note has an end. A note struck while MAX_COPIES copies of
    its pitch sound on its instrument cuts the oldest there, as encoding does.
    """
    check_version(version)
    if version != DURATION_VERSION:
        from chargen.music import noteoffs as miditokens_v2

        return miditokens_v2.tokens_to_notes(tokens, _known(version))
    now, program, velocity, duration = 0, 0, DEFAULT_VELOCITY, DEFAULT_DURATION_STEPS
    tempos = [(0, DEFAULT_BPM)]
    notes: list[TimedNote] = []
    sounding: dict[tuple[int, int], list[int]] = {}  # (program, pitch) -> indices into notes, oldest first
    previous = None
    for kind, value in first_piece(tokens, _known(version)):
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


def tokens_duration(tokens: Sequence[str], version: int = MIDI_VOCAB_VERSION) -> float:
    """Seconds of music in the first piece of `tokens` (its time shifts), following its tempo tokens."""
    check_version(version)
    seconds, bpm = 0.0, DEFAULT_BPM
    for kind, value in first_piece(tokens, _known(version)):
        if kind == "tempo":
            bpm = value
        elif kind == "shift":
            seconds += value * seconds_per_step(bpm)
    return seconds
