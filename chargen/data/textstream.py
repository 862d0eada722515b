"""One byte stream -> normalized text chunks -> ids, reading the stream once.

A text corpus may be a file, stdin, a pipe (``<(zcat big.txt.gz)``) or a FIFO:
none of these can be read twice or seeked, so everything happens in one pass.
Each chunk of bytes is hashed (the corpus fingerprint), decoded as UTF-8,
given ``\\n`` line endings (unless asked to keep them), put in Unicode NFC form
(as primes are, so ``é`` is one character however the file spells it), and
mapped to ids with a vectorized table lookup.

    ids, chars = encode_stream(open("a.txt", "rb"), "a.txt", GrowingVocab(), hashlib.sha256())

Without a vocabulary to follow, ids are numbered in order of first appearance
while reading (GrowingVocab); corpus.py renumbers them into the sorted
vocabulary at the end, one gather per chunk.
"""

from __future__ import annotations

import codecs
import io
import os
import shlex
import stat
import time
from typing import BinaryIO, Callable, Iterator, Optional

import torch

from chargen.errors import ChargenError, CorpusError
from chargen.vocab import Vocab, codepoints, storage_dtype, to_nfc

CHUNK_BYTES = 16 * 2**20  # text is decoded 16 MiB at a time: bounded memory, C-speed work
LINE_ENDINGS = ("normalize", "keep")  # \r\n and \r become \n, as in Python's text mode; or bytes as they are
ENCODING_ERRORS = ("strict", "replace")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")


# -- bytes -> text ---------------------------------------------------------------


