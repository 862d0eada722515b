"""What writing with a model costs: suggestions after a long document, and beam search.

1. Suggestions reuse the hidden state of the text. A writer has a document open; the
   editor holds the model's state after it, and after a few more keystrokes asks for the
   3 most probable next words. Does that cost more after a 10,000-character document
   than after a 100-character one? Both documents end in the same 100 characters of Tiny
   Shakespeare, so the searches face the same distribution; the state of each, minus its
   last 5 characters, is read beforehand, and every timed call reads those 5 and searches
   (Model.suggest(typed, state=...)). The baseline reads each whole document and searches,
   as an editor without state would.
2. A beam of 8 steps 8 beams and one greedy stream as one batch: how does it compare with
   8 samples drawn side by side, for the same length?

Every pair is timed interleaved in one process (a, b, a, b, ...) and reported as the
ratio of medians: on a shared machine, only ratios measured side by side mean anything.

    python bench/writing.py checkpoints/ts-writer            # a trained text model
    python bench/writing.py checkpoints/ts-writer --repeats 51 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import chargen  # noqa: E402
from chargen import precision as precisions  # noqa: E402
from chargen.sampling import suggest as search  # noqa: E402

CORPUS = ROOT / "data" / "tinyshakespeare.txt"
TYPED = 5  # characters typed since the editor's state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or checkpoint of a text model (search costs depend on "
                                    "what it has learned, so an untrained model will not do)")
    parser.add_argument("--repeats", type=int, default=31, help="timed calls per side (the median is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = chargen.load(args.run, precision=args.precision)
    text = CORPUS.read_text(encoding="utf-8")
    cpu = precisions.describe_cpu()["cpu"]
    c = model.config
    print(f"{cpu} ({os.cpu_count()} cores), torch {torch.__version__}, {args.threads} thread(s), {model.precision.name}; "
          f"{c.num_layers}x{c.hidden_size} {c.cell.upper()} from {args.run}; median of {args.repeats}; "
          "a shared machine: read the ratios")

    # -- suggestions after a long and a short document, ending alike --------------------------
    ends = [500_000 + 7_919 * i for i in range(5)]  # a few places in the corpus, each timed alike
    long_calls, short_calls, long_fresh, short_fresh, prefixes = [], [], [], [], {"long": 0, "short": 0}
    for end in ends:
        long_doc, short_doc = text[end - 10_000 : end], text[end - 100 : end]
        long_state = model.prime_state(long_doc[:-TYPED])
        short_state = model.prime_state(short_doc[:-TYPED])
        typed = long_doc[-TYPED:]
        for side, state in (("long", long_state), ("short", short_state)):
            prefixes[side] += _prefixes_read(lambda: model.suggest(typed, n=3, state=state))
        for _ in range(max(1, args.repeats // len(ends))):
            long_calls.append(_time(lambda: model.suggest(typed, n=3, state=long_state)))
            short_calls.append(_time(lambda: model.suggest(typed, n=3, state=short_state)))
            long_fresh.append(_time(lambda: model.suggest(long_doc, n=3)))
            short_fresh.append(_time(lambda: model.suggest(short_doc, n=3)))
    lm, sm = statistics.median(long_calls), statistics.median(short_calls)
    lf, sf = statistics.median(long_fresh), statistics.median(short_fresh)
    print("\n3 word suggestions, 5 characters typed since the state, at 5 places in Tiny Shakespeare:")
    print(f"  {'document of':<32} {'10,000 chars':>12} {'100 chars':>10} {'ratio':>6}")
    print(f"  {'its state kept, 5 chars read':<32} {lm * 1e3:>9.1f} ms {sm * 1e3:>7.1f} ms {lm / sm:>6.2f}")
    print(f"  {'the whole document read':<32} {lf * 1e3:>9.1f} ms {sf * 1e3:>7.1f} ms {lf / sf:>6.2f}")
    print(f"  prefixes the searches read: {prefixes['long']} after the long documents, "
          f"{prefixes['short']} after the short ones")

    # -- a beam of 8 against 8 samples ---------------------------------------------------------
    beam, samples = [], []
    for i in range(args.repeats):
        beam.append(_time(lambda: model.generate("ROMEO:\n", length=200, beam=8)))
        samples.append(_time(lambda: model.generate("ROMEO:\n", length=200, n=8, seed=i)))
    b, s = statistics.median(beam), statistics.median(samples)
    print(f"\n200 characters after 'ROMEO:\\n': beam of 8 {b * 1e3:.1f} ms, 8 samples {s * 1e3:.1f} ms, "
          f"ratio {b / s:.2f}")


def _time(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _prefixes_read(call) -> int:
    """How many prefixes one search reads (its model steps times their batch)."""
    counted, real = [0], search._Search._read

    def counting(self, reading):
        counted[0] += len(reading)
        return real(self, reading)

    search._Search._read = counting
    try:
        call()
    finally:
        search._Search._read = real
    return counted[0]


if __name__ == "__main__":
    main()
