"""Shared fixtures: one tiny model, one tiny corpus, one trained run, one check for clean errors.

Every test that needs a model or a run builds it from here, so that a change of
size or option name happens in one place:

- TINY_MODEL and TINY_LAYOUT are the model and batch settings (config field names);
- tiny_model() builds that model in code; train_args() spells settings as CLI options;
- the trained_run fixture is a finished 10-step run on tiny_corpus, made through the CLI;
- session_writer_run is a small model that has learned some English, for judging searches,
  and continuation_log_prob() the yardstick they are judged by;
- assert_clean_error() checks the one-line "Error: ..." contract of every failure path.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chargen.cli import cli
from chargen.model import CharRNN, ModelConfig

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 20

# The one tiny model of the suite (ModelConfig fields), and the batch layout it trains with.
TINY_MODEL = dict(cell="lstm", num_layers=2, hidden_size=16, embed_dim=8, dropout=0.0)
TINY_LAYOUT = dict(batch_size=4, seq_len=16)


def as_from_a_terminal(*, nohup: bool = False):
    """A preexec_fn: the child starts with Ctrl-C, SIGTERM and SIGHUP at their defaults, as a
    program started from a terminal does (or with SIGHUP ignored, as `nohup` starts it). Without
    it a child inherits what the test run had: a suite started in the background by a
    non-interactive shell has SIGINT ignored, and chargen rightly leaves an ignored signal alone."""

    def preexec() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        if nohup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return preexec


def train_args(**settings) -> list[str]:
    """Config fields as `chargen train` options: train_args(hidden_size=16) == ["--hidden", "16"].

    The option names are read from the train command itself, so a renamed option
    breaks here, once, rather than in every test. A value of None leaves the option out.
    """
    options = {p.name: p.opts[0] for p in cli.commands["train"].params}
    return [a for name, value in settings.items() if value is not None for a in (options[name], str(value))]


# TINY_MODEL and TINY_LAYOUT on the CPU, validating every 5 steps. Dropout is left out, so
# that training picks it for the corpus size, as it does for users (0.3 on tiny corpora).
TINY_TRAIN_ARGS = train_args(**(TINY_MODEL | {"dropout": None}), **TINY_LAYOUT, eval_every=5, device="cpu")
TINY_RUN_STEPS = 10


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than two on a busy, shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """A short real-looking text file, tmp_path/tiny.txt (about 2,700 characters)."""
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def trained_run(tiny_corpus, tmp_path) -> Path:
    """tmp_path/run: a finished TINY_RUN_STEPS-step run on tiny_corpus, validated every 5 steps."""
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--steps", str(TINY_RUN_STEPS),
                                      *TINY_TRAIN_ARGS, "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def tiny_model(cell: str = "lstm", vocab_size: int = 20, seed: int = 0, **overrides) -> CharRNN:
    """TINY_MODEL (with any field overridden), its weights drawn from `seed`."""
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab_size=vocab_size, **(TINY_MODEL | {"cell": cell} | overrides)))


def assert_clean_error(result, *fragments: str, code: int = 1) -> str:
    """Exit `code`, exactly one 'Error: ...' line on stderr holding every fragment, no traceback.

    Returns the error line.
    """
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _train_once(tmp_path_factory, name: str, corpus: list[str], steps: int):
    """A real run directory (best.pt, metrics.jsonl) trained for a few steps, shared by a whole session."""
    out = tmp_path_factory.mktemp(name) / name
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(cli, ["train", *corpus, "--steps", str(steps), *TINY_TRAIN_ARGS, "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def session_text_run(tmp_path_factory):
    """A tiny text model trained once per test session on TINY_TEXT (read-only: copy it to change it)."""
    corpus = tmp_path_factory.mktemp("text-corpus") / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    return _train_once(tmp_path_factory, "text-run", [str(corpus)], steps=15)


@pytest.fixture(scope="session")
def session_music_run(tmp_path_factory):
    """A tiny music model trained once per test session on three of tests/data/midi (read-only)."""
    midi_dir = Path(__file__).parent / "data" / "midi"
    files = [str(midi_dir / n) for n in ("folk_english1.mid", "tiny_c_major_scale.mid", "drums_beat.mid")]
    return _train_once(tmp_path_factory, "music-run", files, steps=10)


# A model that has learned some English, for tests that judge what a search finds: a 1x96
# LSTM, 400 steps on the first 100,000 characters of Tiny Shakespeare (about 15 s on a core;
# about 2.7 bits per character). Words, spaces and line ends are by then what it predicts.
WRITER_CORPUS_CHARS = 100_000
WRITER_SETTINGS = dict(hidden_size=96, num_layers=1, embed_dim=16, dropout=0.0, batch_size=16, seq_len=64,
                       lr=0.01, steps=400, eval_every=400, seed=1111, device="cpu")


@pytest.fixture(scope="session")
def session_writer_run(tmp_path_factory):
    """A small text model trained once per session on a slice of Tiny Shakespeare (read-only)."""
    import chargen

    text = (Path(__file__).parent.parent / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    corpus = tmp_path_factory.mktemp("writer-corpus") / "shakespeare.txt"
    corpus.write_text(text[:WRITER_CORPUS_CHARS], encoding="utf-8")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return chargen.train(str(corpus), out=str(tmp_path_factory.mktemp("writer") / "run"), progress=False,
                             **WRITER_SETTINGS)
    finally:
        torch.set_num_threads(before)


def continuation_log_prob(model, text: str, continuation: str) -> float:
    """ln p(continuation | text) under a text model, by one plain forward pass of its network in
    fp32 from the zero state: a yardstick independent of the samplers and searches."""
    ids = model.vocab.encode(text + continuation).unsqueeze(0)
    with torch.inference_mode():
        logits, _ = model.network(ids, model.network.init_hidden(1))
    log_probs = torch.log_softmax(logits[0, len(text) - 1 : -1].double(), dim=-1)  # predicts each continuation char
    return log_probs.gather(1, ids[0, len(text):].unsqueeze(1)).sum().item()


# -- real models, trained on the real corpora (tests/test_outcomes.py) ------------------------

DATA = Path(__file__).resolve().parent.parent / "data"
# Small LSTMs trained long enough to write words: 2 x 256 for 600 steps of the default 16 x 64
# batches on Tiny Shakespeare (about 2.7 bits/char), for three training seeds including the
# default. This size and budget is the smallest measured where the old +1 forget-gate bias
# left models unable to begin a text from the start state (12, 5 and 13 of 20 samples noise for
# these seeds; 0 without it; docs/benchmarks.md). The Bach model, the same size for 600 steps,
# writes note durations and onsets about as close to the corpus as corpus excerpts are (after 150
# steps, 0.78 overlap against the excerpts' 0.91; untrained, 0.31 and 0.18). fp32, so that every
# machine trains the same models.
OUTCOME_SEEDS = (1111, 1, 2)
OUTCOME_TEXT = dict(hidden_size=256, steps=600, precision="fp32")
OUTCOME_MUSIC = dict(hidden_size=256, steps=600, precision="fp32")


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory) -> dict:
    """{"text": {seed: run directory}, "music": run directory}: OUTCOME_TEXT on a copy of
    data/tinyshakespeare.txt for each of OUTCOME_SEEDS and OUTCOME_MUSIC on a copy of data/bach,
    trained once per session by `chargen train` in their own processes, side by side, one
    thread each (read-only: copy a run to change it)."""
    import os
    import shutil
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("real")
    shutil.copy(DATA / "tinyshakespeare.txt", root / "tinyshakespeare.txt")
    shutil.copytree(DATA / "bach", root / "bach")  # token caches land in the copies, not the checkout
    jobs = {("text", seed): [str(root / "tinyshakespeare.txt"), "--seed", str(seed), *train_args(**OUTCOME_TEXT)]
            for seed in OUTCOME_SEEDS}
    jobs["music", None] = [str(root / "bach"), *train_args(**OUTCOME_MUSIC)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    running = {}
    for (kind, seed), args in jobs.items():
        out = root / f"{kind}-{seed}"
        log = open(root / f"{kind}-{seed}.log", "w")
        running[kind, seed] = (out, log, subprocess.Popen(
            [sys.executable, "-m", "chargen", "train", *args, "--device", "cpu", "--out", str(out)],
            stdout=log, stderr=subprocess.STDOUT, env=env))
    for (kind, seed), (out, log, process) in running.items():
        process.wait()
        log.close()
        assert process.returncode == 0, (root / f"{kind}-{seed}.log").read_text()[-3000:]
    return {"text": {seed: running["text", seed][0] for seed in OUTCOME_SEEDS}, "music": running["music", None][0]}


def deny_reading(monkeypatch, path):
    """Make a file or folder unreadable, as `chmod 000` does for a normal user. Root ignores
    permissions, so there the corpus loader is handed the error everyone else gets."""
    import os

    from chargen.data import corpus

    os.chmod(path, 0)
    if os.geteuid() != 0:
        return
    real_open, real_scandir = open, os.scandir

    def refuse(name):
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))

    def fake_open(name, *args, **kwargs):
        refuse(name)
        return real_open(name, *args, **kwargs)

    def fake_scandir(name="."):
        refuse(name)
        return real_scandir(name)

    monkeypatch.setattr(corpus, "open", fake_open, raising=False)
    monkeypatch.setattr(os, "scandir", fake_scandir)
