"""Checkpoints and run directories.

A checkpoint is one self-describing file: a plain dict of str/int/float/list
values and tensors (format tag and version, model config, vocabulary, model and
optimizer state, training state, training config, corpus record, and the precision
the run trained in). Weights are always stored in fp32, whatever the precision of
the products, so a bf16-trained checkpoint loads and samples anywhere. It is written
atomically (temporary file, fsync, rename) and read with ``weights_only=True``,
so loading a file from elsewhere can never run code hidden in a pickle.

A run directory holds ``last.pt``, ``best.pt`` and ``metrics.jsonl``:

    checkpoints/tinyshakespeare-20261121-233400/
        last.pt   best.pt   metrics.jsonl
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Union

import torch

from chargen.atomic import atomic_write, stale_temporaries
from chargen.errors import CheckpointError
from chargen.model import CharRNN, ModelConfig
from chargen.training.metrics import METRICS
from chargen.vocab import Vocab

FORMAT = "chargen-checkpoint"
FORMAT_VERSION = 1
LAST, BEST = "last.pt", "best.pt"
DEFAULT_ROOT = "checkpoints"
REQUIRED_KEYS = ("format", "format_version", "model_config", "vocab", "model_state")

PathLike = Union[str, "os.PathLike[str]"]  # a file or folder name, as every path argument here takes it


# -- saving and loading -------------------------------------------------------


def save(payload: dict, path: PathLike) -> None:
    """Write `payload` to `path` atomically: readers see the old file or the new one, never half.

    On any failure (disk full, no permission) the temporary file is removed,
    the previous checkpoint is left untouched, and CheckpointError is raised.
    """
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    try:
        with atomic_write(path) as f:
            torch.save(payload, f)
    except (OSError, RuntimeError) as e:
        reason = _write_failure(e, path.parent)
        if reason is None:
            raise  # a RuntimeError that is not about the disk is a bug: let it show
        kept = "; the previous checkpoint is unchanged" if path.exists() else ""
        raise CheckpointError(f"could not write checkpoint {path}: {reason}{kept}") from e


def _write_failure(error: BaseException, directory: Path) -> Optional[str]:
    """Why a checkpoint write failed, in words, or None if it was not the disk.

    torch's zip writer calls our file's write() from C++ and turns the OSError it
    raises (ENOSPC on a full disk) into "RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos ...", keeping the OSError as its context.
    """
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    try:  # no OSError to be found: a full disk is still the likeliest cause
        if shutil.disk_usage(directory).free == 0:
            return os.strerror(errno.ENOSPC)
    except OSError:
        pass
    return None


def remove_stale_temporaries(directory: PathLike) -> None:
    """Delete temporary files left by saves that a kill -9 cut short (see save())."""
    for name in (LAST, BEST):
        for stale in stale_temporaries(directory, name):
            stale.unlink(missing_ok=True)


def load(path: PathLike) -> dict:
    """Read and validate a checkpoint, tensors mapped to the CPU, without unpickling any code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty")
    _verify_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights-only loading refuses any global it does not know: a foreign or
        # crafted file stops here, before anything in it can run. Random bytes land
        # here too, as an unknown pickle opcode rather than a global.
        blocked = re.search(r"GLOBAL (\S+)", str(e))
        if blocked:
            raise CheckpointError(
                f"{path}: refused to load: the file would import {blocked.group(1)}; "
                "a checkpoint holds only tensors and plain data"
            ) from e
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?)") from e
    except Exception as e:  # noqa: BLE001 - a corrupt file fails in many ways (IndexError for text, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?)") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a chargen checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
            f"(this chargen reads version {FORMAT_VERSION})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload


