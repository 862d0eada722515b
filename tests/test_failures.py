"""Every bad input gets one clean line on stderr and a non-zero exit, never a traceback,
and loses nothing: wrong files, bad options, foreign or crafted checkpoints.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import (
    TINY_LAYOUT,
    TINY_RUN_STEPS,
    TINY_TEXT,
    assert_clean_error,
    deny_reading,
)
from conftest import TINY_TRAIN_ARGS as TINY

from chargen.cli import cli
from chargen.data import textstream
from chargen.errors import CheckpointError
from chargen.training import checkpoint

MIDI_DIR = Path(__file__).parent / "data" / "midi"


def invoke(*args: str, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def text_file(path: Path, text: str = TINY_TEXT) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def wide_terminal(monkeypatch):
    """Notes are not wrapped, so a test can find each on one line."""
    monkeypatch.setenv("COLUMNS", "1000")


# -- corpus files -----------------------------------------------------------------


def test_train_missing_path(tmp_path):
    assert_clean_error(invoke("train", tmp_path / "nope.txt", *TINY), "nope.txt", "no such file or directory")


def test_train_empty_file(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_clean_error(invoke("train", tmp_path / "empty.txt", *TINY), "empty.txt", "empty")


def test_train_empty_stdin():
    assert_clean_error(invoke("train", "-", *TINY, input=""), "empty")


@pytest.mark.parametrize("contents", [{}, {"notes.dat": b"abc", "image.png": b"\x89PNG"}])
def test_train_directory_without_usable_files(tmp_path, contents):
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    assert_clean_error(invoke("train", folder, *TINY), "folder", "no text (.txt) files")


def test_train_directory_of_empty_text_files(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"")
    (folder / "b.txt").write_bytes(b"\xef\xbb\xbf")  # a BOM and nothing else
    assert_clean_error(invoke("train", folder, *TINY), "empty")


def test_train_binary_file_as_text(tmp_path):
    (tmp_path / "model.txt").write_bytes(bytes(range(256)) * 4)
    assert_clean_error(invoke("train", tmp_path / "model.txt", *TINY), "model.txt", "binary", "offset 0")


def test_train_invalid_utf8_names_file_and_byte_offset(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café au lait\n".encode("utf-8") + "naïve\n".encode("latin-1"))
    # 'café au lait\n' is 14 bytes; 'na' 2 more; the latin-1 'ï' (0xef) is at byte 16.
    assert_clean_error(invoke("train", tmp_path / "latin1.txt", *TINY), "latin1.txt", "invalid UTF-8", "byte offset 16")


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_invalid_utf8_offset_is_exact_across_chunks(tmp_path, monkeypatch, chunk):
    """The loader decodes in chunks; a bad byte's offset is counted in the whole file."""
    monkeypatch.setattr(textstream, "CHUNK_BYTES", chunk)
    data = "ab€cd—ef".encode("utf-8")  # multi-byte characters that straddle chunk borders
    bad = data + b"\xc3(" + b"tail"
    (tmp_path / "bad.txt").write_bytes(bad)
    assert_clean_error(invoke("train", tmp_path / "bad.txt", *TINY), f"byte offset {len(data)}")


def test_train_invalid_utf8_with_encoding_errors_replace(tmp_path):
    """--encoding-errors replace trains on the text with U+FFFD for each bad byte, and resume keeps it."""
    (tmp_path / "latin1.txt").write_bytes(("hello naïve world\n" * 30).encode("latin-1"))
    run = tmp_path / "run"
    result = invoke("train", tmp_path / "latin1.txt", "--encoding-errors", "replace", "--steps", "2", "--out", run, *TINY)
    assert result.exit_code == 0, result.output
    assert "\ufffd" in checkpoint.load(run / "last.pt")["vocab"]["tokens"]
    result = invoke("train", "--resume", run, "--steps", "3")
    assert result.exit_code == 0, result.output


def test_train_corpus_shorter_than_a_window_shrinks_it_with_a_note(tmp_path):
    run = tmp_path / "run"
    result = invoke("train", text_file(tmp_path / "short.txt", "to be or not\n"), "--steps", "2", "--out", run, *TINY)
    assert result.exit_code == 0, result.output
    assert "note:" in result.stderr and "--seq-len" in result.stderr
    config = checkpoint.load(run / "last.pt")["train_config"]
    assert config["seq_len"] < TINY_LAYOUT["seq_len"]


