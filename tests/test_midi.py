"""Tests for chargen.midi and chargen.miditokens: vocabularies, encoding, decoding, repair, round trips, bad files.

Version 3 (note durations) is the default; version 2 (note-offs) must keep
working for older checkpoints, so the round-trip properties run on both.
"""

import io
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import mido
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chargen.errors import MidiError
from chargen.music import grid
from chargen.music import midifile as midi
from chargen.music import vocabulary as miditokens
from chargen.music.roundtrip import measure_roundtrip
from chargen.vocab import Vocab

HERE = Path(__file__).parent
TEST_FILES = sorted((HERE / "data" / "midi").glob("*.mid"))
BACH_FILES = sorted((HERE.parent / "data" / "bach").glob("*.mid"))
TPB = 480
STEP = TPB // grid.STEPS_PER_BEAT  # ticks per step in the files built here
V2 = 2  # the note-off vocabulary of older checkpoints
VERSIONS = [V2, miditokens.MIDI_VOCAB_VERSION]


def build_midi(notes, tempos=(), tpb=TPB, file_type=1):
    """A MIDI file from (start_tick, length_ticks, pitch, velocity, channel, program) notes.

    One conductor track holds (tick, bpm) tempo changes; each channel gets its own track.
    """
    conductor = [(t, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(b))) for t, b in tempos]
    tracks = {}
    for start, length, pitch, velocity, channel, program in notes:
        events = tracks.setdefault(channel, [
            (0, 0, mido.Message("program_change", channel=channel, program=program))])
        events.append((start, 2, mido.Message("note_on", channel=channel, note=pitch,
                                              velocity=velocity)))
        events.append((start + length, 1, mido.Message("note_off", channel=channel, note=pitch)))
    mid = mido.MidiFile(type=file_type, ticks_per_beat=tpb)
    for events in [conductor] + [tracks[c] for c in sorted(tracks)]:
        track, last = mido.MidiTrack(), 0
        for tick, _, msg in sorted(events, key=lambda e: e[:2]):
            track.append(msg.copy(time=tick - last))
            last = tick
        mid.tracks.append(track)
    return mid


def save(mid, folder, name="piece.mid"):
    path = Path(folder) / name
    mid.save(path)
    return path


def assert_no_hanging_notes(mid):
    """Every note_on is closed by a later note_off on its channel and pitch, never re-opened."""
    for track in mid.tracks:
        sounding = set()
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                key = (msg.channel, msg.note)
                assert key not in sounding, f"note re-opened while sounding: {msg}"
                sounding.add(key)
            elif msg.type in ("note_on", "note_off"):
                assert (msg.channel, msg.note) in sounding, f"note_off without note_on: {msg}"
                sounding.discard((msg.channel, msg.note))
        assert not sounding, f"notes left hanging: {sorted(sounding)}"


# -- vocabulary ------------------------------------------------------------------


def test_vocabulary_is_unique_and_grouped():
    tokens = miditokens.vocabulary()
    assert len(tokens) == len(set(tokens)) == 725
    assert tokens[0] == grid.PIECE_TOKEN
    assert sum(count for _, _, count in miditokens.describe_tokens()) == len(tokens)
    examples = {"note:60", "dur:1", "dur:96", "drum:36", "vel:127", "shift:24", "prog:0", "tempo:120"}
    assert examples <= set(tokens)
    assert not any(t.startswith(("on:", "off:", "copy:")) for t in tokens)  # no note without an end


def test_note_off_vocabularies_keep_their_ids():
    v1, v2 = miditokens.vocabulary(1), miditokens.vocabulary(V2)
    assert (len(v1), len(v2)) == (757, 762)
    assert v2[:len(v1)] == v1  # version 2 appended copy:K, so every version 1 token keeps its id
    assert v2[len(v1):] == [f"copy:{k}" for k in range(1, grid.MAX_COPIES)]  # copy:0 is a plain off
    assert v1[0] == grid.PIECE_TOKEN and {"on:60", "off:60", "drum:36"} <= set(v1)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_midi_vocab_records_its_version(version):
    vocab = miditokens.midi_vocab(version)
    assert vocab.kind == "midi" and vocab.version == version
    assert Vocab.from_dict(vocab.to_dict()) == vocab
    assert miditokens.midi_vocab().version == miditokens.MIDI_VOCAB_VERSION == 3


