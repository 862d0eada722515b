"""chargen's benchmark suite: every figure measured side by side with its baseline, in one run.

    python bench/run.py --quick            # a few minutes: throughput, sampling, 10 MB scale
    python bench/run.py                    # more repeats, 100 MB scale
    python bench/run.py --ttq --scale-gb   # plus time to quality (2 + 5 + 10 min) and a 1 GB corpus
    python bench/run.py --ttq-only --ttq-precision fp32   # only the time-to-quality table, fp32 forced
    python bench/run.py --quick --processes  # plus 1 process x 2 threads vs 2 processes x 1 thread (torchrun)

Prints one table and writes the same figures to bench/results.json (git-ignored).
The machine may be shared: every comparison interleaves its repeats (chargen,
baseline, chargen, ...) and keeps each side's best, so both sides see the same
conditions. Rows are ratios first; absolute numbers are for this machine only.
Training and sampling are measured in fp32 and, where bf16 works on this machine,
in bf16, each against the textbook loop (bench/baseline.py) in the same precision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import chargen  # noqa: E402,F401
from bench import baseline, scale  # noqa: E402
from chargen import precision as precisions  # noqa: E402
from chargen.model import CharRNN, ModelConfig  # noqa: E402
from chargen.sampling.draw import SampleConfig  # noqa: E402
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import PARALLEL_STREAMS, generate
from chargen.sampling.threads import PROBE_ABOVE_TOKENS, StepThreads  # noqa: E402
from chargen.training.loop import TrainConfig, TrainState, train  # noqa: E402
from chargen.training.run import make_optimizer  # noqa: E402

CORPUS = ROOT / "data" / "tinyshakespeare.txt"
SHAPE = dict(num_layers=2, hidden_size=512, embed_dim=64, dropout=0.1)  # the throughput rows' model
BATCH, SEQ = 64, 128


# -- the machine's limit ------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n matrix product in `dtype`: what this CPU can do at best.

    Two libraries are tried: MKL or oneDNN through torch.mm, and oneDNN directly (the
    kernels behind nn.LSTM on CPU, and torch's bf16 products). On AMD CPUs MKL takes a
    slower fp32 path and oneDNN is up to 2x faster, so the ceiling is the better of the two.
    """
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    candidates = [lambda: torch.mm(a, b, out=out)]
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        candidates.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    best = math.inf
    for fn in candidates:
        try:
            fn()
        except RuntimeError:  # a kernel this build lacks for this dtype
            continue
        best = min([best] + [_timed(fn) for _ in range(repeats)])
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- 1. training throughput ---------------------------------------------------------------


