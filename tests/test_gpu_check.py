"""bench/gpu_check.py without a GPU: every check run on the CPU with a tiny model, and the way it reports."""

import pytest
import torch
from conftest import TINY_LAYOUT, TINY_MODEL, TINY_TEXT, train_args

from bench import gpu_check
from bench.gpu_check import Row, Settings

pytest.importorskip("starlette", reason="the serve check needs the serve extra")


def tiny_settings(tmp_path) -> Settings:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    return Settings(workdir=tmp_path, device="cpu", precision="auto", corpus=corpus, minutes=0.2,
                    train_options=train_args(**TINY_MODEL, **TINY_LAYOUT, eval_every=2, steps=4),
                    one_length=60, many_streams=16, many_length=20, torchrun_steps=2, timeout=300)


@pytest.mark.slow
def test_every_check_passes_on_the_cpu_with_a_tiny_model(tmp_path):
    """What the GPU run does, with device="cpu": training, 1 and 16 streams (the fused step and the
    model's own batched path), a State continued, `chargen serve`, a one-process torchrun (gloo)."""
    rows = gpu_check.run_checks(tiny_settings(tmp_path))
    assert [r.check for r in rows] == ["train 0.2 min, auto", "sample 1 stream x 60", "sample 16 streams x 20",
                                       "prime and continue a State", "serve --device cpu",
                                       "torchrun, 1 process (gloo)"]
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert "tokens/s; val" in rows[0].figure and "chars/s" in rows[1].figure
    assert "the same text as reading them whole" in rows[3].figure  # exact in fp32 on a CPU
    assert rows[5].figure.startswith("2 steps")
    text = gpu_check.table(rows, "title")
    assert text.splitlines()[0] == "title" and len(text.splitlines()) == 3 + len(rows)


def test_a_failing_check_is_a_row_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "check_training", lambda s: (Row("train", True, "fast"), tmp_path))
    monkeypatch.setattr(gpu_check, "check_sampling", lambda s, run, n, length: Row(f"sample {n}", True, "x"))
    monkeypatch.setattr(gpu_check, "check_state", lambda s, run: 1 / 0)
    monkeypatch.setattr(gpu_check, "check_serve", lambda s, run: Row("serve", True, "y"))
    monkeypatch.setattr(gpu_check, "check_torchrun", lambda s: Row("torchrun", True, "z"))
    rows = gpu_check.run_checks(Settings(workdir=tmp_path))
    assert [r.ok for r in rows] == [True, True, True, False, True, True]
    assert rows[3].check == "prime and continue a State" and rows[3].note == "ZeroDivisionError: division by zero"
    assert "FAILED: ZeroDivisionError" in gpu_check.table(rows, "t")


def test_without_cuda_it_says_so_in_one_line_and_exits_cleanly(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("gpu_check: no CUDA GPU here")


def test_with_cuda_it_prints_one_table_and_fails_when_a_check_fails(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Test GPU")
    seen = []
    for rows, status in (([Row("a", True, "1")], 0), ([Row("a", True, "1"), Row("b", False, "", "why")], 1)):
        monkeypatch.setattr(gpu_check, "run_checks", lambda s, rows=rows: seen.append(s) or rows)
        assert gpu_check.main(["--minutes", "0.5", "--keep", str(tmp_path / "kept")]) == status
    assert seen[0].device == "cuda" and seen[0].precision == "bf16" and seen[0].minutes == 0.5
    assert "on Test GPU" in capsys.readouterr().out and (tmp_path / "kept").is_dir()