def test_unknown_vocabulary_version_is_refused():
    with pytest.raises(MidiError, match="version 9 is not supported"):
        miditokens.midi_vocab(9)


# -- encoding --------------------------------------------------------------------


def test_encode_midi_chord_gives_exact_tokens():
    chord = [(0, TPB, p, 100, 0, 0) for p in (60, 64, 67)] + [(TPB, TPB // 2, 72, 50, 9, 0)]
    mid = build_midi(chord + [(TPB, 2 * TPB, 48, 100, 0, 0), (TPB, TPB, 55, 100, 0, 0)], tempos=[(0, 96)])
    # A chord of equal notes: one dur: token, then one token per note; durations and
    # velocities are states, written when they change; drums have no duration.
    assert midi.encode_midi(mid) == [
        "<piece>", "tempo:96", "prog:0", "vel:99", "dur:24", "note:60", "note:64", "note:67",
        "shift:24", "note:55", "dur:48", "note:48", "vel:51", "drum:72"]
    assert midi.encode_midi(mid, version=V2) == [
        "<piece>", "tempo:96", "prog:0", "vel:99", "on:60", "on:64", "on:67", "shift:24",
        "off:60", "off:64", "off:67", "on:48", "on:55", "vel:51", "drum:72", "shift:24", "off:55",
        "shift:24", "off:48"]


def test_encode_midi_long_notes_add_duration_tokens_up():
    mid = build_midi([(0, 9 * TPB, 60, 64, 0, 0), (0, 100 * TPB, 62, 64, 0, 0)])
    tokens = midi.encode_midi(mid)
    assert tokens[3:] == ["vel:63", "dur:96", "dur:96", "dur:24", "note:60",
                          "dur:96", "dur:96", "dur:96", "dur:96", "dur:96", "dur:96", "dur:96", "dur:96", "note:62"]
    played, _, _ = miditokens.tokens_to_notes(tokens)
    assert sorted((n.pitch, n.end - n.start) for n in played) == [(60, 216), (62, grid.MAX_NOTE_STEPS)]


def test_encode_midi_velocity_zero_is_note_off_and_pedal_extends_notes():
    track = mido.MidiTrack([
        mido.Message("control_change", control=64, value=127, time=0),
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_on", note=60, velocity=0, time=TPB),  # released under the pedal
        mido.Message("control_change", control=64, value=0, time=TPB),  # pedal up: note ends
    ])
    mid = mido.MidiFile(type=0, ticks_per_beat=TPB, tracks=[track])
    assert midi.encode_midi(mid)[-2:] == ["dur:48", "note:60"]
    assert midi.encode_midi(mid, version=V2)[-3:] == ["on:60", "shift:48", "off:60"]


def test_encode_midi_keeps_unisons_on_one_channel():
    # Two voices on one channel sing C4 together, then overlap on D4: reading
    # pairs note-offs first in, first out, so every note survives as written.
    notes = [(0, TPB, 60, 80, 0, 0), (0, 2 * TPB, 60, 80, 0, 0),
             (2 * TPB, TPB, 62, 80, 0, 0), (2 * TPB + TPB // 2, TPB, 62, 80, 0, 0)]
    tokens = midi.encode_midi(build_midi(notes), version=V2)
    assert tokens[4:] == ["on:60", "on:60", "shift:24", "off:60", "shift:24", "off:60", "on:62",
                          "shift:12", "on:62", "shift:12", "off:62", "shift:12", "off:62"]


def test_read_drum_channel_restrike_ends_the_previous_hit():
    track = mido.MidiTrack([
        mido.Message("note_on", channel=9, note=36, velocity=90, time=0),
        mido.Message("note_on", channel=9, note=36, velocity=90, time=TPB),
        mido.Message("note_off", channel=9, note=36, time=TPB),
    ])
    roll = midi.piano_roll(mido.MidiFile(type=0, ticks_per_beat=TPB, tracks=[track]))
    assert [(n.start_s, n.end_s) for n in roll] == [(0.0, 0.5), (0.5, 1.0)]


def test_encode_midi_shortens_long_rests_and_drops_leading_silence():
    mid = build_midi([(10 * TPB, TPB, 60, 64, 0, 0), (1000 * TPB, TPB, 62, 64, 0, 0)])
    for version, tail in ((V2, 24), (3, 0)):  # version 2 also shifts to the last note's off
        shifts = [int(t.split(":")[1]) for t in midi.encode_midi(mid, version) if t.startswith("shift:")]
        assert sum(shifts) == 24 + grid.MAX_REST_STEPS + tail  # note, capped rest, note; no lead-in
        assert midi.encode_midi(mid, version)[1] == "tempo:120"


def test_encode_midi_format2_plays_tracks_in_sequence():
    mid = build_midi([(0, TPB, 60, 64, 0, 0), (0, TPB, 62, 64, 1, 0)])
    mid.tracks = mid.tracks[1:]
    mid.type = 2
    tokens = midi.encode_midi(mid)
    assert tokens.index("note:62") == tokens.index("shift:24") + 1 > tokens.index("note:60")


def test_encode_midi_without_notes_raises():
    with pytest.raises(MidiError, match="no notes"):
        midi.encode_midi(build_midi([], tempos=[(0, 100)]))


# -- round trips -------------------------------------------------------------------

INSTRUMENTS = [(0, 0), (1, 40), (2, 40), (3, 73), (9, 0)]  # (channel, program); 9 is drums
note_lists = st.lists(st.tuples(
    st.integers(0, 64 * TPB),  # start tick
    st.integers(STEP, 6 * TPB),  # length: at least one step
    st.integers(0, 127), st.integers(1, 127), st.sampled_from(INSTRUMENTS)),
    min_size=1, max_size=40)
tempo_lists = st.lists(st.tuples(st.integers(0, 64 * TPB), st.integers(24, 330)), max_size=4)


def to_notes(drawn, overlaps=True):
    """Drawn tuples -> build_midi notes; without overlaps: one copy per instrument and pitch."""
    notes, busy_until = [], {}
    for start, length, pitch, velocity, (channel, program) in sorted(drawn):
        key = (channel == 9, 0 if channel == 9 else program, pitch)
        if not overlaps and start < busy_until.get(key, -1):
            continue
        busy_until[key] = start + length + STEP
        notes.append((start, length, pitch, velocity, channel, program))
    return notes


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=50, deadline=None)
@given(note_lists, tempo_lists)
# Found by hypothesis: a note and a tempo change on the same tick, half a step after a cut.
@example([(11, 20, 0, 1, (0, 0)), (51, 2259, 0, 1, (0, 0)), (9990, 20, 0, 1, (0, 0))], [(9990, 24)])
def test_roundtrip_preserves_generated_notes(version, drawn, tempos):
    with tempfile.TemporaryDirectory() as folder:
        path = save(build_midi(to_notes(drawn, overlaps=False), tempos=[(0, 100)] + tempos), folder)
        report = measure_roundtrip(path, version)
    assert report.cut == 0
    assert report.preserved == report.notes


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=50, deadline=None)
@given(note_lists, tempo_lists)
def test_roundtrip_loses_only_cut_notes(version, drawn, tempos):
    with tempfile.TemporaryDirectory() as folder:
        path = save(build_midi(to_notes(drawn), tempos=tempos), folder)
        report = measure_roundtrip(path, version)
    assert report.preserved >= report.notes - report.cut


# Same-pitch notes on one channel and program, overlapping at will: up to
# MAX_COPIES of each of two pitches, so no copy limit applies.
unison_lists = st.lists(st.tuples(
    st.integers(0, 8 * TPB), st.integers(STEP, 4 * TPB), st.integers(1, 127)),
    min_size=1, max_size=grid.MAX_COPIES)


def assert_exact_roundtrip(notes, version):
    """Every note comes back from MIDI -> tokens -> MIDI, none cut, none left hanging."""
    with tempfile.TemporaryDirectory() as folder:
        path = save(build_midi(notes), folder)
        report = measure_roundtrip(path, version)
        assert_no_hanging_notes(midi.decode_tokens(midi.encode_file(path, version), version=version))
    assert report.cut == 0
    assert report.preserved == report.notes == len(notes)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=50, deadline=None)
@given(unison_lists, unison_lists, st.sampled_from([(0, 0), (3, 73)]))
# Two copies of a pitch on one step, 3.5 and 4.05 steps long: equally close to the decoded
# 3 and 4 step notes, so matching note by note could give the first the second's only match.
@example(low=[(0, 20, 1)], high=[(11, 70, 1), (11, 81, 1)], instrument=(0, 0))
def test_roundtrip_preserves_overlapping_unisons_on_one_channel(version, low, high, instrument):
    channel, program = instrument
    notes = [(start, length, pitch, velocity, channel, program)
             for pitch, drawn in ((60, low), (61, high)) for start, length, velocity in drawn]
    assert_exact_roundtrip(notes, version)


def test_encode_midi_nested_unison_names_the_copy_it_ends():
    # Program 40 on channels 1 and 2: a short C4 inside a long one. The short
    # one ends first while one older copy sounds: copy:1 off:60.
    mid = build_midi([(0, 4 * TPB, 60, 80, 1, 40), (TPB, TPB, 60, 80, 2, 40)])
    tokens = midi.encode_midi(mid, version=V2)
    assert tokens[4:] == ["on:60", "shift:24", "on:60", "shift:24", "copy:1", "off:60",
                          "shift:48", "off:60"]
    assert sorted((n.start_s, n.end_s) for n in midi.piano_roll(midi.decode_tokens(tokens, version=V2))) == [
        (0.0, 2.0), (0.5, 1.0)]


# Same-pitch notes on one program spread over several channels (tracks), so
# that a short copy can lie inside a longer one (nested unisons), at most
# MAX_COPIES of each pitch, so no copy limit applies.
NESTING_CHANNELS = [0, 1, 2, 3, 4, 5]
nested_lists = st.lists(st.tuples(
    st.integers(0, 16), st.integers(1, 16), st.integers(1, 127),
    st.sampled_from(NESTING_CHANNELS)), min_size=1, max_size=grid.MAX_COPIES)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=100, deadline=None)