def test_train_corpus_of_one_character(tmp_path):
    assert_clean_error(invoke("train", text_file(tmp_path / "one.txt", "x"), *TINY), "at least 2")


def test_train_utf16_file_is_called_utf16_with_how_to_convert(tmp_path):
    (tmp_path / "wide.txt").write_bytes("hello world\n".encode("utf-16"))
    error = assert_clean_error(invoke("train", tmp_path / "wide.txt", *TINY), "wide.txt", "UTF-16", "iconv -f UTF-16 -t UTF-8")
    assert "binary" not in error


@pytest.mark.parametrize("inside_a_folder", [False, True])
def test_train_unreadable_file(tmp_path, monkeypatch, inside_a_folder):
    folder = tmp_path / "texts"
    folder.mkdir()
    text_file(folder / "ok.txt")
    locked = text_file(folder / "locked.txt")
    deny_reading(monkeypatch, locked)
    try:
        result = invoke("train", folder if inside_a_folder else locked, *TINY, "--out", tmp_path / "run")
    finally:
        os.chmod(locked, 0o644)
    assert_clean_error(result, "locked.txt: cannot read it: Permission denied")
    assert not (tmp_path / "run").exists()


def test_train_skips_an_unreadable_subfolder_with_a_note(tmp_path, monkeypatch, wide_terminal):
    folder = tmp_path / "texts"
    (folder / "locked").mkdir(parents=True)
    text_file(folder / "ok.txt")
    text_file(folder / "locked" / "inside.txt")
    deny_reading(monkeypatch, folder / "locked")
    try:
        result = invoke("train", folder, *TINY, "--steps", "1", "--out", tmp_path / "run")
    finally:
        os.chmod(folder / "locked", 0o755)
    assert result.exit_code == 0, result.output
    assert f"note: skipped {folder / 'locked'}: cannot read this folder: Permission denied" in result.stderr.splitlines()


def test_train_the_same_file_twice_reads_it_once_with_a_note(tmp_path, wide_terminal):
    corpus_file = text_file(tmp_path / "tiny.txt")
    run = tmp_path / "run"
    result = invoke("train", corpus_file, corpus_file, *TINY, "--steps", "1", "--out", run)
    assert result.exit_code == 0, result.output
    assert f"note: skipped {corpus_file}: given more than once; read once" in result.stderr.splitlines()
    record = checkpoint.load(run / "last.pt")["corpus"]
    assert record["files"] == [str(corpus_file)]
    assert record["train_tokens"] + record["val_tokens"] == len(corpus_file.read_text())


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_train_on_a_file_that_fails_on_read():
    assert_clean_error(invoke("train", "/proc/self/mem", *TINY), "/proc/self/mem: cannot read it")


@pytest.mark.parametrize("how", ["process substitution", "fifo"])
def test_train_reads_a_pipe_once(tmp_path, how):
    """`chargen train <(cat FILE)` and a FIFO path: the corpus is read once, never seeked.
    A second read of a FIFO would wait forever for a writer: the timeout only turns
    that hang into a failure."""
    corpus_file = text_file(tmp_path / "tiny.txt")
    run = tmp_path / "run"
    train = f"{sys.executable} -m chargen train {{}} --steps 1 --out {run} {' '.join(TINY)}"
    if how == "fifo":
        os.mkfifo(tmp_path / "fifo")
        script = f"cat {corpus_file} > {tmp_path / 'fifo'} & " + train.format(tmp_path / "fifo")
    else:
        script = train.format(f"<(cat {corpus_file})")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    record = checkpoint.load(run / "last.pt")["corpus"]
    assert record["train_tokens"] + record["val_tokens"] == len(corpus_file.read_text())


def test_train_on_an_endless_stream_shows_its_reading_and_stops_at_the_limit(tmp_path):
    """Issue 21: `chargen train <(yes 'hello world')` read forever (1.37 GB at 20 s) with nothing on stderr."""
    import threading

    from test_corpus import endless_writer

    fifo = tmp_path / "yes"
    os.mkfifo(fifo)
    stop = threading.Event()
    writer = endless_writer(fifo, stop)
    try:
        result = invoke("train", fifo, *TINY, "--steps", "1", "--out", tmp_path / "run", "--max-stream-mb", "3")
    finally:
        stop.set()
        writer.join()
    assert_clean_error(result, f"{fifo}: stopped reading after 3,145,728 bytes", "--max-stream-mb 3")
    assert not (tmp_path / "run").exists()


