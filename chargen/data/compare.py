"""How close generated music (or text) is to a corpus, in numbers: `chargen compare`.

For MIDI, each feature is measured on the corpus and on the generated files,
and the two distributions are compared by the overlapped area of their
densities, the method of Yang & Lerch (2018, "On the evaluation of generative
models in music", the mgeval toolbox): 1 means the same distribution, 0 none in
common. Features of a whole piece (pitch range, notes per second, polyphony,
scale consistency, empty-beat rate) are compared as Gaussian kernel density
estimates over the pieces; features of single notes (pitch class, duration,
inter-onset interval) as histograms over all notes. Two checks come on top:
the share of generated notes longer than the corpus's 99.9th percentile (the
drones a forgotten note-off makes), and the longest run of notes copied
verbatim from one corpus piece (memorization).

For text: character-bigram and word-length distribution overlap, the share of
generated words that occur in the corpus, and the longest substring copied
verbatim from the corpus.

    report = compare_files(["samples/"], ["data/bach/"])
    report["features"][0]["overlap"]

Files are read through chargen.music.midifile and chargen.data.corpus; this module never
touches mido itself. The measures (overlaps, percentiles, the longest copied run) are
chargen/data/overlap.py's: plain statistics on numbers and strings.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Iterable, Optional, Sequence

from chargen.data.corpus import find_files, load_corpus
from chargen.data.overlap import (
    distribution_overlap,
    histogram_overlap,
    kde_overlap,
    longest_copied_run,
    percentile,
)
from chargen.errors import ArgumentError, CorpusError, MidiError
from chargen.music.grid import STEPS_PER_BEAT, TimedNote, beats2seconds

LONG_NOTE_PERCENTILE = 99.9  # a generated note longer than this percentile of the corpus's is "too long"
DURATION_BINS = [2 ** (k / 2) for k in range(-14, 11)]  # half-octave bins from 8 ms to 32 s (log2)
MAX_DELTA_STEPS = 399  # onset gaps longer than this many steps count as one "long gap" in copied-run codes
# Scales for scale consistency (Yang & Lerch): the major and harmonic minor scale on each of the 12 tonics.
SCALES = [frozenset((tonic + step) % 12 for step in steps)
          for steps in ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 11)) for tonic in range(12)]
WORD = re.compile(r"\w+")
SHOWN_COPY = 200  # characters of the longest copied text quoted in the report


# -- entry point -----------------------------------------------------------------------


def compare_files(generated: Sequence[str], corpus: Sequence[str]) -> dict:
    """The report comparing generated files (or folders) with a corpus (files or folders).

    Both must be MIDI, or both text. Raises ChargenError (one clear line) for a
    missing path, a kind mismatch, or nothing readable.
    """
    if not generated:
        raise ArgumentError("generated", "needs at least one file or folder")
    if not corpus:
        raise ArgumentError("corpus", "is needed: the files or folder to compare with")
    found_generated, found_corpus = find_files(list(generated)), find_files(list(corpus))
    generated_files, generated_kind = found_generated.files, found_generated.format
    corpus_files, corpus_kind = found_corpus.files, found_corpus.format
    if generated_kind != corpus_kind:
        raise ArgumentError("corpus", f"is {_kind_name(corpus_kind)} but the generated files are "
                                      f"{_kind_name(generated_kind)}; compare like with like")
    if generated_kind == "midi":
        return compare_midi(generated_files, corpus_files)
    generated_text = _read_text(generated_files)
    corpus_text = _read_text(corpus_files)
    report = compare_text(generated_text, corpus_text)
    report.update(generated_files=len(generated_files), corpus_files=len(corpus_files))
    return report


def _kind_name(kind: str) -> str:
    return "MIDI" if kind == "midi" else "text"


def _read_text(files: list[str]) -> str:
    corpus = load_corpus(files, format="text", val_frac=0.0)
    return corpus.vocab.decode(corpus.train)


# -- MIDI ------------------------------------------------------------------------------


class Piece:
    """One MIDI file's pitched notes, with times in seconds (as heard) and in beats (as written)."""

    def __init__(self, path: str, notes: list[TimedNote], tempos: list[tuple[float, float]]):
        to_seconds = beats2seconds(tempos)
        self.path = path
        self.beats = sorted(n for n in notes if not n.is_drum)
        self.seconds = [(to_seconds(n.start), to_seconds(n.end), n.pitch) for n in self.beats]