@given(nested_lists, nested_lists, st.sampled_from([0, 48]))
def test_roundtrip_preserves_nested_unisons_across_channels(version, low, high, program):
    quarter = TPB // 4  # starts and lengths in sixteenths: many exact nestings and ties
    notes = [(start * quarter, length * quarter, pitch, velocity, channel, program)
             for pitch, drawn in ((60, low), (61, high))
             for start, length, velocity, channel in drawn]
    assert_exact_roundtrip(notes, version)


timed_notes = st.lists(st.builds(
    lambda start, length, pitch, velocity, program: grid.TimedNote(
        start, start + length, pitch, velocity, program, False),
    st.integers(0, 96), st.integers(1, 48), st.integers(60, 62), st.integers(1, 127),
    st.sampled_from([0, 40])), max_size=40)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=200, deadline=None)
@given(timed_notes)
def test_tokens_play_exactly_the_quantized_notes(version, notes):
    # Any overlaps, nested or not, up to 40 copies of a pitch: after the copy
    # limit is applied, decoding the tokens plays exactly the planned notes.
    beats = [n._replace(start=n.start / grid.STEPS_PER_BEAT, end=n.end / grid.STEPS_PER_BEAT)
             for n in notes]
    planned, cut = grid.quantize_notes(beats)
    tokens = miditokens.notes_to_tokens(planned, [(0, 120)], version)
    played, _, _ = miditokens.tokens_to_notes(tokens, version)
    velocity_bins = [n._replace(velocity=grid.velocity2bin(n.velocity)) for n in planned]
    assert sorted(played) == sorted(velocity_bins)
    assert cut == 0 or len(notes) > grid.MAX_COPIES


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_roundtrip_shipped_files(path, version):
    report = measure_roundtrip(path, version)
    assert report.preserved >= report.notes - report.cut
    if report.cut == 0:
        assert report.preserved == report.notes
    assert report.preserved >= 0.99 * report.notes
    assert report.tokens == len(midi.encode_file(path, version))


