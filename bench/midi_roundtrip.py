"""Measure MIDI -> tokens -> MIDI fidelity, one row per file.

    python bench/midi_roundtrip.py /work/shared/data/midi

Prints a Markdown table: notes as written, notes cut by the copy limit (or drum
hits merged), notes preserved (see chargen.midi.measure_roundtrip) and the
percentage; then the overall figure, the lowest file and how many files reach 99%.
"""

import sys
import time
from pathlib import Path

from chargen.errors import MidiError
from chargen.midi import MIDI_EXTENSIONS, measure_roundtrip


def main(folder: str) -> None:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in MIDI_EXTENSIONS)
    started = time.perf_counter()
    print("| file | notes | cut | preserved | % |")
    print("|---|---:|---:|---:|---:|")
    total = kept = at_target = 0
    lowest, lowest_name = 100.0, ""
    for path in paths:
        try:
            r = measure_roundtrip(path)
        except MidiError as e:
            print(f"| {path.name} | error: {e} | | | |")
            continue
        percent = 100.0 * r.preserved / r.notes
        if percent < lowest or not lowest_name:
            lowest, lowest_name = percent, path.name
        at_target += r.preserved >= 0.99 * r.notes
        total, kept = total + r.notes, kept + r.preserved
        print(f"| {path.name} | {r.notes} | {r.cut} | {r.preserved} | {percent:.2f} |")
    overall = 100.0 * kept / max(total, 1)
    print(f"\n{len(paths)} files, {total} notes, {kept} preserved ({overall:.2f}%),"
          f" lowest file {lowest:.2f}% ({lowest_name}), {at_target} files >= 99%,"
          f" {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/bach")
