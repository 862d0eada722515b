"""Measure MIDI -> tokens -> MIDI fidelity and token cost, one row per file.

    python bench/midi_roundtrip.py FOLDER [--version N] [--compare-version N]

FOLDER defaults to data/bach. Prints a Markdown table: notes as written, notes
cut by the copy limit (or drum hits merged), notes preserved (see
chargen.roundtrip.measure_roundtrip), the percentage, and tokens per note; then
the overall figures: the lowest file, how many files reach 99%, tokens per note
and tokens per second of music. With --compare-version, the token cost of that
vocabulary version on the same files is printed beside it.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from chargen.errors import MidiError  # noqa: E402
from chargen.music.roundtrip import measure_roundtrip  # noqa: E402
from chargen.music.vocabulary import (
    MIDI_VOCAB_VERSION,  # noqa: E402
    has_midi_extension,  # noqa: E402
)


def percent(part: int, whole: int) -> str:
    """A percentage with two decimals that never rounds a loss up to 100.00."""
    value = 100.0 * part / max(whole, 1)
    return "100.00" if part == whole else f"{min(value, 99.99):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="data/bach")
    parser.add_argument("--version", type=int, default=MIDI_VOCAB_VERSION, help="vocabulary version to measure")
    parser.add_argument("--compare-version", type=int, help="also count tokens under this version")
    args = parser.parse_args()

    paths = sorted(p for p in Path(args.folder).iterdir() if has_midi_extension(p))
    print("| file | notes | cut | preserved | % | tokens/note |")
    print("|---|---:|---:|---:|---:|---:|")
    total = kept = at_target = tokens = other_tokens = 0
    seconds = 0.0
    lowest, lowest_name = None, ""
    for path in paths:
        try:
            r = measure_roundtrip(path, args.version)
            other = measure_roundtrip(path, args.compare_version) if args.compare_version else None
        except MidiError as e:
            print(f"| {path.name} | error: {e} | | | | |")
            continue
        share = r.preserved / r.notes
        if lowest is None or share < lowest[0]:
            lowest, lowest_name = (share, r), path.name
        at_target += r.preserved >= 0.99 * r.notes
        total, kept, tokens, seconds = total + r.notes, kept + r.preserved, tokens + r.tokens, seconds + r.seconds
        other_tokens += other.tokens if other else 0
        print(f"| {path.name} | {r.notes} | {r.cut} | {r.preserved} | {percent(r.preserved, r.notes)} "
              f"| {r.tokens / r.notes:.2f} |")
    print(f"\nvocabulary version {args.version}: {len(paths)} files, {total:,} notes, {kept:,} preserved "
          f"({percent(kept, total)}%), lowest file {percent(lowest[1].preserved, lowest[1].notes)}% "
          f"({lowest_name}), {at_target} of {len(paths)} files >= 99%")
    print(f"{tokens:,} tokens: {tokens / total:.3f} tokens per note, {tokens / seconds:.2f} tokens per second "
          f"of music ({seconds:,.0f} s)")
    if args.compare_version:
        print(f"version {args.compare_version} on the same files: {other_tokens:,} tokens, "
              f"{other_tokens / total:.3f} tokens per note, {other_tokens / seconds:.2f} tokens per second "
              f"(version {args.version} uses {tokens / other_tokens:.3f}x as many)")


if __name__ == "__main__":
    main()
