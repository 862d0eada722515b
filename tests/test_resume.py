"""Interrupted training loses nothing and resumes exactly: kill -9, Ctrl-C, full disks.

The numerics test compares parameters bit for bit (torch.equal): on the CPU a
run stopped and resumed must end where an uninterrupted run with the same seed
and budget ends. Subprocess tests drive the real ``python -m chargen`` so that
signals hit a real training loop.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_LAYOUT, TINY_MODEL, TINY_RUN_STEPS, as_from_a_terminal, train_args

from chargen import atomic
from chargen.cli import cli
from chargen.training import checkpoint, metrics
from chargen.training import resume as resumes
from chargen.training import run as runs
from chargen.training.loop import TrainConfig

REPO = Path(__file__).resolve().parents[1]
MODEL = TINY_MODEL | {"dropout": 0.3}  # dropout on: a resumed run must draw the same masks
TINY = train_args(**MODEL, **TINY_LAYOUT, device="cpu")
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hum".split()


def write_corpus(path: Path, words: int = 600, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(words)) + "\n", encoding="utf-8")
    return path


def model_state(run_dir: Path) -> dict:
    return checkpoint.load(Path(run_dir) / checkpoint.LAST)["model_state"]


def assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"parameters differ after resume: {differing}"


def chargen_process(*args: str, **kwargs) -> subprocess.Popen:
    """Start `python -m chargen ARGS` from the repository, one thread (CPU is shared)."""
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    kwargs.setdefault("preexec_fn", as_from_a_terminal())
    return subprocess.Popen(
        [sys.executable, "-m", "chargen", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run_chargen(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m chargen ARGS` to the end. The timeout only guards against a hang."""
    proc = chargen_process(*args)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll until condition() holds; fail if the process exits first. The timeout only guards a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"chargen exited before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.005)


# -- exact resume, library API --------------------------------------------------


@pytest.mark.parametrize("cell, budget", [("lstm", {"steps": 60}), ("gru", {"steps": 60}), ("lstm", {"epochs": 2.3})])
def test_resume_after_stop_is_bitwise_exact(tmp_path, cell, budget):
    """Stopped at step 23 (not an eval step, mid-epoch, carried hidden state, dropout on),
    resumed with the same budget: the same parameters, optimizer state and history."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=300)
    model_options = MODEL | {"cell": cell}

    def config():
        # 60 steps > one epoch (about 26 windows), eval every 7, warm-up then cosine decay.
        return TrainConfig(eval_every=7, **TINY_LAYOUT, warmup=5, **budget)

    whole = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "a"), device="cpu")
    runs.execute(whole)
    assert whole.state.epoch >= 1, "the budget should cross an epoch boundary"

    part = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "b"), device="cpu")
    calls = iter(range(1, 10_000))
    runs.execute(part, should_stop=lambda: next(calls) == 23)
    assert part.state.step == 23
    torch.manual_seed(12345)  # whatever the process did meanwhile must not matter
    resumed = resumes.resume_run(str(tmp_path / "b"), {}, device="cpu")
    assert resumed.state.step == 23
    runs.execute(resumed)

    a, b = checkpoint.load(tmp_path / "a" / "last.pt"), checkpoint.load(tmp_path / "b" / "last.pt")
    assert a["state"]["step"] == b["state"]["step"] == whole.state.step
    assert_same_parameters(a["model_state"], b["model_state"])
    for sa, sb in zip(a["optimizer_state"]["state"].values(), b["optimizer_state"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["state"]["history"] == b["state"]["history"]
    assert [r["step"] for r in metrics.read(tmp_path / "a")] == [r["step"] for r in metrics.read(tmp_path / "b")]


def test_resume_with_larger_budget_matches_when_schedule_is_flat(tmp_path):
    """--steps N, then --resume --steps 2N, equals --steps 2N in one go when the learning rate
    does not depend on the budget (--lr-min 1: warm-up, then constant). With the default
    cosine decay the schedule is planned over the budget, so a larger budget changes it."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=300)
    common = [*TINY, "--eval-every", "9", "--lr-min", "1"]
    runner = CliRunner()
    r = runner.invoke(cli, ["train", str(corpus), "--steps", "70", "--out", str(tmp_path / "a"), *common])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["train", str(corpus), "--steps", "35", "--out", str(tmp_path / "b"), *common])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["train", "--resume", str(tmp_path / "b"), "--steps", "70"])
    assert r.exit_code == 0, r.output
    assert_same_parameters(model_state(tmp_path / "a"), model_state(tmp_path / "b"))


