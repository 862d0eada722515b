"""Data-parallel training: the World helpers, and real 2-process gloo runs launched by torchrun.

The end-to-end tests start `python -m torch.distributed.run --nproc_per_node=2`
on loopback only (MASTER_ADDR=127.0.0.1, a free port) and compare the result
with the same training done in this process.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_LAYOUT, TINY_MODEL, train_args

from chargen.cli import cli
from chargen.errors import ChargenError
from chargen.training import checkpoint, distributed, metrics
from chargen.training import resume as resumes
from chargen.training import run as runs
from chargen.training.distributed import World
from chargen.training.loop import TrainConfig

REPO = Path(__file__).resolve().parent.parent
MODEL = TINY_MODEL  # no dropout: ranks draw their own masks, so runs would differ
# fp32: two ranks must match one process to 1e-5, tighter than bf16 products round.
LAYOUT = TINY_LAYOUT | dict(eval_every=1000, seed=7, precision="fp32")
STEPS = 4


# -- World, without any other process ------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 4])
def test_world_rows_are_contiguous_equal_shares(size):
    shares = [World(rank=r, size=size).rows(8) for r in range(size)]
    assert [i for s in shares for i in range(8)[s]] == list(range(8))
    assert {s.stop - s.start for s in shares} == {8 // size}


def test_world_refuses_a_batch_that_does_not_split_evenly():
    with pytest.raises(ChargenError, match="6 streams cannot be split evenly over 4 processes"):
        World(rank=0, size=4).check_batch_size(6)
    World(rank=0, size=3).check_batch_size(6)


def test_world_of_one_changes_nothing():
    world = World()
    h = (torch.randn(2, 4, 3), torch.randn(2, 4, 3))
    assert world.local_hidden(h) is h and world.gather_hidden(h) is h
    assert world.gather_floats(1.5, 2.0).tolist() == [[1.5, 2.0]]
    assert world.broadcast_text("run") == "run"


def test_world_local_hidden_takes_the_ranks_rows():
    h = torch.arange(2 * 4 * 3.0).view(2, 4, 3)
    assert torch.equal(World(rank=1, size=2).local_hidden(h), h[:, 2:4])


def test_world_local_rng_takes_its_row_or_forks_a_stream():
    a, b = torch.Generator().manual_seed(1).get_state(), torch.Generator().manual_seed(2).get_state()
    stack = torch.stack([a, b])
    assert torch.equal(World(rank=1, size=2).local_rng(stack, seed=0), b)
    assert torch.equal(World(rank=0, size=1).local_rng(stack, seed=0), a)  # fewer ranks: row 0
    assert torch.equal(World(rank=1, size=2).local_rng(a, seed=5), torch.Generator().manual_seed(6).get_state())
    assert World(rank=1, size=2).local_rng(stack, seed=0).storage_offset() == 0  # set_rng_state misreads a view


def test_start_without_torchrun_is_one_process(monkeypatch):
    for name in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    world = distributed.start(torch.device("cpu"))
    assert (world.rank, world.size, world.is_main, world.device) == (0, 1, True, torch.device("cpu"))


def test_start_with_a_partial_launch_environment_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ChargenError, match="needs RANK, MASTER_ADDR, MASTER_PORT"):
        distributed.start(torch.device("cpu"))


# -- two processes under torchrun -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_corpus(path: Path) -> Path:
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while seven wizards hum".split()
    lines = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(120)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _options(steps: int, eval_every: int = LAYOUT["eval_every"]) -> list[str]:
    return train_args(**MODEL, **(LAYOUT | {"eval_every": eval_every}), steps=steps, device="cpu")


def _torchrun_env() -> dict:
    env = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "200",
                        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return env


def _torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "chargen", *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=_torchrun_env(), capture_output=True, text=True, timeout=180)


def _train_here(corpus: Path, out: Path, steps: int) -> Path:
    """The same training in this process, through the library."""
    config = TrainConfig(steps=steps, **LAYOUT)
    run = runs.new_run([str(corpus)], dict(MODEL), config, out=str(out), device="cpu")
    runs.execute(run)
    return out


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """One 2-process gloo run of STEPS steps (shared by the tests below: it takes ~15 s)."""
    tmp = tmp_path_factory.mktemp("dist")
    corpus = _write_corpus(tmp / "tiny.txt")
    result = _torchrun(["train", str(corpus), *_options(STEPS), "--out", str(tmp / "two"), "--single-process-rate", "1000"],
                       cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, corpus, tmp / "two", result


@pytest.mark.slow
def test_two_processes_complete_and_only_rank_0_writes(two_process_run):
    tmp, _, run_dir, result = two_process_run
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
    assert len(metrics.read(run_dir)) == 1  # one validation, one writer
    assert result.stderr.count("run directory:") == 1  # one progress report
    assert sorted(p.name for p in tmp.iterdir()) == ["tiny.txt", "two"]  # no stray run directories
    payload = checkpoint.load(run_dir / checkpoint.LAST)
    assert payload["state"]["step"] == STEPS
    assert payload["distributed"] == {"world_size": 2}
    assert payload["state"]["tokens"] == STEPS * LAYOUT["batch_size"] * LAYOUT["seq_len"]


@pytest.mark.slow
def test_two_process_summary_shows_rate_per_process_and_scaling_efficiency(two_process_run):
    _, _, _, result = two_process_run
    summary = " ".join(result.stderr.split())
    assert "per process" in summary and "(2 processes)" in summary, summary[-2000:]
    assert "scaling efficiency" in summary and "of 2 x 1,000 tokens/s (the single-process rate given)" in summary


def test_scaling_divides_the_throughput_over_the_processes_and_the_single_process_rate():
    assert distributed.scaling(3000.0, 2, 2000.0) == (1500.0, 0.75)
    assert distributed.scaling(3000.0, 2, None) == (1500.0, None)


@pytest.mark.slow
def test_two_process_checkpoint_loads_and_samples(two_process_run):
    _, _, run_dir, _ = two_process_run
    result = CliRunner().invoke(cli, ["sample", str(run_dir), "--length", "40", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout) >= 40


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one(two_process_run):
    tmp, corpus, run_dir, _ = two_process_run
    one = checkpoint.load(_train_here(corpus, tmp / "one", STEPS) / checkpoint.LAST)
    two = checkpoint.load(run_dir / checkpoint.LAST)
    for name, weight in one["model_state"].items():
        assert torch.allclose(weight, two["model_state"][name], atol=1e-5), name
    # The hidden state was gathered from both ranks into the whole batch's.
    for h1, h2 in zip(one["state"]["hidden"], two["state"]["hidden"]):
        assert h1.shape == h2.shape == (MODEL["num_layers"], LAYOUT["batch_size"], MODEL["hidden_size"])
        assert torch.allclose(h1, h2, atol=1e-5)
    assert two["state"]["rng"].shape[0] == 2  # one generator state per rank


MIDI_DIR = REPO / "tests" / "data" / "midi"
SONGS = [str(MIDI_DIR / n) for n in ("folk_english1.mid", "tiny_c_major_scale.mid", "tiny_2tracks_type1.mid")]
MUSIC_STEPS = 8  # 6 windows an epoch: epoch 1 trains on new draws


@pytest.mark.slow
def test_two_processes_of_an_augmented_music_run_take_the_same_steps_as_one(tmp_path):
    """Every rank rewrites the corpus with the same draws and takes its own rows of it."""
    result = _torchrun(["train", *SONGS, *_options(MUSIC_STEPS), "--augment", "transpose", "--out", str(tmp_path / "two")],
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    two = checkpoint.load(tmp_path / "two" / checkpoint.LAST)
    assert two["state"]["augment"]["epoch"] == 1

    def here(augment: str) -> dict:
        config = TrainConfig(steps=MUSIC_STEPS, **LAYOUT, augment=augment)
        run = runs.new_run(SONGS, dict(MODEL), config, out=str(tmp_path / augment), device="cpu")
        runs.execute(run)
        return checkpoint.load(tmp_path / augment / checkpoint.LAST)["model_state"]

    one, plain = here("transpose"), here("none")
    for name, weight in one.items():
        assert torch.allclose(weight, two["model_state"][name], atol=1e-5), name
    assert not torch.allclose(plain["head.weight"], two["model_state"]["head.weight"], atol=1e-5)


def _copy_run(run_dir, destination):
    """A copy of a finished run's last checkpoint and metrics, to resume without touching the original."""
    destination.mkdir()
    for name in (checkpoint.LAST, checkpoint.METRICS):
        (destination / name).write_bytes((run_dir / name).read_bytes())
    return destination


