"""The docs against the code: README option tables, links, the layout table, cited tests.

These check the claims of README.md and docs/ that can be read mechanically, so
that a renamed option, a changed default, a new module or a removed test shows
up here rather than in a user's terminal.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from chargen.cli import cli
from chargen.training import checkpoint, metrics

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

# Headings whose option tables belong to a command their title does not name.
TABLE_COMMANDS = {"Music: MIDI in, MIDI out": "sample"}


def option_tables(markdown: str) -> list[tuple[str, list[list[str]]]]:
    """(command, rows) of each `| option | default | meaning |` table, each row its cells.

    A table belongs to the command its nearest heading names (`chargen sample`, or
    a heading containing the command's name, like "Serve and studio").
    """
    tables, heading, rows, in_code = [], "", None, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if re.match(r"\|\s*option\s*\|\s*default\s*\|", line):
            rows = []
            tables.append((command_of(heading), rows))
        elif rows is not None and line.startswith("|"):
            if not re.match(r"\|[-\s|]+\|$", line):  # the |---|---| rule
                rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
        else:
            rows = None
    return tables


def command_of(heading: str) -> str:
    named = re.search(r"chargen (\w+)", heading)
    if named:
        return named.group(1)
    if heading in TABLE_COMMANDS:
        return TABLE_COMMANDS[heading]
    words = {w.lower() for w in re.findall(r"\w+", heading)}
    matches = [name for name in cli.commands if name in words]
    assert len(matches) == 1, f"cannot tell which command the table under '{heading}' is for"
    return matches[0]


def documented_default(cell: str):
    """A table's default cell as a value: a number, a `literal` string, False for 'off', and
    None for '–' (no default) or words describing a default chosen at run time ('fresh')."""
    if cell == "off":
        return False
    try:
        return float(cell.replace(",", ""))
    except ValueError:
        pass
    literal = re.fullmatch(r"`([\w.:-]+)`", cell)
    return literal.group(1) if literal else None


def readme_tables() -> dict[str, dict[str, list[str]]]:
    """command -> option ('--temp') -> its row, for every option table in README.md."""
    tables: dict[str, dict[str, list[str]]] = {}
    for command, rows in option_tables(README.read_text(encoding="utf-8")):
        for row in rows:
            option = re.search(r"--[a-z][a-z0-9-]*", row[0])
            assert option, f"README row without an option: {row}"
            tables.setdefault(command, {})[option.group(0)] = row
    return tables


def command_options(command: str) -> dict[str, click.Option]:
    """The options of a command, by their long name."""
    return {
        next(o for o in p.opts if o.startswith("--")): p
        for p in cli.commands[command].params
        if isinstance(p, click.Option) and not p.hidden and p.name != "help"
    }


def test_readme_has_option_tables_for_the_main_commands():
    assert {"train", "sample"} <= set(readme_tables())


@pytest.mark.parametrize("command", sorted(readme_tables()))
def test_readme_option_table_lists_exactly_the_commands_options(command):
    documented = set(readme_tables()[command])
    actual = set(command_options(command))
    unknown, undocumented = sorted(documented - actual), sorted(actual - documented)
    assert not unknown, f"README documents options `chargen {command}` does not have: {unknown}"
    assert not undocumented, f"options of `chargen {command}` missing from its README table: {undocumented}"


@pytest.mark.parametrize("command", sorted(readme_tables()))
def test_readme_option_defaults_are_the_cli_defaults(command):
    """A literal default in the table is the option's default; a default described in words
    ('detected', 'fresh', '10 if no budget is given') belongs to an option chosen at run time."""
    options = command_options(command)
    wrong = []
    for name, row in readme_tables()[command].items():
        if name not in options:
            continue  # reported by the test above
        option, documented = options[name], documented_default(row[1])
        # None, a callable or click's own "unset" marker: no default, the value is chosen at run time
        default = option.default if isinstance(option.default, (bool, int, float, str)) else None
        if option.is_flag:
            default = bool(default)
            documented = bool(documented)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            documented = documented if isinstance(documented, float) else None
            default = float(default)
        if documented != default:
            wrong.append(f"{name}: README says {row[1]!r}, the CLI's default is {option.default!r}")
    assert not wrong, "\n".join(wrong)


def test_every_module_is_in_the_readme_layout_table():
    layout = README.read_text(encoding="utf-8").split("## Layout", 1)[1]
    package = REPO / "chargen"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if p.name != "__main__.py"}
    # a subpackage's __init__.py is named by the subpackage's own row ("chargen/music/")
    modules = {m.removesuffix("__init__.py") if m.endswith("/__init__.py") and m != "cli/__init__.py" else m
               for m in modules if m != "__init__.py"} | {"__init__.py"}
    missing = [name for name in sorted(modules) if not re.search(rf"(?<![\w]){re.escape(name)}", layout)]
    assert not missing, f"README's Layout table lacks {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_files_that_exist(doc):
    text = doc.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    broken = [link for link in links if not re.match(r"[a-z]+:", link) and not (doc.parent / link).exists()]
    assert not broken, f"{doc.name} links to missing files: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_tests_named_in_the_docs_exist(doc):
    """The failure-mode tables cite tests by name: each must be a test of the suite."""
    defined = set()
    for path in (REPO / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
    cited = {name for name in re.findall(r"`(?:[\w/]+\.py::)?(test_\w+?)(?:\[[^\]]*\])?`", doc.read_text(encoding="utf-8"))}
    cited = {name for name in cited if not name.endswith("_")}  # a prefix such as `test_kill_9_...`
    missing = sorted(cited - defined)
    assert not missing, f"{doc.name} cites tests that do not exist: {missing}"


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_checkpoint_table_lists_the_keys_of_a_real_checkpoint(trained_run):
    section = readme_section("Runs and checkpoints")
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", section, re.M))
    documented = {key for pair in documented for key in pair if key}
    assert documented == set(checkpoint.load(trained_run / checkpoint.LAST))


def test_readme_metrics_fields_are_those_of_a_real_metrics_row(trained_run):
    section = readme_section("Runs and checkpoints")
    listed = re.search(r"metrics\.jsonl +one JSON object per validation: (.+)", section).group(1)
    rows = metrics.read(trained_run)
    assert rows and all(set(row) == {field.strip() for field in listed.split(",")} for row in rows)