def test_resume_needs_no_corpus_argument_and_counts_the_whole_run(tmp_path):
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(cli, ["train", str(corpus), "--steps", "5", "--out", str(run), *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["train", "--resume", str(run), "--steps", "8"])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(run / "last.pt")["state"]["step"] == 8  # 8 in all, not 5 + 8
    before = (run / "last.pt").read_bytes()
    r = runner.invoke(cli, ["train", "--resume", str(run), "--steps", "8"])
    assert r.exit_code == 0, r.output
    assert "already spent its budget" in r.stderr
    assert (run / "last.pt").read_bytes() == before  # a finished run resumed again changes nothing


# -- kill -9 --------------------------------------------------------------------


def last_validated_step(run: Path) -> int:
    return max((row["step"] for row in metrics.read(run)), default=-1)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    """SIGKILL lands at seeded random points of a 300-step run, each chosen by an event the test
    sees, not by a clock: right after the step-0 checkpoint, then, for three increasing
    validation steps, either just after last.pt is replaced (while best.pt is written) or just
    after the step's metrics row appears (while last.pt and best.pt are written, or in the steps
    that follow). Every time, last.pt loads and --resume goes on; the run ends bit for bit where
    one never killed ends, with the same metrics rows. The kills come at least 140 steps before the end, so each one lands."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=400)
    every = 20
    budget = ["--steps", "300", "--eval-every", str(every), *TINY]
    reference = run_chargen("train", str(corpus), "--out", str(tmp_path / "ref"), *budget)
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "run"
    last = run / "last.pt"
    rng = random.Random(4)
    targets = sorted(rng.sample(range(2 * every, 160 + 1, every), 3))
    moments = [("step-0 checkpoint", 0)] + [(rng.choice(["last.pt replaced", "metrics row"]), t) for t in targets]
    steps_at_kill = []
    for moment, step in moments:
        if moment == "step-0 checkpoint":
            proc = chargen_process("train", str(corpus), "--out", str(run), *budget)
            wait_until(last.exists, proc, "the step-0 checkpoint")
        elif moment == "metrics row":
            proc = chargen_process("train", "--resume", str(run))
            wait_until(lambda: last_validated_step(run) >= step, proc, f"the metrics row of step {step}")
        else:  # the save at `step` replaces last.pt (a new inode) once the previous validation is written
            proc = chargen_process("train", "--resume", str(run))
            wait_until(lambda: last_validated_step(run) >= step - every, proc, f"the metrics row of step {step - every}")
            before = last.stat().st_ino
            wait_until(lambda: last.stat().st_ino != before, proc, f"the checkpoint of step {step}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"the kill after the {moment} of step {step} came too late"
        steps_at_kill.append(checkpoint.load(last)["state"]["step"])  # always loadable, whenever the kill came
    assert steps_at_kill[0] == 0 and steps_at_kill[1:] == sorted(steps_at_kill[1:]), steps_at_kill
    assert all(t - every <= s <= 300 - 2 * every for s, t in zip(steps_at_kill[1:], targets)), steps_at_kill
    final = run_chargen("train", "--resume", str(run))
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr
    assert checkpoint.load(last)["state"]["step"] == 300
    assert_same_parameters(model_state(tmp_path / "ref"), model_state(run))
    assert [r["step"] for r in metrics.read(run)] == [r["step"] for r in metrics.read(tmp_path / "ref")]
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp")), "stale temporary files left behind"


# -- Ctrl-C and other polite signals ----------------------------------------------


def start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A run that would take hours, once its step-0 checkpoint exists: its only one, as the
    first validation is 1000 steps away. A signal from then on is handled, and the loop
    checks for one only after finishing a step, so a checkpoint saved for a signal holds step >= 1."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    run = tmp_path / "run"
    proc = chargen_process(
        "train", str(corpus), "--steps", "1000000", "--eval-every", "1000", "--out", str(run), *TINY
    )
    wait_until((run / "last.pt").exists, proc, "the step-0 checkpoint")
    return proc, run


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    proc, run = start_long_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"chargen train --resume {run}" in err.replace("\n", "")
    state = checkpoint.load(run / "last.pt")["state"]
    assert state["step"] > 0  # saved at the interrupt: the only other checkpoint is step 0's
    resumed = run_chargen("train", "--resume", str(run), "--steps", str(state["step"] + 3))
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(run / "last.pt")["state"]["step"] == state["step"] + 3


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_and_keeps_a_loadable_checkpoint(tmp_path):
    proc, run = start_long_run(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    checkpoint.load(run / "last.pt")
    assert not list(run.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_like_ctrl_c(tmp_path, signum):
    """`kill PID` and a closed terminal get the same care as Ctrl-C: save, then exit."""
    proc, run = start_long_run(tmp_path)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert checkpoint.load(run / "last.pt")["state"]["step"] > 0


def api_process(corpus: Path, run: Path, steps: int, ignore_sighup: bool = False) -> subprocess.Popen:
    """A Python program that calls chargen.train() (validating every 1000 steps) and then prints "returned"."""
    settings = MODEL | TINY_LAYOUT | {"device": "cpu", "steps": steps, "eval_every": 1000, "progress": False}
    code = (f"import chargen, sys\nchargen.train(sys.argv[1], out=sys.argv[2], **{settings!r})\n"
            "print('returned', flush=True)")
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, str(corpus), str(run)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=as_from_a_terminal(nohup=ignore_sighup))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_chargen_train_from_python_as_it_stops_the_cli(tmp_path, signum):
    """Issue 20: chargen.train() caught SIGINT only, so `kill PID` ended it at once, losing
    every step since its last checkpoint. Now the step finishes and a checkpoint is saved;
    then SIGINT raises KeyboardInterrupt and SIGTERM or SIGHUP ends the process as the
    signal would have (returncode -signum either way: Python ends on an uncaught Ctrl-C by SIGINT)."""
    corpus, run = write_corpus(tmp_path / "tiny.txt", words=200), tmp_path / "run"
    proc = api_process(corpus, run, steps=1_000_000)
    wait_until((run / "last.pt").exists, proc, "the step-0 checkpoint")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signum, err
    assert "returned" not in out
    assert checkpoint.load(run / "last.pt")["state"]["step"] > 0  # saved at the signal, not only at step 0
    if signum == signal.SIGINT:
        assert f"a checkpoint was saved: resume with resume={str(run)!r}" in err


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["cli", "api"])
def test_under_nohup_a_hang_up_does_not_stop_training(tmp_path, entry):
    """A process that ignores SIGHUP (nohup chargen train ...) goes on training when its terminal closes."""
    corpus, run = write_corpus(tmp_path / "tiny.txt", words=200), tmp_path / "run"
    if entry == "cli":
        proc = chargen_process("train", str(corpus), "--steps", "30", "--eval-every", "1000", "--out", str(run), *TINY,
                               preexec_fn=as_from_a_terminal(nohup=True))
    else:
        proc = api_process(corpus, run, steps=30, ignore_sighup=True)
    wait_until((run / "last.pt").exists, proc, "the step-0 checkpoint")
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert checkpoint.load(run / "last.pt")["state"]["step"] == 30


# -- full or unwritable disks -----------------------------------------------------


def test_disk_full_while_saving_keeps_the_previous_checkpoint(trained_run, monkeypatch):
    run = trained_run
    before = (run / "last.pt").read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", str(TINY_RUN_STEPS + 4), "--eval-every", "2"])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], r.stderr
    assert "last.pt" in errors[0]
    assert (run / "last.pt").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
    monkeypatch.undo()
    assert checkpoint.load(run / "last.pt")["state"]["step"] == TINY_RUN_STEPS


def test_disk_full_while_writing_metrics_is_one_clean_error(trained_run, monkeypatch):
    run = trained_run
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_open)
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", str(TINY_RUN_STEPS + 4), "--eval-every", "2"])
    monkeypatch.undo()
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "No space left on device" in r.stderr
    checkpoint.load(run / "last.pt")


def test_unwritable_run_directory_is_a_clean_error(trained_run, monkeypatch):
    run = trained_run
    before = (run / "last.pt").read_bytes()
    if os.geteuid() == 0:  # root ignores permissions: fail where a read-only directory fails
        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    run.chmod(0o500)
    try:
        r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", str(TINY_RUN_STEPS + 4), "--eval-every", "2"])
    finally:
        run.chmod(0o700)
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Permission denied" in errors[0], r.stderr
    assert (run / "last.pt").read_bytes() == before


def test_half_written_metrics_line_does_not_block_resume(trained_run):
    """kill -9 in the middle of appending to metrics.jsonl leaves half a line."""
    run = trained_run
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "epo')
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", str(TINY_RUN_STEPS + 2)])
    assert r.exit_code == 0, r.output
    assert [row["step"] for row in metrics.read(run)] == [5, TINY_RUN_STEPS, TINY_RUN_STEPS + 2]


def test_stale_temporary_files_do_not_break_resume_and_are_cleaned(trained_run):
    run = trained_run
    (run / ".last.pt.abc123.tmp").write_bytes(b"PK\x03\x04 killed mid-save")
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", str(TINY_RUN_STEPS + 2)])
    assert r.exit_code == 0, r.output
    assert not (run / ".last.pt.abc123.tmp").exists()
    assert checkpoint.load(run / "last.pt")["state"]["step"] == TINY_RUN_STEPS + 2


def test_resume_from_the_step_0_checkpoint_is_exact(tmp_path):
    """A run killed before its first validation resumes from the step-0 checkpoint,
    which must carry the RNG state too (dropout masks depend on it)."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    model_options = dict(MODEL)

    def config():
        return TrainConfig(steps=12, eval_every=5, **TINY_LAYOUT)

    whole = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "a"), device="cpu")
    runs.execute(whole)
    killed = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "b"), device="cpu")
    checkpoint.save(runs.payload(killed), tmp_path / "b" / "last.pt")  # what execute writes first
    torch.manual_seed(999)  # a fresh process starts from another RNG state
    runs.execute(resumes.resume_run(str(tmp_path / "b"), {}, device="cpu"))
    assert_same_parameters(model_state(tmp_path / "a"), model_state(tmp_path / "b"))