@pytest.mark.slow
def test_two_process_run_resumes_in_one_process(two_process_run, tmp_path):
    """A different world size picks up the same data position and hidden state."""
    _, corpus, run_dir, _ = two_process_run
    resumed_dir = _copy_run(run_dir, tmp_path / "resumed")
    run = resumes.resume_run(str(resumed_dir), {"steps": 2 * STEPS}, device="cpu")
    assert any("trained by 2 process(es)" in note for note in run.notes)
    runs.execute(run)
    straight = checkpoint.load(_train_here(corpus, tmp_path / "straight", 2 * STEPS) / checkpoint.LAST)
    resumed = checkpoint.load(resumed_dir / checkpoint.LAST)
    for name, weight in straight["model_state"].items():
        assert torch.allclose(weight, resumed["model_state"][name], atol=1e-5), name


def test_new_run_refuses_a_batch_that_does_not_split_before_touching_the_disk(tmp_path):
    corpus = _write_corpus(tmp_path / "tiny.txt")
    config = TrainConfig(steps=1, **(LAYOUT | {"batch_size": 3}))
    with pytest.raises(ChargenError, match="3 streams cannot be split evenly over 2 processes"):
        runs.new_run([str(corpus)], dict(MODEL), config, out=str(tmp_path / "odd"), world=World(rank=0, size=2))
    assert not (tmp_path / "odd").exists()


