"""Where results are written: atomically over regular files, in place to devices and pipes,
through symlinks, never over a run's files, never waiting forever (chargen/atomic.py, cli/output.py)."""

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import assert_clean_error

from chargen import atomic
from chargen.cli import cli

ROOT = Path(__file__).resolve().parent.parent
MIDI = ROOT / "tests" / "data" / "midi" / "tiny_c_major_scale.mid"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def chargen(*args, timeout=120, **popen) -> subprocess.CompletedProcess:
    """`chargen ARGS` in a fresh process: what waits forever there fails the test, not the suite."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} | popen
    return subprocess.run([sys.executable, "-m", "chargen", *map(str, args)], text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)


# -- atomic writes ---------------------------------------------------------------------------------


def test_atomic_write_never_touches_the_process_umask(tmp_path, monkeypatch):
    """Issue 20: the umask was set to 0 and back on every write; a file another thread created
    meanwhile got mode 0666."""
    calls = []
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or 0o022)
    for name in ("a", "b"):
        with atomic.atomic_write(tmp_path / name) as f:
            f.write(b"x")
    assert calls == []
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == atomic.NEW_FILE_MODE
    (tmp_path / "a").chmod(0o640)  # a file written again keeps its own mode, as with open()
    with atomic.atomic_write(tmp_path / "a") as f:
        f.write(b"y")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o640


def test_the_mode_of_new_files_follows_the_umask_the_process_started_with():
    probe = "import os; from chargen import atomic; print(oct(atomic.NEW_FILE_MODE), oct(os.umask(0)))"
    for umask in (0o022, 0o077):
        out = subprocess.run([sys.executable, "-c", f"import os; os.umask({umask}); {probe}"], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
        assert out == [oct(0o666 & ~umask), oct(umask)]


def test_atomic_write_follows_a_symlink_and_refuses_what_is_not_a_regular_file(tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old")
    link.symlink_to(target.name)
    with atomic.atomic_write(link, "w") as f:
        f.write("new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(atomic.NotARegularFile):
        with atomic.atomic_write(fifo) as f:
            f.write(b"never")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not atomic.stale_temporaries(tmp_path, "fifo")


# -- sample --out --------------------------------------------------------------------------------


def test_out_through_a_symlink_writes_the_file_it_names_and_keeps_the_link(session_text_run, tmp_path):
    target, link = tmp_path / "story.txt", tmp_path / "latest.txt"
    link.symlink_to(target)  # dangling until written, as `ln -s` often leaves it
    result = invoke("sample", session_text_run, "--length", "30", "--seed", "1", "--out", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and len(target.read_text()) == 30


def test_out_a_device_is_written_in_place_never_replaced(session_text_run, tmp_path):
    """Issue 21: --out devs/null, a character device, was replaced by a regular file (as root,
    --out /dev/null replaced the system's). Here a symlink to /dev/null, and a device node
    where this user may make one."""
    null_link = tmp_path / "null"
    null_link.symlink_to(os.devnull)
    result = invoke("sample", session_text_run, "--length", "30", "--out", null_link)
    assert result.exit_code == 0, result.output
    assert null_link.is_symlink() and stat.S_ISCHR(Path(os.devnull).stat().st_mode)
    node = tmp_path / "devnull"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.stat(os.devnull).st_rdev)
    except (PermissionError, OSError):
        node = None  # not root: the symlink above stands for it
    if node is not None:
        result = invoke("sample", session_text_run, "--length", "30", "--out", node)
        assert result.exit_code == 0, result.output
        assert stat.S_ISCHR(node.stat().st_mode)
    several = invoke("sample", session_text_run, "--length", "5", "--num-samples", "2", "--out", null_link)
    assert_clean_error(several, "--out", "device or FIFO", code=2)
    assert not list(tmp_path.glob("null-*"))


def test_out_a_fifo_with_a_reader_gets_the_text_and_one_without_is_one_error_line(session_text_run, tmp_path):
    """Issue 21: --out FIFO hung forever: the check that it was not a checkpoint opened it for reading."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    try:
        result = chargen("sample", session_text_run, "--length", "40", "--seed", "2", "--out", fifo)
    finally:
        if reader.is_alive():  # release the reader should chargen never have opened the FIFO
            with open(fifo, "w"):
                pass
        reader.join()
    assert result.returncode == 0, result.stderr
    assert len(received[0]) == 40 and stat.S_ISFIFO(fifo.stat().st_mode)
    alone = chargen("sample", session_text_run, "--length", "5", "--out", fifo)
    assert alone.returncode == 1 and alone.stderr.strip().splitlines() == [
        f"Error: could not write {fifo}: no process is reading it (start the reader first)"]


def test_out_a_pipe_as_process_substitution_gives_it_is_written_without_waiting(session_text_run):
    """Issue 21: `--out >(cat)` (a /dev/fd path to a pipe) hung forever, like a FIFO."""
    read_end, write_end = os.pipe()
    try:
        result = chargen("sample", session_text_run, "--length", "40", "--seed", "3", "--out", f"/dev/fd/{write_end}",
                         pass_fds=(write_end,))
        os.close(write_end)
        text = os.read(read_end, 1 << 16).decode()
    finally:
        os.close(read_end)
    assert result.returncode == 0, result.stderr
    assert len(text) == 40


def test_a_full_stdout_is_one_error_line(session_text_run):
    """Issue 21: `chargen sample > /dev/full` ended in an OSError traceback."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    for args in (["sample", session_text_run, "--length", "20000"], ["info", session_text_run, "--json"]):
        with open("/dev/full", "w") as full:
            result = chargen(*args, stdout=full)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1:] == ["Error: cannot write the output: No space left on device"]
        assert "Traceback" not in result.stderr


# -- inspect --roundtrip -------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["best.pt", "metrics.jsonl", "elsewhere.pt", "link"])
def test_roundtrip_never_writes_over_a_checkpoint_or_a_file_of_a_run(session_text_run, tmp_path, target):
    """Issue 20: `inspect --roundtrip RUN/best.pt` overwrote the checkpoint and exited 0."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.pt", "metrics.jsonl"):
        (run / name).write_bytes((session_text_run / name).read_bytes())
    out = {"elsewhere.pt": tmp_path / "copy.pt", "link": tmp_path / "heard.mid"}.get(target, run / target)
    if target == "elsewhere.pt":
        out.write_bytes((run / "best.pt").read_bytes())
    elif target == "link":
        out.symlink_to(run / "best.pt")
    before = {p: p.read_bytes() for p in (*run.iterdir(), out)}
    result = invoke("inspect", MIDI, "--roundtrip", out)
    assert_clean_error(result, "--roundtrip", "never writes over", code=2)
    assert {p: p.read_bytes() for p in before} == before
    assert invoke("inspect", MIDI, "--roundtrip", tmp_path / "fine.mid").exit_code == 0
    assert (tmp_path / "fine.mid").stat().st_size > 0


