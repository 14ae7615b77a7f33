"""How the command line writes what it prints: one convention for every command.

- ``--json``: the command's data as one JSON document on standard output, nothing else there (messages go to
  standard error). Times are ISO 8601 with their UTC offset; a figure that does not exist (a rate of no calls)
  is ``null``, never ``NaN``.
- ``--out FILE``: where a command writes a file (``report --html``, ``demo --tasks``); ``-`` is standard output.
- Colour only when the stream is a terminal and ``NO_COLOR`` is unset or empty (https://no-color.org), and
  ``TERM`` is not ``dumb``.
- Times for people carry their time zone: the local zone, named (``2026-12-01 21:08:00 UTC``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from ironloop.terminal import is_terminal

STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def colour_on(stream: TextIO | None = None) -> bool:
    """Whether to colour what goes to ``stream`` (standard output by default)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream if stream is not None else sys.stdout)


def paint(text: str, style: str | None, *, on: bool) -> str:
    """``text`` in ``style`` (a key of `STYLES`) when ``on``; as it is otherwise."""
    if not on or not style:
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def when(value: datetime | None, *, seconds: bool = True) -> str:
    """An instant for people: local time with the zone's name, or ``-``."""
    if value is None:
        return "-"
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z").strip()


def jsonable(value: Any) -> Any:
    """``value`` with NaN as ``None`` and times as ISO 8601 (with their offset), recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value: Any) -> str:
    # ensure_ascii: C1 controls and bidirectional overrides from tools arrive escaped, like C0 controls
    return json.dumps(jsonable(value), indent=2, ensure_ascii=True, allow_nan=False, default=str)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """The command's data as one JSON document on standard output."""
    print(dumps(value), file=stream if stream is not None else sys.stdout, flush=True)


def write_out(path: str | Path, text: str) -> str:
    """Write ``text`` to ``path`` (``-``: standard output); returns where it went, for a message."""
    if str(path) == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return "standard output"
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return str(target)


def note(text: str) -> None:
    """A message for the person, on standard error (standard output may be data)."""
    print(text, file=sys.stderr, flush=True)


class NewJsonFiles:
    """The JSON files a piece of work writes (``bench NAME --json``): those in ``places`` (folders, or files and
    their folders) that are new or changed since this was made."""

    def __init__(self, places: list[Path]):
        self.folders = {p if p.is_dir() or not p.suffix else p.parent for p in places}
        self.before = self._stamps()

    def _stamps(self) -> dict[Path, int]:
        return {f: f.stat().st_mtime_ns for folder in self.folders if folder.is_dir() for f in folder.glob("*.json")}

    def contents(self) -> Any:
        """The one file's JSON, or ``{file name: JSON}`` for several."""
        changed = sorted(f for f, stamp in self._stamps().items() if self.before.get(f) != stamp)
        loaded = {f.name: json.loads(f.read_text(encoding="utf-8")) for f in changed}
        return next(iter(loaded.values())) if len(loaded) == 1 else loaded