def test_reading_a_corpus_is_shown_once_it_takes_a_second():
    from rich.console import Console

    from chargen.cli.display import ReadingReporter
    from chargen.data.corpus import Reading

    now = [0.0]
    console = Console(record=True, width=200, force_terminal=False)
    reporter = ReadingReporter(console, clock=lambda: now[0])
    reporter(Reading("big.txt", 1 << 20))  # at once: a fast read says nothing
    assert console.export_text() == ""
    now[0] = 2.0
    reporter(Reading("big.txt", 3 << 20))
    now[0] = 3.0
    reporter(Reading("big.txt", 4 << 20))  # under READING_LINE_EVERY since the last line: no new line
    reporter(Reading("fifo", 0, waiting=True))
    reporter.close()
    assert console.export_text().splitlines() == [
        "reading big.txt: 3 MiB (1.5 MiB/s)", "waiting for a process to write to fifo (a FIFO)",
        "read fifo: 4 MiB in 0:00"]


@pytest.mark.slow
def test_resume_of_a_run_trained_from_a_fifo_says_it_waits_for_a_writer(tmp_path):
    """Issue 21: `chargen train --resume RUN` of a run trained from a FIFO blocked silently on the FIFO."""
    fifo, run = tmp_path / "fifo", tmp_path / "run"
    os.mkfifo(fifo)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "chargen", "train", str(fifo), *TINY, "--steps", "1", "--out", str(run)]
    first = subprocess.Popen(train, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (fifo).write_text(TINY_TEXT)  # waits for chargen to open it, then feeds it the corpus
    assert first.wait(timeout=120) == 0, first.stderr.read()
    resume = subprocess.Popen([sys.executable, "-m", "chargen", "train", "--resume", str(run), "--steps", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in resume.stderr], daemon=True).start()
    try:  # before any writer: it says what it waits for (and waits silently forever otherwise)
        first_line = lines.get(timeout=60)
        assert first_line.strip() == f"waiting for a process to write to {fifo} (a FIFO)"
    finally:
        fifo.write_text(TINY_TEXT)  # never leave it blocked: the same corpus again
    assert resume.wait(timeout=120) == 0, list(lines.queue)
    assert checkpoint.load(run / "last.pt")["state"]["step"] == 2


def test_crlf_corpus_trains_on_newlines_and_records_it(tmp_path):
    corpus_file = tmp_path / "dos.txt"
    corpus_file.write_bytes(b"hello world, hello chargen.\r\n" * 40)
    for mode, has_cr in (("normalize", False), ("keep", True)):
        run = tmp_path / mode
        result = invoke("train", corpus_file, *TINY, "--steps", "1", "--out", run, "--line-endings", mode)
        assert result.exit_code == 0, result.output
        saved = checkpoint.load(run / "last.pt")
        assert ("\r" in saved["vocab"]["tokens"]) == has_cr
        assert saved["train_config"]["line_endings"] == mode


def test_resume_of_a_run_from_before_line_endings_reads_them_as_they_were(tmp_path):
    """A checkpoint without the field was trained on \r\n as it was: resuming must not
    quietly drop the \r from its corpus."""
    corpus_file = tmp_path / "dos.txt"
    corpus_file.write_bytes(b"hello world, hello chargen.\r\n" * 40)
    run = tmp_path / "run"
    assert invoke("train", corpus_file, *TINY, "--steps", "1", "--out", run, "--line-endings", "keep").exit_code == 0
    saved = checkpoint.load(run / "last.pt")
    del saved["train_config"]["line_endings"]
    checkpoint.save(saved, run / "last.pt")
    result = invoke("train", "--resume", run, "--steps", "2")
    assert result.exit_code == 0, result.output
    resumed = checkpoint.load(run / "last.pt")
    assert resumed["corpus"]["train_tokens"] == saved["corpus"]["train_tokens"]


def test_bare_chargen_prints_its_usage_not_an_error():
    result = invoke()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ") and "Commands:" in result.output
    assert "Error" not in result.output


# -- options out of range ------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ["--layers", "0"],
        ["--hidden", "0"],
        ["--embed", "0"],
        ["--seq-len", "0"],
        ["--batch-size", "0"],
        ["--lr", "-0.001"],
        ["--lr", "0"],
        ["--dropout", "1"],
        ["--dropout", "-0.1"],
        ["--clip", "0"],
        ["--steps", "0"],
        ["--epochs", "-1"],
        ["--val-frac", "1"],
        ["--eval-every", "0"],
        ["--encoding-errors", "ignore"],
    ],
)
def test_train_option_out_of_range(tmp_path, option):
    corpus_file = text_file(tmp_path / "tiny.txt")
    result = invoke("train", corpus_file, *TINY, *option, "--out", tmp_path / "run")
    assert_clean_error(result, option[0], code=2)
    assert not (tmp_path / "run").exists(), "a rejected command must not create its run directory"


