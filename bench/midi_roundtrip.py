"""Measure MIDI -> tokens -> MIDI fidelity, one row per file.

    python bench/midi_roundtrip.py /work/shared/data/midi

Prints a Markdown table: notes as written, notes of nested same-pitch overlaps
re-paired first in, first out, notes cut by the copy limit, notes preserved (see chargen.midi.measure_roundtrip) and the
percentage; then the minimum and the overall figure.
"""

import sys
import time
from pathlib import Path

from chargen.errors import MidiError
from chargen.midi import MIDI_EXTENSIONS, measure_roundtrip


def main(folder: str) -> None:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in MIDI_EXTENSIONS)
    started = time.perf_counter()
    print("| file | notes | re-paired | cut | preserved | % |")
    print("|---|---:|---:|---:|---:|---:|")
    total = kept = 0
    lowest = 100.0
    for path in paths:
        try:
            r = measure_roundtrip(path)
        except MidiError as e:
            print(f"| {path.name} | error: {e} | | | |")
            continue
        percent = 100.0 * r.preserved / r.notes
        lowest = min(lowest, percent)
        total, kept = total + r.notes, kept + r.preserved
        print(f"| {path.name} | {r.notes} | {r.repaired} | {r.cut} | {r.preserved} | {percent:.2f} |")
    overall = 100.0 * kept / max(total, 1)
    print(f"\n{len(paths)} files, {total} notes, {kept} preserved ({overall:.2f}%),"
          f" lowest file {lowest:.2f}%, {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/bach")
