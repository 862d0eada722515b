"""Terminal drawing: loss curves, piano rolls, tables and the training progress line.

All of rich lives here and in the command modules beside it: the commands stay thin
shells, and the library below never draws (chargen.train() reports in plain text).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

# The two consoles of the command line: results go to stdout, everything else to stderr.
err = Console(stderr=True, highlight=False)

CHART_WIDTH, CHART_HEIGHT = 60, 12


def loss_chart(series: dict[str, Sequence[tuple[float, float]]], styles: dict[str, str], title: str) -> Text:
    """A scatter chart of (x, y) series drawn with characters: one row per y band.

    Each series gets its own style; where two meet, the later one wins.
    """
    points = [(x, y) for s in series.values() for x, y in s if y is not None and math.isfinite(y)]
    if not points:
        return Text(f"{title}: no data yet", style="dim")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    grid: list[list[Optional[str]]] = [[None] * CHART_WIDTH for _ in range(CHART_HEIGHT)]
    for name, s in series.items():
        for x, y in s:
            if y is None or not math.isfinite(y):
                continue
            col = round((x - x0) / max(x1 - x0, 1e-9) * (CHART_WIDTH - 1))
            row = round((y1 - y) / (y1 - y0) * (CHART_HEIGHT - 1))
            grid[row][col] = name
    out = Text(f"{title}\n", style="bold")
    for r, cells in enumerate(grid):
        label = y1 - (y1 - y0) * r / (CHART_HEIGHT - 1)
        out.append(f"{label:7.3f} │", style="dim")
        for cell in cells:
            out.append("•" if cell else " ", style=styles.get(cell, "") if cell else "")
        out.append("\n")
    out.append(" " * 8 + "└" + "─" * CHART_WIDTH + "\n", style="dim")
    out.append(f"{'':8} step {x0:<10g}{'':{max(CHART_WIDTH - 24, 1)}}step {x1:g}\n", style="dim")
    for name, style in styles.items():
        out.append("  • ", style=style)
        out.append(name)
    return out


def key_value_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table of settings or results."""
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def format_bits(value: Optional[float]) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4f}"


def format_share(part: int, whole: int) -> str:
    """part/whole as a percentage with one decimal; "100.0%" only when nothing is missing (99.97% is "99.9%")."""
    if part == whole:
        return "100.0%"
    return f"{math.floor(1000 * part / whole) / 10:.1f}%"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


