"""MIDI files <-> notes and event tokens: the only chargen module that imports mido.

A piece becomes a flat list of short event tokens from one FIXED vocabulary
(chargen.music.vocabulary, which needs no mido):

    <piece> tempo:96 prog:0 vel:79 dur:24 note:60 note:64 shift:24 ...

This module reads files into notes on the beat timeline (sustain pedal applied,
drums apart), and turns decoded notes back into a file. Every function that
reads or writes tokens takes the vocabulary `version` (default: the one new
runs use), so the models of older vocabularies keep sampling. See docs/midi.md
for the token list and the measured round-trip fidelity.

    tokens = encode_file("data/bach/bach_bwv1_6.mid")
    write_midi(decode_tokens(tokens), "out.mid")
"""

from __future__ import annotations

import io
from collections import deque
from typing import NamedTuple, Optional, Sequence

import mido

from chargen.arguments import PRIME_SECONDS, PROGRAM, TEMPO
from chargen.atomic import output_file
from chargen.errors import MidiError
from chargen.music.grid import (
    DEFAULT_BPM,
    STEPS_PER_BEAT,
    TimedNote,
    beats2seconds,
    end_notes_at,
    plan_notes,
    step_after_seconds,
)
from chargen.music.vocabulary import (
    MIDI_VOCAB_VERSION,
    Clock,
    notes_to_tokens,
    starts_like_midi,
    tokens_to_notes,
    tokens_to_notes_after,
)

MAX_MIDI_BYTES = 64 * 2**20  # real MIDI files are kilobytes to a few MB; more is not a MIDI file

DRUM_CHANNEL = 9  # General MIDI channel 10, 0-based
PEDAL_CONTROL = 64  # sustain pedal; down while its value is >= 64
DECODE_TICKS_PER_BEAT = 480  # 20 ticks per step in files we write

_PITCHED_CHANNELS = [c for c in range(16) if c != DRUM_CHANNEL]


class Note(NamedTuple):
    """One note as the piano roll shows it; times in seconds."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int
    program: int  # General MIDI program 0-127; 0 for drums
    is_drum: bool


# -- reading files ---------------------------------------------------------------


def _unwrap_rmid(data: bytes) -> bytes:
    """The SMF bytes inside a RIFF RMID file's "data" chunk (unchanged if not RIFF)."""
    if not data.startswith(b"RIFF"):
        return data
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] == b"data":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    return b""


