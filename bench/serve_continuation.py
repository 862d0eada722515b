"""Does continuing a text cost the same however long the text already is?

A writer works with `chargen serve`: the text grows, and every few hundred
characters they ask for a continuation of the whole text so far. The server
keeps the hidden state each prime left (chargen/primecache.py), so a request
feeds the model only the characters added since the last one. The baseline is
the same server with the cache emptied before every request: it reads the
whole text each time, as a stateless server must.

    python bench/serve_continuation.py              # 2x512 LSTM (the defaults), text up to 40,000 characters
    python bench/serve_continuation.py --quick      # smaller, about half a minute

Both sides run in one process, interleaved request by request, through
Starlette's TestClient (no network). Prints each side's latency at every text
length as a ratio to its own latency at the shortest text: a flat column is the
goal. Absolute milliseconds are for this machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="Using .httpx. with .starlette.testclient.")  # httpx works the same

import torch  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import chargen  # noqa: E402,F401 - first: it quiets torch's NumPy warning
from chargen.api import Model  # noqa: E402
from chargen.model import CharRNN, ModelConfig  # noqa: E402
from chargen.serve import app as server  # noqa: E402
from chargen.serve import models as serving
from chargen.serve.primecache import PrimeCache  # noqa: E402
from chargen.serve.requests import Limits  # noqa: E402
from chargen.vocab import Vocab  # noqa: E402

CORPUS = ROOT / "data" / "tinyshakespeare.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller model and shorter text")
    parser.add_argument("--repeats", type=int, default=3, help="requests per text length and side (the median is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    text = CORPUS.read_text(encoding="utf-8")
    hidden, longest, step = (128, 8_000, 2_000) if args.quick else (512, 40_000, 8_000)
    # Latency does not depend on what the weights are, only on their shape: an untrained model will do.
    torch.manual_seed(0)
    network = CharRNN(ModelConfig(vocab_size=len(set(text)), num_layers=2, hidden_size=hidden))
    model = Model(network, Vocab.from_text(text))
    limits = Limits(max_request_bytes=4 * longest, max_prime_chars=2 * longest)
    served = serving.Served("bench", model, None, limits)
    client = TestClient(server.create_app([served], limits), base_url="http://127.0.0.1")

    lengths = list(range(step, longest + 1, step))
    added, generated = 200, 50  # characters the writer adds between requests; characters asked for
    cached: dict[int, list[float]] = {n: [] for n in lengths}
    fresh: dict[int, list[float]] = {n: [] for n in lengths}
    for _ in range(args.repeats):
        for n in lengths:
            # Cached: the previous request's prime is in the cache, as it is while someone writes.
            client.post("/api/generate", json={"prime": text[: n - added], "length": 0})
            cached[n].append(_timed(client, text[:n], generated))
            served.cache = PrimeCache(limits.cache_size)  # the baseline: nothing to reuse
            fresh[n].append(_timed(client, text[:n], generated))
            served.cache = PrimeCache(limits.cache_size)

    print(f"2x{hidden} LSTM, {generated} characters generated per request, {added} added between requests, "
          f"median of {args.repeats}, 1 thread")
    print(f"{'text so far':>12} {'cached ms':>10} {'ratio':>6} {'uncached ms':>12} {'ratio':>6}")
    base_cached, base_fresh = statistics.median(cached[lengths[0]]), statistics.median(fresh[lengths[0]])
    for n in lengths:
        c, f = statistics.median(cached[n]), statistics.median(fresh[n])
        print(f"{n:>12,} {c * 1000:>10.1f} {c / base_cached:>6.2f} {f * 1000:>12.1f} {f / base_fresh:>6.2f}")
    c, f = statistics.median(cached[lengths[-1]]), statistics.median(fresh[lengths[-1]])
    print(f"at {lengths[-1]:,} characters the cached continuation takes {c / f:.3f}x the uncached one")


def _timed(client: TestClient, prime: str, length: int) -> float:
    start = time.perf_counter()
    response = client.post("/api/generate", json={"prime": prime, "length": length, "seed": 1})
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed


if __name__ == "__main__":
    main()