@pytest.mark.parametrize(
    "option",
    [["--temp", "-1"], ["--top-p", "0"], ["--top-p", "1.5"], ["--top-k", "0"], ["--length", "-1"], ["--num-samples", "0"]],
)
def test_sample_option_out_of_range(trained_run, option):
    assert_clean_error(invoke("sample", trained_run, *option), option[0], code=2)


def test_sample_prime_outside_vocabulary(trained_run):
    error = assert_clean_error(invoke("sample", trained_run, "--prime", "hello ZEBRA§", "--length", "5"), "--prime", code=2)
    assert "'Z'" in error and "'E'" in error and "'§'" in error  # none of them in TINY_TEXT
    assert "'h'" not in error and "'B'" not in error  # both in TINY_TEXT


def test_sample_midi_prime_for_a_text_model(trained_run, tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0")
    assert_clean_error(invoke("sample", trained_run, "--prime", song, "--length", "5"), "MIDI", "text", code=2)


def test_sample_text_prime_for_a_midi_model(tmp_path):
    run = tmp_path / "music"
    result = invoke("train", MIDI_DIR / "tiny_c_major_scale.mid", "--steps", "2", "--out", run, *TINY)
    assert result.exit_code == 0, result.output
    assert_clean_error(invoke("sample", run, "--prime", "ROMEO:", "--length", "5"), "--prime", "MIDI file", code=2)


def test_sample_music_options_for_a_text_model(trained_run):
    assert_clean_error(invoke("sample", trained_run, "--seconds", "3"), "music models", code=2)


def test_sample_checkpoint_that_does_not_exist(tmp_path):
    assert_clean_error(invoke("sample", tmp_path / "nowhere"), "nowhere", "no such checkpoint")


def test_train_without_a_corpus():
    assert_clean_error(invoke("train"), "CORPUS", code=2)


# -- MIDI files ----------------------


def test_train_non_midi_bytes_named_mid(tmp_path):
    (tmp_path / "fake.mid").write_bytes(b"this is not a MIDI file at all\n" * 10)
    assert_clean_error(invoke("train", tmp_path / "fake.mid", *TINY), "fake.mid")


def test_train_truncated_midi(tmp_path):
    mido = pytest.importorskip("mido")
    track = mido.MidiTrack([mido.Message("note_on", note=60 + i % 12, velocity=64, time=120) for i in range(50)])
    mido.MidiFile(tracks=[track]).save(tmp_path / "whole.mid")
    data = (tmp_path / "whole.mid").read_bytes()
    (tmp_path / "cut.mid").write_bytes(data[: len(data) // 2])
    assert_clean_error(invoke("train", tmp_path / "cut.mid", *TINY), "cut.mid")


def test_train_midi_without_notes(tmp_path):
    mido = pytest.importorskip("mido")
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0), mido.MetaMessage("end_of_track", time=0)])
    mido.MidiFile(tracks=[track]).save(tmp_path / "silent.mid")
    assert_clean_error(invoke("train", tmp_path / "silent.mid", *TINY), "silent.mid")


def test_an_endless_stream_as_midi_is_refused_by_its_header():
    """/dev/zero never ends: its first bytes are checked, not the whole stream read."""
    assert_clean_error(invoke("show", "/dev/zero"), "/dev/zero", "not a midi file")
    # inspect reports each file's problem and exits 1 when no file is readable
    result = invoke("inspect", "--format", "midi", "/dev/zero", "--json")
    assert result.exit_code == 1, result.output
    assert "not a midi file" in json.loads(result.stdout)["files"][0]["error"]


