"""Resuming a run: its last checkpoint reopened, checked against the corpus and the settings
asked for, and its directory made consistent, so training goes on exactly where it stopped.

    run = resume_run("checkpoints/tinyshakespeare-20261121-120000", {"steps": 5000})
    execute(run, callback)                      # chargen/training/run.py

A run started again from the same checkpoint ends where one never stopped ends (on the
CPU, bit for bit): the step, the optimizer, the data position, the carried hidden state
and the random state all come from the checkpoint. See docs/failure-modes.md.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

from chargen.atomic import atomic_write
from chargen.data.batching import windows_per_epoch
from chargen.data.corpus import Reading, load_corpus
from chargen.device import resolve_device
from chargen.errors import ChargenError, CheckpointError, CorpusError
from chargen.precision import choose_precision
from chargen.training import checkpoint, metrics
from chargen.training.distributed import World
from chargen.training.loop import TrainConfig, TrainState, progress_of
from chargen.training.run import Run, make_optimizer

# Options a resumed run may change; everything else comes from its checkpoint.
RESUMABLE_OVERRIDES = ("epochs", "steps", "minutes", "eval_every", "precision", "max_stream_mb")
BUDGETS = ("epochs", "steps", "minutes")  # a budget given on resume replaces the run's whole budget


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
    reading: Optional[Callable[[Reading], None]] = None,
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
    # Checkpoints from before --line-endings read their corpus with line endings as they were,
    # and those from before --augment trained on it as it is.
    config = TrainConfig.from_dict({"line_endings": "keep", "augment": "none"} | payload.get("train_config", {}))
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
            max_stream_bytes=config.max_stream_mb * 2**20,
            progress=reading,
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

    A run saves metrics, then last.pt, then best.pt (see run.py's _execute); a kill -9
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
