"""How faithfully a MIDI file survives MIDI -> tokens -> MIDI, note by note.

`chargen inspect` reports it per file, bench/midi_roundtrip.py per corpus, and
the tests hold every shipped file to it. The file is parsed once: its Score
(notes and tempo map on the beat timeline) is planned, turned into tokens,
decoded into a real MIDI file in memory, and that file's Score is compared with
the original.

    report = measure_roundtrip("data/bach/bach_bwv1_6.mid")
    report.preserved / report.notes
"""

from __future__ import annotations

import math
from typing import NamedTuple

from chargen.errors import MidiError
from chargen.music import midifile
from chargen.music.grid import (
    DEFAULT_BPM,
    STEPS_PER_BEAT,
    TEMPO_BPMS,
    VELOCITY_BIN_WIDTH,
    TimedNote,
    beats2seconds,
    beats2steps,
    bpm2bin,
    plan_notes,
    warp,
)
from chargen.music.vocabulary import MIDI_VOCAB_VERSION, notes_to_tokens

TOLERANCE_STEPS = 1 + 1e-6  # one step, plus float noise from ticks -> beats


class RoundTrip(NamedTuple):
    """Round-trip fidelity of one file."""

    notes: int  # notes as written (zero-length ones dropped)
    preserved: int  # notes found again after MIDI -> tokens -> MIDI
    cut: int  # notes cut by MAX_COPIES, or drum hits merged on one step
    tokens: int  # tokens of the encoded piece
    seconds: float  # the original piece from its first onset to its last note's end, in seconds


def measure_roundtrip(path, version: int = MIDI_VOCAB_VERSION) -> RoundTrip:
    """The round-trip fidelity of one file under a vocabulary version, note by note.

    A note is preserved when the decoded file holds an unused note with the
    same pitch, program and drum flag whose onset and duration (in beats,
    pedal applied, overlong rests shortened) are within one step, velocity
    within one bin, and tempo at the onset in the same tempo bin; each
    original note takes the closest such note. Drum durations are not
    compared: drums are decoded as one-shots.
    """
    original, original_tempos = midifile.read_score(path)
    try:
        plan = plan_notes(original, original_tempos)
    except MidiError as e:
        raise MidiError(f"{path}: {e}") from e
    tokens = notes_to_tokens(plan.notes, plan.tempos, version)
    decoded, decoded_tempos = midifile.score_of(midifile.decode_tokens(tokens, version=version))

    cuts = plan.cuts
    tempo_steps = [(round(warp(beats2steps(b), cuts)), bpm) for b, bpm in original_tempos]
    pools: dict[tuple, list[TimedNote]] = {}
    for d in decoded:
        pools.setdefault((d.is_drum, d.program, d.pitch), []).append(
            d._replace(start=d.start * STEPS_PER_BEAT, end=d.end * STEPS_PER_BEAT))
    # Each original note may match the decoded notes of its instrument and pitch that start,
    # last, sound as loud and play at the tempo it did, within a step; the notes preserved are
    # the most that can be matched one to one. (Taking, note by note, the closest free match
    # can strand a note whose only match a neighbour took on a tie.)
    candidates = []
    for n in original:
        start = warp(n.start * STEPS_PER_BEAT, cuts)
        length = warp(n.end * STEPS_PER_BEAT, cuts) - start
        # The tempo in force where the encoder put the note: it quantizes first, then warps,
        # for notes and tempo changes alike (rounding the warped start instead can split a
        # note from a tempo change on the same tick when the cut is half a step).
        bpm = _bpm_at(tempo_steps, round(warp(beats2steps(n.start), cuts)))
        key = (n.is_drum, n.program, n.pitch)
        candidates.append([(key, i) for i, d in enumerate(pools.get(key, []))
                           if abs(d.start - start) <= TOLERANCE_STEPS
                           and (n.is_drum or abs(d.end - d.start - length) <= TOLERANCE_STEPS)
                           and abs(d.velocity - n.velocity) < VELOCITY_BIN_WIDTH
                           and _same_tempo(bpm, _bpm_at(decoded_tempos, d.start / STEPS_PER_BEAT))])
    preserved = _largest_matching(candidates)
    to_seconds = beats2seconds(original_tempos)
    seconds = max(to_seconds(n.end) for n in original) - to_seconds(original[0].start)
    return RoundTrip(len(original), preserved, plan.cut, len(tokens), seconds)


def _largest_matching(candidates: list[list]) -> int:
    """The size of a largest one-to-one matching of items to the candidates each may take
    (Kuhn's augmenting paths; each note has a handful of candidates, so this stays fast)."""
    taken: dict = {}  # candidate -> index of the item holding it

    def place(item: int, seen: set) -> bool:
        for c in candidates[item]:
            if c in seen:
                continue
            seen.add(c)
            if c not in taken or place(taken[c], seen):
                taken[c] = item
                return True
        return False

    return sum(place(item, set()) for item in range(len(candidates)))


def _bpm_at(tempos: list[tuple[float, float]], when: float) -> float:
    """The tempo in force at `when` (same unit as the tempo map's positions)."""
    bpm = DEFAULT_BPM
    for at, value in sorted(tempos, key=lambda t: t[0]):  # stable: the last of a tie wins
        if at > when:
            break
        bpm = value
    return bpm


def _same_tempo(original_bpm: float, decoded_bpm: float) -> bool:
    """True when the decoded tempo is the original's tempo bin, inside the token range."""
    inside = TEMPO_BPMS[0] - 0.5 <= original_bpm <= TEMPO_BPMS[-1] + 4
    return inside and math.isclose(decoded_bpm, bpm2bin(original_bpm), rel_tol=1e-4)
