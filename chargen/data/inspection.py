"""A report on a would-be corpus, file by file, for ``chargen inspect``.

Unlike the loader, which refuses a bad corpus, the report never raises for a
bad file: it records the reason next to the file and goes on.

    report = inspect_files(["data/bach/"])
    report["files"][0]["tokens"], report["vocab_size"]
"""

from __future__ import annotations

from typing import Optional, Sequence

from chargen.data.corpus import find_files, load_corpus
from chargen.errors import CorpusError


def inspect_files(paths: Sequence[str], format: Optional[str] = None) -> dict:
    """Per-file facts about a would-be corpus, never raising for a bad file.

    Returns {"files": [{"path", "kind", "tokens", "distinct", "notes",
    "notes_preserved", "error"}], "vocab_size"}; for MIDI, notes_preserved
    counts the notes that survive MIDI -> tokens -> MIDI.
    """
    from chargen.music import (
        midifile,  # midi imports mido: only MIDI corpora need it
        vocabulary,
    )
    from chargen.music.roundtrip import measure_roundtrip

    reports, chars = [], set()
    for p in paths:
        try:
            found = find_files([p], format)
            files, kind = found.files, found.format
        except CorpusError as e:
            reports.append(_report(p, None, error=str(e)))
            continue
        for f in files:
            try:
                if kind == "midi":
                    tokens = midifile.encode_file(f)
                    trip = measure_roundtrip(f)
                    reports.append(_report(f, kind, len(tokens), len(set(tokens)), trip.notes, trip.preserved))
                else:
                    corpus = load_corpus([f], format="text", val_frac=0.0)
                    chars.update(corpus.vocab.tokens)
                    reports.append(_report(f, kind, len(corpus.train), len(corpus.vocab)))
            except CorpusError as e:
                reports.append(_report(f, kind, error=str(e)))
    kinds = {r["kind"] for r in reports if r["error"] is None}
    vocab_size = None
    if kinds == {"midi"}:
        vocab_size = len(vocabulary.vocabulary())
    elif kinds == {"text"}:
        vocab_size = len(chars)
    return {"files": reports, "vocab_size": vocab_size}


def _report(path, kind, tokens=None, distinct=None, notes=None, preserved=None, error=None) -> dict:
    return {"path": str(path), "kind": kind, "tokens": tokens, "distinct": distinct,
            "notes": notes, "notes_preserved": preserved, "error": error}
