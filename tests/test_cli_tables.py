"""Terminal tables: cut to the width in rank order, figures never cut, columns dropped only when cutting is not
enough, hostile text escaped, colour only when asked; JSON output as safe for a terminal."""

from __future__ import annotations

from ironloop.cli.tables import Column, render

COLUMNS = [
    Column("id", shrink=1, min_width=6),
    Column("when", drop=1),
    Column("n", align=">"),
    Column("detail", shrink=2, min_width=8),
]
ROWS = [["thread-0123456789", "2026-12-01 21:08:00 UTC", "12345", "a long failure message from a tool"]]


def test_a_wide_table_is_whole_without_a_width() -> None:
    lines = render(COLUMNS, ROWS).splitlines()
    assert lines[2] == "thread-0123456789  2026-12-01 21:08:00 UTC  12345  a long failure message from a tool"


def test_free_text_is_cut_before_ids_and_figures_never() -> None:
    lines = render(COLUMNS, ROWS, width=70).splitlines()
    assert all(len(line) <= 70 for line in lines)
    assert lines[2].startswith("thread-0123456789  2026-12-01 21:08:00 UTC  12345  a long") and lines[2].endswith("…")


def test_a_column_is_dropped_only_when_cutting_is_not_enough() -> None:
    lines = render(COLUMNS, ROWS, width=40).splitlines()
    assert all(len(line) <= 40 for line in lines), lines
    assert "when" not in lines[0] and "12345" in lines[2] and lines[2].startswith("thread-0123")


def test_cells_are_escaped_and_coloured_only_when_asked() -> None:
    rows = [["t\x1b[2K", "-", ("7", "red"), "x"]]
    plain = render(COLUMNS, rows)
    assert "\\x1b[2K" in plain and "\x1b[" not in plain
    assert "\x1b[31m" in render(COLUMNS, rows, colour=True)


def test_json_output_escapes_what_could_drive_a_terminal() -> None:
    from ironloop.cli.output import dumps

    text = dumps({"tool": "t\x1b[2K\x9b\u202eevil", "rate": float("nan")})
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    assert '"rate": null' in text and "\\u202e" in text