def test_a_huge_file_with_a_midi_header_is_refused_unread(tmp_path):
    from chargen.music import midifile as midi

    huge = tmp_path / "huge.mid"
    with open(huge, "wb") as f:
        f.write(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0")
        f.truncate(midi.MAX_MIDI_BYTES + 1)  # sparse: costs no disk
    assert_clean_error(invoke("show", huge), "huge.mid", "too large for a midi file")


@pytest.fixture
def music_run(session_music_run) -> Path:
    """The session's tiny music run: no test here writes into it (samples go to --out or fail first)."""
    return session_music_run


def test_skipped_midi_files_are_noted_with_their_path_once(tmp_path, music_run, wide_terminal):
    """train and eval on a MIDI folder both say which files they skipped, naming each once."""
    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "good.mid").write_bytes((Path(__file__).parent / "data" / "midi" / "tiny_c_major_scale.mid").read_bytes())
    (folder / "bad.mid").write_bytes(b"not midi at all")
    for result in (invoke("train", folder, *TINY, "--steps", "1", "--out", tmp_path / "run"),
                   invoke("eval", music_run, folder)):
        assert result.exit_code == 0, result.output
        notes = [line for line in result.stderr.splitlines() if "bad.mid" in line]
        assert len(notes) == 1 and notes[0].startswith("note: skipped"), result.stderr
        assert notes[0].count("bad.mid") == 1, notes[0]


# -- checkpoints from elsewhere ---------------------------------------------------------


