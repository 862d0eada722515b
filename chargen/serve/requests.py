"""The server's requests, checked at the boundary: limits, fields, ranges.

Every problem with a request becomes a RequestError carrying an HTTP status and
one lowercase sentence naming the problem, which the server sends back as
``{"error": "..."}``. Nothing here touches a model beyond its vocabulary.

    limits = Limits(max_length=500)
    request = parse_generate({"prime": "ROMEO:", "length": 80}, limits)
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Limits:
    """What one request may ask for, so that no request can exhaust memory or time."""

    max_length: int = 2000  # tokens generated per sample
    max_samples: int = 10  # n; torch-rnn-server capped n at 10 too
    max_request_bytes: int = 256 * 1024  # body size, and so the prime's size
    max_seconds: float = 120.0  # music: seconds of music per sample
    cache_size: int = 32  # primes whose hidden states each model keeps

    def __post_init__(self):
        for name in ("max_length", "max_samples", "max_request_bytes", "cache_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


class RequestError(Exception):
    """A request the server refuses: `status` is the HTTP status, the message names the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class GenerateRequest:
    """A checked POST /api/generate body. Field names are the JSON keys."""

    model: Optional[str] = None  # None: the first model the server was started with
    prime: str = ""
    length: int = 200
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    stop: Optional[str] = None
    seed: Optional[int] = None
    n: int = 1
    seconds: Optional[float] = None  # music only
    stream: bool = False
    options: dict = field(default_factory=dict, repr=False)  # the fields the client actually sent


FIELDS = ("model", "prime", "length", "temperature", "top_k", "top_p", "stop", "seed", "n", "seconds", "stream")
MAX_STOP_CHARS = 200
MAX_TEMPERATURE = 100.0
SEED_RANGE = (0, 2**63 - 1)


def parse_json(body: bytes, limits: Limits) -> Any:
    """The JSON value in a request body; 413 when it is too large, 400 when it is not JSON."""
    if len(body) > limits.max_request_bytes:
        raise RequestError(413, f"request body is {len(body):,} bytes; the limit is {limits.max_request_bytes:,}")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "malformed JSON: the body is not UTF-8") from None
    except ValueError as e:
        raise RequestError(400, f"malformed JSON: {e}") from None


def parse_generate(body: Any, limits: Limits) -> GenerateRequest:
    """Check a decoded POST /api/generate body against the field list and the limits."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    get = body.get
    request = GenerateRequest(
        model=_optional(get("model"), str, "model"),
        prime=_string(get("prime", ""), "prime"),
        length=_integer(get("length", 200), "length", 0, limits.max_length),
        temperature=_number(get("temperature", 1.0), "temperature", 0.0, MAX_TEMPERATURE),
        top_k=None if get("top_k") is None else _integer(get("top_k"), "top_k", 1, None),
        top_p=None if get("top_p") is None else _number(get("top_p"), "top_p", 0.0, 1.0, low_open=True),
        stop=_optional(get("stop"), str, "stop") or None,
        seed=None if get("seed") is None else _integer(get("seed"), "seed", *SEED_RANGE),
        n=_integer(get("n", 1), "n", 1, limits.max_samples),
        seconds=None if get("seconds") is None else _number(get("seconds"), "seconds", 0.0, limits.max_seconds, low_open=True),
        stream=_boolean(get("stream", False), "stream"),
        options=dict(body),
    )
    if request.stop is not None and len(request.stop) > MAX_STOP_CHARS:
        raise RequestError(400, f"stop must be at most {MAX_STOP_CHARS} characters")
    if request.stream and request.n != 1:
        raise RequestError(400, "stream works with n = 1; ask for several samples without stream")
    return request


def parse_completion_query(query, limits: Limits) -> tuple[Optional[str], str, int, float]:
    """GET /generate?start_text=...&n=...[&model=...&temperature=...]: torch-rnn-server's query."""
    unknown = [k for k in query.keys() if k not in ("start_text", "n", "model", "temperature")]
    if unknown:
        raise RequestError(400, f"unknown parameter {unknown[0]!r}; the parameters are start_text, n, model, temperature")
    n = _integer(_query_number(query.get("n", "3"), "n", int), "n", 1, limits.max_samples)
    temperature = _number(_query_number(query.get("temperature", "0.8"), "temperature", float), "temperature", 0.0, MAX_TEMPERATURE)
    return query.get("model"), query.get("start_text", ""), n, temperature


def check_prime(prime: str, vocab, name: str = "prime") -> str:
    """`prime` as a text model can read it (NFC-normalized if that makes it fit),
    or a 400 naming the characters the model's vocabulary lacks."""
    if not vocab.missing(prime):
        return prime
    composed = unicodedata.normalize("NFC", prime)  # e + combining accent -> é
    missing = vocab.missing(composed)
    if not missing:
        return composed
    shown = ", ".join(repr(c) for c in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    raise RequestError(400, f"{name} has characters the model's vocabulary lacks: {shown}{more}")


# -- one checker per JSON type ------------------------------------------------------------


def _query_number(text: str, name: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise RequestError(400, f"{name} must be a number, got {text!r}") from None


def _optional(value, kind, name):
    if value is not None and not isinstance(value, kind):
        raise RequestError(400, f"{name} must be a string or null")
    return value


def _string(value, name: str) -> str:
    if not isinstance(value, str):
        raise RequestError(400, f"{name} must be a string")
    return value


def _boolean(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(400, f"{name} must be true or false")
    return value


def _integer(value, name: str, low: int, high: Optional[int]) -> int:
    # JSON has one number type: accept 3.0 as 3, refuse 3.5 and true (a bool is an int in Python).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise RequestError(400, f"{name} must be {allowed}, got {value}")
    return value


def _number(value, name: str, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{name} must be a number")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if too_low or value > high or value != value:  # value != value: NaN
        bracket = "(" if low_open else "["
        raise RequestError(400, f"{name} must be in {bracket}{low:g}, {high:g}], got {value:g}")
    return value
