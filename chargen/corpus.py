"""Corpus loading: text or MIDI files -> one id tensor -> train/validation split.

Text is decoded as UTF-8 in chunks and mapped to ids with a vectorized table
lookup, so a large corpus never exists as a Python list and its ids take one
byte per character when the vocabulary has at most 256 characters.

    corpus = load_corpus(["data/tinyshakespeare.txt"], val_frac=0.1)
    corpus.train, corpus.val                            # 1-D id tensors

Cutting the ids into streams and windows for training is chargen.batching's job.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence

import torch

from chargen import cache
from chargen.errors import ChargenError, CorpusError, MidiError
from chargen.miditokens import MIDI_EXTENSIONS, is_midi_file  # no mido: a text run never imports it
from chargen.vocab import Vocab, codepoints, storage_dtype

CHUNK_BYTES = 16 * 2**20  # text is decoded 16 MiB at a time: bounded memory, C-speed work
TEXT_EXTENSIONS = (".txt",)
STDIN = "-"


@dataclass
class Corpus:
    """A tokenized corpus, split into training and validation ids (1-D, compact dtype)."""

    vocab: Vocab
    train: torch.Tensor
    val: torch.Tensor
    files: list[str]  # the files read, in order ("-" for stdin)
    fingerprint: str  # sha256 of the raw bytes of every file, in order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out

    @property
    def kind(self) -> str:
        return self.vocab.kind


# -- finding files ----------------------------------------------------------


def find_files(paths: Sequence[str], format: Optional[str] = None) -> tuple[list[str], str]:
    """Expand files and folders into a sorted file list, and decide text or MIDI.

    A folder is searched recursively: for MIDI files if it holds any (or if
    format is "midi"), otherwise for .txt files. A file is MIDI if its
    extension or its first bytes say so. `format` forces the decision.
    """
    if not paths:
        raise CorpusError("no corpus given")
    files: list[str] = []
    for p in paths:
        if p == STDIN:
            files.append(STDIN)
            continue
        path = Path(p)
        if not path.exists():
            raise CorpusError(f"{p}: no such file or directory")
        if path.is_dir():
            # Hidden files and folders (.git, chargen's own .chargen-cache) are never corpus.
            found = sorted(f for f in path.rglob("*")
                           if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts))
            want_midi = format == "midi" or (
                format is None and any(f.suffix.lower() in MIDI_EXTENSIONS for f in found)
            )
            exts = MIDI_EXTENSIONS if want_midi else TEXT_EXTENSIONS
            chosen = [str(f) for f in found if f.suffix.lower() in exts]
            if not chosen:
                kind = "MIDI" if want_midi else "text (.txt)"
                raise CorpusError(f"{p}: no {kind} files in this directory")
            files.extend(chosen)
        else:
            files.append(str(path))
    if format is None:
        kinds = {STDIN == f or not _looks_like_midi(f) for f in files}
        if len(kinds) > 1:
            raise CorpusError("the corpus mixes text and MIDI files; pass --format to choose")
        format = "text" if kinds.pop() else "midi"
    return files, format


def _looks_like_midi(path: str) -> bool:
    return Path(path).suffix.lower() in MIDI_EXTENSIONS or is_midi_file(path)


# -- loading ----------------------------------------------------------------


def load_corpus(
    paths: Sequence[str],
    format: Optional[str] = None,
    val_frac: float = 0.1,
    vocab: Optional[Vocab] = None,
    encoding_errors: str = "strict",
) -> Corpus:
    """Read, tokenize and split a corpus.

    The last `val_frac` of each file is held out for validation. Pass `vocab`
    to encode with an existing vocabulary (resuming, evaluating); otherwise a
    text vocabulary is built from the corpus itself. `encoding_errors` is
    "strict" (invalid UTF-8 is an error naming its byte offset) or "replace"
    (each invalid byte becomes U+FFFD).
    """
    if not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    files, format = find_files(paths, format)
    if format == "midi":
        return _load_midi(files, val_frac, vocab if vocab is not None and vocab.kind == "midi" else None)
    return _load_text(files, val_frac, vocab, encoding_errors)


def _load_text(files: list[str], val_frac: float, vocab: Optional[Vocab], encoding_errors: str = "strict") -> Corpus:
    if STDIN in files:
        # stdin can be read only once: hold its bytes so both passes can see them.
        stdin_bytes = sys.stdin.buffer.read()
    opener = lambda f: io.BytesIO(stdin_bytes) if f == STDIN else open(f, "rb")  # noqa: E731

    # Only strict decoding is cached: ids decoded with replacements must never be
    # served to a later strict run, which has to report the invalid bytes.
    cacheable = len(files) == 1 and files[0] != STDIN and encoding_errors == "strict"
    if cacheable:  # a second run on the same file maps the ids from disk (see chargen/cache.py)
        hit = cache.load(files[0])
        if hit is not None and (vocab is None or vocab == hit[0]):
            return _split(files, [hit[1]], val_frac, hit[0], hit[2])
    built_vocab = vocab is None
    digest = hashlib.sha256()
    if vocab is None:
        chars: set[str] = set()
        for f in files:
            with opener(f) as stream:
                for text in _decode_chunks(stream, f, digest, encoding_errors):
                    chars.update(text)
        if not chars:
            raise CorpusError(f"{_names(files)}: the corpus is empty")
        vocab = Vocab(sorted(chars), kind="text")
        fingerprint = digest.hexdigest()
        digest = None  # already computed
    per_file = []
    for f in files:
        with opener(f) as stream:
            per_file.append(_encode_stream(stream, f, vocab, digest, encoding_errors))
    if digest is not None:
        fingerprint = digest.hexdigest()
    corpus = _split(files, per_file, val_frac, vocab, fingerprint)
    if cacheable and built_vocab:
        cache.store(files[0], vocab, per_file[0], fingerprint)
    return corpus


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


def _decode_chunks(stream: BinaryIO, name: str, digest=None, errors: str = "strict") -> Iterator[str]:
    """Yield the UTF-8 text of a byte stream, chunk by chunk, with a BOM stripped.

    Raises CorpusError with the byte offset of invalid UTF-8, and for binary
    files (NUL bytes never occur in text).
    """
    if errors not in ("strict", "replace"):
        raise ValueError(f"encoding_errors must be 'strict' or 'replace', got {errors!r}")
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    offset = 0
    first = True
    while True:
        raw = stream.read(CHUNK_BYTES)
        final = not raw
        if digest is not None and raw:
            digest.update(raw)
        if b"\x00" in raw:
            where = offset + raw.index(b"\x00")
            raise CorpusError(f"{name}: looks like a binary file (NUL byte at offset {where}), not text")
        try:
            text = decoder.decode(raw, final=final)
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{name}: invalid UTF-8 at byte offset {_utf8_error_offset(offset, raw, e)}"
                " (chargen reads text as UTF-8; convert the file, e.g. with iconv,"
                " or pass --encoding-errors replace)"
            ) from e
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        if text:
            yield text
        if final:
            return
        offset += len(raw)


def _utf8_error_offset(offset: int, raw: bytes, error: UnicodeDecodeError) -> int:
    """The absolute byte offset of a decode error inside the current chunk.

    The incremental decoder may prepend up to 3 bytes held back from the last
    chunk; error.object is exactly what it decoded, so measure from its end.
    """
    return offset + len(raw) - (len(error.object) - error.start)


def _encode_stream(stream: BinaryIO, name: str, vocab: Vocab, digest=None, errors: str = "strict") -> torch.Tensor:
    """The ids of a whole text stream, in vocab's storage dtype, without per-character Python."""
    # Ids are written into one buffer sized by the byte count (a character is at least one
    # byte), not gathered in chunks and concatenated: peak memory is one copy of the ids, not
    # two. Pages past the last character are never touched, so they cost no RAM.
    ids = torch.empty(_stream_size(stream), dtype=storage_dtype(len(vocab)))
    n = 0
    for text in _decode_chunks(stream, name, digest, errors):
        try:
            chunk = vocab.encode_codepoints(codepoints(text))
        except ChargenError as e:  # a character the vocabulary lacks
            raise CorpusError(f"{name}: {e}") from e
        if n + len(chunk) > len(ids):  # a pipe or a growing file: its size was unknown
            ids = torch.cat([ids[:n], torch.empty(n + 2 * len(chunk), dtype=ids.dtype)])
        ids[n : n + len(chunk)] = chunk
        n += len(chunk)
    return ids[:n]


def _stream_size(stream: BinaryIO) -> int:
    """Bytes left in a file or BytesIO stream."""
    if isinstance(stream, io.BytesIO):
        return len(stream.getbuffer()) - stream.tell()
    return os.fstat(stream.fileno()).st_size - stream.tell()


def _load_midi(files: list[str], val_frac: float, vocab: Optional[Vocab] = None) -> Corpus:
    """Encode each MIDI file (or map its cached ids), skipping unreadable ones with the reason.

    Files are encoded in `vocab`'s vocabulary version (resuming or evaluating an
    older model), or in the one new runs use.
    """
    from chargen import __version__, midi, miditokens  # midi imports mido: only MIDI corpora need it

    version = vocab.version if vocab is not None else miditokens.MIDI_VOCAB_VERSION
    vocab = miditokens.midi_vocab(version)
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
                tokens = midi.encode_file(f, version)
            except MidiError as e:
                skipped.append((f, str(e)))
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
    corpus.skipped = skipped
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