def normalize_line_endings(text: str) -> str:
    """`text` with \r\n and a lone \r as \n: what --line-endings normalize makes of a corpus,
    for a prime read by a model trained so."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_chunks(
    stream: BinaryIO, name: str, digest=None, errors: str = "strict", line_endings: str = "normalize",
    max_bytes: Optional[int] = None, progress: Optional[Callable[[int], None]] = None,
) -> Iterator[str]:
    """Yield the text of a byte stream, chunk by chunk: UTF-8, BOM stripped, NFC, and with
    \\n line endings unless `line_endings` is "keep".

    Raises CorpusError naming the file for invalid UTF-8 (with its byte offset),
    UTF-16 or UTF-32 text (with how to convert it), binary data and read errors, and
    for a stream that passes `max_bytes` (a pipe that never ends). `progress` is
    called with the bytes read so far after each chunk (at least every half second
    from a slow pipe).
    """
    if errors not in ENCODING_ERRORS:
        raise ValueError(f"encoding_errors must be 'strict' or 'replace', got {errors!r}")
    if line_endings not in LINE_ENDINGS:
        raise ValueError(f"line_endings must be 'normalize' or 'keep', got {line_endings!r}")
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    if line_endings == "normalize":  # holds back a final \r until it knows whether \n follows
        decoder = io.IncrementalNewlineDecoder(decoder, translate=True)
    offset, first, held = 0, True, ""
    regular = _is_regular(stream)  # a file with a size; else a pipe, FIFO, device or stdin
    while True:
        if regular:
            raw = _read(stream, name)
        else:  # never more than one byte past the limit
            raw = _read_for_a_while(stream, name, CHUNK_BYTES if max_bytes is None else
                                    min(CHUNK_BYTES, max_bytes - offset + 1))
        final = not raw
        if progress is not None and raw:
            progress(offset + len(raw))
        if not regular and max_bytes is not None and offset + len(raw) > max_bytes:
            raise CorpusError(f"{name}: stopped reading after {max_bytes:,} bytes, the most a pipe, FIFO or "
                              f"stdin corpus may hold (--max-stream-mb {max_bytes // 2**20}); raise it to read "
                              "more, or save the text to a file first")
        if digest is not None and raw:
            digest.update(raw)
        if offset == 0:
            _refuse_other_encodings(raw, name)
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
        if first and text:
            text = text.removeprefix("\ufeff")
            first = False
        # NFC can join a character to the marks that follow it, so the text after the last
        # safe cut waits for the next chunk (see _nfc_cut).
        text = held + text
        cut = len(text) if final else _nfc_cut(text)
        text, held = text[:cut], text[cut:]
        if text:
            yield to_nfc(text)
        if final:
            return
        offset += len(raw)


def _read(stream: BinaryIO, name: str) -> bytes:
    """The next chunk of a stream; a read error (EIO from /proc/self/mem, a vanished
    network file) is one CorpusError naming the file."""
    try:
        return stream.read(CHUNK_BYTES)
    except OSError as e:
        raise CorpusError(f"{name}: cannot read it: {e.strerror or e}") from e


def _read_for_a_while(stream: BinaryIO, name: str, most: int, seconds: float = 0.5) -> bytes:
    """Up to `most` bytes of a pipe, FIFO or device: as much as arrives within `seconds` (at
    least one read's worth), so that progress can be shown for a slow or endless one."""
    read_some = getattr(stream, "read1", None)
    if read_some is None:
        return _read(stream, name)
    parts, size, deadline = [], 0, time.monotonic() + seconds
    try:
        while size < most:
            part = read_some(most - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
            if time.monotonic() > deadline:
                break
    except OSError as e:
        raise CorpusError(f"{name}: cannot read it: {e.strerror or e}") from e
    return b"".join(parts)


def _nfc_cut(text: str) -> int:
    """Where `text` can be cut so that NFC of each part equals NFC of the whole: before its
    last ASCII character. An ASCII character never composes with what precedes it and is
    a starter, which blocks every mark after it from reaching further back. 0 (hold
    everything) if the last few thousand characters hold no ASCII at all."""
    for i in range(len(text) - 1, max(-1, len(text) - 4096), -1):
        if text[i] < "\x80":
            return i
    return 0


def _refuse_other_encodings(raw: bytes, name: str) -> None:
    """UTF-16 and UTF-32 text is text, not "binary": say which it is and how to convert it."""
    head = raw[:4096]
    encoding = None
    if head.startswith(UTF32_BOMS):
        encoding = "UTF-32"
    elif head.startswith(UTF16_BOMS):
        encoding = "UTF-16"
    elif len(head) >= 4 and b"\x00" in head:
        # Mostly-ASCII UTF-16 without a BOM: every other byte is NUL, the rest are not.
        even, odd = head[0::2], head[1::2]
        if (odd.count(0) == len(odd) and even.count(0) == 0) or (even.count(0) == len(even) and odd.count(0) == 0):
            encoding = "UTF-16"
    if encoding:
        quoted = shlex.quote(name)
        raise CorpusError(
            f"{name}: looks like {encoding} text; chargen reads UTF-8. Convert it first, e.g. "
            f"iconv -f {encoding} -t UTF-8 {quoted} > {shlex.quote(name + '.utf8.txt')}"
        )


def _utf8_error_offset(offset: int, raw: bytes, error: UnicodeDecodeError) -> int:
    """The absolute byte offset of a decode error inside the current chunk.

    The incremental decoder may prepend up to 3 bytes held back from the last
    chunk; error.object is exactly what it decoded, so measure from its end.
    """
    return offset + len(raw) - (len(error.object) - error.start)


# -- text -> ids -------------------------------------------------------------------


class GrowingVocab:
    """Character ids assigned in order of first appearance, while a corpus is read once.

    `finish()` gives the sorted Vocab and the table that renumbers these ids into it.
    """

    def __init__(self):
        self.chars: list[str] = []
        self.index: dict[str, int] = {}
        self.table = torch.full((1,), -1, dtype=torch.int32)  # code point -> id; last entry -1

    def __len__(self) -> int:
        return len(self.chars)

    def encode_text(self, text: str) -> torch.Tensor:
        """int32 ids of `text`, adding its new characters."""
        new = set(text).difference(self.index)
        if new:
            for c in sorted(new):
                self.index[c] = len(self.chars)
                self.chars.append(c)
            top = max(ord(c) for c in self.chars)
            self.table = torch.full((top + 2,), -1, dtype=torch.int32)
            self.table[torch.tensor([ord(c) for c in self.chars])] = torch.arange(len(self.chars), dtype=torch.int32)
        points = codepoints(text)
        return torch.index_select(self.table, 0, torch.clamp(points, max=len(self.table) - 1))

    def finish(self) -> tuple[Vocab, Optional[torch.Tensor]]:
        """The sorted vocabulary, and the first-seen id -> sorted id table (None if the same)."""
        vocab = Vocab(sorted(self.chars), kind="text")
        renumber = torch.tensor([vocab.index[c] for c in self.chars], dtype=torch.int32)
        if torch.equal(renumber, torch.arange(len(self.chars), dtype=torch.int32)):
            return vocab, None
        return vocab, renumber


def encode_stream(
    stream: BinaryIO,
    name: str,
    vocab: Vocab | GrowingVocab,
    digest=None,
    errors: str = "strict",
    line_endings: str = "normalize",
    max_bytes: Optional[int] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """The ids of a whole byte stream, read once, in the storage dtype of the vocabulary so far.

    With a Vocab, a character it lacks is a CorpusError naming the file; with a
    GrowingVocab, new characters are added as they come. `max_bytes` and `progress`
    are decode_chunks'.
    """
    # Ids are written into one buffer sized by the byte count (a character is at least one
    # byte), not gathered in chunks and concatenated: peak memory is one copy of the ids, not
    # two. Pages past the last character are never touched, so they cost no RAM.
    ids = torch.empty(_bytes_left(stream), dtype=storage_dtype(max(len(vocab), 1)))
    n = 0
    for text in decode_chunks(stream, name, digest, errors, line_endings, max_bytes, progress):
        if isinstance(vocab, Vocab):
            try:
                chunk = vocab.encode_codepoints(codepoints(text))
            except ChargenError as e:  # a character the vocabulary lacks
                raise CorpusError(f"{name}: {e}") from e
        else:
            chunk = vocab.encode_text(text)
        dtype = storage_dtype(max(len(vocab), 1))
        if n + len(chunk) > len(ids) or dtype != ids.dtype:
            # A pipe or a growing file (its size was unknown: grow geometrically), or a
            # vocabulary that outgrew the id dtype.
            grown = torch.empty(max(len(ids), n + len(chunk), 2 * n), dtype=dtype)
            grown[:n] = ids[:n]
            ids = grown
        ids[n : n + len(chunk)] = chunk
        n += len(chunk)
    return ids[:n]


def renumber(ids: torch.Tensor, table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ids mapped through `table` (old id -> new id) into `dtype`, chunk by chunk so memory
    stays bounded; in place when the dtype is already right (no second copy of the corpus)."""
    out = ids if ids.dtype == dtype else torch.empty(len(ids), dtype=dtype)
    for start in range(0, len(ids), CHUNK_BYTES):
        part = ids[start : start + CHUNK_BYTES].to(torch.int32)
        out[start : start + len(part)] = torch.index_select(table, 0, part).to(dtype)
    return out


def _is_regular(stream: BinaryIO) -> bool:
    if isinstance(stream, io.BytesIO):
        return True
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return False


def _bytes_left(stream: BinaryIO) -> int:
    """Bytes left in a regular file or BytesIO; 0 (unknown) for pipes, FIFOs, devices and /proc."""
    if isinstance(stream, io.BytesIO):
        return len(stream.getbuffer()) - stream.tell()
    try:
        st = os.fstat(stream.fileno())
        return st.st_size - stream.tell() if stat.S_ISREG(st.st_mode) else 0
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return 0