MIDI_DIR = REPO / "tests" / "data" / "midi"
SONGS = [str(MIDI_DIR / n) for n in ("folk_english1.mid", "tiny_c_major_scale.mid", "tiny_2tracks_type1.mid")]


def _stop_and_resume(tmp_path, corpus, config, stop_at: int, name: str, tamper=None):
    """Train `config` straight through in tmp_path/NAME-a; in NAME-b stop at step `stop_at`,
    let `tamper` rewrite the checkpoint, resume; return both last checkpoints."""
    whole = runs.new_run(corpus, dict(MODEL), config(), out=str(tmp_path / f"{name}-a"), device="cpu")
    runs.execute(whole)
    part = runs.new_run(corpus, dict(MODEL), config(), out=str(tmp_path / f"{name}-b"), device="cpu")
    calls = iter(range(1, 10_000))
    runs.execute(part, should_stop=lambda: next(calls) == stop_at)
    if tamper is not None:
        last = tmp_path / f"{name}-b" / checkpoint.LAST
        checkpoint.save(tamper(checkpoint.load(last)), last)
    torch.manual_seed(4321)
    runs.execute(resumes.resume_run(str(tmp_path / f"{name}-b"), {}, device="cpu"))
    return checkpoint.load(tmp_path / f"{name}-a" / "last.pt"), checkpoint.load(tmp_path / f"{name}-b" / "last.pt")


