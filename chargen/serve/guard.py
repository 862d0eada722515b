"""Which requests `chargen serve` answers at all, and the headers every answer carries.

The server runs on a person's own machine while they browse the web, and any page
they open can send requests to 127.0.0.1. Three rules keep such pages out, while
the studio (a page the server serves itself) and clients that are not browsers
(curl, scripts, rnn-writer) work as before:

- **Host.** A page can make its own domain resolve to 127.0.0.1 (DNS rebinding) and
  then read the server's answers as its own. Its requests still name that domain in
  the Host header, so only the names this server is reached by are answered: the
  loopback names (localhost, 127.x.x.x, [::1]) when it listens on loopback, plus the
  --host it listens on and any --allow-host.
- **Origin.** A page may send a request to another site without asking (a form, an
  ``<img>``, a text/plain fetch), though it cannot read the answer; the request would
  still run a generation. Browsers say where a request comes from (Origin, and
  Sec-Fetch-Site in every current browser): one from another origin is refused, except
  a plain navigation to the studio page itself. A request without either header does
  not come from a web page and is answered.
- **Content-Type.** A POST body is read only when it is declared application/json, a
  type no page can send to another origin without the browser asking first (a CORS
  preflight, which this server never grants).

Every answer says that no other page may frame it (X-Frame-Options, CSP
frame-ancestors) and that the studio runs only its own scripts and styles (CSP).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

# The studio loads only its own files; its favicon is an empty data: URL, its download a blob: URL.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
WILDCARD_BINDS = ("0.0.0.0", "::", "")
PAGE_PATHS = ("/",)  # what another site may link to: the studio page, never an API


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server listening on `bind` answers, beside the loopback names:
    `bind` itself, and for a wildcard bind (0.0.0.0, ::) this machine's names. "*" in
    `extra` answers any name."""
    names = {_hostname(bind)} | {_hostname(name) for name in extra}
    if bind in WILDCARD_BINDS:
        names |= {_hostname(socket.gethostname()), _hostname(socket.getfqdn())}
    return frozenset(names - {""})


def is_loopback_name(host: str) -> bool:
    """Whether a host name can only mean this machine: localhost (and *.localhost, which
    browsers never look up in DNS), 127.0.0.0/8 and ::1."""
    host = _hostname(host)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: answers a refused request with a 4xx JSON error, and adds
    SECURITY_HEADERS to every answer."""

    def __init__(self, app, hosts: frozenset[str]):
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            status, message = refusal
            response = JSONResponse({"error": message}, status_code=status)
            response.raw_headers.extend(SECURITY_HEADERS)
            await response(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope) -> tuple[int, str] | None:
        """(status, message) for a request this server does not answer, None for one it does."""
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is not None and not self._answers(host):
            return 400, (f"this server does not answer requests for host {host!r} (it answers "
                         f"{', '.join(self._shown_hosts())}); to reach it by that name, start it with "
                         "--allow-host")
        origin, site = headers.get("origin"), headers.get("sec-fetch-site")
        navigation = scope["method"] == "GET" and headers.get("sec-fetch-mode") == "navigate"
        if navigation and scope["path"] in PAGE_PATHS:
            return None  # a link to the studio from anywhere: showing the page does nothing
        if origin is not None and not _same_origin(origin, scope, host):
            return 403, f"cross-origin request from {origin} refused: the API answers only its own pages"
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"{site} request refused: the API answers only its own pages and clients that are not browsers"
        if scope["method"] == "POST" and _media_type(headers.get("content-type", "")) != "application/json":
            return 415, "the request body must be JSON, sent with Content-Type: application/json"
        return None

    def _answers(self, host: str) -> bool:
        name = _hostname(host)
        return "*" in self.hosts or name in self.hosts or is_loopback_name(name)

    def _shown_hosts(self) -> list[str]:
        return ["localhost", "127.0.0.1", "[::1]", *sorted(self.hosts - {"localhost", "127.0.0.1", "::1"})]


def _hostname(host: str) -> str:
    """The lowercase name in a Host header or an address, without port, brackets or final dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _same_origin(origin: str, scope, host: str | None) -> bool:
    """Whether an Origin header names this server as the request reached it (scheme, host, port)."""
    if host is None or origin == "null":
        return False
    try:
        theirs = urlsplit(origin)
        ours = urlsplit(f"{scope.get('scheme', 'http')}://{host}")
        default = {"http": 80, "https": 443}
        return (theirs.scheme, _hostname(theirs.hostname or ""), theirs.port or default.get(theirs.scheme)) == (
            ours.scheme, _hostname(ours.hostname or ""), ours.port or default.get(ours.scheme))
    except ValueError:  # a port that is not a number
        return False


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
