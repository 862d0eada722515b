"""metrics.jsonl: one JSON object per validation, in a run directory.

    {"step": 500, "epoch": 0.51, "train_bits": 2.41, "val_bits": 2.38, "val_all_bits": null,
     "cold_bits": 2.47, "lr": 0.0029, "tokens_per_s": 6344.1, "elapsed_s": 161.2}

val_bits is scored on the same held-out tokens at every validation (chargen.training.validation),
val_all_bits on all of them at the run's last validation (null before), cold_bits from the
start state.

A run appends a row at each validation (chargen/training/run.py), a resumed run drops
the rows after its checkpoint, and the server and `chargen info` read the curve back.
A line cut short by a kill is skipped when read.
"""

from __future__ import annotations

import json
from pathlib import Path

from chargen.atomic import atomic_write
from chargen.errors import TrainingError

METRICS = "metrics.jsonl"


def start(directory: Path) -> None:
    """Create an empty metrics.jsonl in a new run directory."""
    _write(Path(directory) / METRICS, "", "w")


def append(directory: Path, row: dict) -> None:
    """Add one validation's row."""
    _write(Path(directory) / METRICS, json.dumps(row) + "\n", "a")


def truncate(directory: Path, step: int) -> None:
    """Drop rows written after the checkpoint we resume from (a run killed between saves),
    and any half-written last line (killed while appending)."""
    path = Path(directory) / METRICS
    if path.is_file():
        rows = [json.dumps(row) + "\n" for row in read(directory) if row.get("step", 0) <= step]
        try:
            with atomic_write(path, "w") as f:  # rewrite by rename: a kill here loses no rows
                f.write("".join(rows))
        except OSError as e:
            raise TrainingError(f"could not write {path}: {e.strerror or e}; the last checkpoint is kept") from e


def read(directory: Path) -> list[dict]:
    """The rows of metrics.jsonl; a line that is not a JSON object (cut short by a kill) is skipped."""
    path = Path(directory) / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _write(path: Path, text: str, mode: str) -> None:
    try:
        with open(path, mode) as f:
            f.write(text)
    except OSError as e:  # a full disk: say so in one line
        raise TrainingError(f"could not write {path}: {e.strerror or e}; the last checkpoint is kept") from e