@pytest.mark.parametrize("augment", ["transpose", "transpose+tempo"])
def test_an_augmented_music_run_resumes_bitwise_exact(tmp_path, augment):
    """Stopped mid-epoch after an epoch boundary (the draws of epoch 1 in the checkpoint),
    resumed: the same parameters as a run that never stopped, and not those of a plain run."""
    def config(augment=augment):  # 6 windows an epoch: 20 steps cross three epoch boundaries
        return TrainConfig(steps=20, eval_every=7, **TINY_LAYOUT, warmup=5, augment=augment)

    a, b = _stop_and_resume(tmp_path, SONGS, config, stop_at=9, name="aug")
    assert a["train_config"]["augment"] == augment and a["state"]["augment"]["epoch"] == 3
    assert_same_parameters(a["model_state"], b["model_state"])
    assert a["state"]["history"] == b["state"]["history"]
    plain = runs.new_run(SONGS, dict(MODEL), config("none"), out=str(tmp_path / "plain"), device="cpu")
    runs.execute(plain)
    assert not torch.equal(a["model_state"]["head.weight"], plain.model.state_dict()["head.weight"])


@pytest.mark.parametrize("version", [2, 3])
def test_a_music_checkpoint_from_before_augmentation_resumes_as_it_trained(tmp_path, monkeypatch, version):
    """A checkpoint without augmentation settings or draws (chargen before --augment), of the
    duration vocabulary or the note-off one, resumes without augmentation, exactly as its run
    would have gone on."""
    from chargen.music import vocabulary

    monkeypatch.setattr(vocabulary, "MIDI_VOCAB_VERSION", version)  # new runs then encode in `version`
    def config():
        return TrainConfig(steps=16, eval_every=5, **TINY_LAYOUT, augment="none")

    def older(payload):
        del payload["train_config"]["augment"]
        del payload["state"]["augment"]
        return payload

    a, b = _stop_and_resume(tmp_path, SONGS, config, stop_at=8, name="old", tamper=older)
    assert b["train_config"]["augment"] == "none" and b["vocab"]["version"] == version
    assert_same_parameters(a["model_state"], b["model_state"])