def read_pieces(files: Iterable[str], strict: bool = False) -> tuple[list[Piece], list[tuple[str, str]]]:
    """(pieces with pitched notes, [(file, reason)] for files left out: unreadable, or without pitched notes).

    With `strict`, an unreadable file raises its MidiError instead.
    """
    from chargen.music import (
        midifile,  # imported on use: only MIDI comparisons need mido
    )

    pieces, skipped = [], []
    for f in files:
        try:
            score = midifile.read_score(f)
        except MidiError as e:
            if strict:
                raise
            skipped.append((f, str(e)))
            continue
        piece = Piece(f, score.notes, score.tempos)
        if piece.beats:
            pieces.append(piece)
        else:
            skipped.append((f, f"{f}: no pitched notes"))
    return pieces, skipped


def compare_midi(generated_files: Sequence[str], corpus_files: Sequence[str]) -> dict:
    """The MIDI report: per-feature statistics and overlaps, long notes, the longest copied run."""
    # A generated file that cannot be read is worth an error (chargen always writes valid ones);
    # an unreadable corpus file is skipped with a note, as training does.
    generated, skipped = read_pieces(generated_files, strict=True)
    if not generated:
        raise MidiError(f"none of the {len(generated_files)} generated files has pitched notes to compare")
    corpus, corpus_skipped = read_pieces(corpus_files)
    skipped += corpus_skipped
    if not corpus:
        raise CorpusError(f"none of the {len(corpus_files)} corpus files has pitched notes to compare with"
                          + (f" (first: {corpus_skipped[0][1]})" if corpus_skipped else ""))
    features = []
    for name, unit, per_piece, measure in MIDI_FEATURES:
        ours = [v for p in generated for v in _values(measure(p), per_piece)]
        theirs = [v for p in corpus for v in _values(measure(p), per_piece)]
        if name == "pitch class":
            overlap = histogram_overlap(theirs, ours, bins=list(range(1, 12)))
            features.append(_feature(name, unit, None, None, overlap))
            continue
        if per_piece:
            overlap = kde_overlap(theirs, ours)
        else:
            overlap = histogram_overlap(theirs, ours, bins=DURATION_BINS)
        features.append(_feature(name, unit, theirs, ours, overlap))

    corpus_durations = sorted(end - start for p in corpus for start, end, _ in p.seconds)
    threshold = percentile(corpus_durations, LONG_NOTE_PERCENTILE)
    generated_durations = [end - start for p in generated for start, end, _ in p.seconds]
    run, where = longest_copied_run([note_codes(p) for p in generated], [note_codes(p) for p in corpus])
    return {
        "kind": "midi",
        "generated_files": len(generated),
        "corpus_files": len(corpus),
        "features": features,
        "long_notes": {
            "percentile": LONG_NOTE_PERCENTILE,
            "threshold_seconds": threshold,
            "corpus_share": _share(corpus_durations, threshold),
            "generated_share": _share(generated_durations, threshold),
        },
        "longest_copied_run": {"notes": run, "file": generated[where[0]].path if run else None},
        "skipped": [{"path": f, "reason": reason} for f, reason in skipped],
    }


def _values(value, per_piece: bool) -> list[float]:
    if per_piece:
        return [] if value is None else [value]
    return value


def _share(values: Sequence[float], threshold: float) -> float:
    return sum(v > threshold for v in values) / len(values) if values else 0.0


def _feature(name, unit, corpus_values, generated_values, overlap) -> dict:
    def stats(values):
        if values is None or not values:
            return {"mean": None, "spread": None}
        return {"mean": statistics.fmean(values), "spread": statistics.pstdev(values)}

    return {"name": name, "unit": unit, "corpus": stats(corpus_values), "generated": stats(generated_values),
            "overlap": overlap}


# Each feature: (name, unit, measured per piece?, function of a Piece).


def _pitch_classes(p: Piece) -> list[int]:
    return [pitch % 12 for _, _, pitch in p.seconds]


def _pitch_range(p: Piece) -> float:
    pitches = [pitch for _, _, pitch in p.seconds]
    return max(pitches) - min(pitches)


def _length_seconds(p: Piece) -> float:
    return max(end for _, end, _ in p.seconds) - min(start for start, _, _ in p.seconds)


