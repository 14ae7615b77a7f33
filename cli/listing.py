"""The tables of ``ironloop threads`` and ``ironloop history``: fitted to the terminal (`cli.tables`), times in
the local zone with its name, the status coloured on a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ironloop.cli.output import colour_on, when
from ironloop.cli.tables import Column, render, terminal_width

STATUS_STYLES = {"finished": "green", "failed": "red", "corrupt": "red", "waiting for approval": "yellow"}


def threads_table(rows: list[dict[str, Any]]) -> str:
    columns = [
        Column("thread", shrink=1, min_width=12),
        Column("created", drop=1),
        Column("last active"),
        Column("step", align=">"),
        Column("status"),
        Column("detail", shrink=2, min_width=12),
    ]
    table = []
    for row in rows:
        detail = "; ".join(part for part in (row["detail"], row["running"] and f"running: {row['running']}") if part)
        step = "-" if row["step"] is None else str(row["step"])
        status = (row["status"], STATUS_STYLES.get(row["status"]))
        table.append([row["thread"], when(row["created_at"]), when(row["updated_at"]), step, status, detail or "-"])
    return render(columns, table, width=terminal_width(), colour=colour_on(), rule=False)


def history_table(rows: list[Any]) -> str:
    columns = [
        Column("checkpoint", shrink=1, min_width=12),
        Column("step", align=">"),
        Column("node", shrink=2),
        Column("time", drop=1),
        Column("pending tool calls", shrink=3, min_width=12),
    ]
    table = []
    for row in rows:
        pending = (f"CORRUPT: {row.problem}", "red") if row.problem else (", ".join(row.pending) or "-", None)
        table.append([row.checkpoint_id, str(row.step), row.node, _time(row.created_at), pending])
    return render(columns, table, width=terminal_width(), colour=colour_on(), rule=False)


def _time(iso: str) -> str:
    try:
        return when(datetime.fromisoformat(iso))
    except ValueError:
        return iso
