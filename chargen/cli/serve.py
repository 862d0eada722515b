"""`chargen serve`: the HTTP API and the web studio over trained models."""

from __future__ import annotations

import click
from rich.markup import escape

from chargen.cli.display import err
from chargen.cli.options import whole
from chargen.errors import ChargenError


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (the default is reachable from this machine only).")
@click.option("--port", type=whole(0, 65535), default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--max-length", type=whole(1), default=2000, show_default=True, help="Most tokens one sample may ask for.")
@click.option("--max-samples", type=whole(1), default=10, show_default=True, help="Most samples (n) one request may ask for.")
@click.option("--max-request-bytes", type=whole(1), default=256 * 1024, show_default=True, help="Largest request body (or GET query) accepted.")
@click.option("--max-prime-chars", type=whole(1), default=32_768, show_default=True, help="Most characters of prime one request may ask the model to read.")
@click.option("--max-queue", type=whole(1), default=8, show_default=True, help="Requests in progress per model; past it, 503 with Retry-After.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME", help="Also answer requests addressed to this host name (repeat for several; * for any).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True, help="Where the models run.")
@click.option("--completions", type=click.Choice(["sample", "word", "phrase", "line"]), default="sample", show_default=True, help="What GET /generate (rnn-writer) answers: random samples cut at a word or sentence end, or the most probable word, phrase or line.")
def serve(runs, host, port, max_length, max_samples, max_request_bytes, max_prime_chars, max_queue, allow_hosts,
          device, completions):
    """Serve RUNS (run directories or checkpoints) over HTTP, with the web studio at /.

    Each model is loaded once. The API: GET /api/models, POST /api/generate
    (JSON, or Server-Sent Events with "stream": true), POST /api/suggest and
    GET /generate, the query robinsloan/torch-rnn-server answered, for
    rnn-writer (--completions word: with suggestions). Requests from other web
    pages, and requests addressed to a host name other than this server's (DNS
    rebinding), are refused; see the README's Security section. Ctrl-C stops it.

    \b
    Example:
      chargen serve checkpoints/tinyshakespeare-20261121-120000
      chargen serve checkpoints/shakespeare checkpoints/bach --port 8080
      chargen serve checkpoints/shakespeare --completions phrase
    """
    try:
        import uvicorn  # noqa: F401 - only checked here; chargen.serve.app runs it

        from chargen.serve import app as server
        from chargen.serve import guard
        from chargen.serve import models as serving
        from chargen.serve.requests import Limits
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("starlette", "uvicorn"):
            raise ChargenError("chargen serve needs the serve extra: pip install 'chargen[serve]'") from e
        raise
    limits = Limits(max_length=max_length, max_samples=max_samples, max_request_bytes=max_request_bytes,
                    max_prime_chars=max_prime_chars, max_queue=max_queue)
    models = serving.load_models(list(runs), limits, device=device)
    import torch

    # Once, before any request thread exists: each takes this count when it starts (sampling/threads.py).
    torch.set_num_threads(min(s.model.sampling_threads(limits.max_length) for s in models))
    hosts = guard.allowed_hosts(host, allow_hosts)
    app = server.create_app(models, limits, hosts, completion_mode=completions)
    sock = server.listen(host, port)
    if not guard.is_loopback_name(host):
        err.print(f"[yellow]warning:[/] listening on {escape(host)}: other machines can reach this server; "
                  "use --host 127.0.0.1 to keep it local")
        names = "any host name" if "*" in hosts else ", ".join(sorted(hosts)) + " and the loopback names"
        err.print(f"answering requests addressed to {escape(names)} (--allow-host adds more)")
    where = sock.getsockname()
    shown_host = f"[{where[0]}]" if ":" in where[0] else where[0]
    for s in models:
        err.print(f"model {escape(s.name)}: {s.model.kind}, {s.facts['parameters']:,} parameters")
    err.print(f"serving at http://{shown_host}:{where[1]}/ (Ctrl-C stops)")
    try:
        server.serve(app, sock)
    except KeyboardInterrupt:
        pass
    err.print("Stopped.")
