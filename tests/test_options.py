"""Command-line options: every number is validated up front, defaults live in the config
dataclasses, and the README's option tables say what the CLI does."""

from __future__ import annotations

import math
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import TINY_TRAIN_ARGS, assert_clean_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargen.cli import cli
from chargen.cli.options import MAX_INT
from chargen.model import ModelConfig
from chargen.sampling.draw import SampleConfig
from chargen.training.loop import TrainConfig

README = Path(__file__).parent.parent / "README.md"


def numeric_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every command that takes a number."""
    found = []
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                found.append((name, param.opts[0]))
    return found


def default_of(command: str, param: click.Parameter):
    """What the command uses when the option is not given (None when nothing is)."""
    with click.Context(cli.commands[command]) as ctx:
        value = param.get_default(ctx)
    return None if value is getattr(click.core, "UNSET", None) else value  # click >= 8.3 says UNSET


def option_is_int(command: str, option: str) -> bool:
    param = next(p for p in cli.commands[command].params if p.opts[0] == option)
    return isinstance(param.type, click.types.IntParamType)


EDGE_VALUES = [
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e300", "-1e300", "1e-45", "-1e-45", "1e309",
    "99999999999999999999999", "-99999999999999999999999", str(MAX_INT), str(MAX_INT + 1), str(2**64),
    "0", "-0", "0.0", "-1", "-0.5", "0.5", "1", "2", "127", "128", "1000", "1000.5",
    "", " ", "abc", "1,5", "0x10", "1_000", "１", "1e", "--lr",
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, list[str]]:
    """For each command, arguments that make it fail right after its options are accepted
    (a corpus or checkpoint that does not exist, a file that is not MIDI): an accepted
    value costs no training, loading or generating."""
    tmp = tmp_path_factory.mktemp("options")
    (tmp / "not-midi.txt").write_text("hello\n")
    return {
        "train": [str(tmp / "missing.txt")],
        "sample": [str(tmp / "missing-run")],
        "eval": [str(tmp / "missing-run"), str(tmp / "not-midi.txt")],
        "show": [str(tmp / "not-midi.txt")],
        "serve": [str(tmp / "missing-run")],  # fails loading, before it would listen
        "suggest": [str(tmp / "missing-run"), "To be"],
    }


def test_every_command_with_numeric_options_is_covered(places):
    assert {command for command, _ in numeric_options()} <= set(places)
    assert ("train", "--lr") in numeric_options() and ("sample", "--tempo") in numeric_options()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(numeric_options()),
       value=st.one_of(st.sampled_from(EDGE_VALUES),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.integers(min_value=-2**80, max_value=2**80).map(str),
                       st.text(max_size=6)))
def test_any_value_of_any_numeric_option_is_one_error_line_never_a_traceback(places, where, value):
    command, option = where
    result = CliRunner().invoke(cli, [command, f"{option}={value}", *places[command]])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    if result.exit_code == 2:  # refused while parsing: the message names the option as typed
        assert f"'{option}'" in errors[0], errors[0]
    else:  # accepted: the command went on to its (missing) files, so the value was a real number
        assert result.exit_code == 1, result.output
        assert math.isfinite(float(value)), (value, errors[0])
        if option_is_int(command, option):
            assert abs(int(value)) <= MAX_INT, (value, errors[0])


@pytest.mark.parametrize("option", ["--seed", "--lr", "--tempo", "--prime-seconds", "--seconds", "--width"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "99999999999999999999999"])
def test_the_values_from_the_issue_are_refused_before_any_work(places, option, value):
    command = next(c for c, o in numeric_options() if o == option)
    result = CliRunner().invoke(cli, [command, option, value, *places[command]])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr


def test_largest_seed_trains_and_samples(tmp_path):
    """The edge of the range is usable, not just accepted (torch seeds take 64 bits)."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("hello world, hello chargen.\n" * 40)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(corpus), "--steps", "1", "--seed", str(MAX_INT), "--out", str(run),
                                      *TINY_TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["sample", str(run), "--seed", str(MAX_INT), "--length", "5"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("option, value, words", [("--lr", "-1", "--lr must be > 0, got -1"),
                                                  ("--layers", "0", "--layers must be >= 1, got 0")])
def test_a_config_error_names_the_option_not_the_field(places, monkeypatch, option, value, words):
    """Past a looser click type, the run's own check still refuses the value before any work,
    in the words of the option typed (--lr), not of the field behind it (lr)."""
    param = next(p for p in cli.commands["train"].params if p.opts[0] == option)
    monkeypatch.setattr(param, "type", click.FLOAT if isinstance(param.type, click.types.FloatParamType) else click.INT)
    result = CliRunner().invoke(cli, ["train", option, value, *places["train"]])
    assert_clean_error(result, words, code=2)


# -- defaults: one place -----------------------------------------------------------------


@pytest.mark.parametrize("config_class, command", [(TrainConfig, "train"), (ModelConfig, "train"), (SampleConfig, "sample")])
def test_cli_defaults_are_the_dataclass_defaults(config_class, command):
    """An option named after a config field defaults to that field's default (or to None,
    where the CLI decides later, as --dropout does from the corpus size)."""
    defaults = {f.name: f.default for f in config_class.__dataclass_fields__.values()}
    checked = 0
    for param in cli.commands[command].params:
        default = default_of(command, param)
        if param.name in defaults and default is not None:
            assert default == defaults[param.name], (param.opts[0], default, defaults[param.name])
            checked += 1
    assert checked >= 3


# -- the README's option tables ------------------------------------------------------------


def readme_options(heading: str) -> dict[str, str]:
    """{"--option": "default cell"} from the tables of the README section under `heading`
    (up to the next heading of the same or a higher level)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    level = heading.split(" ")[0]
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start + len(heading))
    section = text[start : end.start() if end else len(text)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) >= 3 and cells[0].startswith("`--"):
            rows[cells[0].strip("`").split()[0]] = cells[1]
    return rows


def cli_options(command: str) -> dict[str, click.Option]:
    return {p.opts[0]: p for p in cli.commands[command].params
            if isinstance(p, click.Option) and p.opts[0] not in ("--help",)}


def same_default(readme: str, command: str, option: click.Option) -> bool:
    """Does the README's default cell say the CLI's default?"""
    default = default_of(command, option)
    if option.is_flag:
        return readme == ("on" if default else "off")
    if default is None:  # no default value: the README explains what happens instead
        return not re.fullmatch(r"`?-?[\d.]+`?", readme)
    if isinstance(default, bool) or isinstance(default, str):
        return readme == f"`{default}`"
    number = re.match(r"`?(-?[\d.,]+(?:e-?\d+)?)`?", readme)
    return number is not None and float(number.group(1).replace(",", "")) == float(default)


@pytest.mark.parametrize("command, headings", [
    ("train", ["### `chargen train"]),
    ("sample", ["### `chargen sample", "### Music: MIDI in, MIDI out"]),
])
def test_readme_option_tables_match_the_cli(command, headings):
    documented = {}
    for heading in headings:
        documented |= readme_options(heading)
    options = cli_options(command)
    assert set(documented) == set(options), (
        f"in the README only: {sorted(set(documented) - set(options))}; "
        f"in the CLI only: {sorted(set(options) - set(documented))}")
    wrong = {name: (documented[name], default_of(command, options[name])) for name in options
             if not same_default(documented[name], command, options[name])}
    assert not wrong, f"README default differs from the CLI's: {wrong}"