def read_midi(path) -> mido.MidiFile:
    """Parse a MIDI file; MidiError naming the file if it is unreadable or not MIDI.

    The header is checked before anything else is read, and at most
    MAX_MIDI_BYTES are read: /dev/zero or an endless pipe is refused, not
    read until memory runs out.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head and not starts_like_midi(head):
                raise MidiError(f"{path}: not a midi file (no MThd header)")
            data = head + f.read(MAX_MIDI_BYTES + 1 - len(head))
    except OSError as e:
        raise MidiError(f"{path}: cannot read file: {e.strerror or e}") from e
    return parse_midi(data, str(path))


def parse_midi(data: bytes, name: str) -> mido.MidiFile:
    """Parse the bytes of a MIDI file held in memory (a server's upload: never written to disk);
    MidiError whose message starts with `name` if they are not a readable MIDI file."""
    if len(data) > MAX_MIDI_BYTES:
        raise MidiError(f"{name}: larger than {MAX_MIDI_BYTES // 2**20} MiB, too large for a midi file")
    data = _unwrap_rmid(data)
    if not data:
        raise MidiError(f"{name}: empty file")
    if not data.startswith(b"MThd"):
        raise MidiError(f"{name}: not a midi file (no MThd header)")
    try:
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as e:  # mido raises many types (EOFError, OSError, ValueError, KeyError...)
        raise MidiError(f"{name}: corrupt or truncated midi file: {_reason(e)}") from e


def _reason(error: Exception) -> str:
    """Why mido could not parse a file, in words, also where mido's message is empty."""
    if isinstance(error, EOFError):  # mido raises a bare EOFError when the data runs out
        return "the file ends in the middle of a chunk (truncated)"
    return str(error) or type(error).__name__


class Score(NamedTuple):
    """What chargen hears in a MIDI file, on the beat timeline."""

    notes: list[TimedNote]  # times in beats, sustain pedal applied, sorted
    tempos: list[tuple[float, float]]  # (beat, bpm) tempo changes, in file order


def read_score(source, name: Optional[str] = None) -> Score:
    """The Score of a MIDI file (a path, or the file's bytes), parsed once; MidiError naming
    the file (or `name`) on any problem."""
    name = name or _name_of(source)
    mid = parse_midi(source, name) if isinstance(source, bytes) else read_midi(source)
    try:
        return score_of(mid)
    except MidiError as e:
        raise MidiError(f"{name}: {e}") from e


def _name_of(source) -> str:
    return "midi data" if isinstance(source, bytes) else str(source)


def score_of(mid: mido.MidiFile) -> Score:
    """The notes and tempo changes (beat, bpm) of a parsed file, on the beat timeline.

    Format 0 and 1 tracks play together; format 2 tracks play one after another.
    Notes pair per (track, channel, pitch) first in, first out: a pitch struck
    again while it sounds is a second copy (a unison, as in SATB parts on one
    channel), and each note-off ends the oldest copy. On the drum channel a
    re-struck pitch ends the previous hit. note_on with velocity 0 is a
    note-off; zero-length notes are dropped. While the sustain pedal (CC64) is
    down, released notes keep sounding until it lifts or their pitch is struck
    again. Pitch bends, other controllers, sysex and text/lyric meta are ignored.
    """
    tpb = mid.ticks_per_beat
    if not isinstance(tpb, int) or not 0 < tpb < 0x8000:
        raise MidiError(f"unsupported time division {tpb!r} (smpte timing is not supported)")
    timeline = []
    offset = 0
    for t, track in enumerate(mid.tracks):
        tick = offset
        for msg in track:
            tick += msg.time
            timeline.append((tick, t, len(timeline), msg))
        if mid.type == 2:
            offset = tick
    timeline.sort(key=lambda e: e[:3])

    program = [0] * 16
    pedal = [False] * 16
    # (track, channel, pitch) -> copies as (tick, velocity, program), oldest first
    sounding: dict[tuple[int, int, int], deque[tuple[int, int, int]]] = {}
    held: list[dict[tuple[int, int, int], list]] = [{} for _ in range(16)]  # released under the pedal
    notes: list[TimedNote] = []
    tempos: list[tuple[float, float]] = []

    def finish(key, on, end_tick):
        start, velocity, prog = on
        if end_tick <= start:  # zero-length notes are inaudible writer glitches
            return
        drum = key[1] == DRUM_CHANNEL
        notes.append(TimedNote(start / tpb, end_tick / tpb, key[2], velocity,
                               0 if drum else prog, drum))

    for tick, t, _, msg in timeline:
        kind = msg.type
        if kind == "set_tempo":
            bpm = mido.tempo2bpm(msg.tempo) if msg.tempo > 0 else DEFAULT_BPM
            tempos.append((tick / tpb, bpm))
        elif kind == "program_change":
            program[msg.channel] = msg.program
        elif kind == "control_change" and msg.control == PEDAL_CONTROL:
            pedal[msg.channel] = msg.value >= 64
            if not pedal[msg.channel]:
                for key, copies in held[msg.channel].items():
                    for on in copies:
                        finish(key, on, tick)
                held[msg.channel].clear()
        elif kind in ("note_on", "note_off"):
            key = (t, msg.channel, msg.note)
            copies = sounding.setdefault(key, deque())
            if kind == "note_on" and msg.velocity > 0:
                for on in held[msg.channel].pop(key, []):  # struck again: pedal-held copies end
                    finish(key, on, tick)
                if msg.channel == DRUM_CHANNEL and copies:
                    finish(key, copies.popleft(), tick)
                copies.append((tick, msg.velocity, program[msg.channel]))
            elif copies and pedal[msg.channel] and msg.channel != DRUM_CHANNEL:
                held[msg.channel].setdefault(key, []).append(copies.popleft())
            elif copies:
                finish(key, copies.popleft(), tick)
    last = timeline[-1][0] if timeline else 0
    for key, copies in list(sounding.items()) + [kv for h in held for kv in h.items()]:
        for on in copies:
            finish(key, on, last)
    notes.sort()
    return Score(notes, tempos)


# -- encoding --------------------------------------------------------------------


def encode_file(source, version: int = MIDI_VOCAB_VERSION, name: Optional[str] = None) -> list[str]:
    """The token list of one MIDI file (a path, or the file's bytes); MidiError naming the
    file (or `name`) on any problem."""
    name = name or _name_of(source)
    notes, tempos = read_score(source, name)
    try:
        plan = plan_notes(notes, tempos)
    except MidiError as e:
        raise MidiError(f"{name}: {e}") from e
    return notes_to_tokens(plan.notes, plan.tempos, version)


def encode_midi(mid: mido.MidiFile, version: int = MIDI_VOCAB_VERSION) -> list[str]:
    """The token list of one in-memory MIDI file, starting with PIECE_TOKEN.

    Raises MidiError if the file holds no notes or uses SMPTE timing.
    """
    plan = plan_notes(*score_of(mid))
    return notes_to_tokens(plan.notes, plan.tempos, version)


# -- decoding --------------------------------------------------------------------


def _assign_channels(notes: list[TimedNote]) -> list[tuple[int, TimedNote]]:
    """(channel, note) pairs: one channel per program, plus one per extra copy of a pitch.

    A MIDI channel sounds one copy of a key at a time. Programs take channels
    in order of first use (channel 10 is left to drums; past 15 programs,
    channels are shared). A note struck while k copies of its pitch sound on
    its program is copy k; copy k > 0 plays on an extra channel set to the same
    program, taken in order of first use from the channels no program took.
    When none is left, the copy shares its program's highest channel and the
    older note is cut where the newer starts (see _repair_overlaps).
    """
    notes = sorted(notes)
    channels: dict[tuple[int, int], int] = {}  # (program, copy) -> channel
    for n in notes:
        if not n.is_drum and (n.program, 0) not in channels:
            count = sum(k == 0 for _, k in channels)
            channels[(n.program, 0)] = _PITCHED_CHANNELS[count % len(_PITCHED_CHANNELS)]
    unused = [c for c in _PITCHED_CHANNELS if c not in channels.values()]
    lanes: dict[tuple[int, int], list[float]] = {}  # (program, pitch) -> end of each copy's last note
    out = []
    for n in notes:
        if n.is_drum:
            out.append((DRUM_CHANNEL, n))
            continue
        ends = lanes.setdefault((n.program, n.pitch), [])
        copy = next((k for k, end in enumerate(ends) if end <= n.start), len(ends))
        ends[copy:copy + 1] = [n.end]
        if (n.program, copy) not in channels:
            channels[(n.program, copy)] = (unused.pop(0) if unused
                                           else channels[(n.program, copy - 1)])
        out.append((channels[(n.program, copy)], n))
    return out


def _repair_overlaps(pairs: list[tuple[int, TimedNote]]) -> list[tuple[int, TimedNote]]:
    """The (channel, note) pairs, cut so that no two notes of one channel and pitch overlap."""
    by_key: dict[tuple[int, int], list[TimedNote]] = {}
    for channel, n in pairs:
        by_key.setdefault((channel, n.pitch), []).append(n)
    out = []
    for (channel, _), group in by_key.items():
        group.sort()
        for n, after in zip(group, group[1:] + [None]):
            end = min(n.end, after.start) if after is not None else n.end
            if end > n.start:
                out.append((channel, n._replace(end=end)))
    return out


def decode_tokens(tokens: Sequence[str], *, tempo_bpm: float | None = None, program: int | None = None,
                  version: int = MIDI_VOCAB_VERSION, prime_length: int = 0, seconds: float | None = None,
                  new_from: int = 0) -> mido.MidiFile:
    """A type-1 MIDI file playing the first piece in `tokens`; never fails on bad tokens.

    tempo_bpm replaces every tempo token with one fixed tempo; program plays
    every pitched note on that General MIDI program (drums stay drums). Every
    note_on gets a matching note_off on its channel; unknown tokens are skipped.
    With prime_length, the first prime_length tokens (a sample's prime) set the
    state (tempo, program, velocity, duration) but their notes are left out,
    and the file starts where the prime ends. With `seconds`, the music after the
    first `new_from` tokens (or `prime_length`) ends there: notes struck later are
    left out, and notes still sounding then stop RELEASE_SECONDS later.
    """
    if tempo_bpm is not None:
        TEMPO.check(tempo_bpm, "tempo_bpm")
    if program is not None:
        PROGRAM.check(program)
    start = 0  # the step where the new music begins
    if prime_length:
        notes, tempos, _ = tokens_to_notes_after(tokens, prime_length, version)
    else:
        notes, tempos, _ = tokens_to_notes(tokens, version)
        if new_from and seconds is not None:
            start = tokens_to_notes(tokens[:new_from], version)[2]
    if program is not None:
        notes = [n if n.is_drum else n._replace(program=program) for n in notes]
    if tempo_bpm is not None:
        tempos = [(0, tempo_bpm)]
    if seconds is not None:
        notes = end_notes_at(notes, tempos, step_after_seconds(tempos, start, seconds))
    ticks = DECODE_TICKS_PER_BEAT // STEPS_PER_BEAT

    conductor = [(step * ticks, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
                 for step, bpm in dict(tempos).items()]
    per_channel: dict[int, list[tuple]] = {}
    current_program: dict[int, int] = {}
    for channel, n in sorted(_repair_overlaps(_assign_channels(notes)), key=lambda cn: cn[1]):
        events = per_channel.setdefault(channel, [])
        if channel != DRUM_CHANNEL and current_program.get(channel) != n.program:
            current_program[channel] = n.program
            events.append((n.start * ticks, 1, mido.Message(
                "program_change", channel=channel, program=n.program)))
        events.append((n.start * ticks, 2, mido.Message(
            "note_on", channel=channel, note=n.pitch, velocity=n.velocity)))
        events.append((n.end * ticks, 0, mido.Message(
            "note_off", channel=channel, note=n.pitch, velocity=0)))

    mid = mido.MidiFile(type=1, ticks_per_beat=DECODE_TICKS_PER_BEAT)
    for events in [conductor] + [per_channel[c] for c in sorted(per_channel)]:
        track, last = mido.MidiTrack(), 0
        for tick, _, msg in sorted(events, key=lambda e: e[:2]):
            track.append(msg.copy(time=tick - last))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    return mid


def write_midi(mid: mido.MidiFile, path) -> None:
    """Save `mid` atomically, or in place to a device or FIFO (see chargen.atomic.output_file);
    MidiError if the file cannot be written."""
    try:
        with output_file(path) as f:
            mid.save(file=f)
    except OSError as e:
        raise MidiError(f"{path}: cannot write: {e.strerror or e}") from e


# -- priming and inspection --------------------------------------------------------


def read_prime(source, seconds: float, version: int = MIDI_VOCAB_VERSION, name: Optional[str] = None) -> list[str]:
    """The tokens of the first `seconds` of a MIDI file, a path or the file's bytes (a prime for sampling)."""
    PRIME_SECONDS.check(seconds, "seconds")
    tokens = encode_file(source, version, name)
    clock = Clock(version)
    for i, token in enumerate(tokens):
        if clock.read(token) > seconds + 1e-9:  # this shift would pass the end
            return tokens[:i]
    return tokens


def piano_roll(mid: mido.MidiFile) -> list[Note]:
    """Every note of `mid` with start and end in seconds, sorted by start."""
    notes, tempos = score_of(mid)
    to_seconds = beats2seconds(tempos)
    return [Note(to_seconds(n.start), to_seconds(n.end), n.pitch, n.velocity, n.program,
                 n.is_drum) for n in notes]
