"""Training tokens/s of the default model at several batch x window layouts, interleaved.

    python bench/layouts.py                       # bf16 where it works, and fp32
    python bench/layouts.py --layouts 16x64,64x128 --repeats 5

Why the default layout is 16 x 64: in a budget of minutes, the number of updates matters
most (docs/benchmarks.md), so a bigger batch pays only when it also processes more
tokens per second. This prints, for each precision, chargen's own train() step at each
layout (median of the interleaved repeats) and its tokens/s as a ratio to the default
layout's, measured in the same run. A ratio near 1.0 for a bigger batch means it buys
no throughput here, only fewer updates; on a CPU with AMX a bigger batch may run much
faster per token, and then this is the table that says so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.run import CORPUS, SHAPE, chargen_steps, machine  # noqa: E402
from chargen import precision as precisions  # noqa: E402
from chargen.data.corpus import load_corpus  # noqa: E402
from chargen.model import CharRNN, ModelConfig  # noqa: E402
from chargen.training.loop import TrainConfig, TrainState  # noqa: E402
from chargen.training.run import make_optimizer  # noqa: E402

DEFAULT = (TrainConfig.batch_size, TrainConfig.seq_len)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="16x64,8x64,32x64,16x128,32x32,64x128", help="batch x window, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per layout per round")
    args = parser.parse_args(argv)
    layouts = [tuple(int(n) for n in text.split("x")) for text in args.layouts.split(",")]
    if DEFAULT not in layouts:
        layouts.insert(0, DEFAULT)
    info = machine()
    print(f"{info['cpu']} ({', '.join(info['bf16_flags']) or 'no bf16 flags'}), {info['threads']} threads, torch {info['torch']}")
    corpus = load_corpus([str(CORPUS)])
    ids = corpus.train
    for precision in ["fp32"] + (["bf16"] if precisions.bf16_support("cpu")[1] else []):
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=len(corpus.vocab), **(SHAPE | {"dropout": 0.2})))  # the default dropout here
        optimizer = make_optimizer(model, TrainConfig())
        states = {layout: TrainState() for layout in layouts}  # each carries its own layout's hidden state
        seconds: dict[tuple[int, int], list[float]] = {layout: [] for layout in layouts}
        for layout in layouts:  # warm-up: oneDNN builds its primitives for each shape once
            chargen_steps(model, optimizer, ids, states[layout], 1, precision, *layout)
        for _ in range(args.repeats):
            for layout in layouts:
                seconds[layout] += chargen_steps(model, optimizer, ids, states[layout], args.steps, precision, *layout)
        rate = {(b, t): b * t / statistics.median(seconds[(b, t)]) for b, t in layouts}
        print(f"\n{precision}: layout, ms per step, tokens/s, tokens/s against {DEFAULT[0]}x{DEFAULT[1]}")
        for b, t in layouts:
            ms = 1000 * statistics.median(seconds[(b, t)])
            print(f"  {b:>3} x {t:<4} {ms:8.1f} {rate[(b, t)]:10,.0f} {rate[(b, t)] / rate[DEFAULT]:8.2f}x")


if __name__ == "__main__":
    main()
