"""Precision: the start-up probe, the fp32 fallback, and what a run records and reads back.

CPUs without bf16 are simulated by replacing the probe's findings, so the fallback
paths run on every machine; tests that need bf16 arithmetic itself skip where a bf16
pass does not work at all (emulated bf16 is enough for them).
"""

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_TRAIN_ARGS

from chargen import precision
from chargen.cli import cli
from chargen.errors import ChargenError
from chargen.precision import choose_precision
from chargen.training import checkpoint

BF16_WORKS = precision.bf16_support("cpu")[1]
needs_bf16 = pytest.mark.skipif(not BF16_WORKS, reason="bf16 arithmetic does not work on this machine")


@pytest.fixture
def no_native_bf16(monkeypatch):
    """A CPU whose flags lack avx512_bf16 and amx_bf16 (bf16 still works, emulated)."""
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: (False, "no avx512_bf16 or amx_bf16"))
    precision.bf16_support.cache_clear()
    yield
    precision.bf16_support.cache_clear()


@pytest.fixture
def broken_bf16(monkeypatch):
    """A machine that claims bf16 but whose bf16 pass fails (an old oneDNN, a driver bug)."""
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: (True, "avx512_bf16"))
    monkeypatch.setattr(precision, "_mkldnn_bf16", lambda: True)
    monkeypatch.setattr(precision, "_probe_forward", lambda device_type: (False, "RuntimeError: no bf16 kernel"))
    precision.bf16_support.cache_clear()
    yield
    precision.bf16_support.cache_clear()


@pytest.fixture
def native_bf16(monkeypatch):
    """A CPU with avx512_bf16 (the probe's forward pass still runs for real)."""
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: (True, "avx512_bf16"))
    monkeypatch.setattr(precision, "_mkldnn_bf16", lambda: True)
    precision.bf16_support.cache_clear()
    yield
    precision.bf16_support.cache_clear()


def test_fp32_is_always_available():
    chosen = choose_precision("fp32", "cpu")
    assert chosen.name == "fp32" and chosen.dtype == torch.float32


def test_auto_falls_back_to_fp32_on_a_cpu_without_native_bf16(no_native_bf16):
    chosen = choose_precision("auto", "cpu")
    assert chosen.name == "fp32"
    assert "no native bf16" in chosen.reason and "avx512_bf16" in chosen.reason


@needs_bf16
def test_bf16_asked_for_on_a_cpu_without_it_runs_emulated_and_says_so(no_native_bf16):
    chosen = choose_precision("bf16", "cpu")
    assert chosen.name == "bf16" and "emulated" in chosen.reason


def test_auto_falls_back_when_the_bf16_test_pass_fails(broken_bf16):
    chosen = choose_precision("auto", "cpu")
    assert chosen.name == "fp32" and "no bf16 kernel" in chosen.reason
    with pytest.raises(ChargenError, match="--precision bf16 does not work"):
        choose_precision("bf16", "cpu")


@needs_bf16
def test_auto_picks_bf16_where_it_is_native(native_bf16):
    chosen = choose_precision("auto", "cpu")
    assert chosen.name == "bf16" and "natively" in chosen.reason
    x = torch.randn(3, 4)
    with chosen.autocast():
        assert (x @ torch.randn(4, 2)).dtype == torch.bfloat16


def test_the_probe_itself_runs_a_real_forward_pass(monkeypatch):
    """The probe's answer is what a bf16 LSTM pass does on this machine, measured, not assumed:
    the pass runs inside bf16 autocast, agrees with a pass run here independently, and the
    probe says no (and why) when the pass raises or gives non-finite numbers."""
    real_forward = torch.nn.LSTM.forward
    under_bf16 = []

    def watched(self, *args, **kwargs):
        under_bf16.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.LSTM, "forward", watched)
    ok, failure = precision._probe_forward("cpu")
    assert under_bf16 == [True]
    try:  # the same question, asked here without the probe
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = real_forward(torch.nn.LSTM(4, 8, batch_first=True), torch.randn(2, 3, 4))
        works = bool(torch.isfinite(out.float()).all())
    except RuntimeError:
        works = False
    assert ok == works and (ok or failure)

    def broken(self, *args, **kwargs):
        raise RuntimeError("no bf16 kernel for lstm")

    monkeypatch.setattr(torch.nn.LSTM, "forward", broken)
    assert precision._probe_forward("cpu") == (False, "RuntimeError: no bf16 kernel for lstm")

    def overflowing(self, *args, **kwargs):
        out, hidden = real_forward(self, *args, **kwargs)
        return out * float("inf"), hidden

    monkeypatch.setattr(torch.nn.LSTM, "forward", overflowing)
    assert precision._probe_forward("cpu") == (False, "non-finite output")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp8", "cpu")


# -- through the command line ----------------------------------------------------------


def _train(runner, corpus, out, *extra):
    result = runner.invoke(cli, ["train", str(corpus), *TINY_TRAIN_ARGS, "--steps", "6", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result


def test_fallback_run_says_fp32_and_why_and_records_it(no_native_bf16, tiny_corpus, tmp_path):
    result = _train(CliRunner(), tiny_corpus, tmp_path / "run")
    assert "precision: fp32 (auto: the CPU has no native bf16" in result.output
    payload = checkpoint.load(tmp_path / "run" / "last.pt")
    assert checkpoint.trained_precision(payload)["name"] == "fp32"
    assert payload["train_config"]["precision"] == "auto"


@needs_bf16
def test_bf16_run_records_its_precision_and_samples_on_an_fp32_only_machine(native_bf16, tiny_corpus, tmp_path, monkeypatch):
    runner = CliRunner()
    result = _train(runner, tiny_corpus, tmp_path / "run")
    assert "precision: bf16 (auto: the CPU computes bf16 natively" in result.output
    payload = checkpoint.load(tmp_path / "run" / "last.pt")
    assert checkpoint.trained_precision(payload)["name"] == "bf16"
    assert all(t.dtype == torch.float32 for t in payload["model_state"].values()), "weights are stored in fp32"
    assert all(h.dtype == torch.float32 for h in payload["state"]["hidden"]), "the carried state is fp32"
    info = runner.invoke(cli, ["info", str(tmp_path / "run")])
    assert "bf16" in info.output

    # The same checkpoint on a machine without bf16: auto samples in fp32, as --precision fp32 does.
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: (False, "no avx512_bf16 or amx_bf16"))
    precision.bf16_support.cache_clear()
    args = ["sample", str(tmp_path / "run"), "--length", "80", "--seed", "3", "--prime", "First"]
    fallback = runner.invoke(cli, args)
    explicit = runner.invoke(cli, args + ["--precision", "fp32"])
    assert fallback.exit_code == 0 and explicit.exit_code == 0, fallback.output
    assert len(fallback.stdout) > len("First") + 40
    assert fallback.stdout == explicit.stdout


def test_old_checkpoints_without_the_field_read_as_fp32():
    assert checkpoint.trained_precision({})["name"] == "fp32"
    assert checkpoint.trained_precision({"precision": {"name": "bf16", "reason": "x"}})["name"] == "bf16"


def test_bf16_asked_for_where_it_fails_is_one_clean_error_before_any_file(broken_bf16, tiny_corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(tiny_corpus), *TINY_TRAIN_ARGS, "--steps", "2",
                                 "--out", str(tmp_path / "run"), "--precision", "bf16"])
    assert result.exit_code == 1
    assert "Error: --precision bf16 does not work" in result.output
    assert not (tmp_path / "run").exists()