ROLL_WIDTH, ROLL_MAX_ROWS = 80, 36
ROLL_COLOURS = ["bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "bright_blue", "orange1", "orchid", "spring_green2"]
NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def piano_roll(notes: Sequence, width: int = ROLL_WIDTH, max_rows: int = ROLL_MAX_ROWS) -> Text:
    """Pitch (rows, high at the top) against time (columns), one colour per instrument.

    `notes` have start_s, end_s, pitch, program and is_drum. Drums share one
    row at the bottom. When the pitch range is taller than `max_rows`, each row
    covers several semitones.
    """
    pitched = [n for n in notes if not n.is_drum]
    drums = [n for n in notes if n.is_drum]
    if not notes:
        return Text("(no notes)", style="dim")
    end = max(n.end_s for n in notes) or 1.0
    col = lambda t: min(width - 1, int(t / end * width))  # noqa: E731
    programs = sorted({n.program for n in pitched})
    colour = {p: ROLL_COLOURS[i % len(ROLL_COLOURS)] for i, p in enumerate(programs)}
    rows: list[tuple[str, list[Optional[str]]]] = []
    if pitched:
        low, high = min(n.pitch for n in pitched), max(n.pitch for n in pitched)
        per_row = max(1, -(-(high - low + 1) // max_rows))
        bands = list(range(low, high + 1, per_row))[::-1]  # the lowest pitch of each row, top row first
        index = {p: len(bands) - 1 - (p - low) // per_row for p in range(low, high + 1)}
        grid = [[None] * width for _ in bands]
        for n in pitched:
            for c in range(col(n.start_s), max(col(n.start_s), col(n.end_s - 1e-9)) + 1):
                grid[index[n.pitch]][c] = colour[n.program]
        for base, cells in zip(bands, grid):
            rows.append((f"{NOTE_NAMES[base % 12]}{base // 12 - 1}", cells))
    if drums:
        cells = [None] * width
        for n in drums:
            cells[col(n.start_s)] = "red"
        rows.append(("drums", cells))
    out = Text()
    for label, cells in rows:
        out.append(f"{label:>5} ", style="dim")
        for cell in cells:
            out.append("█" if cell else "·", style=cell or "grey23")
        out.append("\n")
    out.append(f"{'':6}0 s{'':{width - 10}}{end:.1f} s\n", style="dim")
    legend = [(f"program {p}", colour[p]) for p in programs] + ([("drums", "red")] if drums else [])
    for name, style in legend:
        out.append("  █ ", style=style)
        out.append(name)
    return out


def inspect_table(report: dict) -> Table:
    """The `chargen inspect` report as a table, one row per file."""
    table = Table(title=f"vocabulary size: {report['vocab_size'] if report['vocab_size'] is not None else '–'}",
                  title_justify="left")
    for name, justify in [("file", "left"), ("kind", "left"), ("tokens", "right"), ("distinct", "right"),
                          ("notes", "right"), ("round trip", "right"), ("error", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for r in report["files"]:
        trip = "–"
        if r["notes"]:
            trip = format_share(r["notes_preserved"], r["notes"])
        cell = lambda v: "–" if v is None else f"{v:,}"  # noqa: E731
        table.add_row(Text(r["path"]), r["kind"] or "–", cell(r["tokens"]), cell(r["distinct"]),
                      cell(r["notes"]), trip, Text(r["error"] or "", style="red"))
    return table


def compare_table(report: dict) -> Table:
    """The `chargen compare` report: one row per feature, then the checks that have no distribution."""
    midi = report["kind"] == "midi"
    title = (f"{report['generated_files']} generated against {report['corpus_files']} corpus files"
             f" (overlap: 1 = same distribution, 0 = nothing in common)")
    table = Table(title=title, title_justify="left")
    for name, justify in [("feature", "left"), ("corpus mean ± spread", "right"),
                          ("generated mean ± spread", "right"), ("overlap", "right")]:
        table.add_column(name, justify=justify)

    def spread(stats: Optional[dict], unit: str = "") -> str:
        if not stats or stats["mean"] is None:
            return "–"
        return f"{_number(stats['mean'])} ± {_number(stats['spread'])}{' ' + unit if unit else ''}"

    for f in report["features"]:
        overlap = "–" if f["overlap"] is None else f"{f['overlap']:.3f}"
        table.add_row(f["name"], spread(f.get("corpus"), f.get("unit", "")),
                      spread(f.get("generated"), f.get("unit", "")), overlap)
    if midi:
        long = report["long_notes"]
        table.add_row(f"notes longer than {long['threshold_seconds']:.2f} s (corpus {long['percentile']}th pct.)",
                      f"{100 * long['corpus_share']:.2f}%", f"{100 * long['generated_share']:.2f}%", "")
        run = report["longest_copied_run"]
        table.add_row("longest run copied from the corpus", "", f"{run['notes']} notes", "")
    else:
        share = report["words_in_corpus"]
        table.add_row("generated words found in the corpus", "", "–" if share is None else f"{100 * share:.1f}%", "")
        run = report["longest_copied_run"]
        table.add_row("longest substring copied from the corpus", "", f"{run['characters']} characters", "")
    return table


def _number(value: float) -> str:
    """A figure with three significant digits, never in scientific notation."""
    return f"{value:.3g}" if abs(value) >= 1e-3 and abs(value) < 1e4 else f"{value:,.0f}" if value else "0"


# -- training progress -------------------------------------------------------


@contextmanager
def training_progress(run, console: Console) -> Iterator["TrainingReporter"]:
    """Draw a run's training on `console` while the block trains it: a progress line, and
    one printed line per validation. Yields the callback to hand to run.execute().

    rich draws the same in a terminal and in a Jupyter notebook's cell output.
    """
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[fields]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("training", total=1000, fields="")
        yield TrainingReporter(run, progress, task)


class TrainingReporter:
    """Turns train() events into the progress line and one printed line per validation."""

    def __init__(self, run, progress: Progress, task):
        from chargen.training.loop import progress_of

        self.run, self.progress, self.task, self.progress_of = run, progress, task, progress_of
        self.last_val: Optional[float] = None
        self.last_val_per_note: Optional[float] = None  # music runs
        self.last_cold: Optional[float] = None  # the cold-start figure of the last validation
        self.last_val_all: Optional[float] = None  # the whole held-out set, read by the last validation of a run
        self.tokens_per_s = 0.0
        self.windows = 1  # windows per epoch, known from the first event
        self.unit = "char" if run.corpus.kind == "text" else "token"

    def __call__(self, event: str, info: dict) -> None:
        s = self.run.state
        self.windows = info.get("windows", self.windows)
        if event == "eval":  # before the line is drawn, so it never shows the previous figure
            self.last_val, self.last_val_per_note = info["val_bits"], info.get("val_bits_per_note")
            self.last_cold, self.last_val_all = info.get("cold_bits"), info.get("val_all_bits")
        if event in ("step", "eval"):
            self.tokens_per_s = info["tokens_per_s"]
            epoch = s.epoch + s.window / info["windows"]
            fields = (
                f"step {s.step}  epoch {epoch:.2f}  train {info['train_bits']:.3f}  "
                f"val {format_bits(self.last_val)}  {self.tokens_per_s:,.0f} tok/s"
            )
            done = self.progress_of(self.run.config, s, info["windows"])
            self.progress.update(self.task, completed=min(done, 1.0) * 1000, fields=fields)
        if event == "eval":
            best = " [green]best[/]" if info["is_best"] else ""
            per_note = "" if self.last_val_per_note is None else f" ({self.last_val_per_note:.3f} bits/note)"
            self.progress.console.print(
                f"step {s.step:>6}  train {info['train_bits']:.4f}  "
                f"val {format_bits(info['val_bits'])} bits/{self.unit}{per_note}  cold {format_bits(info.get('cold_bits'))}  "
                f"{self.tokens_per_s:,.0f} tok/s{best}"
            )


# -- reading a corpus ---------------------------------------------------------

READING_SHOWN_AFTER = 1.0  # seconds: a corpus read faster than this is read without a word
READING_LINE_EVERY = 5.0  # seconds between lines where stderr is not a terminal (a log)


@contextmanager
def reading_progress(console: Console, clock=time.monotonic) -> Iterator["ReadingReporter"]:
    """Show how reading a corpus goes while the block reads it; yields the callback for load_corpus."""
    reporter = ReadingReporter(console, clock)
    try:
        yield reporter
    finally:
        reporter.close()


class ReadingReporter:
    """Once reading has taken a second: the bytes read and the rate, on one updating line in a
    terminal (a line every few seconds in a log). A FIFO that sends nothing is named at once."""

    def __init__(self, console: Console, clock=time.monotonic):
        self.console, self.clock = console, clock
        self.file, self.started, self.bytes_read = None, clock(), 0
        self.status, self.last_line, self.shown = None, None, False

    def __call__(self, reading) -> None:
        now = self.clock()
        if reading.file != self.file:
            self.file, self.started = reading.file, now
        if reading.waiting:
            self.console.print(f"waiting for a process to write to {escape(reading.file)} (a FIFO)", soft_wrap=True)
            return
        self.bytes_read = reading.bytes_read
        if now - self.started < READING_SHOWN_AFTER:
            return
        self.shown = True
        rate = self.bytes_read / max(now - self.started, 1e-9)
        line = f"reading {escape(reading.file)}: {format_bytes(self.bytes_read)} ({format_bytes(rate)}/s)"
        if self.console.is_terminal:
            if self.status is None:
                self.status = self.console.status(line)
                self.status.start()
            else:
                self.status.update(line)
        elif self.last_line is None or now - self.last_line >= READING_LINE_EVERY:
            self.console.print(line, soft_wrap=True)
            self.last_line = now

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
        if self.shown:
            self.console.print(f"read {escape(self.file)}: {format_bytes(self.bytes_read)} in "
                               f"{format_duration(self.clock() - self.started)}", soft_wrap=True)


def format_bytes(count: float) -> str:
    """1,536 -> '1.5 KiB': binary units, three significant digits."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} GiB"


def roll_width(console: Console) -> int:
    """Columns for a piano roll on this console."""
    return max(20, min(ROLL_WIDTH, console.width - 8))
