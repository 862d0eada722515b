"""How alike two samples are: overlapped areas of distributions, percentiles, the longest copied run.

Plain statistics on numbers and strings, for `chargen compare` (chargen/data/compare.py):

    distribution_overlap(Counter("abca"), Counter("abbd"))   # 0.5: sum of min(p, q) over shared keys
    kde_overlap([1.0, 1.2, 0.9], [1.1, 1.3])                 # the overlapped area of two densities
    longest_copied_run(["xxabcdyy"], ["..abcde.."])          # (4, (0, 2))

The overlapped area is Yang & Lerch's measure (2018, "On the evaluation of generative
models in music"): 1 for the same distribution, 0 for none in common.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from typing import Optional, Sequence

KDE_POINTS = 512  # grid points on which two densities are compared


def distribution_overlap(a: Counter, b: Counter) -> Optional[float]:
    """Overlapped area of two normalized histograms over the same keys: sum of min(p, q)."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return None
    return sum(min(count / total_a, b[key] / total_b) for key, count in a.items() if key in b)


def histogram_overlap(a: Sequence[float], b: Sequence[float], bins: Sequence[float]) -> Optional[float]:
    """Overlapped area of the histograms of two samples, `bins` being the inner bin edges (ascending)."""
    bin_of = lambda v: bisect.bisect_right(bins, v)  # noqa: E731
    return distribution_overlap(Counter(map(bin_of, a)), Counter(map(bin_of, b)))


def kde_overlap(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Overlapped area of the Gaussian kernel density estimates of two samples (Yang & Lerch 2018).

    Bandwidths follow Silverman's rule of thumb; a sample of identical values
    gets a narrow kernel (1% of the pooled spread, or 1% of its magnitude).
    """
    if not a or not b:
        return None
    pooled = list(a) + list(b)
    scale = statistics.pstdev(pooled) or abs(statistics.fmean(pooled)) or 1.0
    bandwidths = [max(1.06 * statistics.pstdev(s) * len(s) ** -0.2, 0.01 * scale) for s in (a, b)]
    low = min(pooled) - 4 * max(bandwidths)
    high = max(pooled) + 4 * max(bandwidths)
    step = (high - low) / (KDE_POINTS - 1)
    grid = [low + i * step for i in range(KDE_POINTS)]
    densities = [_kde(s, h, grid) for s, h in zip((a, b), bandwidths)]
    return min(1.0, sum(min(p, q) for p, q in zip(*densities)) * step)


def _kde(sample: Sequence[float], bandwidth: float, grid: list[float]) -> list[float]:
    norm = 1.0 / (len(sample) * bandwidth * math.sqrt(2 * math.pi))
    return [norm * sum(math.exp(-0.5 * ((x - v) / bandwidth) ** 2) for v in sample
                       if abs(x - v) < 8 * bandwidth) for x in grid]


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """The `percent` percentile of ascending values, interpolated linearly."""
    if not sorted_values:
        return math.inf
    position = (len(sorted_values) - 1) * percent / 100
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (position - below)


def longest_copied_run(generated: Sequence[str], corpus: Sequence[str]) -> tuple[int, tuple[int, int]]:
    """(length, (generated index, start)) of the longest substring of any generated string found in any
    corpus string: a run of notes (one character each) or of text copied verbatim.

    Greedy and exact: for each start position, try to extend the best length so far by one; a
    failed try moves the start on. Each try is one substring search in C over the corpus.
    """
    haystack = "\0".join(corpus)  # "\0" occurs in no note code, and joins text files as a non-match
    best, where = 0, (0, 0)
    for index, text in enumerate(generated):
        for start in range(len(text)):
            if start + best >= len(text):
                break
            while start + best < len(text) and text[start:start + best + 1] in haystack:
                best += 1
                where = (index, start)
    return best, where
