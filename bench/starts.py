"""How well models start: training variants side by side at equal steps, judged from the start state.

    python bench/starts.py --steps 900                                 # PyTorch's init against the old +1 bias
    python bench/starts.py --steps 4100 --variant default --variant lr=5e-3 --variant dropout=0.1
    python bench/starts.py --corpus data/bach --steps 2200 --seed 2

Each variant trains in its own process on one torch thread, all at once, so that on a shared
machine they see the same load and every comparison is at equal steps:
`chargen.train(CORPUS, steps=STEPS, seed=SEED, eval_every=500, **options)`. A variant is
`default`, `+1bias` (the LSTM forget-gate bias of +1 that chargen had until 2026-12-04, put
back after PyTorch's own initialization: the same random draws, so the runs differ by it alone),
or `key=value,key=value` options of `chargen.train`.

Then, for each run, from its metrics.jsonl: the last validation, the best one (best.pt) and
best.pt's cold-start figure (held-out passages read from the start state, as a sample
begins); and for a text corpus, how many of 20 samples from the start state (seeds 1-20,
temperature 0.8, 400 characters) are noise under the corpus's own character-bigram model (over
6 bits/char; the yardstick of tests/test_outcomes.py, where text scores 3.2-4.0). One markdown
table, each figure also as the difference from the first variant. Runs go to --out (default
bench/starts/, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NOISE_BITS = 6.0
SAMPLE_SEEDS = range(1, 21)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(ROOT / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--variant", action="append", help="default, +1bias or key=value,... (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "starts")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train(args.corpus, args.steps, args.seed, *args.child)
        return
    variants = args.variant or ["default", "+1bias"]
    runs = {v: args.out / f"{Path(args.corpus).stem}-{args.steps}-s{args.seed}-{slug(v)}" for v in variants}
    env = os.environ | {"PYTHONPATH": str(ROOT)} | ONE_THREAD
    children = [subprocess.Popen([sys.executable, __file__, "--corpus", args.corpus, "--steps", str(args.steps),
                                  "--seed", str(args.seed), "--child", v, str(run)], env=env) for v, run in runs.items()]
    if any(child.wait() for child in children):
        raise SystemExit("a training run failed")
    rows = {v: judge(run, args.corpus) for v, run in runs.items()}
    print_table(rows, f"{args.corpus}, {args.steps} steps, seed {args.seed}")


def train(corpus: str, steps: int, seed: int, variant: str, run: str) -> None:
    """One training run in this process (one thread), with the variant applied."""
    import torch

    torch.set_num_threads(1)
    import chargen

    if variant == "+1bias":
        put_back_forget_gate_bias()
    chargen.train(corpus, out=run, steps=steps, seed=seed, eval_every=500, progress=False, force=True, **options(variant))


def options(variant: str) -> dict:
    if variant in ("default", "+1bias"):
        return {}
    pairs = (item.split("=", 1) for item in variant.split(","))
    return {key: json.loads(value) for key, value in pairs}


def put_back_forget_gate_bias() -> None:
    """CharRNN as it was until 2026-12-04: each LSTM layer's two forget-gate bias slices at 0.5 (+1 in all)."""
    import torch

    from chargen import model

    original = model.CharRNN.__init__

    def init(self, config):
        original(self, config)
        if config.cell == "lstm":
            size = config.hidden_size
            with torch.no_grad():
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias"):
                        param[size : 2 * size].fill_(0.5)

    model.CharRNN.__init__ = init


def judge(run: Path, corpus: str) -> dict:
    """The run's last and best validation, best.pt's cold-start figure and (text) its noisy samples."""
    import torch

    torch.set_num_threads(1)
    import chargen
    from chargen.training import metrics

    rows = [row for row in metrics.read(run) if row.get("val_bits") is not None]
    best = min(rows, key=lambda row: row["val_bits"])
    figures = {"val": rows[-1]["val_bits"], "best": best["val_bits"], "cold": best.get("cold_bits")}
    model = chargen.load(run)
    if model.kind == "text":
        text = Path(corpus).read_text(encoding="utf-8")
        yardstick = Bigram(text[: int(len(text) * 0.9)])
        samples = [model.generate(length=400, temperature=0.8, seed=seed) for seed in SAMPLE_SEEDS]
        figures["noisy"] = sum(yardstick.bits("\n" + sample) > NOISE_BITS for sample in samples)
    return figures


class Bigram:
    """Bits per character under a corpus's character-bigram model (add-0.1 smoothing)."""

    def __init__(self, text: str):
        self.pairs, self.firsts, self.size = Counter(zip(text, text[1:])), Counter(text[:-1]), len(set(text))

    def bits(self, text: str) -> float:
        costs = [-math.log2((self.pairs[a, b] + 0.1) / (self.firsts[a] + 0.1 * self.size)) for a, b in zip(text, text[1:])]
        return sum(costs) / len(costs)


def print_table(rows: dict, title: str) -> None:
    base = next(iter(rows.values()))
    keys = [key for key in ("val", "best", "cold", "noisy") if key in base]
    print(f"\n{title}\n")
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for variant, figures in rows.items():
        cells = []
        for key in keys:
            value = figures.get(key)
            if value is None:
                cells.append("-")
            elif key == "noisy":
                cells.append(f"{value} of {len(SAMPLE_SEEDS)}")
            else:
                difference = "" if figures is base else f" ({value - base[key]:+.3f})"
                cells.append(f"{value:.3f}{difference}")
        print(f"| {variant} | " + " | ".join(cells) + " |")


def slug(variant: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in variant)


if __name__ == "__main__":
    main()
