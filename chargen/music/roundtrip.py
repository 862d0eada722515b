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

from chargen.music import midifile as midi
from chargen.errors import MidiError
from chargen.music.vocabulary import (
    DEFAULT_BPM,
    MIDI_VOCAB_VERSION,
    STEPS_PER_BEAT,
    TEMPO_BPMS,
    VELOCITY_BIN_WIDTH,
    TimedNote,
    beats2seconds,
    beats2steps,
    bpm2bin,
    notes_to_tokens,
    plan_notes,
    warp,
)

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
    original, original_tempos = midi.read_score(path)
    try:
        plan = plan_notes(original, original_tempos)
    except MidiError as e:
        raise MidiError(f"{path}: {e}") from e
    tokens = notes_to_tokens(plan.notes, plan.tempos, version)
    decoded, decoded_tempos = midi.score_of(midi.decode_tokens(tokens, version=version))

    cuts = plan.cuts
    tempo_steps = [(round(warp(beats2steps(b), cuts)), bpm) for b, bpm in original_tempos]
    pools: dict[tuple, list[TimedNote]] = {}
    for d in decoded:
        pools.setdefault((d.is_drum, d.program, d.pitch), []).append(
            d._replace(start=d.start * STEPS_PER_BEAT, end=d.end * STEPS_PER_BEAT))
    preserved = 0
    for n in original:
        start = warp(n.start * STEPS_PER_BEAT, cuts)
        length = warp(n.end * STEPS_PER_BEAT, cuts) - start
        # The tempo in force where the encoder put the note: it quantizes first, then warps,
        # for notes and tempo changes alike (rounding the warped start instead can split a
        # note from a tempo change on the same tick when the cut is half a step).
        bpm = _bpm_at(tempo_steps, round(warp(beats2steps(n.start), cuts)))
        pool = pools.get((n.is_drum, n.program, n.pitch), [])
        errors = [(abs(d.start - start) + (0 if n.is_drum else abs(d.end - d.start - length)), i)
                  for i, d in enumerate(pool)
                  if abs(d.start - start) <= TOLERANCE_STEPS
                  and (n.is_drum or abs(d.end - d.start - length) <= TOLERANCE_STEPS)
                  and abs(d.velocity - n.velocity) < VELOCITY_BIN_WIDTH
                  and _same_tempo(bpm, _bpm_at(decoded_tempos, d.start / STEPS_PER_BEAT))]
        if errors:
            del pool[min(errors)[1]]  # the closest match, so near neighbours keep theirs
            preserved += 1
    to_seconds = beats2seconds(original_tempos)
    seconds = max(to_seconds(n.end) for n in original) - to_seconds(original[0].start)
    return RoundTrip(len(original), preserved, plan.cut, len(tokens), seconds)


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
