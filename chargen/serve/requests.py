"""The server's requests, checked at the boundary: limits, fields, ranges.

Every problem with a request becomes a RequestError carrying an HTTP status and
one lowercase sentence naming the problem, which the server sends back as
``{"error": "..."}``. Nothing here touches a model beyond its vocabulary.

    limits = Limits(max_length=500)
    request = parse_generate({"prime": "ROMEO:", "length": 80}, limits)

The ranges of the numbers are chargen/arguments.py's, as for the Python API and the
command line; the limits above only lower some ceilings.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Optional

from chargen.arguments import (
    BEAM,
    LENGTH,
    PRIME_SECONDS,
    SAMPLES,
    SECONDS,
    SEED,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    Range,
)
from chargen.errors import ArgumentError
from chargen.sampling.suggest import UNITS


@dataclass
class Limits:
    """What one request may ask for, so that no request can exhaust memory or time."""

    max_length: int = 2000  # tokens generated per sample
    max_samples: int = 10  # n; torch-rnn-server capped n at 10 too
    max_request_bytes: int = 256 * 1024  # a POST body, or a GET's query
    # Characters of prime read per request: reading costs time (about 1 ms a character for a
    # 2x512 model on a busy 2-core CPU), so this bounds one request's cost, not its size.
    max_prime_chars: int = 32_768
    max_seconds: float = 120.0  # music: seconds of music per sample
    cache_size: int = 32  # primes whose hidden states each model keeps
    max_queue: int = 8  # requests in progress per model; past it, 503 and Retry-After
    body_seconds: float = 10.0  # a request body must arrive within this time, or 408

    def __post_init__(self):
        for name in ("max_length", "max_samples", "max_request_bytes", "max_prime_chars", "cache_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_seconds", "body_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class RequestError(Exception):
    """A request the server refuses: `status` is the HTTP status, the message names the problem."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


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
    beam: Optional[int] = None  # text only: beam search instead of sampling
    prime_midi: Optional[bytes] = None  # music: a MIDI file to continue, sent in base64 and kept in memory
    prime_seconds: Optional[float] = None  # music: how much of it (None: DEFAULT_PRIME_SECONDS)


FIELDS = ("model", "prime", "length", "temperature", "top_k", "top_p", "stop", "seed", "n", "seconds", "stream",
          "beam", "prime_midi", "prime_seconds")


@dataclass
class SuggestRequest:
    """A checked POST /api/suggest body. Field names are the JSON keys."""

    model: Optional[str] = None
    text: str = ""
    n: int = 3
    unit: str = "word"


SUGGEST_FIELDS = ("model", "text", "n", "unit")
MAX_STOP_CHARS = 200


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
    except RecursionError:  # [[[[... 100,000 deep: no request of this API nests at all
        raise RequestError(400, "malformed JSON: nested too deeply") from None