@pytest.mark.slow
def test_a_run_being_trained_cannot_be_resumed_or_overwritten_by_another_process(tmp_path):
    proc, run = start_long_run(tmp_path)
    try:
        metrics = (run / "metrics.jsonl").read_bytes()
        overwrite = ["train", str(tmp_path / "tiny.txt"), "--out", str(run), "--force", *TINY]
        for args in (["train", "--resume", str(run)], overwrite):
            r = CliRunner().invoke(cli, args)
            assert r.exit_code == 1, r.output
            assert "another chargen process is training this run" in r.stderr
        assert (run / "last.pt").exists() and (run / "metrics.jsonl").read_bytes().startswith(metrics)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode == 130
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "1"])  # the lock went with the process
    assert r.exit_code == 0, r.output


def test_disk_full_inside_torchs_zip_writer_on_resume_and_on_a_new_run(trained_run, tmp_path, monkeypatch):
    """torch's zip writer reports ENOSPC as a RuntimeError ("unexpected pos"); chargen still says
    "No space left on device" in one line, on a new run's first save and on --resume."""
    run = trained_run
    before = (run / "last.pt").read_bytes()

    def torch_like(obj, f, *args, **kwargs):
        """What torch.save does on a full disk: the OSError becomes the context of a RuntimeError."""
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", torch_like)
    for args in (["train", "--resume", str(run), "--steps", str(TINY_RUN_STEPS + 4), "--eval-every", "2"],
                 ["train", str(tmp_path / "tiny.txt"), "--out", str(tmp_path / "new"), "--steps", "3", *TINY]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1, r.output
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0], r.stderr
        assert "Traceback" not in r.output and "inline_container" not in r.stderr
    assert (run / "last.pt").read_bytes() == before


