"""chargen's benchmark suite: every figure measured side by side with its baseline, in one run.

    python bench/run.py --quick            # a few minutes: throughput, sampling, 10 MB scale
    python bench/run.py                    # more repeats, 100 MB scale
    python bench/run.py --ttq --scale-gb   # plus time to quality (2 + 5 + 10 min) and a 1 GB corpus
    python bench/run.py --quick --processes  # plus 1 process x 2 threads vs 2 processes x 1 thread (torchrun)

Prints one table and writes the same figures to bench/results.json (git-ignored).
The machine may be shared: every comparison interleaves its repeats (chargen,
baseline, chargen, ...) and keeps each side's best, so both sides see the same
conditions. Rows are ratios first; absolute numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import chargen  # noqa: E402,F401
import torch  # noqa: E402
from bench import baseline, scale  # noqa: E402
from chargen.model import CharRNN, ModelConfig  # noqa: E402
from chargen.sample import PARALLEL_STREAMS, FusedStep, SampleConfig, _num_threads, generate  # noqa: E402
from chargen.train import TrainConfig, TrainState, train  # noqa: E402

CORPUS = ROOT / "data" / "tinyshakespeare.txt"
SHAPE = dict(num_layers=2, hidden_size=512, embed_dim=64, dropout=0.1)  # the throughput rows' model
BATCH, SEQ = 64, 128


# -- the machine's limit ------------------------------------------------------------------


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n matrix product: what this CPU can do at best.

    Two libraries are tried: MKL (torch.mm) and oneDNN (the kernels behind nn.LSTM on CPU).
    On AMD CPUs MKL takes a slower code path, and oneDNN is up to 2x faster, so the
    ceiling is the better of the two.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    candidates = [lambda: torch.mm(a, b, out=out)]
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        candidates.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    best = math.inf
    for fn in candidates:
        fn()
        best = min([best] + [_timed(fn) for _ in range(repeats)])
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- 1. training throughput ---------------------------------------------------------------


def chargen_steps(model, optimizer, ids, state, steps: int) -> list[float]:
    """Seconds per step of chargen.train.train() itself, over `steps` more steps."""
    config = TrainConfig(batch_size=BATCH, seq_len=SEQ, steps=state.step + steps, eval_every=10**9, warmup=1)
    stamps = [time.perf_counter()]
    train(model, optimizer, ids, ids[:0], config, state, lambda event, info: event == "step" and stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def bench_training(cell: str, ids: torch.Tensor, vocab_size: int, repeats: int, steps: int, ceiling: list) -> dict:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=vocab_size, cell=cell, **SHAPE))
    from chargen.run import make_optimizer

    optimizer = make_optimizer(model, TrainConfig())
    state = TrainState()
    base = baseline.BaselineRNN(vocab_size, cell, **SHAPE)
    base_step = baseline.make_train_step(base)
    streams = ids[: len(ids) // BATCH * BATCH].view(BATCH, -1).long()
    window = lambda i: (streams[:, i * SEQ : (i + 1) * SEQ], streams[:, i * SEQ + 1 : (i + 1) * SEQ + 1])  # noqa: E731
    chargen_steps(model, optimizer, ids, state, 1)  # warm-up: first-call allocations, oneDNN primitive creation
    base_step(*window(0))
    ours, theirs = [], []
    for r in range(repeats):
        ours += chargen_steps(model, optimizer, ids, state, steps)
        theirs += [_timed(lambda: base_step(*window(r * steps + s + 1))) for s in range(steps)]
        ceiling.append(matmul_gflops(repeats=2))
    tokens = BATCH * SEQ
    flops_per_token = 6 * model.num_parameters(embedding=False)
    ours_tps, theirs_tps = tokens / min(ours), tokens / min(theirs)
    return {
        "cell": cell,
        "chargen_tokens_per_s": ours_tps,
        "baseline_tokens_per_s": theirs_tps,
        "median_chargen_tokens_per_s": tokens / statistics.median(ours),
        "median_baseline_tokens_per_s": tokens / statistics.median(theirs),
        "speedup": ours_tps / theirs_tps,
        "chargen_gflops": flops_per_token * ours_tps / 1e9,
        "non_embedding_params": model.num_parameters(embedding=False),
    }


# -- 3. sampling speed --------------------------------------------------------------------


def bench_sampling(streams: int, length: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=65, **SHAPE)).eval()
    base = baseline.BaselineRNN(65, "lstm", **SHAPE).eval()
    prime = torch.tensor([0])
    config = SampleConfig(length=length, num_samples=streams)
    base_length = max(8, length // 8)  # the naive loop is slow; fewer steps give the same rate
    ours, theirs = [], []
    for r in range(repeats):
        ours.append(_timed(lambda: list(generate(model, prime, config, torch.Generator().manual_seed(r)))) / length)
        theirs.append(_timed(lambda: baseline.sample(base, prime, base_length, streams)) / base_length)
    # Where the loop's time goes: the matrix products alone (same shapes, same count), the
    # fused step (products + gate math), and the whole loop (+ drawing tokens, yielding).
    threads = 1 if streams < PARALLEL_STREAMS else torch.get_num_threads()  # as generate() does
    with torch.inference_mode(), _num_threads(threads):
        _, hidden = model(prime.view(1, 1).expand(streams, 1), model.init_hidden(streams))
        step = FusedStep(model, hidden)
        ids = torch.zeros(streams, dtype=torch.long)
        products = _products(step, ids)
        matmul_s = min(_timed(lambda: [products() for _ in range(length)]) for _ in range(repeats)) / length
        step_s = min(_timed(lambda: [step(ids) for _ in range(length)]) for _ in range(repeats)) / length
    loop_s = min(ours)
    return {
        "streams": streams,
        "chargen_chars_per_s": streams / loop_s,
        "baseline_chars_per_s": streams / min(theirs),
        "speedup": min(theirs) / loop_s,
        "matmul_fraction": matmul_s / loop_s,
        "step_fraction": step_s / loop_s,
        "outside_arithmetic_fraction": 1 - matmul_s / loop_s,
    }


def _products(step: FusedStep, ids: torch.Tensor):
    """Just the matrix products of one FusedStep call, into scratch buffers."""
    B = ids.shape[0]
    gates, logits = step.gates.clone(), step.logits.clone()
    h = step.h[0].clone()

    def run():
        for layer, (w_in, b_in, w_hh, _) in enumerate(step.layers):
            if layer == 0:
                torch.index_select(w_in, 0, ids, out=gates)
            else:
                torch.addmm(b_in, h, w_in, out=gates)
            gates.addmm_(h, w_hh)
        torch.addmm(step.head_b, h[:B], step.head_w, out=logits)

    return run


# -- the table ----------------------------------------------------------------------------


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
        "command": " ".join(["python"] + sys.argv),
    }


def print_table(rows: list[tuple[str, str, str, str]], info: dict) -> None:
    print(f"chargen benchmarks on {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
          f"({info['threads']} threads), load average {info['load_average_at_start']:.1f} at start")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 10 MB scale row only")
    parser.add_argument("--ttq", action="store_true", help="also train with the defaults for 2, 5 and 10 minutes (17 min)")
    parser.add_argument("--ttq-minutes", default="2,5,10", help="budgets for --ttq, comma-separated")
    parser.add_argument("--scale-gb", action="store_true", help="also load a 1 GB generated corpus")
    parser.add_argument("--processes", action="store_true",
                        help="also train 1 process x 2 threads vs 2 processes x 1 thread under torchrun (a few minutes)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    repeats, steps = (2, 2) if args.quick else (4, 3)
    info = machine()
    results: dict = {"machine": info}
    rows = [("figure", "chargen", "baseline", "ratio / note")]

    from chargen.corpus import load_corpus

    corpus = load_corpus([str(CORPUS)])
    ceiling = [matmul_gflops()]
    results["training"] = []
    for cell in ("lstm", "gru"):
        r = bench_training(cell, corpus.train, len(corpus.vocab), repeats, steps, ceiling)
        results["training"].append(r)
        rows.append((f"train {cell} 2x512 b{BATCH} t{SEQ}, tokens/s", f"{r['chargen_tokens_per_s']:,.0f}",
                     f"{r['baseline_tokens_per_s']:,.0f}", f"{r['speedup']:.2f}x baseline"))
    peak = max(ceiling)
    results["matmul_gflops"] = peak
    rows.append(("matmul 2048^2 fp32 (MKL or oneDNN), GFLOP/s = ceiling", f"{peak:,.1f}", "", "best of the run"))
    for r in results["training"]:
        r["fraction_of_ceiling"] = r["chargen_gflops"] / peak
        rows.append((f"train {r['cell']} effective GFLOP/s (6 x params x tok/s)", f"{r['chargen_gflops']:,.1f}", "",
                     f"{r['fraction_of_ceiling']:.0%} of ceiling"))

    results["sampling"] = []
    for streams, length in ((1, 300 if args.quick else 1000), (64, 100 if args.quick else 300)):
        r = bench_sampling(streams, length, repeats)
        results["sampling"].append(r)
        rows.append((f"sample lstm 2x512, {streams} stream{'s' * (streams > 1)}, chars/s", f"{r['chargen_chars_per_s']:,.0f}",
                     f"{r['baseline_chars_per_s']:,.0f}",
                     f"{r['speedup']:.1f}x; {r['outside_arithmetic_fraction']:.0%} outside matmuls"))

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
        results["time_to_quality"] = scale.bench_ttq(CORPUS, [float(m) for m in args.ttq_minutes.split(",")])
        for r in results["time_to_quality"]:
            rows.append((f"val bits/char after {r['minutes']:g} min, defaults", f"{r['val_bits']:.3f}", "",
                         f"{r['steps']} steps; load avg {r['load_average']:.1f}"))

    print_table(rows, info)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"figures written to {args.json}")
    return results


if __name__ == "__main__":
    main()