class _Planted:
    """Unpickling this calls os.system: a stand-in for any code hidden in a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "crafted.pt"
    payload = {"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION, "vocab": _Planted(marker)}
    torch.save(payload, path)
    assert b"system" in path.read_bytes()  # the planted call really is in the file
    return path, marker


@pytest.mark.parametrize("command", [["sample"], ["info"], ["train", "--resume"]])
def test_crafted_checkpoint_with_pickled_callable_runs_nothing(tmp_path, command):
    path, marker = crafted_checkpoint(tmp_path)
    assert_clean_error(invoke(*command, path), "crafted.pt", "refused", "system")
    assert not marker.exists(), "loading the checkpoint ran code"


def test_crafted_checkpoint_library_load_runs_nothing(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(path)
    assert not marker.exists()


def corrupt(kind: str, good: Path, path: Path) -> None:
    data = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "one byte short":
        path.write_bytes(data[:-1])
    elif kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "text":
        path.write_text("step 100: this is a log file, not a checkpoint\n")
    elif kind == "not chargen":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif kind == "a bare tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "format version 99":
        payload = torch.load(good, weights_only=True) | {"format_version": 99}
        torch.save(payload, path)
    elif kind == "missing keys":
        payload = torch.load(good, weights_only=True)
        del payload["model_state"]
        torch.save(payload, path)
    elif kind == "wrong shapes":
        payload = torch.load(good, weights_only=True)
        payload["model_config"]["hidden_size"] = 32
        torch.save(payload, path)


CORRUPTIONS = {
    "empty": "empty",
    "truncated": "not a readable checkpoint",
    "one byte short": "not a readable checkpoint",
    "random bytes": "not a readable checkpoint",
    "text": "not a readable checkpoint",
    "not chargen": "not a chargen checkpoint",
    "a bare tensor": "not a chargen checkpoint",
    "format version 99": "format version 99",
    "missing keys": "lacks model_state",
    "wrong shapes": "does not match its config",
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
@pytest.mark.parametrize("command", [["sample", "--length", "3"], ["info"]])
def test_bad_checkpoint_is_one_clear_error(trained_run, tmp_path, kind, command):
    bad = tmp_path / "bad.pt"
    corrupt(kind, trained_run / "last.pt", bad)
    assert_clean_error(invoke(command[0], bad, *command[1:]), "bad.pt" if kind != "wrong shapes" else "", CORRUPTIONS[kind])


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "format version 99"])
def test_resume_from_bad_checkpoint_is_refused_and_touches_nothing(trained_run, tmp_path, kind):
    corrupt(kind, trained_run / "last.pt", tmp_path / "bad.pt")
    (trained_run / "last.pt").write_bytes((tmp_path / "bad.pt").read_bytes())
    before = {p.name: p.read_bytes() for p in trained_run.iterdir()}
    assert_clean_error(invoke("train", "--resume", trained_run), "last.pt", CORRUPTIONS[kind])
    assert {p.name: p.read_bytes() for p in trained_run.iterdir()} == before


def test_checkpoint_path_is_a_directory_without_checkpoints(tmp_path):
    (tmp_path / "nothing").mkdir()
    assert_clean_error(invoke("sample", tmp_path / "nothing"), "no best.pt or last.pt")


def test_run_stopped_before_its_first_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    assert_clean_error(invoke("train", "--resume", run), "before its first checkpoint", "--force")


# -- run directories and resuming ---------------------------------------------------


def test_new_run_never_overwrites_an_existing_one(trained_run, tmp_path):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir()}
    result = invoke("train", text_file(tmp_path / "other.txt", "something else entirely\n" * 30), "--out", trained_run, *TINY)
    assert_clean_error(result, str(trained_run), "--force", "--resume")
    assert {p.name: p.read_bytes() for p in trained_run.iterdir()} == before


def test_new_run_with_force_overwrites(trained_run, tmp_path):
    old = (trained_run / "last.pt").read_bytes()
    result = invoke("train", text_file(tmp_path / "tiny.txt"), "--steps", "2", "--out", trained_run, "--force", *TINY)
    assert result.exit_code == 0, result.output
    assert (trained_run / "last.pt").read_bytes() != old


def test_new_run_out_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("mine")
    result = invoke("train", text_file(tmp_path / "tiny.txt"), "--out", tmp_path / "taken", *TINY)
    assert_clean_error(result, "taken", "is a file", code=2)
    assert (tmp_path / "taken").read_text() == "mine"


def test_resume_refuses_a_changed_corpus_unless_forced(trained_run, tmp_path):
    text_file(tmp_path / "tiny.txt", TINY_TEXT[1:] + TINY_TEXT[0])  # the same characters, moved
    more = TINY_RUN_STEPS + 2
    assert_clean_error(invoke("train", "--resume", trained_run, "--steps", more), "changed", "--force")
    assert checkpoint.load(trained_run / "last.pt")["state"]["step"] == TINY_RUN_STEPS
    result = invoke("train", "--resume", trained_run, "--steps", more, "--force")
    assert result.exit_code == 0, result.output


def test_resume_refuses_a_corpus_with_another_vocabulary_even_forced(trained_run, tmp_path):
    text_file(tmp_path / "tiny.txt", "HELLO WORLD!\n" * 40)
    error = assert_clean_error(invoke("train", "--resume", trained_run, "--force"), "cannot resume", "not in the vocabulary")
    assert "'H'" in error


def test_resume_when_the_corpus_is_gone(trained_run, tmp_path):
    (tmp_path / "tiny.txt").unlink()
    assert_clean_error(invoke("train", "--resume", trained_run), "cannot resume", "tiny.txt", "no such file")


def test_resume_on_a_named_corpus_copy(trained_run, tmp_path):
    """The corpus moved: name it after --resume; the fingerprint proves it is the same text."""
    moved = tmp_path / "moved.txt"
    (tmp_path / "tiny.txt").rename(moved)
    result = invoke("train", moved, "--resume", trained_run, "--steps", TINY_RUN_STEPS + 2)
    assert result.exit_code == 0, result.output


def test_resume_with_out_changes_nothing_elsewhere(trained_run, tmp_path):
    """A resumed run stays in its directory; --out is ignored with a note."""
    result = invoke("train", "--resume", trained_run, "--out", tmp_path / "elsewhere", "--steps", TINY_RUN_STEPS + 2)
    assert result.exit_code == 0, result.output
    assert "ignoring --out" in result.stderr
    assert not (tmp_path / "elsewhere").exists()
    assert checkpoint.load(trained_run / "last.pt")["state"]["step"] == TINY_RUN_STEPS + 2


# -- sampling: every option checked before any work, no file of a run ever overwritten -----------

MIDI_DATA = Path(__file__).parent / "data" / "midi"


@pytest.fixture
def no_music_generation(monkeypatch):
    """Make generating music fail loudly: the errors below must come before any of it."""
    def generate_music(*args, **kwargs):
        raise AssertionError("music was generated before the options were checked")

    monkeypatch.setattr("chargen.sampling.songs.generate_music", generate_music)


def test_sample_music_out_with_a_wrong_extension_is_refused_before_generating(music_run, tmp_path, no_music_generation):
    """Issue 10, bug 6: the extension was checked only after the whole sample was generated."""
    assert_clean_error(invoke("sample", music_run, "--out", tmp_path / "song.txt"), "--out", ".mid", code=2)
    assert not (tmp_path / "song.txt").exists()


def test_sample_stop_is_refused_for_a_music_model(music_run, no_music_generation):
    """Issue 14.14: --stop was silently ignored for music models."""
    assert_clean_error(invoke("sample", music_run, "--stop", "x"), "--stop", "text models", code=2)


def test_sample_music_from_a_read_only_run_without_out(music_run, monkeypatch, no_music_generation):
    """Issue 14.4: creating RUN/samples on a read-only folder was an OSError traceback.
    (Made to fail by hand: the tests may run as root, whom permissions do not stop.)"""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "samples":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert_clean_error(invoke("sample", music_run), "samples", "Permission denied", "--out")


def test_sample_music_out_into_a_missing_folder_writes_it(music_run, tmp_path):
    """Issue 14.14: a music --out into a missing folder failed only after generating."""
    out = tmp_path / "new" / "folder" / "song.mid"
    result = invoke("sample", music_run, "--length", "20", "--seed", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_bytes().startswith(b"MThd")


@pytest.mark.parametrize("target", ["best.pt", "last.pt", "metrics.jsonl", "copy.pt", "elsewhere"])
def test_sample_never_writes_over_a_checkpoint_or_a_file_of_a_run(trained_run, tmp_path, target):
    """Issue 14.11: `sample --out RUN/best.pt` overwrote the checkpoint it had just loaded."""
    if target == "copy.pt":
        out = tmp_path / "copy.pt"
        out.write_bytes((trained_run / "best.pt").read_bytes())
    elif target == "elsewhere":  # a checkpoint under another name is still a checkpoint
        out = tmp_path / "notes.txt"
        out.write_bytes((trained_run / "best.pt").read_bytes())
    else:
        out = trained_run / target
    before = out.read_bytes()
    error = assert_clean_error(invoke("sample", trained_run, "--length", "5", "--out", out), "--out", "never", code=2)
    assert str(out) in error
    assert out.read_bytes() == before
    for name in ("sample-1.txt", "sample-2.txt"):  # new files beside a run are fine
        assert not (trained_run / name).exists()
    result = invoke("sample", trained_run, "--length", "5", "--num-samples", "2", "--out", trained_run / "sample.txt")
    assert result.exit_code == 0, result.output
    assert (trained_run / "sample-2.txt").is_file()


def test_sample_tiny_positive_temperature_is_greedy(trained_run):
    """Issue 14.7: --temp 1e-45 made every probability NaN and emitted the last character forever."""
    tiny = invoke("sample", trained_run, "--temp", "1e-45", "--length", "40", "--prime", "hello")
    greedy = invoke("sample", trained_run, "--temp", "0", "--length", "40", "--prime", "hello")
    assert tiny.exit_code == 0 and greedy.exit_code == 0, (tiny.output, greedy.output)
    assert tiny.stdout == greedy.stdout


def test_sample_prime_lists_at_most_twenty_missing_characters_and_counts_the_rest(trained_run):
    absent = "αβγδεζηθικλμνξοπρστυφχψωΑΒ"  # 26 Greek letters, none in the corpus
    error = assert_clean_error(invoke("sample", trained_run, "--prime", absent, "--length", "5"), "--prime", code=2)
    assert "'υ'" in error and "'φ'" not in error and error.endswith("and 6 more")


def test_sample_prime_in_decomposed_unicode_is_normalized(tmp_path):
    """'é' typed as e + combining acute (NFD) was refused although é is in the vocabulary."""
    import unicodedata

    run = tmp_path / "run"
    corpus = text_file(tmp_path / "cafe.txt", "un café, deux cafés.\n" * 60)
    assert invoke("train", corpus, "--steps", "2", "--out", run, *TINY).exit_code == 0
    decomposed = unicodedata.normalize("NFD", "café")
    assert len(decomposed) == 5
    result = invoke("sample", run, "--prime", decomposed, "--length", "10", "--seed", "1")
    assert result.exit_code == 0, result.output
    composed = invoke("sample", run, "--prime", "café", "--length", "10", "--seed", "1")
    assert result.stdout[5:] == composed.stdout[4:]


def test_eval_on_a_midi_folder_notes_the_files_it_skips(music_run, tmp_path):
    """Issue 14.14: eval skipped unreadable files of a MIDI folder without a word."""
    import shutil

    songs = tmp_path / "held-out"
    songs.mkdir()
    shutil.copy(MIDI_DATA / "tiny_c_major_scale.mid", songs / "good.mid")
    (songs / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    result = invoke("eval", music_run, songs)
    assert result.exit_code == 0, result.output
    assert "bits per token" in result.stdout
    notes = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(notes) == 1 and "broken.mid" in notes[0]
