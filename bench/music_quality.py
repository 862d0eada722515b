"""Music quality, note-off vocabulary (version 2) beside note durations (version 3), same budget, same seeds.

    python bench/music_quality.py                     # the issue 12 benchmark: 10 minutes of training each
    python bench/music_quality.py --steps 300         # a step budget, for a busy machine

For each vocabulary: train a model on data/bach with the default settings for
the budget (`chargen train`, in its own process), write --samples samples of
--seconds seconds with the same seed and temperature (`chargen sample`), and
compare them with the corpus (`chargen compare`). Prints one table with both
vocabularies side by side, then the issue 12 targets and whether each is met:

- notes longer than 4 s: at most twice the corpus's share;
- mean polyphony within 15% of the corpus's;
- pitch-class and note-duration overlap 0.95 or more;
- every file parses, no note without an end;
- validation bits per note (not per token) no worse than version 2's.

Beside them, a reference column: the first --seconds of --samples corpus files chosen at
random, through the same encoder and decoder, compared with the corpus the same way. That is
what music indistinguishable from the corpus scores at this sample size: the most a model
can be expected to reach (`--reference-only` prints just that column).

Runs, samples and reports go to --out (default bench/music-quality/, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chargen.data.compare import compare_files  # noqa: E402
from chargen.data.corpus import load_corpus  # noqa: E402
from chargen.music import midifile as midi
from chargen.music import vocabulary as miditokens
from chargen.training import checkpoint  # noqa: E402

VERSIONS = (2, miditokens.MIDI_VOCAB_VERSION)
LONG_SECONDS = 4.0  # the "notes longer than 4 s"
# A process that trains with a chosen vocabulary: new runs encode their corpus in
# miditokens.MIDI_VOCAB_VERSION, so the old vocabulary is trained by the same code path.
TRAIN_WITH_VERSION = ("import sys; import chargen.music.vocabulary as m; m.MIDI_VOCAB_VERSION = int(sys.argv.pop(1)); "
                      "from chargen.cli import main; sys.argv[0] = 'chargen'; main()")


def chargen(*args: str, version: int | None = None) -> None:
    """Run one chargen command in its own process (as a user would), failing loudly."""
    if version is None:
        command = [sys.executable, "-m", "chargen", *args]
    else:
        command = [sys.executable, "-c", TRAIN_WITH_VERSION, str(version), *args]
    subprocess.run(command, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), **_env()})


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def hanging_notes(path: Path) -> int:
    """Note-ons that no note-off (or velocity-0 note-on) on their track, channel and key ever ends,
    read with mido directly rather than through chargen, which would close them."""
    import mido

    hanging = 0
    for track in mido.MidiFile(path).tracks:
        sounding: dict[tuple[int, int], int] = {}
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)] = sounding.get((msg.channel, msg.note), 0) + 1
            elif msg.type in ("note_on", "note_off") and sounding.get((msg.channel, msg.note)):
                sounding[(msg.channel, msg.note)] -= 1
        hanging += sum(sounding.values())
    return hanging


def long_note_share(files, seconds: float) -> float:
    durations = [n.end_s - n.start_s for f in files for n in midi.piano_roll(midi.read_midi(f)) if not n.is_drum]
    return sum(d > seconds for d in durations) / max(len(durations), 1)


def bits_per_note(run: Path, corpus: str, version: int) -> float:
    """Best validation bits per token over the validation notes (a note: one onset token), as training reports it."""
    from chargen.training.run import bits_per_note as per_note

    payload = checkpoint.load(run / checkpoint.BEST)
    config = payload["train_config"]
    data = load_corpus([corpus], val_frac=config["val_frac"], vocab=miditokens.midi_vocab(version))
    return per_note(payload["state"]["best_val"], data.val, data.vocab, config["batch_size"])


def measure(version: int, args) -> dict:
    """Train, sample and compare one vocabulary; the figures of its column."""
    run = args.out / f"v{version}"
    budget = ["--steps", str(args.steps)] if args.steps else ["--minutes", str(args.minutes)]
    chargen("train", args.corpus, *budget, "--seed", str(args.seed), "--out", str(run), "--force", version=version)
    takes = run / "takes"
    chargen("sample", str(run), "--seconds", str(args.seconds), "--num-samples", str(args.samples), "--seed",
            str(args.seed), "--temp", str(args.temp), "--out", str(takes / "take.mid"))
    files = sorted(takes.glob("take-*.mid")) if args.samples > 1 else [takes / "take.mid"]
    parsed = hanging = 0
    for f in files:  # every file parses, and mido finds an off for every on
        midi.read_midi(f)
        parsed += 1
        hanging += hanging_notes(f)
    report = compare_files([str(takes)], [args.corpus])
    (args.out / f"compare-v{version}.json").write_text(json.dumps(report, indent=2))
    features = {f["name"]: f for f in report["features"]}
    return {
        "report": report,
        "features": features,
        "parsed": f"{parsed} of {len(files)}",
        "hanging": hanging,
        "long": long_note_share(files, LONG_SECONDS),
        "bits_per_note": bits_per_note(run, args.corpus, version),
        "steps": checkpoint.load(run / checkpoint.LAST)["state"]["step"],
    }


def reference(args) -> dict:
    """The yardstick: args.samples corpus files chosen at random (seeded), the first args.seconds
    of each through the same encoder and decoder a sample goes through, compared with the
    corpus like the samples. A model that wrote music indistinguishable from its corpus would
    score about this, so it is the most any column can be expected to reach at this sample size."""
    files = sorted(str(p) for p in Path(args.corpus).rglob("*.mid"))
    chosen = random.Random(args.seed).sample(files, min(args.samples, len(files)))
    takes = args.out / "reference"
    takes.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(chosen):
        midi.write_midi(midi.decode_tokens(midi.read_prime(f, args.seconds)), takes / f"excerpt-{i + 1:02d}.mid")
    report = compare_files([str(takes)], [args.corpus])
    (args.out / "compare-reference.json").write_text(json.dumps(report, indent=2))
    excerpts = sorted(takes.glob("excerpt-*.mid"))
    return {"report": report, "features": {f["name"]: f for f in report["features"]},
            "long": long_note_share(excerpts, LONG_SECONDS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/bach")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per vocabulary")
    parser.add_argument("--steps", type=int, help="a step budget instead of --minutes")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--temp", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "music-quality")
    parser.add_argument("--reference-only", action="store_true",
                        help="only the corpus excerpts against the corpus: the yardstick, in about a minute")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    ref = reference(args)
    corpus_files = sorted(str(p) for p in Path(args.corpus).rglob("*.mid"))
    corpus_long = long_note_share(corpus_files, LONG_SECONDS)
    print(f"\n{args.corpus}; reference: the first {args.seconds:g} s of {args.samples} corpus files "
          f"(seed {args.seed}), through chargen's encoder and decoder")
    if args.reference_only:
        print_table({"reference (corpus excerpts)": ref}, corpus_long)
        return
    results = {version: measure(version, args) for version in VERSIONS}
    old, new = results[VERSIONS[0]], results[VERSIONS[1]]
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    print(f"{budget} of training each (defaults), {args.samples} samples x {args.seconds:g} s, "
          f"seed {args.seed}, temperature {args.temp}\n")
    print_table({"reference (corpus excerpts)": ref, f"v{VERSIONS[0]} (note-off)": old,
                 f"v{VERSIONS[1]} (durations)": new}, corpus_long)
    print(f"| validation bits per note | | | {old['bits_per_note']:.3f} | {new['bits_per_note']:.3f} |")
    print(f"| files that parse | | | {old['parsed']} | {new['parsed']} |")
    print(f"| notes without an end | | | {old['hanging']} | {new['hanging']} |")
    print(f"| training steps | | | {old['steps']} | {new['steps']} |")

    poly = new["features"]["polyphony"]
    checks = [
        ("notes longer than 4 s at most twice the corpus's share", new["long"] <= 2 * corpus_long),
        ("mean polyphony within 15% of the corpus's",
         abs(poly["generated"]["mean"] - poly["corpus"]["mean"]) <= 0.15 * poly["corpus"]["mean"]),
        ("pitch-class overlap >= 0.95", new["features"]["pitch class"]["overlap"] >= 0.95),
        ("note-duration overlap >= 0.95", new["features"]["note duration"]["overlap"] >= 0.95),
        ("every file parses, no note without an end",
         new["parsed"].split()[0] == new["parsed"].split()[-1] and new["hanging"] == 0),
        ("bits per note no worse than version 2's", new["bits_per_note"] <= old["bits_per_note"] + 1e-9),
    ]
    print("\ntargets (version 3):")
    for text, met in checks:
        print(f"  {'met ' if met else 'MISS'}  {text}")
    if any(math.isnan(r["bits_per_note"]) for r in results.values()):
        print("  (a validation figure is missing: the budget ended before the first validation)")


def print_table(columns: dict, corpus_long: float) -> None:
    """One markdown table: the corpus, then each column's statistics and overlaps."""
    names = list(columns)
    first = columns[names[0]]["features"]
    print("| figure | corpus | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for name in first:
        c = first[name]["corpus"]
        corpus = "–" if c["mean"] is None else f"{c['mean']:.3g} ± {c['spread']:.3g}"
        cells = []
        for r in columns.values():
            f = r["features"][name]
            stats = "" if f["generated"]["mean"] is None else f"{f['generated']['mean']:.3g} ± {f['generated']['spread']:.3g}, "
            cells.append(f"{stats}overlap {f['overlap']:.3f}")
        print(f"| {name} | {corpus} | " + " | ".join(cells) + " |")
    print(f"| notes longer than {LONG_SECONDS:g} s | {100 * corpus_long:.2f}% | "
          + " | ".join(f"{100 * r['long']:.2f}%" for r in columns.values()) + " |")
    print("| notes over the corpus's 99.9th percentile | 0.1% | "
          + " | ".join(f"{100 * r['report']['long_notes']['generated_share']:.2f}%" for r in columns.values()) + " |")
    print("| longest run copied from the corpus | | "
          + " | ".join(f"{r['report']['longest_copied_run']['notes']} notes" for r in columns.values()) + " |")

if __name__ == "__main__":
    main()
