"""chargen serve: an HTTP API and the web studio over models loaded once at startup.

Built on Starlette (routing, requests, streaming) and served by uvicorn; both
come with the ``serve`` extra (``pip install 'chargen[serve]'``).

    GET  /                 the studio (chargen/studio/, shipped in the package)
    GET  /api/models       name, kind, vocabulary size, parameters, best validation bits, loss curves
    POST /api/generate     JSON samples, or Server-Sent Events with "stream": true
    GET  /generate         robinsloan/torch-rnn-server's query and answer, for rnn-writer

The set of models is fixed when the server starts: no request names a path,
and no request reads or writes a file. Every refusal is a 4xx JSON object
``{"error": "..."}`` (see chargen/webrequest.py for the checks and limits).

    app = create_app(load_models(["checkpoints/shakespeare"], Limits()), Limits())
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Optional

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chargen.errors import ChargenError
from chargen.primecache import PrimeCache
from chargen.webrequest import Limits, RequestError, check_prime, parse_completion_query, parse_generate, parse_json

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
STUDIO_FILES = {"index.html": "text/html", "app.js": "text/javascript", "synth.js": "text/javascript",
                "style.css": "text/css"}
COMPLETION_CHARS = 120  # /generate: characters drawn per completion before cutting at a boundary
CHART_POINTS = 400  # loss curves are thinned to about this many points per model
STREAM_BATCH_SECONDS = 0.02  # a stream hands pieces to the event loop at least this often


class Served:
    """One model as the server holds it: the model, a lock, its prime cache and its public facts.

    The lock is taken around every call into the model (one prime, one whole
    non-streamed generation, one streamed piece), never across a wait on the
    network, so concurrent requests interleave but never run the model at once.
    """

    def __init__(self, name: str, model, directory: Optional[Path], limits: Limits):
        from chargen.run import read_metrics

        self.name, self.model = name, model
        self.lock = threading.Lock()
        self.cache = PrimeCache(limits.cache_size)
        rows = read_metrics(directory) if directory is not None else []
        info = model.info()  # reads the run's checkpoints: done here, once, never per request
        self.facts = {
            "name": name,
            "kind": model.kind,
            "vocab_size": len(model.vocab),
            "parameters": info["parameters"],
            "best_val_bits": info["best_val_bits"],
            "curves": _curves(rows),
        }

    def state_after(self, prime: str) -> tuple[Any, int]:
        """The model's state after reading `prime`, and how many of its characters came from the cache.

        Only the characters after the longest cached prefix are fed to the model.
        """
        known, state = self.cache.longest_prefix(prime)
        if len(known) < len(prime):
            with self.lock:
                state = self.model.prime_state(prime[len(known):], state=state)
            self.cache.put(prime, state)
        return state, len(known)


def load_models(paths: list[str], limits: Limits) -> list[Served]:
    """Load each run or checkpoint once; a model is named after its run directory."""
    import chargen

    served: list[Served] = []
    for path in paths:
        model = chargen.load(path)
        p = Path(path)
        directory = p if p.is_dir() else p.parent
        name = base = directory.name if p.is_dir() or p.suffix == ".pt" else p.stem
        n = 1
        while any(s.name == name for s in served):
            n += 1
            name = f"{base}-{n}"
        served.append(Served(name, model, directory, limits))
    return served


def create_app(models: list[Served], limits: Limits) -> Starlette:
    """The Starlette application serving `models` under `limits`."""
    by_name = {s.name: s for s in models}
    studio = {name: (resources.files("chargen").joinpath("studio", name).read_bytes(), kind)
              for name, kind in STUDIO_FILES.items()}  # read once: requests never touch the disk

    def pick(name: Optional[str]) -> Served:
        if name is None:
            return models[0]
        if name not in by_name:
            raise RequestError(404, f"unknown model {name!r}; this server has {', '.join(by_name)}")
        return by_name[name]

    def page(name: str) -> Response:
        content, media_type = studio[name]
        return Response(content, media_type=media_type)

    async def index(request: Request) -> Response:
        return page("index.html")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in studio:
            raise RequestError(404, f"no studio file {name!r}")
        return page(name)

    async def list_models(request: Request) -> Response:
        return JSONResponse({"models": [s.facts for s in models]})

    async def generate(request: Request) -> Response:
        body = parse_json(await _read_body(request, limits), limits)
        job = parse_generate(body, limits)
        served = pick(job.model)
        if served.model.kind == "text":
            job.prime = check_prime(job.prime, served.model.vocab)
            if job.seconds is not None:
                raise RequestError(400, "seconds is for music models; this is a text model")
        else:
            if job.prime:
                raise RequestError(400, "a music model takes no prime over HTTP; leave prime empty")
            if job.stream:
                raise RequestError(400, "stream is for text models; a music model answers with whole .mid files")
        written: list[str] = []  # the new text of a single text sample, once it is complete
        # After answering, read that text too, so a "continue" from prime + text reuses it all.
        remember = BackgroundTask(lambda: written and served.state_after(job.prime + written[0]))
        if job.stream:
            return StreamingResponse(_events(served, job, written), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"}, background=remember)
        answer = await run_in_threadpool(_generate_json, served, job)
        if served.model.kind == "text" and job.n == 1:
            written.append(answer["samples"][0])
        return JSONResponse(answer, background=remember)

    async def completions(request: Request) -> Response:
        model, start_text, n, temperature = parse_completion_query(request.query_params, limits)
        served = pick(model)
        if served.model.kind != "text":
            raise RequestError(400, f"model {served.name!r} writes music; /generate completes text")
        prime = check_prime(start_text, served.model.vocab, "start_text")
        answer = await run_in_threadpool(_completions, served, prime, n, temperature)
        return JSONResponse({"start_text": start_text, **answer})

    routes = [
        Route("/", index),
        Route("/studio/{name}", asset),
        Route("/api/models", list_models),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/generate", completions),
    ]
    handlers = {RequestError: _request_error, HTTPException: _http_error, ChargenError: _chargen_error,
                Exception: _internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.models = models  # for whoever holds the app (tests, benchmarks); requests never change it
    return app


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
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _sample_options(job) -> dict:
    return dict(temperature=job.temperature, top_k=job.top_k, top_p=job.top_p, seed=job.seed)


def _generate_json(served: Served, job) -> dict:
    """A whole non-streamed answer: texts, or .mid files with their duration, notes and roll."""
    start = time.perf_counter()
    state, reused = served.state_after(job.prime) if job.prime else (None, 0)
    with served.lock:
        if served.model.kind == "text":
            out = served.model.generate("", length=job.length, stop=job.stop, n=job.n, state=state,
                                        **_sample_options(job))
        else:
            out = served.model.generate(length=job.length, seconds=job.seconds, n=job.n, **_sample_options(job))
    samples = out if isinstance(out, list) else [out]
    if served.model.kind == "midi":
        samples = [_describe_midi(song) for song in samples]
    return {"model": served.name, "kind": served.model.kind, "samples": samples,
            "prime_reused": reused, "time": round(time.perf_counter() - start, 4)}


def _describe_midi(song) -> dict:
    """A generated piece as JSON: the .mid bytes in base64, its length, notes and a roll to draw."""
    from chargen import midi

    buffer = io.BytesIO()
    song.save(file=buffer)
    notes = midi.piano_roll(song)
    roll = [[round(n.start_s, 4), round(n.end_s, 4), n.pitch, n.velocity, n.program, bool(n.is_drum)] for n in notes]
    return {"midi": base64.b64encode(buffer.getvalue()).decode("ascii"), "seconds": round(song.length, 3),
            "notes": len(notes), "roll": roll}


async def _events(served: Served, job, written: list[str]) -> Iterator[str]:
    """Server-Sent Events: one "piece" event per piece of text, then "done" (or "error")."""
    start = time.perf_counter()
    try:
        state, reused = await run_in_threadpool(served.state_after, job.prime) if job.prime else (None, 0)
        pieces = served.model.stream("", length=job.length, stop=job.stop, state=state, **_sample_options(job))
        text = []
        while True:
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


def _completions(served: Served, prime: str, n: int, temperature: float) -> dict:
    """torch-rnn-server's completions and time: short continuations of `prime`, each cut at a word or sentence end."""
    start = time.perf_counter()
    state, _ = served.state_after(prime) if prime else (None, 0)
    with served.lock:
        out = served.model.generate("", length=COMPLETION_CHARS, temperature=temperature, n=n, state=state)
    texts = out if isinstance(out, list) else [out]
    return {"completions": [cut_at_boundary(t) for t in texts],
            "time": round(time.perf_counter() - start, 2)}


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


# -- errors: always JSON, never a traceback ------------------------------------------------


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (even without Content-Length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise RequestError(413, f"request body is {int(declared):,} bytes; the limit is {limits.max_request_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_request_bytes:
            raise RequestError(413, f"request body is over the limit of {limits.max_request_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _request_error(request: Request, exc: RequestError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    messages = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return JSONResponse({"error": messages.get(exc.status_code, exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


async def _chargen_error(request: Request, exc: ChargenError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # A bug, not the client's mistake: say so without leaking a traceback to the network.
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, status_code=500)


# -- running -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; ChargenError in one line when that address is unusable."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as e:
        raise ChargenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve `app` on a listening socket until Ctrl-C (which raises KeyboardInterrupt after a clean shutdown)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