def test_roundtrip_bach_sample():
    assert len(BACH_FILES) >= 10, "data/bach ships with the repository"
    for path in BACH_FILES[::41]:
        report = measure_roundtrip(path)
        assert report.preserved >= report.notes - report.cut, path.name
        assert report.preserved >= 0.99 * report.notes, path.name


# -- decoding ----------------------------------------------------------------------

def token_lists(version):
    """Any mix of a version's tokens, tokens that stress unisons and long notes, and junk."""
    return st.lists(st.one_of(st.sampled_from(miditokens.vocabulary(version)),
                              st.sampled_from(["on:60", "off:60", "note:60", "dur:96", "shift:96",
                                               "shift:1", "prog:1"]),
                              st.text(max_size=6)), max_size=300)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_decode_tokens_always_gives_a_valid_file(version, data):
    tokens = data.draw(token_lists(version))
    mid = midi.decode_tokens(tokens, version=version)
    data = io.BytesIO()
    mid.save(file=data)
    reread = mido.MidiFile(file=io.BytesIO(data.getvalue()))
    assert_no_hanging_notes(reread)
    for note in midi.piano_roll(reread):
        assert note.end_s > note.start_s


def test_decode_tokens_repairs_bad_orders():
    tokens = ["off:50", "on:60", "on:60", "shift:12", "on:60", "shift:12", "off:60", "off:60",
              "drum:36", "drum:36", "on:62", "bogus", "vel:999"]
    mid = midi.decode_tokens(tokens, version=V2)
    assert_no_hanging_notes(mid)
    notes = sorted((n.pitch, n.is_drum, round(n.start_s, 3), round(n.end_s, 3))
                   for n in midi.piano_roll(mid))
    # 120 BPM: a step is 1/48 s. The offs end the two oldest copies of 60; the third copy
    # and the open 62 close at the end; the second hit of drum 36 cuts the first to nothing.
    assert notes == [(36, True, 0.5, 0.625), (60, False, 0.0, 0.5), (60, False, 0.0, 0.5),
                     (60, False, 0.25, 0.5), (62, False, 0.5, 0.521)]


