"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

    with atomic_write("checkpoints/run/last.pt") as f:
        torch.save(payload, f)

The data goes to a temporary file beside the target, is flushed to disk, and
is renamed over the target; the rename is then made durable by syncing the
directory. On any error the temporary file is removed, the target is left as it
was, and the OSError propagates for the caller to word. The file object's
``name`` is the temporary file's path, for writers that memory-map it.

A rename replaces whatever the name points at, so two things are never renamed over:
a symlink is followed (the file it names is replaced; the link stays a link), and a
path that is not a regular file (a device such as /dev/null, a FIFO, a socket) is
refused. Results a user asks for (a sample, a round trip) go through output_file(),
which writes such a file in place instead, as a shell's ``>`` would:

    with output_file("/dev/stdout", "w") as f:   # written in place, never replaced
        f.write(text)
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Optional

TEMP_SUFFIX = ".tmp"


def _process_umask() -> int:
    """The process's umask, read once. os.umask can only be read by setting it, and a umask set
    to 0 for a moment would give any file another thread creates meanwhile mode 0666: so it is
    read from /proc where there is one, and else set and put back once, at import."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


NEW_FILE_MODE = 0o666 & ~_process_umask()  # the mode a plain open() gives a new file


class NotARegularFile(OSError):
    """atomic_write was asked to replace a device, FIFO, socket or folder."""

    def __init__(self, path: Path):
        super().__init__(errno.EINVAL, "it is not a regular file (a device, FIFO or socket is never replaced)",
                         str(path))


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit, replace `path` with it.

    A symlink is followed; a path that exists and is not a regular file raises
    NotARegularFile before anything is written.
    """
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    existing = _stat(path)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise NotARegularFile(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        # mkstemp makes 0600: give the mode a plain open() would (an existing file keeps its own).
        os.fchmod(fd, stat.S_IMODE(existing.st_mode) if existing is not None else NEW_FILE_MODE)
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


@contextmanager
def output_file(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A file to write a result to: atomically (see atomic_write) when `path` is a regular file
    or new; in place when it is a character device, FIFO or pipe (/dev/null, /dev/stdout,
    ``>(cat)``), which can be written but must never be replaced.

    A FIFO that no process is reading raises an OSError (ENXIO) rather than waiting forever.
    """
    if not is_special_file(path):
        with atomic_write(path, mode, encoding) as f:
            yield f
        return
    with open(path, mode, encoding=encoding, opener=_open_without_waiting) as f:
        yield f


def is_special_file(path: str | os.PathLike) -> bool:
    """Whether `path` (followed if a symlink) is a character device, FIFO or pipe: written in
    place, never replaced, and never opened for reading (a FIFO would wait for a writer)."""
    found = _stat(Path(path))
    return found is not None and (stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode))


def stale_temporaries(directory: str | os.PathLike, name: str) -> list[Path]:
    """Temporary files an interrupted atomic_write of `name` left in `directory` (a kill -9)."""
    return list(Path(directory).glob(f".{name}.*{TEMP_SUFFIX}"))


def _stat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _open_without_waiting(path: str, flags: int) -> int:
    """os.open for writing that fails (ENXIO) on a FIFO nobody reads instead of blocking,
    then blocks as usual for each write (a slow reader is waited for)."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    os.set_blocking(fd, True)
    return fd


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