def _verify_archive(path: Path) -> None:
    """Refuse a checkpoint whose bytes changed since it was written (a bad disk, a bad copy).

    torch.save writes a zip archive that stores a CRC-32 of every member, but
    torch.load never checks them: one flipped bit in a weight would load as a
    silently wrong number. Checking every CRC reads the file once more (about
    1 GB/s), which is small next to loading it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # the first member whose CRC does not match, or None
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?)") from e
    except zipfile.LargeZipFile as e:  # pragma: no cover - zipfile reads ZIP64 by default
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {e.strerror or e}") from e
    if damaged is not None:
        raise CheckpointError(
            f"{path}: the checkpoint is damaged ({damaged.split('/', 1)[-1]} fails its checksum); "
            "it was changed after it was written"
        )


def build_model(payload: dict) -> tuple[CharRNN, Vocab]:
    """The model (in eval mode, on the CPU) and vocabulary stored in a loaded checkpoint."""
    try:
        vocab = Vocab.from_dict(payload["vocab"])
        model = CharRNN(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's model does not match its config: {e}") from e
    return model.eval(), vocab


class Loaded(NamedTuple):
    """A checkpoint read from disk and the model built from it."""

    file: Path  # the checkpoint file itself (a run directory resolves to its best.pt or last.pt)
    payload: dict  # everything the file holds (see the module docstring)
    model: CharRNN  # on the CPU, in eval mode
    vocab: Vocab


def load_model(path: Optional[PathLike], which: str = BEST) -> Loaded:
    """The one way to load a model from a path: a checkpoint file, a run directory
    (its `which` checkpoint, falling back to the other) or None (the latest run)."""
    file = resolve(path, which=which)
    payload = load(file)
    model, vocab = build_model(payload)
    return Loaded(file, payload, model, vocab)


def trained_precision(payload: dict) -> dict:
    """The precision a checkpoint's run trained in: {"name": "fp32" or "bf16", "reason": ...}.

    Files written before chargen recorded it trained in fp32.
    """
    stored = payload.get("precision")
    if isinstance(stored, dict) and stored.get("name") in ("fp32", "bf16"):
        return {"name": stored["name"], "reason": str(stored.get("reason", ""))}
    return {"name": "fp32", "reason": "not recorded (an older checkpoint)"}


# -- run directories ----------------------------------------------------------


def resolve(path: Optional[PathLike], which: str = BEST, root: str = DEFAULT_ROOT) -> Path:
    """The checkpoint file meant by a file path, a run directory, or nothing (the latest run).

    For a run directory `which` picks best.pt or last.pt, falling back to the other.
    """
    if path is None:
        run = latest_run(root)
        if run is None:
            raise CheckpointError(f"no runs under ./{root}; train one with 'chargen train CORPUS' or name a checkpoint")
        path = run
    path = Path(path)
    if path.is_dir():
        for name in (which, LAST if which == BEST else BEST):
            if (path / name).is_file():
                return path / name
        if (path / METRICS).is_file():  # created, then stopped before the step-0 checkpoint
            raise CheckpointError(
                f"{path}: this run was stopped before its first checkpoint; start it again with --force"
            )
        raise CheckpointError(f"{path}: no {BEST} or {LAST} in this directory")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    return path


@contextmanager
def run_lock(directory: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a run directory, so two processes never train one run at once.

    An advisory flock on the directory itself (no lock file to leave behind): the
    kernel drops it when the process dies, so a kill -9 never leaves a stale lock.
    Where flock does not exist (Windows), runs go unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot use the run directory: {e.strerror or e}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"{directory}: another chargen process is training this run; stop it (Ctrl-C) or wait for it"
            ) from None
        yield
    finally:
        os.close(fd)


def is_run(directory: PathLike) -> bool:
    """True if `directory` holds a run: a checkpoint, or the metrics file a new run writes first."""
    directory = Path(directory)
    return any((directory / name).is_file() for name in (LAST, BEST, METRICS))


def _stopped_before_first_checkpoint(directory: Path) -> bool:
    """True for a run directory holding nothing but an empty metrics file (and perhaps the
    temporary file of a cut-short step-0 save): a new run there loses nothing."""
    stale = set(stale_temporaries(directory, LAST))
    others = [p for p in directory.iterdir() if p.name != METRICS and p not in stale]
    return not others and (directory / METRICS).is_file() and (directory / METRICS).stat().st_size == 0


def latest_run(root: PathLike = DEFAULT_ROOT) -> Optional[Path]:
    """The run directory under `root` whose checkpoint was written most recently."""
    root = Path(root)
    if not root.is_dir():
        return None
    runs = [d for d in root.iterdir() if d.is_dir() and ((d / LAST).is_file() or (d / BEST).is_file())]
    if not runs:
        return None

    def written(d: Path) -> float:
        return max((d / n).stat().st_mtime for n in (LAST, BEST) if (d / n).is_file())

    return max(runs, key=written)


def new_run_dir(out: Optional[str], corpus_name: str, force: bool, root: str = DEFAULT_ROOT) -> Path:
    """Create the directory for a new run; never reuse a non-empty one unless `force`.

    A directory holding only the metrics file of a run stopped before its step-0
    checkpoint (nothing to lose) is started again without `force`.

    Without `out`, the run is named after the corpus and the time:
    checkpoints/<corpus>-<YYYYmmdd-HHMMSS>.
    """
    if out is None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", corpus_name).strip("-.") or "run"
        out = str(Path(root) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        base, n = out, 1
        while Path(out).exists():  # two runs started in the same second
            n += 1
            out = f"{base}-{n}"
    run = Path(out)
    if run.exists() and not run.is_dir():
        raise CheckpointError(f"{run}: exists and is not a directory")
    if run.is_dir() and any(run.iterdir()):
        force = force or _stopped_before_first_checkpoint(run)
        if not force and is_run(run):
            raise CheckpointError(f"{run}: a run already exists here; pass --force to overwrite it, or --resume {run}")
        if not force:
            raise CheckpointError(
                f"{run}: this folder is not empty and holds no run; give --out a new or empty folder "
                "(--force would write the run among its files)"
            )
        with run_lock(run):  # refuse to overwrite a run that is training right now
            pass
        for name in (LAST, BEST, METRICS):
            if (run / name).exists():
                (run / name).unlink()
        remove_stale_temporaries(run)
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create run directory {run}: {e.strerror or e}") from e
    if not os.access(run, os.W_OK):
        raise CheckpointError(f"{run}: the run directory is not writable")
    return run