def test_decode_tokens_pairs_offs_first_in_first_out():
    tokens = ["on:60", "shift:12", "on:60", "shift:12", "off:60", "shift:12", "off:60", "off:60"]
    mid = midi.decode_tokens(tokens, version=V2)
    assert_no_hanging_notes(mid)
    roll = midi.piano_roll(mid)
    assert sorted((n.start_s, n.end_s) for n in roll) == [(0.0, 0.5), (0.25, 0.75)]
    assert len({track[-2].channel for track in mid.tracks[1:]}) == 2  # one channel per copy


def test_decode_tokens_copy_chooses_the_copy_an_off_ends():
    # Copies of 60 start at steps 0, 6 and 12. copy:1 ends the middle one, the
    # last copy: token (more older copies than sound) the newest; a copy: not
    # right before an off is ignored.
    tokens = ["on:60", "shift:6", "on:60", "shift:6", "on:60", "shift:6", "copy:1", "off:60",
              f"copy:{grid.MAX_COPIES - 1}", "off:60", "copy:2", "shift:6", "off:60", "copy:1",
              "on:62", "shift:6"]
    notes, _, _ = miditokens.tokens_to_notes(tokens, V2)
    assert sorted((n.pitch, n.start, n.end) for n in notes) == [
        (60, 0, 24), (60, 6, 18), (60, 12, 18), (62, 24, 30)]
    assert_no_hanging_notes(midi.decode_tokens(tokens, version=V2))


def test_decode_tokens_caps_copies_of_a_pitch():
    tokens = ["on:60"] * (grid.MAX_COPIES + 2) + ["shift:24"] + ["off:60"] * (grid.MAX_COPIES + 2)
    mid = midi.decode_tokens(tokens, version=V2)
    assert_no_hanging_notes(mid)
    assert len(midi.piano_roll(mid)) == grid.MAX_COPIES  # the two oldest were cut to nothing


def test_decode_tokens_cuts_copies_when_channels_run_out():
    # 14 programs take 14 channels; the one left holds one second copy, the
    # other second copies share their program's channel and cut the first.
    tokens = [t for p in range(14) for t in (f"prog:{p}", "on:60")] + ["shift:12"]
    tokens += [t for p in range(14) for t in (f"prog:{p}", "on:60")] + ["shift:12"]
    mid = midi.decode_tokens(tokens, version=V2)
    assert_no_hanging_notes(mid)
    lengths = sorted(round(n.end_s - n.start_s, 3) for n in midi.piano_roll(mid))
    assert lengths == [0.25] * 27 + [0.5]


@pytest.mark.parametrize("version, tokens", [
    (V2, ["on:60"] + ["shift:96"] * 20),  # never closed: the decoder's cap ends it
    (3, ["dur:96"] * 20 + ["note:60", "shift:96"]),  # announced too long: capped
])
def test_decode_tokens_closes_notes_after_the_maximum_length(version, tokens):
    mid = midi.decode_tokens(tokens, version=version)
    (note,) = midi.piano_roll(mid)
    assert note.end_s == pytest.approx(grid.MAX_NOTE_STEPS / grid.STEPS_PER_BEAT * 0.5)


