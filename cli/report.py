"""``ironloop report``: which tools are flaky, from the attempt ledger, as a table, JSON or an HTML page.

All three show one document (`checkpoints.report.report_document`): ``--json`` prints it, ``--html FILE`` draws
it (`cli.report_html`), the table shows its per-tool totals (or, with ``--approvals``, its decisions), under a
line that says which window it covers.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from ironloop.cli.output import colour_on, note, print_json, when, write_out
from ironloop.cli.report_html import TOOL_COLUMNS, figure
from ironloop.cli.tables import Column, render, terminal_width


def show(args: argparse.Namespace, store: Any, since: datetime | None) -> int:
    from ironloop.checkpoints.report import report_document
    from ironloop.checkpoints.report_detail import Window

    store.ledger.flush()
    window = Window(since, datetime.now(UTC), args.thread)
    document = report_document(store.saver.engine, window)
    document["window"]["database"] = store.where
    if args.html:
        from ironloop.cli.report_html import render as render_html

        where = write_out(args.html, render_html(document))
        if where != "standard output":
            note(f"wrote {where} ({window_line(document['window'])})")
    if args.json_out:
        if args.approvals:
            document = {"window": document["window"], "approvals": document["approvals"]}
        print_json(document)
    elif not args.html:
        print(window_line(document["window"]))
        print(approvals_table(document["approvals"]) if args.approvals else tools_table(document["tools"]))
    return 0


def window_line(window: dict[str, Any]) -> str:
    since = f"since {when(window['since'])}" if window.get("since") else "all records"
    scope = f"thread {window['thread']}" if window.get("thread") else "all threads"
    return f"report covers {since} until {when(window['until'])}, {scope} ({window.get('database', '-')})"


def tools_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no tool calls recorded"
    colour = colour_on()
    short = {"success_rate": "success", "transient_rate": "transient"}
    dropped = ("denied", "rejected", "errors", "fallbacks", "attempts", "p50_ms")  # when too narrow; the last first
    columns = [Column("tool", shrink=1)] + [
        Column(short.get(key, title), align=">", drop=dropped.index(key) + 1 if key in dropped else 0)
        for key, title, _ in TOOL_COLUMNS
    ]
    table = [
        [row["tool"]] + [(figure(row.get(key), kind), _style(key, row.get(key))) for key, _, kind in TOOL_COLUMNS]
        for row in rows
    ]
    return render(columns, table, width=terminal_width(), colour=colour)


def _style(key: str, value: Any) -> str | None:
    if not isinstance(value, float):
        return None
    if key == "success_rate":
        return "green" if value >= 0.999 else "red"
    return "yellow" if key == "transient_rate" and value >= 0.1 else None


def approvals_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no approval decisions recorded"
    columns = [
        Column("decided at", drop=1),
        Column("thread", shrink=2),
        Column("tool", shrink=1),
        Column("decision"),
        Column("by", shrink=2),
        Column("reason / arguments", shrink=3, min_width=20),
    ]
    colours = {"approve": "green", "reject": "red", "edit": "yellow"}
    table = []
    for r in rows:
        detail = r["reason"] or ""
        if r["edited_args"] is not None:
            detail = f"{detail + '; ' if detail else ''}args {r['args']} → {r['edited_args']}"
        elif not detail:
            detail = f"args {r['args']}"
        decision = (r["decision"], colours.get(r["decision"]))
        table.append(
            [when(r["decided_at"]), r["thread_id"] or "-", r["tool"], decision, r["decided_by"] or "-", detail]
        )
    return render(columns, table, width=terminal_width(), colour=colour_on())
