"""Where samples are written: every path planned and checked before any work, each file
written atomically, and never a file of a run overwritten.

    paths = sample_paths("take.mid", count=3, kind="midi", model_file=run / "best.pt")
    # [take-1.mid, take-2.mid, take-3.mid], or an ArgumentError before anything is generated

A sample's folder is created while planning, so a folder that cannot be made (read-only,
a file in the way) fails in one line before minutes of generation, not after.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from chargen.atomic import atomic_write
from chargen.errors import ArgumentError, ChargenError
from chargen.music.vocabulary import has_midi_extension
from chargen.training import checkpoint

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
RUN_FILES = (checkpoint.LAST, checkpoint.BEST, checkpoint.METRICS)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
SAMPLES_FOLDER = "samples"  # a music sample without --out goes here, in the model's run directory


def sample_paths(out: Optional[str | os.PathLike], count: int, kind: str,
                 model_file: Optional[Path] = None) -> Optional[list[Path]]:
    """The files `count` samples go to: `out` itself for one, out-1, out-2, ... for several.

    Without `out` a text sample goes to stdout (None is returned) and a music sample
    to samples/sample-<time>.mid beside the model's checkpoint. Raises
    ArgumentError (parameter "out") for a music file not named .mid, for a path
    that is a checkpoint or a file of a run, and for a folder that cannot be created.
    """
    if out is None:
        if kind == "text":
            return None
        folder = (model_file.parent if model_file is not None else Path.cwd()) / SAMPLES_FOLDER
        _make_folder(folder, hint="; name a file to write with --out")
        out = folder / f"sample-{time.strftime('%Y%m%d-%H%M%S')}.mid"
    out = Path(out)
    if kind == "midi" and not has_midi_extension(out):
        raise ArgumentError("out", f"{out}: a music model writes MIDI; name the file .mid")
    paths = [out] if count == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1)]
    for path in paths:
        refuse_run_file(path)
    _make_folder(out.parent)
    return paths


def refuse_run_file(path: Path) -> None:
    """ArgumentError if writing `path` would overwrite a checkpoint or a file of a run."""
    if path.is_dir():
        raise ArgumentError("out", f"{path} is a folder; name a file")
    if path.exists() and (path.suffix.lower() in CHECKPOINT_SUFFIXES or _starts_with(path, ZIP_MAGIC)):
        raise ArgumentError("out", f"{path} is a checkpoint; a sample never overwrites one, name another file")
    folder = path.parent
    if _is_run(folder) and (path.exists() or path.name in RUN_FILES):
        raise ArgumentError("out", f"{path} is a file of the run in {folder}; a sample never overwrites one, "
                                   "name another file")


def write_text(path: Path, text: str) -> None:
    """Write a text sample atomically (UTF-8); ChargenError in one line if it cannot be written."""
    try:
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise ChargenError(f"could not write {path}: {e.strerror or e}") from e


def _make_folder(folder: Path, hint: str = "") -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ChargenError(f"cannot create the folder {folder} for the samples: {e.strerror or e}{hint}") from e


def _is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RUN_FILES)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False
