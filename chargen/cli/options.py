"""What the commands share: numeric option types, option names in errors, defaults, escapes.

Every numeric option has a type that refuses, while click parses the command line (so
before any file is read or any work is done), what the code behind it cannot use. The
types of generation options are made from chargen/arguments.py's ranges (`ranged`), so
the command line accepts what the Python API and the server accept.
"""

from __future__ import annotations

import dataclasses
import math
import re
from contextlib import contextmanager
from typing import Optional

import click
from click.core import ParameterSource

from chargen.arguments import MAX_INT, MAX_SECONDS, MAX_SIZE, Range
from chargen.errors import ArgumentError

__all__ = ["MAX_INT", "MAX_SECONDS", "MAX_SIZE", "Real", "Whole", "default_of", "given_on_command_line",
           "named_options", "ranged", "unescape", "whole"]


class Real(click.FloatRange):
    """A float range that also refuses nan and infinity."""

    name = "float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class Whole(click.IntRange):
    """An integer range bounded on both sides; the 64-bit ceiling goes unsaid in --help."""

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if self.max == MAX_INT and number > MAX_INT:
            self.fail(f"{number} is too large (at most {MAX_INT}).", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        return f"x>={self.min}" if self.max == MAX_INT else super()._describe_range()


def whole(minimum: int = 0, maximum: int = MAX_INT) -> Whole:
    """An integer option's type: `minimum` to `maximum`, both included."""
    return Whole(minimum, maximum)


def ranged(allowed: Range) -> click.ParamType:
    """The option type of an argument whose range chargen/arguments.py defines."""
    if allowed.integer:
        return Whole(allowed.low, allowed.high)
    return Real(allowed.low, None if allowed.high == math.inf else allowed.high, min_open=allowed.low_open)


def default_of(config_class, name: str):
    """The default of a config dataclass field: the one place where defaults live."""
    return next(f.default for f in dataclasses.fields(config_class) if f.name == name)


def given_on_command_line(ctx: click.Context) -> set[str]:
    """The names of the options the user actually typed (not defaults)."""
    return {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}



# The Python parameter behind each sample option, for errors that name the option.
SAMPLE_OPTIONS = {"prime": "--prime", "temperature": "--temp", "top_k": "--top-k", "top_p": "--top-p",
                  "length": "--length", "n": "--num-samples", "seed": "--seed", "stop": "--stop", "out": "--out", "beam": "--beam",
                  "seconds": "--seconds", "prime_seconds": "--prime-seconds", "tempo": "--tempo",
                  "program": "--program", "device": "--device", "batch_size": "--batch-size",
                  "precision": "--precision", "include_prime": "--omit-prime", "omit_prime": "--omit-prime"}


@contextmanager
def named_options(options: dict[str, str]):
    """Turn the library's ArgumentError ("temperature must be ...") into a usage error
    that names the option the user typed ("--temp must be ...")."""
    try:
        yield
    except ArgumentError as e:
        raise click.UsageError(f"{options.get(e.parameter, e.parameter)} {e.reason}") from e


_ESCAPES = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def unescape(text: Optional[str]) -> Optional[str]:
    r"""Read \n, \t, \r, \0, \\, \xNN and \uNNNN in an option as the characters they name,
    since a shell passes "\n" as a backslash and an n; any other backslash stays as typed."""
    if text is None:
        return None

    def one(match: re.Match) -> str:
        code = match.group(1)
        if code[0] in "xu" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, match.group(0))

    return _ESCAPES.sub(one, text)