@pytest.mark.slow
def test_two_process_run_resumes_with_two_processes(two_process_run, tmp_path):
    """The same world size takes up each rank's rows of the hidden state and its own RNG stream."""
    _, corpus, run_dir, _ = two_process_run
    resumed_dir = _copy_run(run_dir, tmp_path / "resumed")
    result = _torchrun(["train", "--resume", str(resumed_dir), "--steps", str(2 * STEPS)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    straight = checkpoint.load(_train_here(corpus, tmp_path / "straight", 2 * STEPS) / checkpoint.LAST)
    resumed = checkpoint.load(resumed_dir / checkpoint.LAST)
    assert resumed["state"]["step"] == 2 * STEPS
    for name, weight in straight["model_state"].items():
        assert torch.allclose(weight, resumed["model_state"][name], atol=1e-5), name
    assert [row["step"] for row in metrics.read(resumed_dir)] == [STEPS, 2 * STEPS]


def test_resuming_with_a_process_count_that_does_not_divide_the_batch_is_refused(two_process_run, tmp_path):
    """The other side of the rule: 3 processes cannot share a batch of 4 streams; nothing is touched."""
    _, _, run_dir, _ = two_process_run
    copy = _copy_run(run_dir, tmp_path / "copy")
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    with pytest.raises(ChargenError, match="4 streams cannot be split evenly over 3 processes"):
        resumes.resume_run(str(copy), {"steps": 2 * STEPS}, device="cpu", world=World(rank=0, size=3))
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


# -- a rank killed mid-run: torchrun restarts the same command line, which resumes --------------


def _workers_of(launcher: subprocess.Popen) -> dict[int, int]:
    """{RANK: pid} of the worker processes torchrun started (its children), read from /proc."""
    workers = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != launcher.pid:
                continue
            environ = dict(v.split("=", 1) for v in (entry / "environ").read_text().split("\0") if "=" in v)
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
        if "RANK" in environ:
            workers[int(environ["RANK"])] = int(entry.name)
    return workers


def _checkpoint_step(path: Path) -> int:
    try:
        return checkpoint.load(path)["state"]["step"]
    except ChargenError:
        return -1  # not written yet


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc")
def test_a_rank_killed_mid_run_is_restarted_by_torchrun_and_the_run_ends_as_if_never_killed(tmp_path):
    """torchrun --max-restarts 1 runs `chargen train ... --out DIR --resume auto` on 2 gloo ranks over
    loopback. As soon as the step-10 checkpoint exists, rank 0 (the writer) gets SIGKILL; torchrun stops
    rank 1 and starts both again with the same command line, which resumes from the checkpoint. The run
    finishes by itself with the parameters of an uninterrupted run (no dropout: equal to float rounding)."""
    steps, every = 120, 10
    corpus = _write_corpus(tmp_path / "tiny.txt")
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--max-restarts=1",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--monitor-interval=0.1",
        "-m", "chargen", "train", str(corpus), *_options(steps, every), "--out", str(run_dir), "--resume", "auto",
    ]  # fmt: skip
    launcher = subprocess.Popen(command, cwd=tmp_path, env=_torchrun_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_step(run_dir / checkpoint.LAST) < every:  # the event: a checkpoint past step 0
            assert launcher.poll() is None, launcher.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after step 0 within 2 minutes"
            time.sleep(0.005)
        killed_at = _checkpoint_step(run_dir / checkpoint.LAST)
        os.kill(_workers_of(launcher)[0], signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:  # a hung run: end torchrun and its workers (each in a run of its own)
            for pid in _workers_of(launcher).values():
                os.kill(pid, signal.SIGKILL)
            launcher.kill()
            launcher.communicate()
    assert killed_at < steps, "the kill should land before the run ends"
    assert launcher.returncode == 0, stderr[-3000:]
    assert "resuming" in stderr and "at step" in stderr, "the restarted command line should have resumed"
    resumed = checkpoint.load(run_dir / checkpoint.LAST)
    assert resumed["state"]["step"] == steps
    straight = checkpoint.load(_train_here(corpus, tmp_path / "straight", steps) / checkpoint.LAST)
    for name, weight in straight["model_state"].items():
        assert torch.allclose(weight, resumed["model_state"][name], atol=1e-5), name
    assert [row["step"] for row in metrics.read(run_dir)] == list(range(every, steps + 1, every))
