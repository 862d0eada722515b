"""Vocab: the token <-> id mapping that travels with every model.

A text vocabulary is the sorted set of Unicode characters (code points, not
bytes) seen in the corpus. A MIDI vocabulary is the fixed event list from
chargen.music.vocabulary. Both serialize to a plain dict stored inside the checkpoint, so a
checkpoint alone is enough to sample.

    >>> v = Vocab.from_text("hello")
    >>> v.decode(v.encode("hole"))
    'hole'
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, Sequence

import torch

from chargen.errors import ArgumentError, ChargenError

KINDS = ("text", "midi")
SHOWN_MISSING = 20  # tokens listed in a "the vocabulary lacks" message


class Vocab:
    """An ordered list of tokens; a token's id is its position in the list."""

    def __init__(self, tokens: Sequence[str], kind: str = "text", version: int = 1):
        if kind not in KINDS:
            raise ValueError(f"vocab kind must be one of {KINDS}, got {kind!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocab tokens must be unique")
        if kind == "text" and any(len(t) != 1 for t in tokens):
            raise ValueError("a text vocab holds single characters")
        self.kind = kind
        self.version = version
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self._table = self._codepoint_table() if kind == "text" else None

    # -- building -----------------------------------------------------------

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The vocabulary of every distinct character in `text`, sorted by code point."""
        return cls(sorted(set(text)), kind="text")

    def _codepoint_table(self) -> torch.Tensor:
        """A dense code point -> id table (-1 where absent), so encoding is one gather."""
        top = max((ord(c) for c in self.tokens), default=0)
        table = torch.full((top + 2,), -1, dtype=torch.int32)  # the last entry stays -1: "beyond the table"
        for i, c in enumerate(self.tokens):
            table[ord(c)] = i
        return table

    # -- encoding -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tokens)

    def missing(self, items: Iterable[str]) -> list[str]:
        """The distinct tokens (characters, for text) of `items` this vocab lacks, in order seen."""
        seen = dict.fromkeys(items)
        return [t for t in seen if t not in self.index]

    def fit(self, text: str, parameter: str = "text") -> str:
        """`text` as the model reads it: in Unicode NFC, the form every corpus is read in
        (e + combining accent -> é, one character), so a prime means what the same words
        meant in the corpus. ArgumentError(`parameter`) lists the characters the
        vocabulary lacks. Every prime and scored text, from the API or a server request,
        passes through here."""
        text = to_nfc(text)
        missing = self.missing(text)
        if missing:
            raise ArgumentError(parameter, f"has characters the model's vocabulary lacks: {_show(missing)}")
        return text

    def encode(self, items: str | Sequence[str]) -> torch.Tensor:
        """Token ids (int64, shape (N,)) of a string (text) or a list of tokens (MIDI).

        Raises ChargenError naming any token the vocabulary lacks.
        """
        if self.kind == "text":
            if not isinstance(items, str):
                raise TypeError("a text vocab encodes a str")
            return self.encode_codepoints(codepoints(items)).long()
        ids = [self.index.get(t, -1) for t in items]
        if -1 in ids:
            raise ChargenError(f"tokens not in the vocabulary: {_show(self.missing(items))}")
        return torch.tensor(ids, dtype=torch.long)

    def encode_codepoints(self, points: torch.Tensor) -> torch.Tensor:
        """Map a tensor of code points to ids in the smallest dtype that holds them.

        This is the vectorized path the corpus loader uses for large texts: no
        Python work per character.
        """
        assert self._table is not None, "encode_codepoints is for text vocabs"
        # One gather, no boolean masks: code points beyond the table are sent to its last
        # entry, a -1 sentinel (masked indexing was ~10x slower, see docs/benchmarks.md).
        table = self._table
        ids = torch.index_select(table, 0, torch.clamp(points, max=len(table) - 1))
        if bool((ids < 0).any()):
            bad = sorted({chr(int(p)) for p in points[ids < 0].unique()[:20]})
            raise ChargenError(f"characters not in the vocabulary: {_show(bad)}")
        return ids.to(storage_dtype(len(self)))

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str | list[str]:
        """The string (text) or token list (MIDI) for a sequence of ids."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        tokens = [self.tokens[i] for i in ids]
        return "".join(tokens) if self.kind == "text" else tokens

    # -- serialization ------------------------------------------------------

    def to_dict(self) -> dict:
        """A plain dict (str, int and list only) that from_dict turns back into this Vocab."""
        return {"kind": self.kind, "version": self.version, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        return cls(d["tokens"], kind=d["kind"], version=d.get("version", 1))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Vocab(kind={self.kind!r}, size={len(self)})"


def to_nfc(text: str) -> str:
    """`text` in Unicode normalization form C (a fast check first: most text already is)."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def codepoints(text: str) -> torch.Tensor:
    """The Unicode code points of `text` as an int32 tensor, computed in C, not per character."""
    data = bytearray(text.encode("utf-32-le"))
    if not data:
        return torch.empty(0, dtype=torch.int32)
    return torch.frombuffer(data, dtype=torch.int32)


def storage_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer dtype that stores ids below `vocab_size` (1 byte for most text)."""
    if vocab_size <= 256:
        return torch.uint8
    if vocab_size <= 32768:
        return torch.int16
    return torch.int32


def _show(tokens: Sequence[str]) -> str:
    """Tokens rendered for an error message: quoted, escapes visible, at most SHOWN_MISSING."""
    shown = ", ".join(repr(t) for t in tokens[:SHOWN_MISSING])
    more = len(tokens) - SHOWN_MISSING
    return shown + (f" and {more} more" if more > 0 else "")
