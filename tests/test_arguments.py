"""One range per generation argument (chargen/arguments.py): the Python API, the server's
request parser and the command line accept exactly the same values, and refuse the rest."""

from __future__ import annotations

import math

import click
import pytest
from conftest import tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen import arguments
from chargen.api import Model
from chargen.arguments import MAX_INT, MAX_SECONDS, MAX_SIZE, Range
from chargen.cli import cli
from chargen.errors import ArgumentError
from chargen.music.vocabulary import midi_vocab
from chargen.serve.requests import Limits, RequestError, parse_generate
from chargen.vocab import Vocab

# Each argument as the API, the server's JSON and `chargen sample` spell it (None: not there).
WHERE = {
    arguments.TEMPERATURE: ("temperature", "temperature", "--temp"),
    arguments.TOP_K: ("top_k", "top_k", "--top-k"),
    arguments.TOP_P: ("top_p", "top_p", "--top-p"),
    arguments.LENGTH: ("length", "length", "--length"),
    arguments.SAMPLES: ("n", "n", "--num-samples"),
    arguments.SEED: ("seed", "seed", "--seed"),
    arguments.SECONDS: ("seconds", "seconds", "--seconds"),
    arguments.PRIME_SECONDS: ("prime_seconds", None, "--prime-seconds"),
    arguments.TEMPO: ("tempo", None, "--tempo"),
    arguments.PROGRAM: ("program", None, "--program"),
}
MUSIC_ONLY = {arguments.SECONDS, arguments.PRIME_SECONDS, arguments.TEMPO, arguments.PROGRAM}
# The server's own ceilings, raised to the ranges' so that only the ranges decide here.
WIDE_OPEN = Limits(max_length=MAX_INT, max_samples=MAX_SIZE, max_seconds=MAX_SECONDS)


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    text = Vocab.from_text("abc \n")
    music = midi_vocab()
    return {"text": Model(tiny_model(vocab_size=len(text)), text),
            "midi": Model(tiny_model(vocab_size=len(music)), music)}


def accepted_by_api(model: Model, name: str, value) -> bool:
    try:
        if model.kind == "text":
            model.stream(**{name: value})  # checks every argument at once, generates only as it is read
        else:
            model.generate(length=0, **{name: value})
        return True
    except ArgumentError as e:
        assert e.parameter == name, e
        return False


def accepted_by_server(field: str, value) -> bool:
    try:
        parse_generate({field: value}, WIDE_OPEN)
        return True
    except RequestError as e:
        assert e.status == 400 and str(e).startswith(f"{field} must be"), e
        return False


def accepted_by_cli(option: str, value) -> bool:
    param = next(p for p in cli.commands["sample"].params if p.opts[0] == option)
    try:
        param.type.convert(repr(value), param, None)
        return True
    except click.BadParameter:
        return False


def numbers_for(allowed: Range):
    edges = [allowed.low, allowed.high, -1, 0, 1, 2**63 - 1, 2**63, 2**64, 10**400 if allowed.integer else 0]
    ints = st.one_of(st.sampled_from([e for e in edges if isinstance(e, int) or float(e).is_integer()
                                      and math.isfinite(e)]).map(int),
                     st.integers(min_value=-2**70, max_value=2**70))
    if allowed.integer:
        return ints
    return st.one_of(ints, st.sampled_from([allowed.low, allowed.high, math.nan, math.inf, -math.inf, 1e-300]),
                     st.floats(allow_nan=True, allow_infinity=True))


@pytest.mark.parametrize("allowed", list(WHERE), ids=lambda r: r.name)
def test_the_api_the_server_and_the_command_line_accept_the_same_values(models, allowed):
    api_name, field, option = WHERE[allowed]
    model = models["midi" if allowed in MUSIC_ONLY else "text"]

    @settings(max_examples=60, deadline=None)
    @given(value=numbers_for(allowed))
    def check(value):
        expected = allowed.contains(value)
        assert accepted_by_api(model, api_name, value) == expected, value
        if field is not None:
            assert accepted_by_server(field, value) == expected, value
        assert accepted_by_cli(option, value) == expected, value

    check()


def test_a_range_says_what_it_takes():
    with pytest.raises(ArgumentError, match=r"^top_p must be a number in \(0, 1\], got 1\.5$"):
        arguments.TOP_P.check(1.5)
    with pytest.raises(ArgumentError, match=r"^n must be an integer between 1 and 4, got 5$"):
        arguments.SAMPLES.check(5, high=4)
    with pytest.raises(ArgumentError, match=r"^temperature must be a finite number >= 0, got inf$"):
        arguments.TEMPERATURE.check(math.inf)
    with pytest.raises(ArgumentError, match=rf"^seed must be at most {MAX_INT} \(64 bits\)"):
        arguments.SEED.check(2**64)
    with pytest.raises(ArgumentError, match=r"^top_k must be an integer >= 1, got True$"):
        arguments.TOP_K.check(True)
    assert arguments.TEMPERATURE.check(0) == 0.0 and isinstance(arguments.TEMPERATURE.check(1), float)
    assert arguments.LENGTH.check(7) == 7


def test_a_callers_ceiling_only_lowers_the_range():
    assert arguments.SAMPLES.check(3, high=4) == 3
    with pytest.raises(ArgumentError):
        arguments.SAMPLES.check(MAX_SIZE + 1, high=MAX_INT)  # a higher ceiling is not taken
