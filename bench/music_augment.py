"""Music augmentation, measured: Bach trained with and without --augment at equal steps, side by side.

    python bench/music_augment.py --steps 2200                  # trains none and transpose, samples, compares
    python bench/music_augment.py --steps 2200 --augment none --augment tempo
    python bench/music_augment.py --run none=RUN --run transpose=RUN   # runs trained already

Each --augment setting trains in its own process on one torch thread, all at once, so
that on a shared machine they see the same load and stop at the same step. Then, for
each run: the final validation bits per token and per note, the training set scored
as it is (untransposed) for an honest train-validation gap, and --samples samples of
--seconds seconds at each --temp, compared with the corpus (`chargen compare`) beside
the reference column of bench/music_quality.py (corpus excerpts against the corpus).
Prints one markdown table per temperature. Runs, samples and reports go to --out
(default bench/music-augment/, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.music_quality import LONG_SECONDS, long_note_share, print_table, reference  # noqa: E402
from chargen.data.compare import compare_files  # noqa: E402
from chargen.data.corpus import load_corpus  # noqa: E402
from chargen.training import checkpoint  # noqa: E402
from chargen.training.run import bits_per_note  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def chargen(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)} | ONE_THREAD
    return subprocess.Popen([sys.executable, "-m", "chargen", *args], cwd=ROOT, env=env)


def wait_all(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.wait() != 0:
            raise SystemExit(f"a chargen process failed: {p.args}")


def scores(run: Path, corpus: str) -> dict:
    """Final validation (per token and per note), and the whole training split scored as it is."""
    import chargen as api
    from chargen.training.validation import evaluate

    payload = checkpoint.load(run / checkpoint.LAST)
    config = payload["train_config"]
    model = api.load(run / checkpoint.LAST)
    data = load_corpus([corpus], val_frac=config["val_frac"], vocab=model.vocab)
    val = payload["state"]["history"][-1][2]
    train = evaluate(model.network, data.train, config["batch_size"], config["seq_len"], precision=model.precision)
    return {"val": val, "train": train, "per_note": bits_per_note(val, data.val, data.vocab, config["batch_size"], config["seq_len"],
                                                                      config["eval_tokens"]),
            "steps": payload["state"]["step"], "augment": config.get("augment", "none")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/bach")
    parser.add_argument("--steps", type=int, default=2200, help="training steps per run (about 10 minutes on one thread)")
    parser.add_argument("--augment", action="append", help="settings to train (default: none and transpose)")
    parser.add_argument("--run", action="append", help="NAME=RUN: a run trained already (no training)")
    parser.add_argument("--train-args", default="", help="more `chargen train` options for every run")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--temp", type=float, action="append", help="temperatures (default 0.8 and 1.0)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "music-augment")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    temps = args.temp or [0.8, 1.0]

    if args.run:
        runs = {name: Path(path) for name, path in (r.split("=", 1) for r in args.run)}
    else:
        runs = {a: args.out / a for a in (args.augment or ["none", "transpose"])}
        wait_all([chargen("train", args.corpus, "--steps", str(args.steps), "--augment", a, "--seed", "1111",
                          "--out", str(run), "--force", *args.train_args.split()) for a, run in runs.items()])
    for temp in temps:  # two at a time: one process per run
        wait_all([chargen("sample", str(run), "--seconds", str(args.seconds), "--num-samples", str(args.samples),
                          "--seed", str(args.seed), "--temp", str(temp), "--out", str(run / f"takes-{temp}" / "take.mid"))
                  for run in runs.values()])

    ref_args = argparse.Namespace(corpus=args.corpus, samples=args.samples, seconds=args.seconds, seed=1, out=args.out)
    ref = reference(ref_args)
    corpus_long = long_note_share(sorted(str(p) for p in Path(args.corpus).rglob("*.mid")), LONG_SECONDS)
    figures = {name: scores(run, args.corpus) for name, run in runs.items()}
    print(f"\n{args.corpus}, {args.samples} samples x {args.seconds:g} s (seed {args.seed}); "
          f"reference: the first {args.seconds:g} s of {args.samples} corpus files")
    print("\n| run | augment | steps | validation bits/token | training set bits/token | gap | validation bits/note |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, f in figures.items():
        print(f"| {name} | {f['augment']} | {f['steps']:,} | {f['val']:.4f} | {f['train']:.4f} | "
              f"{f['val'] - f['train']:.4f} | {f['per_note']:.4f} |")
    for temp in temps:
        columns = {"reference (corpus excerpts)": ref}
        for name, run in runs.items():
            takes = run / f"takes-{temp}"
            report = compare_files([str(takes)], [args.corpus])
            (args.out / f"compare-{name}-{temp}.json").write_text(json.dumps(report, indent=2))
            columns[f"{name}, temp {temp}"] = {"report": report, "features": {f["name"]: f for f in report["features"]},
                                               "long": long_note_share(sorted(takes.glob("*.mid")), LONG_SECONDS)}
        print(f"\ntemperature {temp}:\n")
        print_table(columns, corpus_long)


if __name__ == "__main__":
    main()