def _check_fields(body: Any, fields) -> None:
    """A request body is a JSON object whose keys are all among `fields`."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    unknown = [k for k in body if k not in fields]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; the fields are {', '.join(fields)}")


def parse_generate(body: Any, limits: Limits) -> GenerateRequest:
    """Check a decoded POST /api/generate body against the field list and the limits."""
    _check_fields(body, FIELDS)
    get = body.get
    request = GenerateRequest(
        model=_optional(get("model"), str, "model"),
        prime=_string(get("prime", ""), "prime"),
        length=_ranged(get("length", 200), LENGTH, limits.max_length),
        temperature=_ranged(get("temperature", 1.0), TEMPERATURE),
        top_k=_ranged(get("top_k"), TOP_K),
        top_p=_ranged(get("top_p"), TOP_P),
        stop=_optional(get("stop"), str, "stop") or None,
        seed=_ranged(get("seed"), SEED),
        n=_ranged(get("n", 1), SAMPLES, limits.max_samples),
        seconds=_ranged(get("seconds"), SECONDS, limits.max_seconds),
        stream=_boolean(get("stream", False), "stream"),
        beam=_ranged(get("beam"), BEAM, limits.max_samples),  # a beam's streams cost what samples cost
        prime_midi=_base64(get("prime_midi"), "prime_midi"),
        prime_seconds=_ranged(get("prime_seconds"), PRIME_SECONDS),
    )
    check_prime_length(request.prime, limits)
    if request.stop is not None and len(request.stop) > MAX_STOP_CHARS:
        raise RequestError(400, f"stop must be at most {MAX_STOP_CHARS} characters")
    if request.stream and request.n != 1:
        raise RequestError(400, "stream works with n = 1; ask for several samples without stream")
    if request.stream and request.beam is not None:
        raise RequestError(400, "stream does not work with beam: a beam search's text is known only at its end")
    return request


def parse_suggest(body: Any, limits: Limits) -> SuggestRequest:
    """Check a decoded POST /api/suggest body: a text to complete, n and unit within the limits."""
    _check_fields(body, SUGGEST_FIELDS)
    request = SuggestRequest(
        model=_optional(body.get("model"), str, "model"),
        text=_string(body.get("text", ""), "text"),
        n=_ranged(body.get("n", 3), SAMPLES, limits.max_samples),
        unit=_unit(body.get("unit", "word")),
    )
    if not request.text:
        raise RequestError(400, "text is empty; send the text to complete")
    check_prime_length(request.text, limits, "text")
    return request


COMPLETION_PARAMETERS = ("start_text", "n", "model", "temperature", "unit")


def parse_completion_query(query, limits: Limits) -> tuple[Optional[str], str, int, float, Optional[str]]:
    """GET /generate?start_text=...&n=...[&model=...&temperature=...&unit=...]: torch-rnn-server's
    query, and chargen's `unit` (word, phrase or line) asking for suggestions instead of samples."""
    unknown = [k for k in query.keys() if k not in COMPLETION_PARAMETERS]
    if unknown:
        raise RequestError(400, f"unknown parameter {unknown[0]!r}; the parameters are {', '.join(COMPLETION_PARAMETERS)}")
    n = _ranged(_query_number(query.get("n", "3"), "n", int), SAMPLES, limits.max_samples)
    temperature = _ranged(_query_number(query.get("temperature", "0.8"), "temperature", float), TEMPERATURE)
    start_text = query.get("start_text", "")
    check_prime_length(start_text, limits, "start_text")
    unit = None if query.get("unit") is None else _unit(query.get("unit"))
    if unit is not None and "temperature" in query:
        raise RequestError(400, "temperature does not apply to suggestions (unit), which are found, not sampled")
    return query.get("model"), start_text, n, temperature, unit


def check_query_size(query_string: bytes, limits: Limits) -> None:
    """414 for a query longer than --max-request-bytes: a GET's start_text is a prime too."""
    if len(query_string) > limits.max_request_bytes:
        raise RequestError(414, f"the query is {len(query_string):,} bytes; the limit is {limits.max_request_bytes:,}")


def check_prime_length(prime: str, limits: Limits, name: str = "prime") -> None:
    """400 for a prime longer than --max-prime-chars."""
    if len(prime) > limits.max_prime_chars:
        raise RequestError(400, f"{name} is {len(prime):,} characters; the limit is {limits.max_prime_chars:,} "
                                "(--max-prime-chars)")


def check_prime(prime: str, model, name: str = "prime") -> str:
    """`prime` as the model reads it (Model.fit: in NFC and with the line endings of its
    corpus), or a 400 naming the characters the model's vocabulary lacks."""
    try:
        return model.fit(prime, name)
    except ArgumentError as e:
        raise RequestError(400, str(e)) from None


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


def _unit(value) -> str:
    if value not in UNITS:
        raise RequestError(400, f"unit must be one of {', '.join(UNITS)}, got {value!r}")
    return value


def _boolean(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(400, f"{name} must be true or false")
    return value


def _base64(value, name: str) -> Optional[bytes]:
    """The bytes a base64 string holds (a file sent inside JSON), or None when left out."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(400, f"{name} must be a string: a MIDI file in base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, f"{name} is not base64: {e}") from None


def _ranged(value, allowed: Range, high: Optional[float] = None):
    """A number checked against its range (None stays None: the field was left out), a
    400 saying the range otherwise. `high` is the server's own, lower ceiling."""
    if value is None:
        return None
    # JSON has one number type: accept 3.0 as 3, refuse 3.5 and true (a bool is an int in Python).
    if allowed.integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return allowed.check(value, high=high)
    except ArgumentError as e:
        raise RequestError(400, str(e)) from None