# -- a resume never destroys later work; a new budget replaces the old --------------------


def test_resume_from_an_earlier_checkpoint_is_refused_and_changes_nothing(tmp_path):
    """best.pt from step 4, last.pt at step 8: resuming from best.pt would rewind the run."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    run = tmp_path / "run"
    args = ["train", str(corpus), "--steps", "8", "--eval-every", "4", "--out", str(run), *TINY]
    assert CliRunner().invoke(cli, args).exit_code == 0
    # Make best.pt an earlier checkpoint, whatever the validation scores were.
    payload = checkpoint.load(run / "last.pt")
    payload["state"]["step"] = 4
    checkpoint.save(payload, run / "best.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = CliRunner().invoke(cli, ["train", "--resume", str(run / "best.pt"), "--steps", "12"])
    assert r.exit_code == 1, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "earlier checkpoint (step 4)" in errors[0] and "step 8" in errors[0], r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # Resuming the run itself, or a checkpoint as recent as last.pt, is fine.
    r = CliRunner().invoke(cli, ["train", "--resume", str(run / "last.pt"), "--steps", "9"])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(run / "last.pt")["state"]["step"] == 9


def test_a_new_budget_on_resume_replaces_the_old_one(tmp_path):
    """A run started with --minutes, resumed with --steps N, trains to N steps (the minutes no longer count)."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(corpus), "--minutes", "0.0001", "--out", str(run), *TINY])
    assert r.exit_code == 0, r.output
    first = checkpoint.load(run / "last.pt")["state"]["step"]
    assert first < 100
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "100"])
    assert r.exit_code == 0, r.output
    payload = checkpoint.load(run / "last.pt")
    assert payload["state"]["step"] == 100
    assert payload["train_config"]["minutes"] is None and payload["train_config"]["steps"] == 100
    # --eval-every alone keeps the budget the run has.
    r = CliRunner().invoke(cli, ["train", "--resume", str(run), "--eval-every", "3"])
    assert r.exit_code == 0, r.output
    assert "already spent its budget" in r.stderr
    assert checkpoint.load(run / "last.pt")["train_config"]["steps"] == 100


# -- a kill -9 at any point leaves a consistent run directory ------------------------------


class Killed(BaseException):
    """Stands for a kill -9: raised instead of one durable write, it ends the process's work there."""


