"""Corpus loading: text or MIDI files -> one id tensor -> train/validation split.

Text is read once (files, stdin, pipes and FIFOs alike), decoded as UTF-8 in
chunks and mapped to ids with a vectorized table lookup (chargen.textstream), so
a large corpus never exists as a Python list and its ids take one byte per
character when the vocabulary has at most 256 characters.

    corpus = load_corpus(["data/tinyshakespeare.txt"], val_frac=0.1)
    corpus.train, corpus.val                            # 1-D id tensors

Cutting the ids into streams and windows for training is chargen.batching's job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple, Optional, Sequence

import torch

from chargen.data import cache
from chargen.data.textstream import LINE_ENDINGS, GrowingVocab, encode_stream, renumber
from chargen.errors import CorpusError, MidiError
from chargen.music.vocabulary import (  # no mido: a text run never imports it
    MIDI_EXTENSIONS,
    has_midi_extension,
    looks_like_midi,
)
from chargen.vocab import Vocab, storage_dtype

TEXT_EXTENSIONS = (".txt",)
STDIN = "-"
WRITER_WAIT_SECONDS = 0.5  # a FIFO silent this long: say that chargen is waiting for a writer


def text_tokenizer(line_endings: str = "normalize") -> str:
    """The cache tag of text ids: v2 reads NFC text with `line_endings`; entries of other
    versions (v1 kept \r and decomposed characters) are never used."""
    return f"text-v2-{line_endings}"


@dataclass
class Corpus:
    """A tokenized corpus, split into training and validation ids (1-D, compact dtype)."""

    vocab: Vocab
    train: torch.Tensor
    val: torch.Tensor
    files: list[str]  # the files read, in order ("-" for stdin)
    fingerprint: str  # sha256 of the raw bytes of every file, in order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or folder, reason) left out

    @property
    def kind(self) -> str:
        return self.vocab.kind


# -- finding files ----------------------------------------------------------


@dataclass
class FoundFiles:
    """The files a corpus argument names, their kind, and what was left out and why."""

    files: list[str]
    format: str  # "text" or "midi"
    skipped: list[tuple[str, str]]  # (path, reason without the path)


def find_files(paths: Sequence[str], format: Optional[str] = None) -> FoundFiles:
    """Expand files and folders into a file list, and decide text or MIDI.

    A folder is searched recursively, in sorted order: for MIDI files if it
    holds any (or if format is "midi"), otherwise for .txt files. An unreadable
    subfolder is skipped and reported; a file named twice (or also found in a
    folder) is read once. A file is MIDI if its extension or, for a regular
    file, its first bytes say so: a pipe is never sniffed, since that would
    consume what it holds. `format` forces the decision.
    """
    if not paths:
        raise CorpusError("no corpus given")
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        if p == STDIN:
            files.append(STDIN)
            continue
        path = Path(p)
        if not path.exists():
            raise CorpusError(f"{p}: no such file or directory")
        if path.is_dir():
            found = _walk(path, skipped)
            want_midi = format == "midi" or (
                format is None and any(has_midi_extension(f) for f in found)
            )
            exts = MIDI_EXTENSIONS if want_midi else TEXT_EXTENSIONS
            chosen = [str(f) for f in found if f.suffix.lower() in exts]
            if not chosen:
                kind = "MIDI" if want_midi else "text (.txt)"
                raise CorpusError(f"{p}: no {kind} files in this directory")
            files.extend(chosen)
        else:
            files.append(str(path))
    files = _once_each(files, skipped)
    if format is None:
        kinds = {STDIN == f or not looks_like_midi(f) for f in files}
        if len(kinds) > 1:
            raise CorpusError("the corpus mixes text and MIDI files; pass --format to choose")
        format = "text" if kinds.pop() else "midi"
    return FoundFiles(files, format, skipped)


def _walk(folder: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    """Every file under `folder`, sorted; unreadable subfolders go to `skipped`.

    Hidden files and folders (.git, chargen's own .chargen-cache) are never corpus.
    """
    def unreadable(error: OSError) -> None:
        if Path(error.filename) == folder:
            raise CorpusError(f"{folder}: cannot read this folder: {error.strerror or error}") from error
        skipped.append((error.filename, f"cannot read this folder: {error.strerror or error}"))

    found = []
    for parent, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(parent) / n for n in names if not n.startswith("."))
    return sorted(f for f in found if f.is_file())


def _once_each(files: list[str], skipped: list[tuple[str, str]]) -> list[str]:
    """The files with repeats dropped (the same file under any name), each noted: read
    twice, a file would count twice and its validation part would leak into training."""
    seen, unique = set(), []
    for f in files:
        try:
            key = STDIN if f == STDIN else (lambda st: (st.st_dev, st.st_ino))(os.stat(f))
        except OSError:
            key = f  # reading it will say what is wrong
        if key in seen:
            skipped.append((f, "given more than once; read once"))
            continue
        seen.add(key)
        unique.append(f)
    return unique


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# -- loading ----------------------------------------------------------------


class Reading(NamedTuple):
    """What load_corpus is doing, for whoever shows progress."""

    file: str
    bytes_read: int  # of this file, so far
    waiting: bool = False  # a pipe or FIFO has sent nothing for a while (is a process writing to it?)


def load_corpus(
    paths: Sequence[str],
    format: Optional[str] = None,
    val_frac: float = 0.1,
    vocab: Optional[Vocab] = None,
    encoding_errors: str = "strict",
    line_endings: str = "normalize",
    max_stream_bytes: Optional[int] = None,
    progress: Optional[Callable[[Reading], None]] = None,
) -> Corpus:
    """Read, tokenize and split a corpus, reading each file once.

    The last `val_frac` of each file is held out for validation. Pass `vocab`
    to encode with an existing vocabulary (resuming, evaluating); otherwise a
    text vocabulary is built from the corpus itself. `encoding_errors` is
    "strict" (invalid UTF-8 is an error naming its byte offset) or "replace"
    (each invalid byte becomes U+FFFD). `line_endings` is "normalize" (\r\n and
    \r become \n) or "keep". Text is always put in Unicode NFC form.

    A text file that is a pipe, FIFO or stdin is read up to `max_stream_bytes`
    (past it, a CorpusError: such a stream may never end). `progress` is called
    with a Reading after each chunk of text read, and once when a FIFO has sent
    nothing for half a second.
    """
    if not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    if line_endings not in LINE_ENDINGS:
        raise ValueError(f"line_endings must be 'normalize' or 'keep', got {line_endings!r}")
    found = find_files(paths, format)
    if found.format == "midi":
        corpus = _load_midi(found.files, val_frac, vocab if vocab is not None and vocab.kind == "midi" else None)
    else:
        corpus = _load_text(found.files, val_frac, vocab, encoding_errors, line_endings, max_stream_bytes, progress)
    corpus.skipped = found.skipped + corpus.skipped
    return corpus


def _load_text(
    files: list[str], val_frac: float, vocab: Optional[Vocab], encoding_errors: str, line_endings: str,
    max_stream_bytes: Optional[int] = None, progress: Optional[Callable[[Reading], None]] = None,
) -> Corpus:
    # Only strict decoding of a regular file is cached: ids decoded with replacements must
    # never be served to a later strict run, which has to report the invalid bytes.
    tokenizer = text_tokenizer(line_endings)
    cacheable = len(files) == 1 and _is_regular_file(files[0]) and encoding_errors == "strict"
    if cacheable:  # a second run on the same file maps the ids from disk (see chargen/data/cache.py)
        hit = cache.load(files[0], tokenizer)
        if hit is not None and (vocab is None or vocab == hit[0]):
            return _split(files, [hit[1]], val_frac, hit[0], hit[2])
    digest = hashlib.sha256()
    encoder = vocab if vocab is not None else GrowingVocab()
    per_file = []
    for f in files:
        report = None if progress is None else (lambda n, f=f: progress(Reading(f, n)))
        with _open(f, progress) as stream:
            per_file.append(encode_stream(stream, f, encoder, digest, encoding_errors, line_endings,
                                          max_stream_bytes, report))
    if isinstance(encoder, GrowingVocab):
        if not len(encoder):
            raise CorpusError(f"{_names(files)}: the corpus is empty")
        vocab, table = encoder.finish()
        dtype = storage_dtype(len(vocab))
        per_file = [ids.to(dtype) if table is None else renumber(ids, table, dtype) for ids in per_file]
    fingerprint = digest.hexdigest()
    corpus = _split(files, per_file, val_frac, vocab, fingerprint)
    if cacheable and isinstance(encoder, GrowingVocab):
        cache.store(files[0], vocab, per_file[0], fingerprint, tokenizer)
    return corpus


@contextlib.contextmanager
def _open(name: str, progress: Optional[Callable[[Reading], None]] = None) -> Iterator[BinaryIO]:
    """A corpus file opened for one pass of reading; stdin is read, never closed. A FIFO is
    opened without waiting for a writer: `progress` hears when nothing comes for a while."""
    if name == STDIN:
        yield sys.stdin.buffer
        return
    try:
        stream = _open_fifo(name, progress) if _is_fifo(name) else open(name, "rb")
    except OSError as e:  # a permission error, a file gone since it was listed
        raise CorpusError(f"{name}: cannot read it: {e.strerror or e}") from e
    with stream:
        yield stream


def _open_fifo(name: str, progress: Optional[Callable[[Reading], None]]) -> BinaryIO:
    """A FIFO opened for reading. open() would wait, silently, for a process to open it for
    writing; this says so (through `progress`) once half a second has passed without one."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)  # never waits
    try:
        if not select.select([fd], [], [], WRITER_WAIT_SECONDS)[0]:
            if progress is not None:
                progress(Reading(name, 0, waiting=True))
            select.select([fd], [], [])
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _split(files: list[str], per_file: list[torch.Tensor], val_frac: float, vocab: Vocab, fingerprint: str) -> Corpus:
    """Hold out the last val_frac of each file's ids (views, not copies, for a single file)."""
    train_parts, val_parts = [], []
    for ids in per_file:
        if len(ids) == 0:
            continue
        cut = len(ids) - int(len(ids) * val_frac)
        train_parts.append(ids[:cut])
        val_parts.append(ids[cut:])
    if not train_parts:
        raise CorpusError(f"{_names(files)}: the corpus is empty")
    return Corpus(vocab, _cat(train_parts), _cat(val_parts), files, fingerprint)


def _load_midi(files: list[str], val_frac: float, vocab: Optional[Vocab] = None) -> Corpus:
    """Encode each MIDI file (or map its cached ids), skipping unreadable ones with the reason.

    Files are encoded in `vocab`'s vocabulary version (resuming or evaluating an
    older model), or in the one new runs use.
    """
    from chargen import __version__  # midi imports mido: only MIDI corpora need it
    from chargen.music import midifile, vocabulary

    version = vocab.version if vocab is not None else vocabulary.MIDI_VOCAB_VERSION
    vocab = vocabulary.midi_vocab(version)
    # MIDI files are small but slow to parse (about 100 a second), so each one's ids are
    # cached; the tag keys entries by vocabulary version and retires those of other chargens.
    tokenizer = f"midi-v{version}-chargen-{__version__}"
    per_file, fingerprints, skipped, used = [], [], [], []
    for f in files:
        hit = cache.load(f, tokenizer)
        if hit is not None and hit[0] == vocab:
            _, ids, fingerprint = hit
        else:
            try:
                tokens = midifile.encode_file(f, version)
            except MidiError as e:
                skipped.append((f, str(e)))  # the message names the file; the note strips it below
                continue
            ids = vocab.encode(tokens).to(storage_dtype(len(vocab)))
            fingerprint = hashlib.sha256(Path(f).read_bytes()).hexdigest()
            cache.store(f, vocab, ids, fingerprint, tokenizer, min_bytes=0)
        per_file.append(ids)
        fingerprints.append(fingerprint)
        used.append(f)
    if not used:
        if len(skipped) == 1:
            raise CorpusError(skipped[0][1])
        raise CorpusError(f"none of the {len(files)} MIDI files could be read (first: {skipped[0][1]})")
    fingerprint = hashlib.sha256("".join(fingerprints).encode()).hexdigest()  # over the files, in order
    corpus = _split(used, per_file, val_frac, vocab, fingerprint)
    corpus.skipped = [(f, reason.removeprefix(f"{f}: ")) for f, reason in skipped]  # name the path once
    return corpus


def _cat(parts: list[torch.Tensor], dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Concatenate 1-D id tensors; a single part is returned as is (no copy)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return torch.empty(0, dtype=dtype or torch.uint8)
    return torch.cat(parts)


def _names(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