def test_decode_tokens_plays_each_note_for_its_duration():
    # Notes before any dur: last a beat; a run of dur: adds up; any other token ends the
    # run; a seventh copy of a pitch cuts the oldest; notes sound past the last shift.
    tokens = ["note:50", "dur:12", "note:60", "vel:99", "note:62", "dur:96", "dur:24", "shift:6",
              "dur:6", "shift:6", "dur:3", "note:64", "bogus", "drum:36"] + ["note:70"] * 7
    notes, _, end = miditokens.tokens_to_notes(tokens)
    assert end == 12
    assert sorted((n.pitch, n.start, n.end, n.velocity, n.is_drum) for n in notes) == [
        (36, 12, 18, 99, True), (50, 0, 24, 63, False), (60, 0, 12, 63, False),
        (62, 0, 12, 99, False), (64, 12, 15, 99, False)] + [(70, 12, 15, 99, False)] * 6
    assert_no_hanging_notes(midi.decode_tokens(tokens))


@pytest.mark.parametrize("version, tokens", [
    (V2, ["<piece>", "tempo:60", "on:60", "shift:24", "off:60", "<piece>", "on:70", "shift:24"]),
    (3, ["<piece>", "tempo:60", "dur:24", "note:60", "shift:24", "<piece>", "note:70", "shift:24"]),
])
def test_decode_tokens_reads_only_the_first_piece(version, tokens):
    assert [n.pitch for n in midi.piano_roll(midi.decode_tokens(tokens, version=version))] == [60]
    assert miditokens.tokens_duration(tokens, version) == pytest.approx(1.0)


def test_decode_tokens_overrides_tempo_and_program():
    tokens = ["<piece>", "tempo:60", "prog:40", "dur:24", "note:60", "drum:36", "shift:24"]
    mid = midi.decode_tokens(tokens, tempo_bpm=120, program=0)
    notes = {n.pitch: n for n in midi.piano_roll(mid)}
    assert notes[60].end_s == pytest.approx(0.5) and notes[60].program == 0
    assert notes[36].is_drum
    with pytest.raises(ValueError, match="program must be"):
        midi.decode_tokens(tokens, program=128)


def test_decode_tokens_many_programs_share_channels():
    tokens = [t for p in range(20) for t in (f"prog:{p}", f"note:{40 + p}")] + ["shift:24"]
    mid = midi.decode_tokens(tokens)
    assert_no_hanging_notes(mid)
    assert len(midi.piano_roll(mid)) == 20


# -- files ------------------------------------------------------------------------


def test_write_midi_is_atomic_and_reports_bad_folders(tmp_path):
    mid = midi.decode_tokens(["dur:24", "note:60", "shift:24"])
    midi.write_midi(mid, tmp_path / "out.mid")
    assert os.listdir(tmp_path) == ["out.mid"]
    assert midi.encode_file(tmp_path / "out.mid")[-2:] == ["dur:24", "note:60"]
    with pytest.raises(MidiError, match="missing"):
        midi.write_midi(mid, tmp_path / "missing" / "out.mid")


def test_read_prime_takes_the_first_seconds():
    path = HERE / "data" / "midi" / "joplin_maple_leaf_rag.mid"
    prime = midi.read_prime(path, 3.0)
    assert prime == midi.encode_file(path)[:len(prime)]
    assert 2.5 < miditokens.tokens_duration(prime) <= 3.0
    with pytest.raises(ValueError, match=r"seconds must be a number in \(0, "):
        midi.read_prime(path, 0)


@pytest.mark.parametrize("seconds", [0.25, 1.0, 2.5, 7.0, 1000.0])
def test_a_prime_is_the_longest_start_of_the_file_within_its_seconds(seconds):
    """read_prime and tokens_duration keep time with one clock (vocabulary.Clock): the prime
    holds at most `seconds` of music, and one more token would pass them."""
    path = HERE / "data" / "midi" / "joplin_maple_leaf_rag.mid"
    tokens, prime = midi.encode_file(path), midi.read_prime(path, seconds)
    assert prime == tokens[:len(prime)]
    assert miditokens.tokens_duration(prime) <= seconds + 1e-9
    assert len(prime) == len(tokens) or miditokens.tokens_duration(tokens[:len(prime) + 1]) > seconds + 1e-9