def chargen_steps(model, optimizer, ids, state, steps: int, precision: str, batch: int, seq: int) -> list[float]:
    """Seconds per step of chargen.train.train() itself, over `steps` more steps."""
    config = TrainConfig(batch_size=batch, seq_len=seq, steps=state.step + steps, eval_every=10**9, warmup=1,
                         precision=precision)
    stamps = [time.perf_counter()]
    train(model, optimizer, ids, ids[:0], config, state, lambda event, info: event == "step" and stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def bench_training(cell: str, precision: str, ids: torch.Tensor, vocab_size: int, repeats: int, steps: int,
                   batch: int = BATCH, seq: int = SEQ) -> dict:
    """chargen's train() against the textbook loop, same model, batch and precision, interleaved."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=vocab_size, cell=cell, **SHAPE))
    optimizer = make_optimizer(model, TrainConfig())
    state = TrainState()
    base = baseline.BaselineRNN(vocab_size, cell, **SHAPE)
    base_step = baseline.make_train_step(base, bf16=precision == "bf16")
    streams = ids[: len(ids) // batch * batch].view(batch, -1).long()
    window = lambda i: (streams[:, i * seq : (i + 1) * seq], streams[:, i * seq + 1 : (i + 1) * seq + 1])  # noqa: E731
    chargen_steps(model, optimizer, ids, state, 1, precision, batch, seq)  # warm-up: first-call allocations, oneDNN primitives
    base_step(*window(0))
    ours, theirs = [], []
    for r in range(repeats):
        ours += chargen_steps(model, optimizer, ids, state, steps, precision, batch, seq)
        theirs += [_timed(lambda: base_step(*window(r * steps + s + 1))) for s in range(steps)]
    tokens = batch * seq
    # Medians: a sustained run's rate. The fastest single step ran 1.3-1.4x the median on a
    # shared 2-core VM (2026-11-23), so best-of figures overstated what a run sees.
    ours_tps, theirs_tps = tokens / statistics.median(ours), tokens / statistics.median(theirs)
    return {
        "cell": cell,
        "precision": precision,
        "batch": [batch, seq],
        "chargen_tokens_per_s": ours_tps,
        "baseline_tokens_per_s": theirs_tps,
        "best_step_chargen_tokens_per_s": tokens / min(ours),
        "best_step_baseline_tokens_per_s": tokens / min(theirs),
        "speedup": ours_tps / theirs_tps,
        "chargen_gflops": 6 * model.num_parameters(embedding=False) * ours_tps / 1e9,
        "non_embedding_params": model.num_parameters(embedding=False),
    }


# -- 2. sampling speed --------------------------------------------------------------------


def bench_sampling(streams: int, length: int, repeats: int, precision: str) -> dict:
    """chargen's generate() against the textbook sampling loop, same model and precision, interleaved."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=65, **SHAPE)).eval()
    base = baseline.BaselineRNN(65, "lstm", **SHAPE).eval()
    prime = torch.tensor([0])
    config = SampleConfig(length=length, num_samples=streams, precision=precision)
    base_length = max(8, length // 8)  # the naive loop is slow; fewer steps give the same rate
    bf16 = precision == "bf16"
    ours, theirs = [], []
    for r in range(repeats):
        ours.append(_timed(lambda: list(generate(model, prime, config, torch.Generator().manual_seed(r)))) / length)
        theirs.append(_timed(lambda: baseline.sample(base, prime, base_length, streams, bf16=bf16)) / base_length)
    loop_s = min(ours)
    row = {
        "streams": streams,
        "precision": precision,
        "chargen_chars_per_s": streams / loop_s,
        "baseline_chars_per_s": streams / min(theirs),
        "speedup": min(theirs) / loop_s,
    }
    if streams < PARALLEL_STREAMS:
        # Where the loop's time goes: the fused step (products + gate math), timed alone on
        # the thread count generate() chooses; the rest is drawing tokens and yielding them.
        with torch.inference_mode():
            _, hidden = model(prime.view(1, 1).expand(streams, 1), model.init_hidden(streams))
            step = StepThreads(FusedStep(model, hidden, torch.bfloat16 if bf16 else torch.float32), length)
            ids = torch.zeros(streams, dtype=torch.long)
            step_s = min(_timed(lambda: [step(ids) for _ in range(length)]) for _ in range(repeats)) / length
        row["step_fraction"] = step_s / loop_s
        row["step_threads"] = step.threads
    return row


CLI_LENGTH, CLI_SHORT = 10_000, 100


def bench_cli_sampling(precision: str, checkpoint_dir: Path, repeats: int) -> dict:
    """One stream through the real CLI: `chargen sample RUN --length 10000 > /dev/null`,
    minus a 100-character run of the same command (start-up, imports, loading)."""

    def run(length: int) -> float:
        command = [sys.executable, "-m", "chargen", "sample", str(checkpoint_dir), "--length", str(length),
                   "--seed", "1", "--precision", precision]
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=os.environ | {"PYTHONPATH": str(ROOT)})
        return time.perf_counter() - start

    long_s = min(run(CLI_LENGTH) for _ in range(repeats))
    short_s = min(run(CLI_SHORT) for _ in range(repeats))
    return {"precision": precision, "chars_per_s": (CLI_LENGTH - CLI_SHORT) / max(long_s - short_s, 1e-9)}


def make_sampling_checkpoint(directory: Path) -> Path:
    """A 2x512 LSTM checkpoint for the CLI row: one small training step on Tiny Shakespeare,
    nothing held out (so no validation pass); sampling speed does not depend on the weights."""
    out = directory / "run"
    subprocess.run([sys.executable, "-m", "chargen", "train", str(CORPUS), "--steps", "1", "--out", str(out),
                    "--precision", "fp32", "--dropout", "0", "--val-frac", "0", "--batch-size", "1", "--seq-len", "8"],
                   cwd=ROOT, check=True, capture_output=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    return out


# -- the table ----------------------------------------------------------------------------


def machine() -> dict:
    cpu = precisions.describe_cpu()
    auto = precisions.choose_precision("auto", "cpu")
    return {
        "cpu": cpu["cpu"],
        "bf16_flags": cpu["bf16_flags"],
        "auto_precision": auto.name,
        "auto_precision_reason": auto.reason,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
        "command": " ".join(["python"] + sys.argv),
    }


def print_table(rows: list[tuple[str, str, str, str]], info: dict) -> None:
    flags = ", ".join(info["bf16_flags"]) or "none"
    print(f"chargen benchmarks on {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
          f"({info['threads']} threads), load average {info['load_average_at_start']:.1f} at start")
    print(f"CPU flags: {flags}; --precision auto picks {info['auto_precision']} ({info['auto_precision_reason']})")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 10 MB scale row only")
    parser.add_argument("--ttq", action="store_true", help="also train with the defaults for 2, 5 and 10 minutes (17 min)")
    parser.add_argument("--ttq-only", action="store_true", help="only the time-to-quality table (implies --ttq)")
    parser.add_argument("--ttq-minutes", default="2,5,10", help="budgets for --ttq, comma-separated")
    parser.add_argument("--ttq-precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="--precision of the time-to-quality runs (auto, as a user gets it)")
    parser.add_argument("--ttq-args", default="", help="extra `chargen train` options for the time-to-quality runs, "
                        "to measure candidate defaults (e.g. \"--batch-size 32 --weight-drop 0.2\")")
    parser.add_argument("--scale-gb", action="store_true", help="also load a 1 GB generated corpus")
    parser.add_argument("--processes", action="store_true",
                        help="also train 1 process x 2 threads vs 2 processes x 1 thread under torchrun (a few minutes)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    repeats, steps = (2, 2) if args.quick else (4, 3)
    info = machine()
    results: dict = {"machine": info}
    rows = [("figure", "chargen", "baseline", "ratio / note")]
    if args.ttq_only:
        _ttq_rows(args, results, rows)
        return _finish(rows, info, results, args)

    from chargen.data.corpus import load_corpus

    corpus = load_corpus([str(CORPUS)])
    # bf16 rows wherever a bf16 pass works (natively fast or not: the rows then show it).
    precisions_here = ["fp32"] + (["bf16"] if precisions.bf16_support("cpu")[1] else [])
    ceilings = {p: matmul_gflops(torch.bfloat16 if p == "bf16" else torch.float32) for p in precisions_here}
    results["training"] = []
    for precision in precisions_here:
        for cell in ("lstm", "gru"):
            r = bench_training(cell, precision, corpus.train, len(corpus.vocab), repeats, steps)
            results["training"].append(r)
            rows.append((f"train {cell} 2x512 b{BATCH} t{SEQ} {precision}, tokens/s", f"{r['chargen_tokens_per_s']:,.0f}",
                         f"{r['baseline_tokens_per_s']:,.0f}", f"{r['speedup']:.2f}x baseline ({precision} textbook loop)"))
        # The default layout too: --precision auto must pay off where users train, not only at b64.
        defaults = TrainConfig()
        r = bench_training("lstm", precision, corpus.train, len(corpus.vocab), repeats, steps * 4,
                           defaults.batch_size, defaults.seq_len)
        results["default_layout"] = results.get("default_layout", []) + [r]
        rows.append((f"train lstm 2x512 b{defaults.batch_size} t{defaults.seq_len} (defaults) {precision}, tokens/s",
                     f"{r['chargen_tokens_per_s']:,.0f}", f"{r['baseline_tokens_per_s']:,.0f}",
                     f"{r['speedup']:.2f}x baseline ({precision} textbook loop)"))
        # The ceiling again after the rows, so both see the machine as it was around them.
        key = torch.bfloat16 if precision == "bf16" else torch.float32
        ceilings[precision] = max(ceilings[precision], matmul_gflops(key, repeats=2))
    results["matmul_gflops"] = ceilings
    best = max(ceilings.values())
    for precision, gflops in ceilings.items():
        rows.append((f"matmul 2048^2 {precision}, GFLOP/s", f"{gflops:,.1f}", "",
                     "best ceiling" if gflops == best else f"{gflops / best:.0%} of the best ceiling"))
    fp32_baseline = {r["cell"]: r["baseline_tokens_per_s"] for r in results["training"] if r["precision"] == "fp32"}
    layout = {r["precision"]: r["chargen_tokens_per_s"] for r in results["default_layout"]}
    if "bf16" in layout:
        rows.append(("train lstm defaults: chargen bf16 / chargen fp32", f"{layout['bf16'] / layout['fp32']:.2f}x", "",
                     "what --precision auto buys (or costs) at the default layout"))
    for r in results["training"]:
        r["fraction_of_best_ceiling"] = r["chargen_gflops"] / best
        note = f"{r['fraction_of_best_ceiling']:.0%} of the best ceiling"
        if r["precision"] != "fp32":
            r["speedup_over_fp32_baseline"] = r["chargen_tokens_per_s"] / fp32_baseline[r["cell"]]
            note += f"; {r['speedup_over_fp32_baseline']:.2f}x the fp32 textbook loop"
        rows.append((f"train {r['cell']} {r['precision']} effective GFLOP/s (6 x params x tok/s)",
                     f"{r['chargen_gflops']:,.1f}", "", note))

    results["sampling"] = []
    for precision in precisions_here:
        # One stream: long enough for generate()'s thread probe (stepthreads.PROBE_ABOVE_TOKENS),
        # so the row runs on the thread count a long sample gets.
        for streams, length in ((1, PROBE_ABOVE_TOKENS), (64, 100 if args.quick else 300)):
            r = bench_sampling(streams, length, repeats, precision)
            results["sampling"].append(r)
            note = f"{r['speedup']:.1f}x ({precision} textbook loop)"
            if "step_fraction" in r:
                note += f"; {1 - r['step_fraction']:.0%} outside the fused step ({r['step_threads']} thread(s))"
            rows.append((f"sample lstm 2x512 {precision}, {streams} stream{'s' * (streams > 1)}, chars/s",
                         f"{r['chargen_chars_per_s']:,.0f}", f"{r['baseline_chars_per_s']:,.0f}", note))
    results["cli_sampling"] = []
    with tempfile.TemporaryDirectory(prefix="chargen-bench-") as tmp:
        run_dir = make_sampling_checkpoint(Path(tmp))
        for precision in precisions_here:
            r = bench_cli_sampling(precision, run_dir, repeats)
            results["cli_sampling"].append(r)
            rows.append((f"chargen sample 2x512 {precision} via the CLI, 1 stream, chars/s", f"{r['chars_per_s']:,.0f}", "",
                         f"--length {CLI_LENGTH:,} minus --length {CLI_SHORT}"))

    if not args.quick:
        w = results["wait_policy"] = scale.bench_wait_policy()
        rows.append(("train lstm 2 threads, OpenMP wait: passive vs active", f"{w['passive_tokens_per_s']:,.0f}",
                     f"{w['active_tokens_per_s']:,.0f}",
                     f"{w['passive_tokens_per_s'] / max(w['active_tokens_per_s'], 1e-9):.2f}x; load avg {w['load_average']:.1f}"))

    sizes = [10] if args.quick else [10, 100]
    if args.scale_gb:
        sizes.append(1000)
    results["scale"] = scale.bench_scale(sizes)
    for r in results["scale"]:
        base = f"{r['baseline_s']:.2f}" if "baseline_s" in r else ""
        note = f"{r['mb'] / r['first_s']:.0f} MB/s first; peak RSS {r['peak_rss_mb']:,.0f} / {r['cached_peak_rss_mb']:,.0f} MB"
        if "baseline_s" in r:
            note += f" (baseline {r['baseline_peak_rss_mb']:,.0f} MB)"
        rows.append((f"load {r['mb']} MB corpus, s (first / cached)", f"{r['first_s']:.2f} / {r['cached_s']:.3f}", base, note))

    results["midi"] = scale.bench_midi(ROOT / "data")
    if results["midi"].get("skipped"):
        rows.append(("midi tokenize", "", "", results["midi"]["skipped"]))
    else:
        m = results["midi"]
        rows.append((f"midi tokenize {m['files']} files: files/s first / cached", f"{m['files_per_s']:,.1f} / {m['cached_files_per_s']:,.1f}",
                     "", f"{m['notes_per_s']:,.0f} notes/s first"))

    if args.processes:
        p = results["processes"] = scale.bench_processes(CORPUS)
        rows.append(("train defaults, 2 processes x 1 thread vs 1 x 2 threads, tokens/s", f"{p['two_processes_one_thread']:,.0f}",
                     f"{p['one_process_two_threads']:,.0f}",
                     f"{p['two_vs_one_ratio']:.2f}x; efficiency {p['efficiency']:.0%} of 2 x {p['one_process_one_thread']:,.0f} "
                     f"(1 x 1 thread); load avg {p['load_average']:.1f}"))

    if args.ttq:
        _ttq_rows(args, results, rows)
    return _finish(rows, info, results, args)


def _ttq_rows(args, results: dict, rows: list) -> None:
    """Time to quality: `chargen train` with the defaults (plus --ttq-args) for each budget."""
    extra = shlex.split(args.ttq_args) + ["--precision", args.ttq_precision]
    minutes = [float(m) for m in args.ttq_minutes.split(",")]
    results["time_to_quality"] = scale.bench_ttq(CORPUS, minutes, extra)
    label = "defaults" + (f" {args.ttq_args}" if args.ttq_args else "") + f", --precision {args.ttq_precision}"
    for r in results["time_to_quality"]:
        rows.append((f"val bits/char after {r['minutes']:g} min, {label}", f"{r['val_bits']:.3f}", "",
                     f"best {r['best_val_bits']:.3f}; {r['steps']} steps, {r['tokens_per_s']:,.0f} tok/s, "
                     f"{r['precision']}; load avg {r['load_average']:.1f}"))


def _finish(rows: list, info: dict, results: dict, args) -> dict:
    print_table(rows, info)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"figures written to {args.json}")
    return results


if __name__ == "__main__":
    main()
