"""Every command through click's CliRunner, happy paths and the commonest errors."""

import json

import pytest
from click.testing import CliRunner

from chargen import __version__, checkpoint
from chargen.cli import cli
from conftest import TINY_TRAIN_ARGS


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs go to ./checkpoints
    return CliRunner()


@pytest.fixture
def trained_run(runner, tiny_corpus, tmp_path):
    result = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "10", *TINY_TRAIN_ARGS,
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_version_and_help(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    for command in ["train", "sample", "eval", "info"]:
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output


def test_train_writes_a_run_directory(trained_run):
    assert {p.name for p in trained_run.iterdir()} >= {"last.pt", "best.pt", "metrics.jsonl"}
    payload = checkpoint.load(trained_run / "last.pt")
    assert payload["state"]["step"] == 10
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    assert all(r["val_bits"] > 0 for r in rows)


def test_train_reports_on_stderr_only(runner, tiny_corpus):
    result = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "5", *TINY_TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "bits/char" in result.stderr and "Summary" in result.stderr
    assert checkpoint.latest_run("checkpoints") is not None


def test_sample_streams_text_to_stdout(runner, trained_run):
    result = runner.invoke(cli, ["sample", str(trained_run), "--length", "50", "--seed", "1", "--prime", "All:"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("All:")
    assert len(result.stdout.rstrip("\n")) >= 50
    again = runner.invoke(cli, ["sample", str(trained_run), "--length", "50", "--seed", "1", "--prime", "All:"])
    assert again.stdout == result.stdout


def test_sample_defaults_to_the_latest_run(runner, tiny_corpus):
    runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "3", *TINY_TRAIN_ARGS])
    result = runner.invoke(cli, ["sample", "--length", "20", "--temp", "0"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout) >= 20


def test_sample_many_to_files(runner, trained_run, tmp_path):
    out = tmp_path / "gen.txt"
    result = runner.invoke(cli, ["sample", str(trained_run), "--num-samples", "3", "--length", "30",
                                 "--out", str(out), "--top-k", "5", "--top-p", "0.9"])
    assert result.exit_code == 0, result.stderr
    files = sorted(tmp_path.glob("gen-*.txt"))
    assert [f.name for f in files] == ["gen-1.txt", "gen-2.txt", "gen-3.txt"]
    assert all(len(f.read_text()) == 30 for f in files)


def test_sample_stop_string(runner, trained_run):
    result = runner.invoke(cli, ["sample", str(trained_run), "--length", "300", "--seed", "3", "--stop", "e"])
    assert result.exit_code == 0
    assert "e" not in result.stdout


def test_eval_prints_bits_per_character(runner, trained_run, tiny_corpus):
    result = runner.invoke(cli, ["eval", str(trained_run), str(tiny_corpus)])
    assert result.exit_code == 0, result.stderr
    value = float(result.stdout.split()[0])
    assert 0 < value < 8 and "bits per character" in result.stdout


def test_info_describes_the_run(runner, trained_run):
    result = runner.invoke(cli, ["info", str(trained_run)])
    assert result.exit_code == 0, result.stderr
    assert "lstm 1 x 16" in result.stdout and "bits per char" in result.stdout
    facts = json.loads(runner.invoke(cli, ["info", str(trained_run), "--json"]).stdout)
    assert facts["step"] == 10 and facts["vocab"]["kind"] == "text"
    assert facts["parameters"] > 0 and facts["best_val_bits"] > 0


@pytest.mark.parametrize("args, message", [
    (["train", "missing.txt"], "no such file"),
    (["train", "{corpus}", "--layers", "0"], "--layers"),
    (["train", "{corpus}", "--seq-len", "0"], "--seq-len"),
    (["train", "{corpus}", "--lr", "-1"], "--lr"),
    (["sample", "{run}", "--temp", "-1"], "--temp"),
    (["sample", "{run}", "--top-p", "1.5"], "--top-p"),
    (["sample", "{run}", "--prime", "Zebra§"], "'§'"),
    (["sample", "nowhere/"], "no such checkpoint"),
    (["train"], "CORPUS"),
])
def test_errors_are_one_line_without_traceback(runner, trained_run, tiny_corpus, args, message):
    args = [a.format(corpus=tiny_corpus, run=trained_run) for a in args]
    result = runner.invoke(cli, args)
    assert result.exit_code in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
