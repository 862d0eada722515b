"""Where samples are written: every path planned and checked before any work, each file
written atomically, and never a file of a run overwritten.

A device, FIFO or pipe named as --out (/dev/null, /dev/stdout, ``>(cat)``) is written in
place, never replaced by a file, and never opened for reading by the checks; a symlink is
followed, and checked as the file it names (chargen/atomic.py).

    paths = sample_paths("take.mid", count=3, kind="midi", model_file=run / "best.pt")
    # [take-1.mid, take-2.mid, take-3.mid], or an ArgumentError before anything is generated

A sample's folder is created while planning, so a folder that cannot be made (read-only,
a file in the way) fails in one line before minutes of generation, not after.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Optional

from chargen.atomic import is_special_file, output_file
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
    if count > 1 and is_special_file(out):
        raise ArgumentError("out", f"{out} is a device or FIFO, which takes one sample; "
                                   "for several, name a file (FILE-1, FILE-2, ... are written)")
    paths = [out] if count == 1 else [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1)]
    for path in paths:
        refuse_run_file(path)
    _make_folder(out.parent)
    return paths


def refuse_run_file(path: Path, parameter: str = "out") -> None:
    """ArgumentError (naming `parameter`) if writing `path` would overwrite a checkpoint or a file
    of a run, also through a symlink; a device, FIFO or pipe is never opened to find out."""
    for where in dict.fromkeys([Path(path), Path(os.path.realpath(path))]):  # the link, then what it names
        if where.is_dir():
            raise ArgumentError(parameter, f"{path} is a folder; name a file")
        if is_special_file(where):
            return
        if where.exists() and (where.suffix.lower() in CHECKPOINT_SUFFIXES or _starts_with(where, ZIP_MAGIC)):
            raise ArgumentError(parameter, f"{path} is a checkpoint; chargen never writes over one, "
                                           "name another file")
        folder = where.parent
        if _is_run(folder) and (where.exists() or where.name in RUN_FILES):
            raise ArgumentError(parameter, f"{path} is a file of the run in {folder}; chargen never writes "
                                           "over one, name another file")


def write_text(path: Path, text: str) -> None:
    """Write a text sample (UTF-8): atomically, or in place to a device or FIFO; ChargenError in
    one line if it cannot be written."""
    try:
        with output_file(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise ChargenError(f"could not write {path}: {_reason(e)}") from e


def _reason(error: OSError) -> str:
    if error.errno == errno.ENXIO:  # opening a FIFO that no process reads
        return "no process is reading it (start the reader first)"
    return error.strerror or str(error)


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
