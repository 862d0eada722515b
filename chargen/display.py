"""Terminal drawing for the CLI: loss curves and the training progress line.

Only cli.py uses this module; it holds the rich renderables so cli.py stays a
thin shell of commands.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from rich.table import Table
from rich.text import Text

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


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
