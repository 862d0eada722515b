"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

    with atomic_write("checkpoints/run/last.pt") as f:
        torch.save(payload, f)

The data goes to a temporary file beside the target, is flushed to disk, and
is renamed over the target; the rename is then made durable by syncing the
directory. On any error the temporary file is removed, the target is left as it
was, and the OSError propagates for the caller to word. The file object's
``name`` is the temporary file's path, for writers that memory-map it.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit, replace `path` with it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
        # open() through mkstemp's descriptor, so that f.name is the temporary path.
        with open(tmp, mode, encoding=encoding, opener=lambda *_: fd) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def stale_temporaries(directory: str | os.PathLike, name: str) -> list[Path]:
    """Temporary files an interrupted atomic_write of `name` left in `directory` (a kill -9)."""
    return list(Path(directory).glob(f".{name}.*{TEMP_SUFFIX}"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
