"""A training run on disk: start one, train it, keep its checkpoints and metrics.

This ties the pieces together behind ``chargen train``: corpus -> model and
optimizer -> train() -> last.pt / best.pt and metrics.jsonl in the run directory.
A run can be stopped at any moment (Ctrl-C, kill -9, a full disk) and resumed
exactly from its last checkpoint (chargen/training/resume.py); the default dropout
of a new run is chargen/training/dropout.py's.

    run = new_run(["data/tinyshakespeare.txt"], {"hidden_size": 256}, TrainConfig(minutes=5))
    execute(run, callback)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from chargen import __version__
from chargen.data import augment
from chargen.data.batching import fit_layout
from chargen.data.corpus import Corpus, Reading, load_corpus
from chargen.device import resolve_device
from chargen.errors import CheckpointError
from chargen.model import CharRNN, ModelConfig
from chargen.precision import Precision, choose_precision
from chargen.training import checkpoint, metrics
from chargen.training.distributed import World
from chargen.training.dropout import auto_dropout
from chargen.training.loop import TrainConfig, TrainState, train
from chargen.training.validation import cold_passages, scored_targets
from chargen.vocab import Vocab


@dataclass
class Run:
    """A training run: its directory, model, optimizer, corpus, settings and progress."""

    directory: Path
    model: CharRNN
    optimizer: torch.optim.Optimizer
    corpus: Corpus
    config: TrainConfig
    state: TrainState
    device: torch.device
    notes: list[str]  # warnings for the user (a shrunk window, skipped files)
    world: World = World()  # the processes training together; only rank 0 writes to disk

    @property
    def precision(self) -> Precision:
        """The precision this session trains in (config.precision resolved on this machine)."""
        return choose_precision(self.config.precision, self.device)


def new_run(
    corpus_paths: Sequence[str],
    model_options: dict,
    config: TrainConfig,
    out: Optional[str] = None,
    force: bool = False,
    format: Optional[str] = None,
    device: str = "auto",
    world: Optional[World] = None,
    reading: Optional[Callable[[Reading], None]] = None,
) -> Run:
    """Load the corpus, build a seeded model and create the run directory (last, so a bad
    corpus or option never touches the disk). With several ranks, rank 0 creates the
    directory and tells the others its name. `reading` hears how reading the corpus goes."""
    corpus = load_corpus(
        corpus_paths,
        format=format,
        val_frac=config.val_frac,
        encoding_errors=config.encoding_errors,
        line_endings=config.line_endings,
        max_stream_bytes=config.max_stream_mb * 2**20,
        progress=reading,
    )
    notes = [f"skipped {path}: {reason}" for path, reason in corpus.skipped]
    asked, config.augment = config.augment, augment.resolve(config.augment, corpus.kind)  # recorded: what "auto" chose
    if asked == "auto" and config.augment != "none":
        notes.append(f"--augment {config.augment}: each piece in a new key every epoch (the default for MIDI)")
    batch_size, seq_len = fit_layout(len(corpus.train), config.batch_size, config.seq_len)
    if (batch_size, seq_len) != (config.batch_size, config.seq_len):
        notes.append(
            f"the corpus has only {len(corpus.train)} training tokens: "
            f"using --batch-size {batch_size} --seq-len {seq_len}"
        )
        config.batch_size, config.seq_len = batch_size, seq_len
    if model_options.get("dropout") is None:
        model_options = model_options | {"dropout": auto_dropout(len(corpus.train), config)}
        notes.append(f"--dropout {model_options['dropout']:g} (chosen for {len(corpus.train):,} training tokens "
                     "and this budget)")
    world = world or World(device=resolve_device(device))
    world.check_batch_size(config.batch_size)
    choose_precision(config.precision, world.device)  # --precision bf16 where bf16 fails: refuse before any file
    torch.manual_seed(config.seed)  # the same seed gives the same initial weights
    model_config = ModelConfig(vocab_size=len(corpus.vocab), **model_options)
    model = CharRNN(model_config).to(world.device)
    optimizer = make_optimizer(model, config)
    name = Path(corpus.files[0]).stem if corpus.files[0] != "-" else "stdin"
    directory = _create_run_dir(world, out, name, force)
    # Record the RNG state now, so a run resumed from its step-0 checkpoint draws the same
    # dropout masks as one that never stopped.
    state = TrainState(rng=torch.get_rng_state())
    return Run(directory, model, optimizer, corpus, config, state, world.device, notes, world)


def _create_run_dir(world: World, out: Optional[str], name: str, force: bool) -> Path:
    """Rank 0 creates the run directory; every rank learns its name (or rank 0's error)."""
    outcome = {}
    if world.is_main:
        try:
            directory = checkpoint.new_run_dir(out, name, force)
            metrics.start(directory)
            outcome = {"directory": str(directory)}
        except CheckpointError as e:
            outcome = {"error": str(e)}
    outcome = json.loads(world.broadcast_text(json.dumps(outcome)))
    if "error" in outcome:
        raise CheckpointError(outcome["error"])
    return Path(outcome["directory"])


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: Adam with weight decay decoupled from the gradient (Loshchilov & Hutter, 2019).
    With weight_decay 0, the default, it is plain Adam, so older runs resume unchanged."""
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def payload(run: Run) -> dict:
    """The checkpoint contents for the run as it stands now."""
    return {
        "chargen_version": __version__,
        "model_config": run.model.config.to_dict(),
        "vocab": run.corpus.vocab.to_dict(),
        "model_state": run.model.state_dict(),
        "optimizer_state": run.optimizer.state_dict(),
        "train_config": run.config.to_dict(),
        "precision": run.precision.to_dict(),  # what "auto" chose on the machine that trained
        "state": run.state.to_dict(),
        "distributed": {"world_size": run.world.size},  # resuming with another size is not bit-exact
        "corpus": {
            "files": [os.path.abspath(f) if f != "-" else f for f in run.corpus.files],
            "kind": run.corpus.kind,
            "fingerprint": run.corpus.fingerprint,
            "train_tokens": len(run.corpus.train),
            "val_tokens": len(run.corpus.val),
        },
    }


def execute(run: Run, callback: Optional[Callable[[str, dict], None]] = None, should_stop=lambda: False) -> TrainState:
    """Train the run, writing last.pt at every validation and at the end, and best.pt
    whenever validation improves. A step-0 checkpoint is written first, so the
    directory always holds a loadable, resumable checkpoint. Rank 0 locks the run
    directory meanwhile: a second process training the same run is refused."""
    with checkpoint.run_lock(run.directory) if run.world.is_main else contextlib.nullcontext():
        return _execute(run, callback, should_stop)


def _execute(run: Run, callback: Optional[Callable[[str, dict], None]], should_stop) -> TrainState:
    callback = callback or (lambda event, info: None)
    last, best = run.directory / checkpoint.LAST, run.directory / checkpoint.BEST
    writes = run.world.is_main  # one writer: rank 0 (every rank in one process)
    if run.state.step == 0 and writes:
        checkpoint.save(payload(run), last)
    started = time.perf_counter()
    tokens_at_start = run.state.tokens
    eval_seconds = 0.0  # excluded from throughput: tokens/s measures training alone

    def on_event(event: str, info: dict) -> None:
        nonlocal eval_seconds
        eval_seconds += info.get("eval_seconds", 0.0)
        train_seconds = max(time.perf_counter() - started - eval_seconds, 1e-9)
        info = info | {"tokens_per_s": (run.state.tokens - tokens_at_start) / train_seconds}
        if event == "eval" and run.corpus.kind == "midi":  # on the tokens val_bits read
            info["val_bits_per_note"] = bits_per_note(info["val_bits"], run.corpus.val, run.corpus.vocab,
                                                      run.config.batch_size, run.config.seq_len, run.config.eval_tokens)
        if event == "eval" and writes:
            # This order keeps the directory consistent after a kill -9 at any point:
            # a metrics row ahead of last.pt is dropped on resume (the steps are redone),
            # and a best.pt behind last.pt's best score is restored from last.pt.
            metrics.append(run.directory, _metrics_row(run, info))
            data = payload(run)
            checkpoint.save(data, last)
            if info["is_best"] or not math.isfinite(info["val_bits"]):
                checkpoint.save(data, best)
        elif event == "stop" and info["interrupted"]:
            if writes:
                checkpoint.save(payload(run), last)
            # torchrun stops every rank as soon as one exits with an error status
            # (Ctrl-C exits with 130): no rank may leave before rank 0 has saved.
            run.world.barrier()
        callback(event, info)

    augmenter = augment.make_augmenter(run.corpus.vocab, run.corpus.train, run.config.augment, run.config.seed,
                                       run.config.transpose)
    return train(
        run.model, run.optimizer, run.corpus.train, run.corpus.val, run.config, run.state, on_event, should_stop, run.world,
        augmenter, cold_passages=cold_passages(run.corpus.val, run.corpus.vocab),
    )


def bits_per_note(bits_per_token: float, ids: torch.Tensor, vocab: Vocab, batch_size: int, seq_len: int,
                  max_tokens: Optional[int] = None) -> Optional[float]:
    """A music score in bits per note: the bits evaluate() gave per token of `ids` (in the
    same layout), times the tokens it scored, over the notes among them (note:, on: and
    drum: tokens). Unlike bits per token it compares models of different vocabularies.
    None for text, or music without notes."""
    if vocab.kind != "midi" or not math.isfinite(bits_per_token):
        return None
    from chargen.music.vocabulary import is_note

    targets = scored_targets(ids, batch_size, seq_len, max_tokens)
    notes = int(torch.tensor([is_note(t) for t in vocab.tokens])[targets.long()].sum())
    return bits_per_token * len(targets) / notes if notes else None


def _metrics_row(run: Run, info: dict) -> dict:
    """The metrics.jsonl row of a validation (see chargen.training.metrics)."""
    row = {
        "step": run.state.step,
        "epoch": run.state.epoch + run.state.window / info["windows"],
        "train_bits": round(info["train_bits"], 5),
        "val_bits": _bits(info["val_bits"]),  # on eval_tokens held-out tokens, the same at every validation
        "val_all_bits": _bits(info.get("val_all_bits")),  # all of them: the last validation only
        "cold_bits": _bits(info.get("cold_bits")),
    }
    if info.get("val_bits_per_note") is not None:  # music runs
        row["val_bits_per_note"] = round(info["val_bits_per_note"], 5)
    return row | {
        "lr": info["lr"],
        "tokens_per_s": round(info["tokens_per_s"], 1),
        "elapsed_s": round(run.state.elapsed, 2),
    }


def _bits(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isnan(value) else round(value, 5)
