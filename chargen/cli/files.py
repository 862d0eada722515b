"""`chargen inspect`, `compare` and `show`: look at files (a corpus, samples, a MIDI file) before and after training."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from chargen.cli import display
from chargen.cli.display import err
from chargen.cli.options import named_options, whole


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "format", type=click.Choice(["text", "midi"]), help="Force the corpus kind (default: detected).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--roundtrip", "roundtrip_out", type=click.Path(dir_okay=False),
              help="With one MIDI file: write what chargen hears (MIDI -> tokens -> MIDI) to this file.")
def inspect(paths, format, as_json, roundtrip_out):
    """Check a corpus before training: per file its kind, token count, distinct
    tokens and, for MIDI, notes and notes preserved by a round trip; unreadable
    files with the reason.

    \b
    Example:
      chargen inspect data/bach/
      chargen inspect song.mid --roundtrip heard.mid
    """
    import json

    from chargen.data.inspection import inspect_files
    from chargen.music import midifile

    if roundtrip_out:  # checked before any work, by the rule `sample --out` follows
        from pathlib import Path

        from chargen.cli.output import refuse_run_file

        with named_options({"roundtrip": "--roundtrip"}):
            refuse_run_file(Path(roundtrip_out), "roundtrip")
    report = inspect_files(paths, format)
    if roundtrip_out:
        readable = [r for r in report["files"] if r["kind"] == "midi" and r["error"] is None]
        if len(report["files"]) != 1 or len(readable) != 1:
            raise click.UsageError("--roundtrip takes exactly one readable MIDI file")
        midifile.write_midi(midifile.decode_tokens(midifile.encode_file(readable[0]["path"])), roundtrip_out)
        err.print(f"wrote {escape(roundtrip_out)}")
    if as_json:
        keys = ("path", "kind", "tokens", "notes", "notes_preserved", "error")
        files = [{k: r[k] for k in keys} for r in report["files"]]
        click.echo(json.dumps({"files": files, "vocab_size": report["vocab_size"]}, indent=2))
    else:
        Console(highlight=False).print(display.inspect_table(report))
    if all(r["error"] for r in report["files"]):
        sys.exit(1)


@click.command()
@click.argument("generated", nargs=-1, required=True)
@click.option("--corpus", "corpus", multiple=True, required=True,
              help="The corpus to compare with: files or folders (repeat for several).")
@click.option("--json", "as_json", is_flag=True, help="Also print the report as one JSON object on stdout.")
def compare(generated, corpus, as_json):
    """Compare GENERATED files (MIDI samples, or text) with a corpus, in numbers.

    For MIDI, per feature (pitch class, pitch range, notes per second,
    polyphony, note duration, inter-onset interval, scale consistency,
    empty-beat rate) the corpus and generated mean and spread and the overlap
    of their distributions (1 = the same, 0 = nothing in common; Yang & Lerch
    2018); the share of notes longer than the corpus's 99.9th percentile; and
    the longest run of notes copied from the corpus. For text: bigram and
    word-length overlap, the share of words found in the corpus, and the
    longest substring copied from it. The table goes to stderr.

    \b
    Example:
      chargen compare checkpoints/bach-20261121-120000/samples --corpus data/bach
      chargen compare story.txt --corpus data/tinyshakespeare.txt --json
    """
    import json

    from chargen.data.compare import compare_files

    with named_options({"generated": "GENERATED", "corpus": "--corpus"}):
        report = compare_files(generated, corpus)
    for skipped in report.get("skipped", []):
        err.print(f"[yellow]note:[/] skipped {escape(skipped['reason'])}")
    err.print(display.compare_table(report))
    if as_json:
        click.echo(json.dumps(report, indent=2))


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--width", type=whole(20, 10_000), help="Columns of the roll (default: the terminal's width).")
def show(file, width):
    """Draw a MIDI file as a piano roll: pitch against time, one colour per instrument.

    \b
    Example:
      chargen show song.mid
    """
    from chargen.music import midifile

    song = midifile.read_midi(file)
    notes = midifile.piano_roll(song)
    out = Console(highlight=False)
    out.print(f"{escape(file)}: {len(notes)} notes, {song.length:.1f} s, {len(song.tracks)} tracks")
    out.print(display.piano_roll(notes, width=width or display.roll_width(out)))