def _notes_per_second(p: Piece) -> Optional[float]:
    length = _length_seconds(p)
    return len(p.seconds) / length if length > 0 else None


def _polyphony(p: Piece) -> Optional[float]:
    """Mean number of notes sounding while any sounds: total note time over the time covered by notes."""
    covered, until = 0.0, -math.inf
    for start, end, _ in sorted(p.seconds):
        covered += max(0.0, end - max(start, until))
        until = max(until, end)
    return sum(end - start for start, end, _ in p.seconds) / covered if covered > 0 else None


def _durations(p: Piece) -> list[float]:
    return [end - start for start, end, _ in p.seconds]


def _inter_onset_intervals(p: Piece) -> list[float]:
    onsets = sorted({round(start, 6) for start, _, _ in p.seconds})
    return [b - a for a, b in zip(onsets, onsets[1:])]


def _scale_consistency(p: Piece) -> float:
    """The largest share of notes that fit one major or harmonic minor scale."""
    classes = Counter(_pitch_classes(p))
    return max(sum(count for pc, count in classes.items() if pc in scale) for scale in SCALES) / len(p.seconds)


def _empty_beat_rate(p: Piece) -> float:
    """The share of beats, from the first note's beat to the last note's end, in which no note sounds."""
    first = math.floor(p.beats[0].start)
    last = math.ceil(max(n.end for n in p.beats))
    busy = set()
    for n in p.beats:
        busy.update(range(math.floor(n.start), math.ceil(n.end)))
    beats = max(last - first, 1)
    return sum(b not in busy for b in range(first, last)) / beats


MIDI_FEATURES = [
    ("pitch class", "", False, _pitch_classes),
    ("pitch range", "semitones", True, _pitch_range),
    ("notes per second", "", True, _notes_per_second),
    ("polyphony", "notes", True, _polyphony),
    ("note duration", "s", False, _durations),
    ("inter-onset interval", "s", False, _inter_onset_intervals),
    ("scale consistency", "", True, _scale_consistency),
    ("empty-beat rate", "", True, _empty_beat_rate),
]


def note_codes(p: Piece) -> str:
    """A piece's pitched notes as a string, one character per note: its pitch and the gap since the
    previous onset in steps (1/24 beat), so that copied music matches at any tempo or instrument."""
    codes, previous = [], None
    for n in sorted(p.beats, key=lambda n: (n.start, n.pitch)):
        step = round(n.start * STEPS_PER_BEAT)
        delta = 0 if previous is None else min(step - previous, MAX_DELTA_STEPS)
        previous = step
        codes.append(chr(1 + n.pitch * (MAX_DELTA_STEPS + 1) + delta))  # below the surrogates (55296)
    return "".join(codes)


# -- text ------------------------------------------------------------------------------


def compare_text(generated: str, corpus: str) -> dict:
    """The text report: bigram and word-length overlap, words known to the corpus, longest copy."""
    if not generated:
        raise ArgumentError("generated", "holds no text to compare")
    generated_words, corpus_words = WORD.findall(generated), WORD.findall(corpus)
    known = set(corpus_words)
    lengths = lambda words: Counter(min(len(w), 20) for w in words)  # noqa: E731
    copied, where = longest_copied_run([generated], [corpus])
    return {
        "kind": "text",
        "features": [
            {"name": "character bigrams", "overlap": distribution_overlap(_bigrams(generated), _bigrams(corpus))},
            {"name": "word lengths", "overlap": distribution_overlap(lengths(generated_words), lengths(corpus_words)),
             "corpus": _mean_spread([len(w) for w in corpus_words]),
             "generated": _mean_spread([len(w) for w in generated_words])},
        ],
        "words_in_corpus": (sum(w in known for w in generated_words) / len(generated_words)
                            if generated_words else None),
        "generated_words": len(generated_words),
        "longest_copied_run": {"characters": copied,  # and its first characters, to find it again
                               "text": generated[where[1]:where[1] + min(copied, SHOWN_COPY)]},
    }


def _bigrams(text: str) -> Counter:
    return Counter(text[i:i + 2] for i in range(len(text) - 1))


def _mean_spread(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "spread": None}
    return {"mean": statistics.fmean(values), "spread": statistics.pstdev(values)}