def test_is_midi_file_checks_content(tmp_path):
    real = TEST_FILES[0]
    assert miditokens.is_midi_file(real)
    text = tmp_path / "song.mid"
    text.write_text("not music")
    assert not miditokens.is_midi_file(text)
    assert not miditokens.is_midi_file(tmp_path / "absent.mid")
    data = real.read_bytes()
    riff = tmp_path / "song.rmi"
    riff.write_bytes(b"RIFF" + (len(data) + 12).to_bytes(4, "little") + b"RMIDdata"
                     + len(data).to_bytes(4, "little") + data)
    assert miditokens.is_midi_file(riff)
    assert midi.encode_file(riff) == midi.encode_file(real)


def test_telling_a_midi_file_never_opens_a_pipe(tmp_path):
    """A FIFO named like MIDI is MIDI by its name; one named otherwise is not opened to look
    (opening a FIFO with no writer blocks forever), nor is a directory."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert not miditokens.is_midi_file(fifo) and not miditokens.looks_like_midi(fifo)
    os.mkfifo(tmp_path / "pipe.MID")
    assert miditokens.looks_like_midi(tmp_path / "pipe.MID")
    assert not miditokens.is_midi_file(tmp_path)
    riff_wave = tmp_path / "sound.wav"
    riff_wave.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    assert not miditokens.looks_like_midi(riff_wave)
    with pytest.raises(MidiError, match="not a midi file"):
        midi.read_midi(riff_wave)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"hello, this is text", "not a midi file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0garbage", "corrupt"),
])
def test_encode_file_bad_content_names_the_file(tmp_path, content, reason):
    path = tmp_path / "broken.mid"
    path.write_bytes(content)
    with pytest.raises(MidiError, match=reason) as info:
        midi.encode_file(path)
    assert "broken.mid" in str(info.value)


def test_truncated_file_error_says_why(tmp_path):
    path = tmp_path / "cut.mid"
    path.write_bytes(TEST_FILES[0].read_bytes()[:100])
    with pytest.raises(MidiError) as info:
        midi.encode_file(path)
    assert str(info.value) == (f"{path}: corrupt or truncated midi file: "
                               "the file ends in the middle of a chunk (truncated)")


def test_encode_file_without_notes_names_the_file(tmp_path):
    path = save(build_midi([], tempos=[(0, 90)]), tmp_path, "silent.mid")
    with pytest.raises(MidiError, match="silent.mid: no notes"):
        midi.encode_file(path)


def test_encode_file_missing_file_raises(tmp_path):
    with pytest.raises(MidiError, match="absent.mid"):
        midi.encode_file(tmp_path / "absent.mid")


# -- fuzzing the reader: only MidiError may escape ---------------------------------


def encode_bytes(folder, data):
    path = Path(folder) / "fuzz.mid"
    path.write_bytes(data)
    try:
        tokens = midi.encode_file(path)
    except MidiError:
        return
    assert tokens[0] == grid.PIECE_TOKEN and set(tokens) <= set(miditokens.vocabulary())


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_random_bytes(data, with_header):
    with tempfile.TemporaryDirectory() as folder:
        encode_bytes(folder, (b"MThd\x00\x00\x00\x06" if with_header else b"") + data)


def test_fuzz_truncated_and_bit_flipped_files(tmp_path):
    rng = random.Random(1111)
    for path in TEST_FILES:
        data = path.read_bytes()
        for _ in range(15):
            encode_bytes(tmp_path, data[:rng.randrange(len(data))])
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            encode_bytes(tmp_path, bytes(flipped))


# -- imports ------------------------------------------------------------------------


def test_a_text_run_never_imports_mido(tmp_path):
    # Training and sampling text, in a fresh interpreter: mido is for music only.
    corpus = tmp_path / "words.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 40)
    script = f"""
import sys
from chargen.cli import cli
for args in (["train", {str(corpus)!r}, "--steps", "2", "--hidden", "8", "--layers", "1", "--embed", "4",
              "--batch-size", "2", "--seq-len", "8", "--eval-every", "1", "--out", {str(tmp_path / "run")!r}],
             ["sample", {str(tmp_path / "run")!r}, "--length", "20", "--prime", "to be", "--seed", "1"]):
    try:
        cli.main(args)
    except SystemExit as e:
        assert e.code in (0, None), (args[0], e.code)
print("mido imported" if "mido" in sys.modules else "no mido")
"""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "no mido"
