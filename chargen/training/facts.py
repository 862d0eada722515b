"""What a checkpoint and the run it belongs to say about training: the facts `chargen info` prints.

    facts = run_facts(Path("checkpoints/tinyshakespeare-20261121-120000/best.pt"), payload)
    facts["step"], facts["epoch"], facts["best_val_bits"]

Progress (step, epochs, tokens, time, history) comes from the run's last.pt, which a run
writes last, and the best validation figure from its best.pt, whichever of the two was loaded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from chargen.data.batching import windows_per_epoch
from chargen.training import checkpoint


def run_facts(file: Optional[Path], payload: dict) -> dict:
    """Training progress and results of the checkpoint `payload` (read from `file`, if any)
    and of the run around it, as plain values (JSON-ready)."""
    latest, best = payload, payload
    if file is not None and file.name in (checkpoint.LAST, checkpoint.BEST):
        for name in (checkpoint.LAST, checkpoint.BEST):
            other = file.parent / name
            if name != file.name and other.is_file():
                record = checkpoint.load(other)
                latest, best = (record, best) if name == checkpoint.LAST else (latest, record)
    state, best_state = latest.get("state", {}), best.get("state", {})
    best_val = best_state.get("best_val", math.inf)
    return {
        "step": state.get("step", 0),
        "epoch": epochs(latest),
        "tokens_seen": state.get("tokens", 0),
        "training_seconds": state.get("elapsed", 0.0),
        "best_val_bits": best_val if math.isfinite(best_val) else None,
        "best_step": best_state.get("step") if math.isfinite(best_val) else None,
        "precision": checkpoint.trained_precision(latest),
        "history": [list(row) for row in state.get("history", [])],
        "train": latest.get("train_config", {}),
        "corpus": latest.get("corpus", {}),
    }


def epochs(record: dict) -> float:
    """Passes over the training data a checkpoint has made, fractions included (0.22, not 0)."""
    state, train, corpus = record.get("state", {}), record.get("train_config", {}), record.get("corpus", {})
    epoch, window = state.get("epoch", 0), state.get("window", 0)
    try:
        windows = windows_per_epoch(corpus["train_tokens"], train["batch_size"], train["seq_len"])
    except (KeyError, TypeError, ZeroDivisionError):
        return float(epoch)
    return epoch + window / windows if windows > 0 else float(epoch)
