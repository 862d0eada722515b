"""The models as `chargen serve` holds them, and the generation each request runs.

A Served model is the loaded model with a lock, a bound on the requests it queues, a
cache of hidden states after recent primes (chargen/serve/primecache.py) and its public
facts. The functions below run one request's generation on the thread pool: a whole
JSON answer, a stream of Server-Sent Events, suggestions, or torch-rnn-server's short
completions.
Every call into the model goes through chargen.api; nothing here reads a file after startup.

Each request's prime states are kept for its client (its address) alone: `prime_reused`
counts only characters of that client's own earlier texts, so no client learns, from the
count or from how fast it is answered, how another client's text began.

    served = load_models(["checkpoints/shakespeare"], Limits())
    answer = generate_answer(served[0], parse_generate({"prime": "ROMEO:"}, Limits()))
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Optional

from starlette.concurrency import run_in_threadpool

from chargen.arguments import DEFAULT_PRIME_SECONDS
from chargen.errors import ChargenError
from chargen.serve.primecache import PrimeCache
from chargen.serve.requests import GenerateRequest, Limits, RequestError, SuggestRequest

COMPLETION_CHARS = 120  # /generate: characters drawn per completion before cutting at a boundary
CHART_POINTS = 400  # loss curves are thinned to about this many points per model
STREAM_BATCH_SECONDS = 0.02  # a stream hands pieces to the event loop at least this often
# A prime is read this many characters at a time, the lock taken for each: a long prime
# (about 0.2 s of a 2x512 model per window on a busy 2-core CPU) lets streams go on between.
PRIME_WINDOW_CHARS = 256
RETRY_AFTER_SECONDS = 2  # what a 503 for a busy model suggests


class Served:
    """One model as the server holds it: the model, a lock, its prime cache and its public facts.

    The lock is taken around every call into the model (one prime, one whole
    non-streamed generation, one streamed piece), never across a wait on the
    network, so concurrent requests interleave but never run the model at once.
    """

    def __init__(self, name: str, model, directory: Optional[Path], limits: Limits):
        from chargen.training import metrics

        self.name, self.model = name, model
        self.lock = threading.Lock()
        self.cache = PrimeCache(limits.cache_size)
        self.in_progress = 0  # requests admitted and not yet answered (see admit())
        rows = metrics.read(directory) if directory is not None else []
        info = model.info()  # reads the run's checkpoints: done here, once, never per request
        self.facts = {
            "name": name,
            "kind": model.kind,
            "vocab_size": len(model.vocab),
            "parameters": info["parameters"],
            "best_val_bits": info["best_val_bits"],
            "curves": _curves(rows),
        }

    def state_after(self, prime: str, client: str = "") -> tuple[Any, int]:
        """The model's state after reading `prime`, and how many of its characters came from
        `client`'s cached states.

        Only the characters after the longest cached prefix are fed to the model, a window
        at a time (the lock is released between windows).
        """
        known, state = self.cache.longest_prefix(prime, client)
        for window in windows(prime[len(known):], PRIME_WINDOW_CHARS):
            with self.lock:
                state = self.model.prime_state(window, state=state)
        if len(known) < len(prime):
            self.cache.put(prime, state, client)
        return state, len(known)

    def admit(self, max_queue: int) -> "Admission":
        """A place among the requests this model works on, or a 503 (with Retry-After) when
        max_queue of them are in progress: past that, a request would hold a server thread
        waiting for the lock, and starve the other models and streams. Release it when answered."""
        if self.in_progress >= max_queue:  # on the event loop: no other request runs meanwhile
            raise RequestError(503, f"model {self.name!r} is busy: {self.in_progress} requests are in progress, "
                                    "the most this server queues for it (--max-queue); try again shortly",
                               headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.in_progress += 1
        return Admission(self)


class Admission:
    """One request's place in a model's queue; release() (once, idempotent) gives it back."""

    def __init__(self, served: Served):
        self.served, self.released = served, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.served.in_progress -= 1


def windows(text: str, size: int) -> Iterator[str]:
    """`text` in pieces of about `size` characters, each cut before an ASCII character where
    one is near, so that no piece starts inside a character and its combining marks."""
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text) and text[end] >= "\x80":  # back to an ASCII character, else on to one
            before = (i for i in range(end - 1, max(start, end - 64), -1) if text[i] < "\x80")
            after = (i for i in range(end + 1, min(len(text), end + 64)) if text[i] < "\x80")
            end = next(before, None) or next(after, len(text) if len(text) - end < 64 else end)
        yield text[start:end]
        start = end


def load_models(paths: list[str], limits: Limits, device: str = "cpu") -> list[Served]:
    """Load each run or checkpoint once, on `device`; a model is named after its run directory."""
    import chargen

    served: list[Served] = []
    for path in paths:
        model = chargen.load(path, device=device)
        p = Path(path)
        directory = p if p.is_dir() else p.parent
        name = base = directory.name if p.is_dir() or p.suffix == ".pt" else p.stem
        n = 1
        while any(s.name == name for s in served):
            n += 1
            name = f"{base}-{n}"
        served.append(Served(name, model, directory, limits))
    return served


# -- generation, run on the thread pool ---------------------------------------------------


def _curves(rows: list[dict]) -> dict:
    """Train and validation bits against steps from metrics.jsonl rows, thinned for drawing."""
    every = max(1, len(rows) // CHART_POINTS)
    kept = rows[::every] + ([rows[-1]] if rows and (len(rows) - 1) % every else [])
    return {
        "train": [[r["step"], r["train_bits"]] for r in kept if _finite(r.get("train_bits")) and "step" in r],
        "val": [[r["step"], r["val_bits"]] for r in kept if _finite(r.get("val_bits")) and "step" in r],
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _sample_options(job: GenerateRequest) -> dict:
    return dict(temperature=job.temperature, top_k=job.top_k, top_p=job.top_p, seed=job.seed)


def generate_answer(served: Served, job: GenerateRequest, client: str = "") -> dict:
    """A whole non-streamed answer: texts, or .mid files with their duration, notes and roll."""
    start = time.perf_counter()
    state, reused = served.state_after(job.prime, client) if job.prime else (None, 0)
    with served.lock:
        if served.model.kind == "text":
            out = served.model.generate("", length=job.length, stop=job.stop, n=job.n, state=state, beam=job.beam,
                                        **_sample_options(job))
        else:
            prime_end = _prime_end(served.model, job)  # also refuses a bad file before any work
            out = served.model.generate(job.prime_midi or "", prime_seconds=_prime_seconds(job), length=job.length,
                                        seconds=job.seconds, n=job.n, **_sample_options(job))
    samples = out if isinstance(out, list) else [out]
    answer = {"model": served.name, "kind": served.model.kind, "samples": samples}
    if served.model.kind == "midi":
        answer["samples"] = [_describe_midi(song) for song in samples]
        answer["prime_end"] = prime_end
    return answer | {"prime_reused": reused, "time": round(time.perf_counter() - start, 4)}


def _prime_seconds(job: GenerateRequest) -> float:
    return DEFAULT_PRIME_SECONDS if job.prime_seconds is None else job.prime_seconds


def _prime_end(model, job: GenerateRequest) -> float:
    """Where the music a request continues ends in the written piece, in seconds (0 without a
    prime): the studio draws what comes before in the prime's colour. The file's bytes are read
    in memory; a file that is not MIDI is a 400 naming the problem."""
    if job.prime_midi is None:
        return 0.0
    from chargen.music import midifile, vocabulary

    tokens = midifile.read_prime(job.prime_midi, _prime_seconds(job), model.vocab.version, name="prime_midi")
    return round(vocabulary.tokens_duration(tokens, model.vocab.version), 4)


def _describe_midi(song) -> dict:
    """A generated piece as JSON: the .mid bytes in base64, its length, notes and a roll to draw."""
    from chargen.music import midifile

    buffer = io.BytesIO()
    song.save(file=buffer)
    notes = midifile.piano_roll(song)
    roll = [[round(n.start_s, 4), round(n.end_s, 4), n.pitch, n.velocity, n.program, bool(n.is_drum)] for n in notes]
    return {"midi": base64.b64encode(buffer.getvalue()).decode("ascii"), "seconds": round(song.length, 3),
            "notes": len(notes), "roll": roll}


async def stream_events(served: Served, job: GenerateRequest, written: list[str], client: str = "",
                        stopping: Optional[threading.Event] = None) -> AsyncIterator[str]:
    """Server-Sent Events: one "piece" event per piece of text, then "done" (or "error").

    The whole text is appended to `written` once complete (the caller reads it after
    answering). When `stopping` is set (the server is shutting down), the stream ends
    with an "error" event saying so.
    """
    start = time.perf_counter()
    try:
        state, reused = await run_in_threadpool(served.state_after, job.prime, client) if job.prime else (None, 0)
        pieces = served.model.stream("", length=job.length, stop=job.stop, state=state, **_sample_options(job))
        text = []
        while True:
            if stopping is not None and stopping.is_set():
                yield _event("error", {"error": "the server is shutting down; this stream ends here"})
                return
            batch = await run_in_threadpool(_take_pieces, served.lock, pieces)
            if not batch:
                break
            for piece in batch:
                text.append(piece)
                yield _event("piece", {"text": piece})
        written.append("".join(text))
        yield _event("done", {"text": written[0], "prime_reused": reused,
                              "time": round(time.perf_counter() - start, 4)})
    except ChargenError as e:  # the status line is sent already: report in the stream
        yield _event("error", {"error": str(e)})


def _take_pieces(lock: threading.Lock, pieces: Iterator[str]) -> list[str]:
    """The next pieces of a stream, at least one, drawn under the model's lock one at a time; [] at its end.

    Batching saves a thread hop per character; the deadline keeps the stream smooth.
    """
    batch: list[str] = []
    deadline = time.perf_counter() + STREAM_BATCH_SECONDS
    while True:
        with lock:
            piece = next(pieces, None)
        if piece is None:
            return batch
        batch.append(piece)
        if time.perf_counter() >= deadline:
            return batch


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def completions(served: Served, prime: str, n: int, temperature: float, client: str = "",
                unit: Optional[str] = None) -> dict:
    """torch-rnn-server's completions and time: short continuations of `prime`, each cut at a
    word or sentence end; with `unit`, the n most probable suggestions instead (and their
    probabilities), the same every time."""
    start = time.perf_counter()
    if unit is not None:
        answer = suggest_answer(served, SuggestRequest(text=prime, n=n, unit=unit), client)
        return {"completions": [s["text"] for s in answer["suggestions"]],
                "probabilities": [s["probability"] for s in answer["suggestions"]],
                "time": round(time.perf_counter() - start, 2)}
    state, _ = served.state_after(prime, client) if prime else (None, 0)
    with served.lock:
        out = served.model.generate("", length=COMPLETION_CHARS, temperature=temperature, n=n, state=state)
    texts = out if isinstance(out, list) else [out]
    return {"completions": [cut_at_boundary(t) for t in texts],
            "time": round(time.perf_counter() - start, 2)}


def suggest_answer(served: Served, job: SuggestRequest, client: str = "") -> dict:
    """The n most probable completions of job.text to the end of job.unit, from the state the
    prime cache holds for it (for this client): a text that grew by a few characters costs only those."""
    start = time.perf_counter()
    state, reused = served.state_after(job.text, client)
    with served.lock:
        found = served.model.suggest("", n=job.n, unit=job.unit, state=state)
    return {"model": served.name, "unit": job.unit,
            "suggestions": [{"text": s.text, "probability": s.probability} for s in found],
            "prime_reused": reused, "time": round(time.perf_counter() - start, 4)}


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def cut_at_boundary(text: str) -> str:
    """`text` up to its first line or sentence end, else its last word end, trailing spaces dropped."""
    line, newline, _ = text.partition("\n")
    end = _SENTENCE_END.search(line)
    if end:
        return line[: end.end()]
    if newline:  # the line ended: a boundary already
        return line.rstrip()
    space = line.rstrip().rfind(" ")
    return (line[:space] if space > 0 else line).rstrip()
