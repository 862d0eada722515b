"""Music augmentation: pieces transposed (and tempo-stretched) per epoch, inside the pitch range, drums still.

The lookup tables are checked against the decoder (a transposed token list plays the
same notes a fixed number of semitones higher), the draws against their rules (inside
0-127, the same for a seed and epoch), and a real run against its promises: validation
reads the corpus as it is, text runs are never augmented. Exact resume and one process
== two processes of an augmented run are in test_resume.py and test_distributed.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_LAYOUT, TINY_MODEL, assert_clean_error, train_args

from chargen.cli import cli
from chargen.data import augment
from chargen.data.corpus import load_corpus
from chargen.errors import CorpusError
from chargen.music import midifile as midi
from chargen.music import transpose
from chargen.music import vocabulary as miditokens
from chargen.training import checkpoint
from chargen.training import run as runs
from chargen.training.loop import TrainConfig
from chargen.training.validation import evaluate

MIDI_DIR = Path(__file__).parent / "data" / "midi"
SONGS = [MIDI_DIR / n for n in ("folk_english1.mid", "tiny_c_major_scale.mid", "drums_beat.mid", "multitrack_d8faddb8.mid")]


@pytest.mark.parametrize("version", [2, miditokens.MIDI_VOCAB_VERSION])
def test_a_transposed_token_list_plays_the_same_notes_moved_and_the_drums_unmoved(version):
    vocab = miditokens.midi_vocab(version)
    shifts = [-5, -1, 3, 5]
    tables = transpose.transpose_table(vocab.tokens, shifts)
    for song in SONGS:
        tokens = midi.encode_file(song, version)
        before, _, _ = miditokens.tokens_to_notes(tokens, version)
        assert any(n.is_drum for n in before) == (song.name in ("drums_beat.mid", "multitrack_d8faddb8.mid"))
        for shift, table in zip(shifts, tables):
            moved = vocab.decode(table[vocab.encode(tokens)])
            assert len(moved) == len(tokens)
            after, _, _ = miditokens.tokens_to_notes(moved, version)
            expected = [n if n.is_drum else n._replace(pitch=n.pitch + shift) for n in before]
            assert sorted(after) == sorted(expected), (song.name, shift)


def test_tempo_stretch_moves_only_tempo_tokens_to_the_nearest_bin():
    vocab = miditokens.midi_vocab()
    table = transpose.tempo_table(vocab.tokens, [1.05])[0]
    moved = {vocab.tokens[i]: vocab.tokens[j] for i, j in enumerate(table.tolist()) if i != j}
    assert moved and all(a.startswith("tempo:") and b.startswith("tempo:") for a, b in moved.items())
    assert moved["tempo:100"] == "tempo:104" and moved["tempo:40"] == "tempo:42"
    assert "tempo:360" not in moved  # already the fastest bin


def _corpus(tmp_path, pitches_of_pieces):
    """A MIDI corpus with one file per piece, each a run of quarter notes at the given pitches."""
    import mido

    paths = []
    for i, pitches in enumerate(pitches_of_pieces):
        mid = mido.MidiFile(ticks_per_beat=480)
        track = mido.MidiTrack()
        for p in pitches:
            track += [mido.Message("note_on", note=p, velocity=80, time=0), mido.Message("note_off", note=p, time=480)]
        mid.tracks.append(track)
        mid.save(tmp_path / f"piece{i}.mid")
        paths.append(str(tmp_path / f"piece{i}.mid"))
    return load_corpus(paths, val_frac=0.0)


def test_draws_keep_every_piece_inside_the_pitch_range_and_cover_the_range(tmp_path):
    corpus = _corpus(tmp_path, [[0, 2, 4], [125, 127], [60, 64, 67], [3, 124]])
    augmenter = augment.Augmenter(corpus.vocab, corpus.train, "transpose", seed=1)
    assert augmenter.pieces == 4
    seen = [set() for _ in range(4)]
    for epoch in range(200):
        draws = augmenter.draw(epoch)
        for piece, shift in enumerate(draws["transpose"].tolist()):
            seen[piece].add(shift)
        pitches = transpose.pitches(corpus.vocab.tokens)[augmenter.apply(draws).long()]
        assert pitches.max() <= 127 and pitches[pitches >= 0].min() >= 0
    assert seen[0] == set(range(0, 6))  # 0 can only go up
    assert seen[1] == set(range(-5, 1))  # 127 only down
    assert seen[2] == set(range(-5, 6))  # the whole range, uniform draws reach every value
    assert seen[3] == set(range(-3, 4))
    narrow = augment.Augmenter(corpus.vocab, corpus.train, "transpose", seed=1, semitones=2)
    assert {s for epoch in range(100) for s in narrow.draw(epoch)["transpose"].tolist()} == set(range(-2, 3))
    tempo = augment.Augmenter(corpus.vocab, corpus.train, "tempo", seed=1)
    assert {s for epoch in range(20) for s in tempo.draw(epoch)["transpose"].tolist()} == {0}
    assert {s for epoch in range(20) for s in tempo.draw(epoch)["tempo"].tolist()} == set(range(5))


def test_draws_depend_on_the_seed_and_the_epoch_only(tmp_path):
    corpus = _corpus(tmp_path, [[60 + i, 62] for i in range(30)])
    one = augment.Augmenter(corpus.vocab, corpus.train, "transpose+tempo", seed=7)
    two = augment.Augmenter(corpus.vocab, corpus.train, "transpose+tempo", seed=7)
    torch.manual_seed(0)  # the global generator plays no part
    a = one.draw(3)
    torch.manual_seed(1)
    assert all(torch.equal(a[k], two.draw(3)[k]) for k in ("transpose", "tempo"))
    assert not torch.equal(a["transpose"], one.draw(4)["transpose"])
    assert not torch.equal(a["transpose"], augment.Augmenter(corpus.vocab, corpus.train, "transpose", seed=8).draw(3)["transpose"])


def test_auto_is_the_measured_default_for_music_and_nothing_for_text(tmp_path):
    assert augment.resolve("auto", "midi") == augment.MUSIC_DEFAULT == "none"  # docs/midi.md says why
    run = runs.new_run([str(MIDI_DIR / "folk_english1.mid")], dict(TINY_MODEL), TrainConfig(steps=1, **TINY_LAYOUT),
                       out=str(tmp_path / "run"), device="cpu")
    assert run.config.augment == augment.MUSIC_DEFAULT  # "auto" is resolved when the run starts, and recorded
    assert augment.resolve("auto", "text") == "none"
    assert augment.resolve("none", "midi") == "none"
    with pytest.raises(CorpusError, match="applies to MIDI corpora only"):
        augment.resolve("transpose", "text")


def test_augment_on_a_text_corpus_is_refused_before_any_file_is_written(tiny_corpus, tmp_path):
    result = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--steps", "2", "--augment", "transpose",
                                      "--out", str(tmp_path / "run"), *train_args(**TINY_MODEL, **TINY_LAYOUT)])
    assert_clean_error(result, "--augment transpose applies to MIDI corpora only")
    assert not (tmp_path / "run").exists()


def test_a_music_run_trains_on_transposed_pieces_and_validates_on_the_corpus_as_it_is(tmp_path, monkeypatch):
    files = [str(MIDI_DIR / n) for n in ("folk_english1.mid", "tiny_c_major_scale.mid", "tiny_2tracks_type1.mid")]
    seen = []
    run = runs.new_run(files, dict(TINY_MODEL), TrainConfig(steps=14, eval_every=7, **TINY_LAYOUT, augment="transpose"),
                       out=str(tmp_path / "run"), device="cpu")
    corpus_before = run.corpus.train.clone()
    real_train = runs.train

    def spy(*args, **kwargs):
        seen.append(args[-1])  # the augmenter handed to the loop
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runs, "train", spy)
    runs.execute(run)
    assert isinstance(seen[0], augment.Augmenter)
    payload = checkpoint.load(tmp_path / "run" / checkpoint.LAST)
    assert payload["train_config"]["augment"] == "transpose"
    assert payload["state"]["augment"]["epoch"] == run.state.epoch >= 2
    # The final validation is the untouched held-out music: the model scores it the same again.
    val = evaluate(run.model, run.corpus.val, run.config.batch_size, run.config.seq_len, precision=run.precision)
    assert math.isclose(payload["state"]["history"][-1][2], val, rel_tol=1e-6)
    assert torch.equal(run.corpus.val, load_corpus(files).val)
    # Augmented after the cache, never into it: the corpus and the cached ids are the files' own tokens.
    assert torch.equal(run.corpus.train, corpus_before)
    for f in files:
        cached = load_corpus([f], val_frac=0.0)  # read from .chargen-cache, written by the run
        assert cached.vocab.decode(cached.train) == midi.encode_file(f)
