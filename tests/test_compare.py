"""Tests for chargen.compare and `chargen compare`: a corpus against itself, against a changed copy, bad input."""

import ast
import json
import random
import shutil
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner

from chargen.cli import cli
from chargen.data import compare, overlap

HERE = Path(__file__).parent
MIDI_DIR = HERE / "data" / "midi"
PIECES = ["bach_chorale_bwv113_8.mid", "bach_chorale_bwv1_6.mid", "folk_english1.mid",
          "joplin_maple_leaf_rag.mid", "mozart_k525_excerpt.mid", "tiny_2tracks_type1.mid"]
TEXT = (HERE.parent / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:30_000]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for name in PIECES:
        shutil.copy(MIDI_DIR / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def changed(corpus, tmp_path_factory):
    """The corpus a tritone higher, three times slower, and in shuffled time order within each track:
    the same files in name, different music in every feature."""
    folder = tmp_path_factory.mktemp("changed")
    for path in sorted(corpus.iterdir()):
        mid = mido.MidiFile(path)
        for track in mid.tracks:
            for i, msg in enumerate(track):
                msg = msg.copy(time=msg.time * 3)
                if msg.type in ("note_on", "note_off"):
                    msg = msg.copy(note=(msg.note + 6) % 128)
                track[i] = msg
        mid.save(folder / path.name)
    return folder


def midi_report(generated, corpus):
    return compare.compare_files([str(generated)], [str(corpus)])


def test_midi_corpus_against_itself_overlaps_fully(corpus):
    report = midi_report(corpus, corpus)
    assert [f["name"] for f in report["features"]] == [
        "pitch class", "pitch range", "notes per second", "polyphony", "note duration",
        "inter-onset interval", "scale consistency", "empty-beat rate"]
    for feature in report["features"]:
        assert feature["overlap"] == pytest.approx(1.0, abs=1e-4), feature["name"]  # KDE tails cut at 4 bandwidths
        assert feature["corpus"] == feature["generated"], feature["name"]
    long = report["long_notes"]
    assert long["generated_share"] == long["corpus_share"] < 0.01
    longest_piece = max(len(compare.note_codes(p)) for p in compare.read_pieces(corpus.iterdir())[0])
    assert report["longest_copied_run"]["notes"] == longest_piece  # every piece is a copy


def test_midi_changed_copy_overlaps_little(corpus, changed):
    report = midi_report(changed, corpus)
    overlap = {f["name"]: f["overlap"] for f in report["features"]}
    # A tritone away, many pitch classes leave the pieces' keys; three times slower, the time features move.
    assert overlap["pitch class"] < 0.7
    assert overlap["notes per second"] < 0.5
    assert overlap["note duration"] < 0.35 and overlap["inter-onset interval"] < 0.35
    # What the change keeps, the measures keep: they are not just noise.
    for name in ("pitch range", "polyphony", "scale consistency"):
        assert overlap[name] == pytest.approx(1.0, abs=1e-4), name
    assert report["long_notes"]["generated_share"] > 0.05 > report["long_notes"]["corpus_share"]
    assert report["longest_copied_run"]["notes"] < 6  # new pitches: nothing long is copied


def test_midi_means_and_spreads_are_those_of_the_pieces(corpus):
    one = MIDI_DIR / "tiny_c_major_scale.mid"  # 8 notes, one per beat
    report = compare.compare_files([str(one)], [str(corpus)])
    features = {f["name"]: f for f in report["features"]}
    assert features["pitch range"]["generated"] == {"mean": 12, "spread": 0}
    assert features["scale consistency"]["generated"]["mean"] == 1.0  # C major
    assert features["empty-beat rate"]["generated"]["mean"] == 0.0


def test_text_against_itself_and_scrambled(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    same = compare.compare_files([str(corpus)], [str(corpus)])
    assert [f["overlap"] for f in same["features"]] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert same["words_in_corpus"] == 1.0
    assert same["longest_copied_run"]["characters"] == len(TEXT)
    letters = list(TEXT)
    random.Random(1).shuffle(letters)
    scrambled = tmp_path / "scrambled.txt"
    scrambled.write_text("".join(letters), encoding="utf-8")
    report = compare.compare_files([str(scrambled)], [str(corpus)])
    bigrams, lengths = (f["overlap"] for f in report["features"])
    assert bigrams < 0.6 and lengths < 0.8
    assert report["words_in_corpus"] < 0.5
    assert report["longest_copied_run"]["characters"] < 12


def test_longest_copied_run_finds_the_longest_exact_copy():
    assert overlap.longest_copied_run(["xxabcdyy", "zabcdez"], ["..abcde..", "q"]) == (5, (1, 1))
    assert overlap.longest_copied_run(["qqq"], ["abc"]) == (0, (0, 0))


def test_cli_prints_the_table_on_stderr_and_json_on_stdout(corpus):
    result = CliRunner().invoke(cli, ["compare", str(MIDI_DIR / "folk_english1.mid"), "--corpus", str(corpus),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "midi" and report["generated_files"] == 1 and report["corpus_files"] == 6
    assert "pitch class" in result.stderr and "overlap" in result.stderr
    assert "longest run copied" in result.stderr
    plain = CliRunner().invoke(cli, ["compare", str(MIDI_DIR / "folk_english1.mid"), "--corpus", str(corpus)])
    assert plain.exit_code == 0 and plain.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["missing.mid", "--corpus", "{corpus}"], "missing.mid: no such file or directory"),
    (["{text}", "--corpus", "{corpus}"], "--corpus is MIDI but the generated files are text"),
    (["{broken}", "--corpus", "{corpus}"], "broken.mid: not a midi file"),
    (["{text}", "--corpus", "{empty}"], "blank.txt: the corpus is empty"),  # not named "empty": the words must be the message's
])
def test_cli_bad_input_is_one_error_line(corpus, tmp_path, args, message):
    (tmp_path / "words.txt").write_text("some words here", encoding="utf-8")
    (tmp_path / "broken.mid").write_bytes(b"not music")
    (tmp_path / "blank.txt").write_text("", encoding="utf-8")
    names = {"corpus": corpus, "text": tmp_path / "words.txt", "broken": tmp_path / "broken.mid",
             "empty": tmp_path / "blank.txt"}
    result = CliRunner().invoke(cli, ["compare"] + [a.format(**names) for a in args])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr


def test_cli_needs_a_corpus():
    result = CliRunner().invoke(cli, ["compare", str(MIDI_DIR / "folk_english1.mid")])
    assert result.exit_code == 2 and "--corpus" in result.stderr


def test_compare_never_imports_mido_itself():
    tree = ast.parse((HERE.parent / "chargen" / "data" / "compare.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name and name.split(".")[0] == "mido" for name in imported)