# -- sample --from-manifest ---------------------------------------------------------------------


@pytest.mark.parametrize("option, value, words", [
    ("n", 10**9, "--num-samples 1000000000 is refused"),
    ("temperature", -1, "--temp -1 is refused"),
    ("top_p", 2, "--top-p 2 is refused"),
    ("length", -5, "--length -5 is refused"),
    ("seed", 2**70, "--seed"),
    ("seconds", 10**12, "--seconds"),
    ("temperature", "hot", "--temp must be a number"),
    ("length", 2.5, "--length must be a number"),
    ("n", True, "--num-samples must be a number"),
    ("include_prime", "no", "include_prime must be true or false"),
])
def test_a_manifest_is_checked_as_the_command_line_is(session_music_run, tmp_path, option, value, words):
    """Issue 21: a manifest edited to "n": 1000000000 grew to 3.4 GB in 25 s: the command line's
    limits were never applied to it."""
    result = invoke("sample", session_music_run, "--length", "10", "--seed", "1", "--out", tmp_path / "a.mid")
    assert result.exit_code == 0, result.output
    manifest = tmp_path / "a.mid.json"
    record = json.loads(manifest.read_text())
    record["options"][option] = value
    if option == "n":
        record["sample"] = 1
    manifest.write_text(json.dumps(record))
    error = assert_clean_error(invoke("sample", "--from-manifest", manifest), words)
    assert str(manifest) in error and not (tmp_path / "a-again.mid").exists()
