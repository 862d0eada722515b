"""chargen serve: an HTTP API and the web studio over models loaded once at startup.

Built on Starlette (routing, requests, streaming) and served by uvicorn; both
come with the ``serve`` extra (``pip install 'chargen[serve]'``).

    GET  /                 the studio (chargen/studio/, shipped in the package)
    GET  /api/models       name, kind, vocabulary size, parameters, best validation bits, loss curves
    POST /api/generate     JSON samples (or beams), or Server-Sent Events with "stream": true
    POST /api/suggest      the most probable completions of a text to a word, phrase or line end
    GET  /generate         robinsloan/torch-rnn-server's query and answer, for rnn-writer

The set of models is fixed when the server starts: no request names a path,
and no request reads or writes a file. Every refusal is a 4xx JSON object
``{"error": "..."}`` (see chargen/serve/requests.py for the checks and limits), and
a model with --max-queue requests in progress answers 503 with Retry-After. Requests
from other web pages, or addressed to a host name this server is not, are refused
before any of that (chargen/serve/guard.py).

    app = create_app(serving.load_models(["checkpoints/shakespeare"], Limits()), Limits())

The models and the generation each request runs live in chargen/serve/models.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from importlib import resources
from typing import Optional

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chargen.errors import ChargenError
from chargen.serve import models as serving
from chargen.serve.guard import Guard
from chargen.serve.models import Served
from chargen.serve.requests import (
    Limits,
    RequestError,
    check_prime,
    check_query_size,
    parse_completion_query,
    parse_generate,
    parse_json,
    parse_suggest,
)

STUDIO_FILES = {"index.html": "text/html", "app.js": "text/javascript", "music.js": "text/javascript",
                "synth.js": "text/javascript", "writer.js": "text/javascript", "style.css": "text/css"}


COMPLETION_MODES = ("sample", "word", "phrase", "line")


def create_app(models: list[Served], limits: Limits, hosts: frozenset[str] = frozenset(),
               completion_mode: str = "sample") -> Starlette:
    """The Starlette application serving `models` under `limits`, answering requests addressed
    to the loopback names and to `hosts` (see guard.allowed_hosts). `completion_mode` is what
    GET /generate answers a query without `unit` with: samples, or suggestions of that unit."""
    assert completion_mode in COMPLETION_MODES, completion_mode
    by_name = {s.name: s for s in models}
    stopping = threading.Event()  # set by serve() on Ctrl-C or SIGTERM: streams end with an error event
    studio = {name: (resources.files("chargen.serve").joinpath("studio", name).read_bytes(), kind)
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
        shown = {"max_length": limits.max_length, "max_samples": limits.max_samples,
                 "max_prime_chars": limits.max_prime_chars, "max_seconds": limits.max_seconds}
        return JSONResponse({"models": [s.facts for s in models], "limits": shown})

    async def generate(request: Request) -> Response:
        body = parse_json(await _read_body(request, limits), limits)
        job = parse_generate(body, limits)
        served = pick(job.model)
        if served.model.kind == "text":
            job.prime = check_prime(job.prime, served.model)
            for name in ("seconds", "prime_midi", "prime_seconds"):
                if getattr(job, name) is not None:
                    raise RequestError(400, f"{name} is for music models; this is a text model")
        else:
            if job.prime:
                raise RequestError(400, "a music model continues a MIDI file: send it in base64 as prime_midi")
            if job.stream:
                raise RequestError(400, "stream is for text models; a music model answers with whole .mid files")
            if job.stop is not None:
                raise RequestError(400, "stop is for text models; a music model ends a piece by itself")
            if job.beam is not None:
                raise RequestError(400, "beam is for text models; this is a music model")
        client = _client(request)
        written: list[str] = []  # the new text of a single text sample, once it is complete
        # After answering, read that text too, so a "continue" from prime + text reuses it all.
        remember = BackgroundTask(lambda: written and served.state_after(job.prime + written[0], client))
        admission = served.admit(limits.max_queue)
        try:
            if job.stream:
                events = serving.stream_events(served, job, written, client, stopping)
                response = StreamingResponse(events, media_type="text/event-stream",
                                             headers={"Cache-Control": "no-cache"}, background=remember)
            else:
                answer = await run_in_threadpool(serving.generate_answer, served, job, client)
                if served.model.kind == "text" and job.n == 1:
                    written.append(answer["samples"][0])
                response = JSONResponse(answer, background=remember)
        except BaseException:
            admission.release()
            raise
        return _releasing(response, admission)

    async def suggest(request: Request) -> Response:
        job = parse_suggest(parse_json(await _read_body(request, limits), limits), limits)
        served = pick(job.model)
        if served.model.kind != "text":
            raise RequestError(400, f"model {served.name!r} writes music; /api/suggest completes text")
        job.text = check_prime(job.text, served.model, "text")
        admission = served.admit(limits.max_queue)
        try:
            answer = await run_in_threadpool(serving.suggest_answer, served, job, _client(request))
        finally:
            admission.release()
        return JSONResponse(answer)

    async def completions(request: Request) -> Response:
        check_query_size(request.scope.get("query_string", b""), limits)
        model, start_text, n, temperature, unit = parse_completion_query(request.query_params, limits)
        served = pick(model)
        if served.model.kind != "text":
            raise RequestError(400, f"model {served.name!r} writes music; /generate completes text")
        prime = check_prime(start_text, served.model, "start_text")
        unit = unit or (None if completion_mode == "sample" else completion_mode)
        if unit is not None and not prime:
            raise RequestError(400, "start_text is empty; suggestions complete a text")
        admission = served.admit(limits.max_queue)
        try:
            answer = await run_in_threadpool(serving.completions, served, prime, n, temperature, _client(request), unit)
        finally:
            admission.release()
        return JSONResponse({"start_text": start_text, **answer})

    routes = [
        Route("/", index),
        Route("/studio/{name}", asset),
        Route("/api/models", list_models),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/suggest", suggest, methods=["POST"]),
        Route("/generate", completions),
    ]
    handlers = {RequestError: _request_error, HTTPException: _http_error, ChargenError: _chargen_error,
                Exception: _internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(Guard, hosts=hosts)])
    app.state.models = models  # for whoever holds the app (tests, benchmarks); requests never change it
    app.state.stopping = stopping
    return app


def _client(request: Request) -> str:
    """Who sent a request, as far as the prime cache keeps clients apart: its address."""
    return request.client.host if request.client else ""


def _releasing(response: Response, admission: serving.Admission):
    """`response` as an ASGI app that gives back the request's place in its model's queue once
    sent: for a stream, when it ends, however it ends (done, client gone, shutdown)."""
    async def send_then_release(scope, receive, send):
        try:
            await response(scope, receive, send)
        finally:
            admission.release()

    return send_then_release


# -- errors: always JSON, never a traceback ------------------------------------------------


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (even without Content-Length),
    and with 408 when it has not all arrived within limits.body_seconds (a client that sends
    less than its Content-Length would otherwise hold the connection forever)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise RequestError(413, f"request body is {int(declared):,} bytes; the limit is {limits.max_request_bytes:,}")
    chunks: list[bytes] = []

    async def read_all() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_request_bytes:
                raise RequestError(413, f"request body is over the limit of {limits.max_request_bytes:,} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read_all(), limits.body_seconds)
    except asyncio.TimeoutError:
        came = sum(map(len, chunks))
        raise RequestError(408, f"the request body did not arrive within {limits.body_seconds:g} s "
                                f"({came:,} bytes came)") from None
    return b"".join(chunks)


async def _request_error(request: Request, exc: RequestError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)


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


MAX_CONNECTIONS = 256  # open connections at once; past it, uvicorn answers 503


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve `app` on a listening socket until Ctrl-C (which raises KeyboardInterrupt after a
    clean shutdown) or SIGTERM; either way, streams in progress end with an "error" event."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.stopping.set()  # a flag, not an asyncio call: this runs in a signal handler
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off",
                            limit_concurrency=MAX_CONNECTIONS)
    Server(config).run(sockets=[sock])
