"""A training run on disk: start or resume one, train it, keep its checkpoints and metrics.

This is the library function behind ``chargen train``. It ties the pieces
together: corpus -> model and optimizer -> train() -> last.pt / best.pt and
metrics.jsonl in the run directory. A run can be stopped at any moment (Ctrl-C,
kill -9, a full disk) and resumed exactly from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from chargen import __version__
from chargen.atomic import atomic_write
from chargen.data.batching import fit_layout, windows_per_epoch
from chargen.data.corpus import Corpus, load_corpus
from chargen.device import resolve_device
from chargen.errors import ChargenError, CheckpointError, CorpusError
from chargen.model import CharRNN, ModelConfig
from chargen.precision import Precision, choose_precision
from chargen.training import checkpoint, metrics
from chargen.training.distributed import World
from chargen.training.loop import TrainConfig, TrainState, progress_of, train

# Options a resumed run may change; everything else comes from its checkpoint.
RESUMABLE_OVERRIDES = ("epochs", "steps", "minutes", "eval_every", "precision")
BUDGETS = ("epochs", "steps", "minutes")  # a budget given on resume replaces the run's whole budget


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


# Dropout by corpus size and budget: what a run needs depends on how often it reads each token.
SMALL_CORPUS_TOKENS = 500_000  # below this, the default model memorizes within minutes
SMALL_CORPUS_DROPOUT = 0.3
LARGE_CORPUS_TOKENS = 10_000_000  # from this size up, a run of hours reads each token about once
MEDIUM_CORPUS_DROPOUT = 0.2
SHORT_RUN_MINUTES = 10  # a --minutes budget under this is short
SHORT_RUN_EPOCHS = 3  # as is a --steps or --epochs budget of fewer passes over the corpus


def auto_dropout(train_tokens: int, config: TrainConfig) -> float:
    """The default dropout for a corpus of this many training tokens and this budget
    (measurements in docs/benchmarks.md):

    - under 500k tokens, 0.3: the 255k-token Bach corpus, best validation 2.60 bits/token
      without dropout, 2.36 with it;
    - up to 10M tokens, 0.2 for a run that reads the corpus several times (Tiny Shakespeare,
      1M tokens, 10 minutes of bf16 training: 2.103 bits/char with 0.2, 2.116 and 2.120
      without), and none for a short one (at 2 and 5 minutes dropout only slowed learning);
    - above that, none: a model that never sees a token twice does not memorize.
    """
    if train_tokens < SMALL_CORPUS_TOKENS:
        return SMALL_CORPUS_DROPOUT
    if train_tokens >= LARGE_CORPUS_TOKENS or _short_budget(train_tokens, config):
        return 0.0
    return MEDIUM_CORPUS_DROPOUT


def _short_budget(train_tokens: int, config: TrainConfig) -> bool:
    """Whether the run's budget (the nearest of its minutes, steps and epochs) is short:
    under SHORT_RUN_MINUTES minutes, or under SHORT_RUN_EPOCHS passes over the corpus."""
    passes = []
    if config.epochs is not None:
        passes.append(config.epochs)
    if config.steps is not None:
        passes.append(config.steps * config.batch_size * config.seq_len / max(train_tokens, 1))
    minutes_short = config.minutes is not None and config.minutes < SHORT_RUN_MINUTES
    return minutes_short or any(p < SHORT_RUN_EPOCHS for p in passes)


def new_run(
    corpus_paths: Sequence[str],
    model_options: dict,
    config: TrainConfig,
    out: Optional[str] = None,
    force: bool = False,
    format: Optional[str] = None,
    device: str = "auto",
    world: Optional[World] = None,
) -> Run:
    """Load the corpus, build a seeded model and create the run directory (last, so a bad
    corpus or option never touches the disk). With several ranks, rank 0 creates the
    directory and tells the others its name."""
    corpus = load_corpus(
        corpus_paths,
        format=format,
        val_frac=config.val_frac,
        encoding_errors=config.encoding_errors,
        line_endings=config.line_endings,
    )
    notes = [f"skipped {path}: {reason}" for path, reason in corpus.skipped]
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


def auto_resume_target(out: str, world: Optional[World] = None) -> Optional[str]:
    """For ``--resume auto --out DIR``: DIR if it holds a run to resume, None to start one there.

    One command line then serves the first start and every restart (torchrun's
    --max-restarts, a cron job). Rank 0 looks at the disk and tells the other
    ranks, so every process takes the same branch even where only rank 0's
    machine sees the directory. A run stopped before its step-0 checkpoint
    counts as none (new_run starts it again); a folder of other files is left
    for new_run to refuse.
    """
    world = world or World()
    found = ""
    if world.is_main:
        directory = Path(out)
        if any((directory / name).is_file() for name in (checkpoint.LAST, checkpoint.BEST)):
            found = str(directory)
    return world.broadcast_text(found) or None


def resume_run(
    path: str,
    overrides: dict,
    corpus_paths: Sequence[str] = (),
    force: bool = False,
    device: str = "auto",
    world: Optional[World] = None,
    settings: Optional[dict] = None,
) -> Run:
    """Reopen a run from its last checkpoint: same step, optimizer state, data position and RNG.

    The corpus is read again from the paths the checkpoint records (or those
    given) and must have the same fingerprint unless `force`. `settings` maps
    model and training fields the user asked for to (option name, value); any
    that differ from the run's are refused, naming each difference, since the
    run keeps the shape and settings it was started with.
    """
    file, payload, model, vocab = checkpoint.load_model(path, which=checkpoint.LAST)
    _refuse_rewind(file, payload)
    # Checkpoints from before --line-endings read their corpus with line endings as they were.
    config = TrainConfig.from_dict({"line_endings": "keep"} | payload.get("train_config", {}))
    _refuse_changed_settings(file, settings or {}, model.config.to_dict() | config.to_dict())
    if any(overrides.get(key) is not None for key in BUDGETS):
        # "--steps 5000" on a run started with "--minutes 10" means 5000 steps, not
        # "whichever comes first": the new budget replaces the old one whole.
        for key in BUDGETS:
            setattr(config, key, overrides.get(key))
    for key in RESUMABLE_OVERRIDES:
        if overrides.get(key) is not None:
            setattr(config, key, overrides[key])
    record = payload.get("corpus", {})
    paths = list(corpus_paths) or record.get("files", [])
    if not paths:
        raise CheckpointError(f"{file}: the checkpoint does not record its corpus; name it after --resume")
    try:
        corpus = load_corpus(
            paths,
            format=vocab.kind,
            val_frac=config.val_frac,
            vocab=vocab,  # a music run keeps the vocabulary version it was trained with
            encoding_errors=config.encoding_errors,
            line_endings=config.line_endings,
        )
    except CorpusError as e:  # gone, unreadable, or has characters the model has no ids for
        raise CorpusError(f"cannot resume {file} on its corpus: {e}") from e
    if corpus.vocab != vocab:
        raise CorpusError(
            f"the corpus's vocabulary ({corpus.vocab.kind}, {len(corpus.vocab)} tokens) differs from the "
            f"checkpoint's ({vocab.kind}, {len(vocab)} tokens); the run cannot be resumed on it"
        )
    if corpus.fingerprint != record.get("fingerprint") and not force:
        raise CorpusError(
            f"the corpus ({', '.join(paths[:3])}) changed since this run started "
            "(its fingerprint differs); pass --force to resume on it anyway"
        )
    world = world or World(device=resolve_device(device))
    world.check_batch_size(config.batch_size)
    choose_precision(config.precision, world.device)
    model.to(world.device)
    optimizer = make_optimizer(model, config)
    optimizer.load_state_dict(payload["optimizer_state"])
    state = TrainState.from_dict(payload["state"])
    directory = file.parent
    notes = [f"resuming {directory} at step {state.step} (epoch {state.epoch})"]
    saved_size = payload.get("distributed", {}).get("world_size", 1)
    if saved_size != world.size:
        notes.append(
            f"the run was trained by {saved_size} process(es) and goes on with {world.size}: "
            "same data and hidden state, but dropout draws differ from an uninterrupted run"
        )
    if world.is_main:
        with checkpoint.run_lock(directory):  # refuse before touching a run another process is training
            pass
        checkpoint.remove_stale_temporaries(directory)
        metrics.truncate(directory, state.step)
        notes += _reconcile_best(directory, file, state)
    windows = windows_per_epoch(len(corpus.train), config.batch_size, config.seq_len)  # < 1: train() says why
    if windows > 0 and progress_of(config, state, windows) >= 1:
        notes.append("this run has already spent its budget; give a larger --steps, --epochs or --minutes to train on")
    return Run(directory, model, optimizer, corpus, config, state, world.device, notes, world)


def _refuse_rewind(file: Path, payload: dict) -> None:
    """Refuse to resume from an earlier checkpoint of a run (say best.pt): training from it
    would overwrite last.pt and the metrics after it, destroying the later work."""
    last = file.parent / checkpoint.LAST
    if file.name == checkpoint.LAST or not last.is_file():
        return
    step = payload.get("state", {}).get("step", 0)
    try:
        last_step = checkpoint.load(last).get("state", {}).get("step", 0)
    except CheckpointError:
        last_step = None  # unreadable: resuming from `file` would overwrite it; let the user decide
    if last_step is not None and last_step <= step:
        return
    later = f"the run went on to step {last_step} ({last})" if last_step is not None else f"{last} cannot be read"
    fork = file.parent.with_name(file.parent.name + "-from-" + file.stem)
    raise CheckpointError(
        f"{file} is an earlier checkpoint (step {step}) and {later}: resuming from it would "
        f"overwrite the later training. Resume the run with --resume {file.parent}, or branch off "
        f"in a new folder: mkdir {fork} && cp {file} {fork}/ && chargen train --resume {fork / file.name}"
    )


def _reconcile_best(directory: Path, file: Path, state: TrainState) -> list[str]:
    """Make best.pt agree with the best score the checkpoint we resume from records.

    A run saves metrics, then last.pt, then best.pt (see _execute); a kill -9
    between the last two leaves a best.pt older than the best score last.pt
    records. The best score was then reached at last.pt's own step, so last.pt
    is the best checkpoint: copy it. Returns notes for the user.
    """
    best = directory / checkpoint.BEST
    if file.name != checkpoint.LAST or not math.isfinite(state.best_val):
        return []
    try:
        recorded = checkpoint.load(best)["state"]["best_val"] if best.is_file() else None
    except (CheckpointError, KeyError, TypeError):
        recorded = None
    if recorded == state.best_val:
        return []
    best_steps = [step for step, _, val in state.history if val is not None and val == state.best_val]
    if best_steps and best_steps[-1] == state.step:
        try:
            with open(file, "rb") as source, atomic_write(best) as target:
                shutil.copyfileobj(source, target)
        except OSError as e:
            raise CheckpointError(f"could not write checkpoint {best}: {e.strerror or e}") from e
        return [f"restored {best} from {file.name} (the run was stopped before it was saved)"]
    return [f"{best} does not hold the best validation score this run records; it is replaced at the next improvement"]


def _refuse_changed_settings(file: Path, settings: dict, run_settings: dict) -> None:
    differ = [
        f"{option} {value} (the run has {run_settings[field]})"
        for field, (option, value) in settings.items()
        if field in run_settings and field not in RESUMABLE_OVERRIDES and value != run_settings[field]
    ]
    if differ:
        allowed = ", ".join("--" + name.replace("_", "-") for name in RESUMABLE_OVERRIDES)
        raise ChargenError(
            f"cannot resume {file} with other settings: {'; '.join(differ)}. "
            f"A resumed run keeps its model and training settings; only {allowed} may change"
        )


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

    return train(
        run.model, run.optimizer, run.corpus.train, run.corpus.val, run.config, run.state, on_event, should_stop, run.world
    )


def _metrics_row(run: Run, info: dict) -> dict:
    """The metrics.jsonl row of a validation (see chargen.training.metrics)."""
    return {
        "step": run.state.step,
        "epoch": run.state.epoch + run.state.window / info["windows"],
        "train_bits": round(info["train_bits"], 5),
        "val_bits": None if math.isnan(info["val_bits"]) else round(info["val_bits"], 5),
        "lr": info["lr"],
        "tokens_per_s": round(info["tokens_per_s"], 1),
        "elapsed_s": round(run.state.elapsed, 2),
    }
