"""Tables for the terminal: columns as wide as their content, cut to fit the terminal's width.

Only columns with a ``shrink`` rank are cut (text such as a failure, ending in ``…``): the highest rank first
(a free-text detail before an id someone may copy), the widest first within a rank; figures never are.
Standard output that is not a terminal gets the whole table (a script reads every character). Every cell goes
through `printable`: table text comes from tools, models and the database.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ironloop.cli.output import is_terminal, paint
from ironloop.cli.text import printable

GAP = "  "

Cell = str | tuple[str, str | None]
"""A cell's text, or (text, style) where style is a key of `cli.output.STYLES` (used when colour is on)."""


@dataclass(frozen=True)
class Column:
    title: str
    align: str = "<"
    """``<`` left (text), ``>`` right (figures)."""
    shrink: int = 0
    """0: never cut; otherwise cut (with ``…``) to fit the width, higher ranks first."""
    min_width: int = 8
    drop: int = 0
    """0: always shown; otherwise left out, higher ranks first, when cutting cannot make the table fit."""


def terminal_width() -> int | None:
    """The width to fit when standard output is a terminal (``COLUMNS`` if set, else the terminal's), else none:
    a script reading a pipe gets whole rows even where ``COLUMNS`` is exported."""
    return shutil.get_terminal_size().columns if is_terminal(sys.stdout) else None


def render(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    width: int | None = None,
    colour: bool = False,
    rule: bool = True,
) -> str:
    """The table as lines: a header, a rule (if ``rule``), one line per row."""
    if width is not None:
        kept = _kept(columns, rows, width)
        columns, rows = [columns[i] for i in kept], [[row[i] for i in kept] for row in rows]
    cells = [[_split(cell) for cell in row] for row in rows]
    widths = [len(c.title) for c in columns]
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    if width is not None:
        widths = _fit(columns, widths, width)
    lines = [paint(_line([c.title for c in columns], columns, widths).rstrip(), "bold", on=colour)]
    if rule:
        lines.append("-" * min(sum(widths) + len(GAP) * (len(widths) - 1), width or 10**6))
    for row in cells:
        texts = [_cut(text, widths[i]) for i, (text, _) in enumerate(row)]
        styles = [style for _, style in row]
        padded = [_pad(t, widths[i], columns[i].align) for i, t in enumerate(texts)]
        lines.append(GAP.join(paint(p, s, on=colour) for p, s in zip(padded, styles, strict=True)).rstrip())
    return "\n".join(lines)


def _kept(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> list[int]:
    """The columns to show: all, unless even cut to their floor they are too wide; then the droppable ones go,
    highest rank first, until the rest fit."""
    kept = list(range(len(columns)))
    widths = [len(c.title) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(_split(cell)[0]))
    floors = [min(w, max(c.min_width, len(c.title))) if c.shrink else w for c, w in zip(columns, widths, strict=True)]
    for rank in sorted({c.drop for c in columns if c.drop}, reverse=True):
        for i in [i for i in kept if columns[i].drop == rank]:
            if sum(floors[k] for k in kept) + len(GAP) * (len(kept) - 1) <= width:
                return kept
            kept.remove(i)
    return kept


def _split(cell: Cell) -> tuple[str, str | None]:
    text, style = cell if isinstance(cell, tuple) else (cell, None)
    return printable(" ".join(str(text).split())), style


def _fit(columns: Sequence[Column], widths: list[int], width: int) -> list[int]:
    """Narrow the shrinkable columns, highest rank and then widest first, until the line fits (or none can
    give more)."""
    widths = list(widths)
    floor = [max(c.min_width, len(c.title)) if c.shrink else w for c, w in zip(columns, widths, strict=True)]
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
    for rank in sorted({c.shrink for c in columns if c.shrink}, reverse=True):
        while excess > 0:
            candidates = [i for i, w in enumerate(widths) if columns[i].shrink == rank and w > floor[i]]
            if not candidates:
                break
            widest = max(candidates, key=lambda i: widths[i])
            widths[widest] -= 1
            excess -= 1
    return widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _pad(text: str, width: int, align: str) -> str:
    return text.rjust(width) if align == ">" else text.ljust(width)


def _line(texts: Sequence[str], columns: Sequence[Column], widths: Sequence[int]) -> str:
    return GAP.join(_pad(_cut(t, widths[i]), widths[i], columns[i].align) for i, t in enumerate(texts))