def test_kill_at_any_write_leaves_a_consistent_run_that_resumes_exactly(tmp_path, monkeypatch):
    """Every durable write of a run (metrics rows, last.pt, best.pt) is, in turn, the one a kill -9
    prevents. After each, --resume restores best.pt and the metrics rows, and ends like a run never killed."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    model_options = dict(cell="lstm", num_layers=1, hidden_size=16, embed_dim=8, dropout=0.0)

    def config():
        return TrainConfig(steps=9, eval_every=3, seq_len=16, batch_size=4, lr_min=1)

    reference = runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "ref"), device="cpu")
    runs.execute(reference)
    writes = []
    real_save, real_metrics = checkpoint.save, metrics._write

    def counting(real, name):
        def write(*args, **kwargs):
            writes.append(name)
            if len(writes) == kill_at:
                raise Killed
            return real(*args, **kwargs)
        return write

    monkeypatch.setattr(checkpoint, "save", counting(real_save, "checkpoint"))
    monkeypatch.setattr(metrics, "_write", counting(real_metrics, "metrics"))
    kill_at = 0
    runs.execute(runs.new_run([str(corpus)], model_options, config(), out=str(tmp_path / "count"), device="cpu"))
    total = len(writes)
    assert total >= 9, writes  # header, step-0 save, then per validation: row, last.pt, best.pt (if better)

    expected_rows = [(r["step"], r["val_bits"]) for r in metrics.read(tmp_path / "ref")]
    expected = checkpoint.load(tmp_path / "ref" / "last.pt")
    for kill_at in range(3, total + 1):  # 1 and 2 (header, step-0 save) leave nothing to resume
        writes.clear()
        run_dir = tmp_path / f"killed-{kill_at}"
        with pytest.raises(Killed):
            runs.execute(runs.new_run([str(corpus)], model_options, config(), out=str(run_dir), device="cpu"))
        writes.clear()
        kill_at_now, kill_at = kill_at, 0
        runs.execute(resumes.resume_run(str(run_dir), {}, device="cpu"))
        kill_at = kill_at_now
        last, best = checkpoint.load(run_dir / "last.pt"), checkpoint.load(run_dir / "best.pt")
        assert [(r["step"], r["val_bits"]) for r in metrics.read(run_dir)] == expected_rows, kill_at
        assert best["state"]["best_val"] == last["state"]["best_val"] == expected["state"]["best_val"], kill_at
        assert_same_parameters(expected["model_state"], last["model_state"])


# -- --resume auto: one command line for the first start and every restart ----------------


def test_resume_auto_starts_then_resumes_with_the_same_command_line(tmp_path):
    """The same command, run three times: it starts the run, goes on with it, and then has nothing to do;
    the result equals one uninterrupted run."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=300)
    run = tmp_path / "run"
    common = [str(corpus), *TINY, "--eval-every", "5", "--lr-min", "1"]
    r = CliRunner().invoke(cli, ["train", *common, "--steps", "20", "--out", str(tmp_path / "ref")])
    assert r.exit_code == 0, r.output

    again = ["train", *common, "--steps", "20", "--out", str(run), "--resume", "auto"]
    r = CliRunner().invoke(cli, ["train", *common, "--steps", "8", "--out", str(run), "--resume", "auto"])
    assert r.exit_code == 0, r.output
    assert "resuming" not in r.stderr and checkpoint.load(run / "last.pt")["state"]["step"] == 8
    r = CliRunner().invoke(cli, again)
    assert r.exit_code == 0, r.output
    assert "at step 8" in r.stderr and "resuming" in r.stderr
    assert "ignoring --out" not in r.stderr
    assert checkpoint.load(run / "last.pt")["state"]["step"] == 20
    r = CliRunner().invoke(cli, again)
    assert r.exit_code == 0, r.output
    assert "already spent its budget" in r.stderr
    assert_same_parameters(model_state(tmp_path / "ref"), model_state(run))
    assert [row["step"] for row in metrics.read(run)] == [5, 8, 10, 15, 20]


def test_resume_auto_needs_out_and_never_takes_a_folder_of_other_files(tmp_path):
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    r = CliRunner().invoke(cli, ["train", str(corpus), "--resume", "auto", "--steps", "2"])
    assert r.exit_code == 2 and "--resume auto needs --out DIR" in r.stderr, r.output
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    r = CliRunner().invoke(cli, ["train", str(corpus), "--resume", "auto", "--out", str(folder), "--steps", "2"])
    assert r.exit_code == 1 and "not empty and holds no run" in r.stderr, r.output
    assert [p.name for p in folder.iterdir()] == ["todo.txt"]
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "nothing-here")])
    assert r.exit_code == 2 and "no such run directory or checkpoint" in r.stderr, r.output


def test_resume_auto_starts_again_a_run_killed_before_its_first_checkpoint(tmp_path):
    """A kill during the step-0 save leaves an empty metrics file (and maybe a temporary file): nothing to lose."""
    corpus = write_corpus(tmp_path / "tiny.txt", words=200)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    (run / ".last.pt.x1y2.tmp").write_bytes(b"PK\x03\x04 cut short")
    r = CliRunner().invoke(cli, ["train", str(corpus), "--resume", "auto", "--out", str(run), "--steps", "3",
                                 *TINY])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(run / "last.pt")["state"]["step"] == 3
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
