"""A cache of tokenized text corpora, so a second run on the same file skips tokenizing.

Tokenizing reads the whole file twice (once for the vocabulary, once for the
ids) and hashes it: about 10 s per GB. The cache keeps the result, the file's
ids in its own vocabulary, next to the corpus:

    data/tinyshakespeare.txt
    data/.chargen-cache/tinyshakespeare.txt.<hash of the absolute path>.ids

One cache file holds a JSON header (format version, the source's absolute path,
size, mtime and inode, the vocabulary, the corpus fingerprint, the ids' dtype and
length) and then the raw ids, which are memory-mapped when read: a cached 1 GB
corpus costs no RAM until training touches it, page by page.

Safety: an entry is used only if the file's size, mtime and inode still match
(a cheap first check) and the SHA-256 of its bytes is the fingerprint the entry
was written for. Hashing reads the file once, about ten times faster than
tokenizing it, and notices what metadata cannot: a same-size edit whose
modification time was set back. Files modified in the last few seconds are not
cached; writes go through chargen/atomic.py (a temporary file renamed into
place); and a missing, truncated or corrupt entry, or a directory we may not
write to, is never an error: the corpus is tokenized again as if there were no
cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

import torch

from chargen.atomic import atomic_write
from chargen.vocab import Vocab

CACHE_DIR = ".chargen-cache"
FORMAT = 1
MAGIC = b"CHARGEN-IDS\n"
ALIGN = 64  # the ids start on a 64-byte boundary, so any integer dtype can view them
MIN_BYTES = 2**20  # smaller files tokenize in milliseconds: not worth a cache file
RACY_SECONDS = 2.0  # a file modified this recently is not cached: it may still be being written
HASH_CHUNK = 2**22
DTYPES = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}


def cache_path(source: str) -> Path:
    """Where the cache entry of a corpus file lives."""
    path = Path(source).resolve()
    tag = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return path.parent / CACHE_DIR / f"{path.name}.{tag}.ids"


def _key(source: str, tokenizer: str) -> dict:
    st = os.stat(source)
    return {"source": str(Path(source).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "inode": st.st_ino, "tokenizer": tokenizer}


def file_fingerprint(source: str) -> str:
    """SHA-256 of a file's bytes, in hex: the fingerprint a cache entry is tied to (and the
    digest a music sample's manifest records of its checkpoint and prime)."""
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load(source: str, tokenizer: str = "text") -> Optional[tuple[Vocab, torch.Tensor, str]]:
    """(vocab, ids, fingerprint) of a cached corpus file, or None if there is no valid entry.

    `tokenizer` names the tokenizer and its version: an entry written by another
    one (say, an older MIDI tokenizer) is not used. The ids are a
    read-only-in-spirit, copy-on-write memory map of the cache file.
    """
    try:
        path = cache_path(source)
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_len).decode("utf-8"))
        if header.get("format") != FORMAT or header.get("key") != _key(source, tokenizer):
            return None
        dtype = DTYPES[header["dtype"]]
        offset, length = header["offset"], header["length"]
        itemsize = torch.empty(0, dtype=dtype).element_size()
        total = offset + length * itemsize
        if path.stat().st_size != total:
            return None
        if file_fingerprint(source) != header["fingerprint"]:  # the content changed behind the metadata
            return None
        # Memory-map the file privately (changes never reach the disk); nothing is read yet.
        raw = torch.from_file(str(path), shared=False, size=total, dtype=torch.uint8)
        ids = raw[offset:].view(dtype)
        return Vocab.from_dict(header["vocab"]), ids, header["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None  # unreadable or corrupt: tokenize again


def store(source: str, vocab: Vocab, ids: torch.Tensor, fingerprint: str, tokenizer: str = "text",
          min_bytes: Optional[int] = None) -> bool:
    """Write the cache entry of a corpus file atomically. Returns False when it was not written
    (a small or just-modified file, or a directory we cannot write to); that is never an error.

    `fingerprint` must be the SHA-256 of the file's bytes (file_fingerprint), as
    the corpus loader computes while reading: load() compares it with the file.
    """
    try:
        key = _key(source, tokenizer)
        if key["size"] < (MIN_BYTES if min_bytes is None else min_bytes) or time.time() - key["mtime_ns"] / 1e9 < RACY_SECONDS:
            return False
        path = cache_path(source)
        path.parent.mkdir(exist_ok=True)
        header = {"format": FORMAT, "key": key, "vocab": vocab.to_dict(), "fingerprint": fingerprint,
                  "dtype": str(ids.dtype).removeprefix("torch."), "length": len(ids)}
        # The header records the offset of the ids, which depends on the header's length.
        prefix = len(MAGIC) + 8
        body = json.dumps(header | {"offset": 0}).encode()
        offset = -(-(prefix + len(body) + 32) // ALIGN) * ALIGN
        body = json.dumps(header | {"offset": offset}).encode().ljust(offset - prefix)
        with atomic_write(path, "wb") as f:
            f.write(MAGIC + len(body).to_bytes(8, "little") + body)
            total = offset + len(ids) * ids.element_size()
            f.truncate(total)
            f.flush()
            # Copy the ids into the file through a shared memory map: no Python copy of the corpus.
            mapped = torch.from_file(f.name, shared=True, size=total, dtype=torch.uint8)
            mapped[offset:].view(ids.dtype).copy_(ids)
            del mapped
        return True
    except (OSError, ValueError, RuntimeError):
        return False
