"""``ironloop report --html FILE``: the report document (`checkpoints.report.report_document`, the same one
``report --json`` prints) drawn as one self-contained page: inline CSS and SVG, no script, nothing fetched.

Every figure cell carries ``data-tool`` and ``data-field`` (the JSON key) so a test, or a person with the
inspector, can tie what the page shows to the JSON.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
from typing import Any

TOOL_COLUMNS = (
    ("calls", "calls", "count"),
    ("attempts", "attempts", "count"),
    ("success_rate", "success after retries", "pct"),
    ("transient_rate", "transient-failure rate", "pct"),
    ("timeouts", "timeouts", "count"),
    ("fallbacks", "fallbacks", "count"),
    ("errors", "errors", "count"),
    ("rejected", "rejected", "count"),
    ("denied", "denied", "count"),
    ("p50_ms", "p50 ms", "ms"),
    ("p95_ms", "p95 ms", "ms"),
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px 32px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.window{color:#4a5566;margin:0 0 12px}
table{border-collapse:collapse;margin:4px 0 8px}th,td{padding:4px 10px;border-bottom:1px solid #e6e9ef;text-align:right}
th{background:#f3f5f8;font-weight:600;font-size:12.5px}td.name,th.name{text-align:left}
td.bad{color:#b3261e;font-weight:600}td.good{color:#1e7b34}
.charts{display:flex;flex-wrap:wrap;gap:18px}.chart{border:1px solid #e6e9ef;border-radius:6px;padding:8px 10px}
.chart h3{font-size:14px;margin:0 0 4px}.legend{font-size:12px;color:#4a5566}
.legend span{display:inline-block;width:18px;height:3px;vertical-align:middle;margin:0 4px 0 10px}
.attempts{font-size:12.5px;color:#4a5566;text-align:left}.empty{color:#6b7585;font-style:italic}
svg text{font:11px system-ui,sans-serif;fill:#4a5566}
"""

SUCCESS_COLOUR, TRANSIENT_COLOUR, LATENCY_COLOUR = "#1e7b34", "#c5221f", "#1a5fb4"


def render(document: dict[str, Any], *, generated: datetime | None = None) -> str:
    """The page for a report document (times shown in UTC: the page may be read anywhere)."""
    generated = generated or datetime.now(UTC)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ironloop report</title>',
        f"<style>{CSS}</style></head><body>",
        "<h1>ironloop report</h1>",
        f'<p class="window" id="window">{escape(window_text(document["window"]))}; '
        f"generated {escape(utc(generated))}</p>",
        '<h2 id="tools">Tools</h2>',
        _tools_table(document["tools"]),
        '<h2 id="over-time">Over time</h2>',
        _over_time(document["over_time"]),
        '<h2 id="slowest">Slowest calls</h2>',
        _slowest(document["slowest_calls"]),
        '<h2 id="approvals">Approval decisions</h2>',
        _approvals(document["approvals"]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def window_text(window: dict[str, Any]) -> str:
    """Which records the report covers, in words."""
    since = f"since {utc(window['since'])}" if window.get("since") else "all records"
    scope = f"thread {window['thread']}" if window.get("thread") else "all threads"
    return f"covers {since} until {utc(window['until'])}, {scope}"


def utc(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def figure(value: Any, kind: str) -> str:
    """A figure as the page (and the terminal table) shows it: ``-`` where there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "ms":
        return f"{value:.1f}"
    return str(value)


def _tools_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">no tool calls recorded</p>'
    head = '<tr><th class="name">tool</th>' + "".join(f"<th>{escape(t)}</th>" for _, t, _ in TOOL_COLUMNS) + "</tr>"
    body = []
    for row in rows:
        tool = escape(str(row["tool"]))
        cells = [f'<td class="name" data-tool="{tool}" data-field="tool">{tool}</td>']
        for key, _, kind in TOOL_COLUMNS:
            tone = _tone(key, row.get(key))
            cells.append(f'<td data-tool="{tool}" data-field="{key}"{tone}>{escape(figure(row.get(key), kind))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="tool-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _tone(key: str, value: Any) -> str:
    if not isinstance(value, float):
        return ""
    if key == "success_rate":
        return ' class="good"' if value >= 0.999 else ' class="bad"'
    if key == "transient_rate" and value >= 0.1:
        return ' class="bad"'
    return ""


def _over_time(series: dict[str, Any]) -> str:
    tools = series.get("tools") or {}
    if not tools:
        return '<p class="empty">no tool calls recorded</p>'
    width_s = series["bucket_s"]
    intro = f'<p class="window">one point per {_duration(width_s)} (UTC); empty steps are gaps</p>'
    legend = (
        '<p class="legend">'
        f'<span style="background:{SUCCESS_COLOUR}"></span>success after retries'
        f'<span style="background:{TRANSIENT_COLOUR}"></span>transient-failure rate (attempts)'
        f'<span style="background:{LATENCY_COLOUR}"></span>p95 latency</p>'
    )
    charts = [_tool_chart(tool, buckets) for tool, buckets in tools.items()]
    return intro + legend + '<div class="charts">' + "".join(charts) + "</div>"


def _tool_chart(tool: str, buckets: list[dict[str, Any]]) -> str:
    """Two small charts, one above the other: the rates (0-100 %) and the p95 latency, same time axis."""
    name = escape(tool)
    rates = _lines(
        buckets,
        [("success_rate", SUCCESS_COLOUR), ("transient_rate", TRANSIENT_COLOUR)],
        top=1.0,
        label=lambda v: f"{v:.0%}",
        tool=name,
    )
    top_ms = max((b["p95_ms"] for b in buckets if b["p95_ms"] is not None), default=0.0) or 1.0
    latency = _lines(buckets, [("p95_ms", LATENCY_COLOUR)], top=top_ms * 1.1, label=lambda v: f"{v:.0f} ms", tool=name)
    calls = sum(b["calls"] for b in buckets)
    return (
        f'<div class="chart" data-tool="{name}"><h3>{name} <span class="legend">({_count(calls, "call")})</span></h3>'
        f"{rates}{latency}</div>"
    )


CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 420, 120, 52, 12, 8, 22


def _lines(buckets: list[dict[str, Any]], fields: list[tuple[str, str]], *, top: float, label: Any, tool: str) -> str:
    inner_w, inner_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    count = len(buckets)

    def x(i: int) -> float:
        return PAD_L + (inner_w * i / (count - 1) if count > 1 else inner_w / 2)

    def y(value: float) -> float:
        return PAD_T + inner_h * (1 - min(value, top) / top)

    svg = [f'<svg width="{CHART_W}" height="{CHART_H}" role="img" aria-label="{tool}">']
    for frac in (0.0, 0.5, 1.0):
        gy = y(top * frac)
        svg.append(f'<line x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e6e9ef"/>')
        svg.append(f'<text x="{PAD_L - 6}" y="{gy + 4:.1f}" text-anchor="end">{escape(label(top * frac))}</text>')
    svg.append(f'<text x="{PAD_L}" y="{CHART_H - 6}">{escape(_clock(buckets[0]["start"]))}</text>')
    if count > 1:
        end = _clock(buckets[-1]["start"])
        svg.append(f'<text x="{CHART_W - PAD_R}" y="{CHART_H - 6}" text-anchor="end">{escape(end)}</text>')
    for key, colour in fields:
        for run in _runs(buckets, key):  # a gap (no calls) breaks the line
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            if len(run) > 1:
                svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
            for i, v in run:
                tip = f"{_clock(buckets[i]['start'])}: {key} {label(v)} ({buckets[i]['calls']} calls)"
                dot = f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
                svg.append(f"{dot}<title>{escape(tip)}</title></circle>")
    svg.append("</svg>")
    return "".join(svg)


def _runs(buckets: list[dict[str, Any]], key: str) -> list[list[tuple[int, float]]]:
    runs: list[list[tuple[int, float]]] = [[]]
    for i, bucket in enumerate(buckets):
        value = bucket.get(key)
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, float(value)))
    return [run for run in runs if run]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _clock(value: Any) -> str:
    return utc(value).removesuffix(" UTC")[5:16] + " UTC"


def _duration(seconds: int | None) -> str:
    if not seconds:
        return "-"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return f"{seconds} s"


def _slowest(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return '<p class="empty">no tool calls recorded</p>'
    head = (
        '<tr><th class="name">tool</th><th class="name">thread</th><th class="name">call</th><th>duration ms</th>'
        '<th class="name">outcome</th><th class="name">attempts (number: outcome, ms, error)</th></tr>'
    )
    rows = []
    for rank, call in enumerate(calls, 1):
        attempts = "<br>".join(
            escape(
                f"{a['attempt']}: {a['outcome']}, {figure(a['duration_ms'], 'ms')} ms"
                + (f", {a['error'].removeprefix('ironloop.tools.errors.')}" if a.get("error") else "")
            )
            for a in call["attempt_list"]
        )
        rows.append(
            f'<tr data-rank="{rank}"><td class="name">{escape(str(call["tool"]))}</td>'
            f'<td class="name">{escape(str(call["thread_id"] or "-"))}</td>'
            f'<td class="name">{escape(str(call["tool_call_id"]))}</td>'
            f'<td data-field="duration_ms">{escape(figure(call["duration_ms"], "ms"))}</td>'
            f'<td class="name">{escape(str(call["outcome"]))}</td><td class="attempts">{attempts or "-"}</td></tr>'
        )
    return f'<table id="slowest-table"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _approvals(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">no approval decisions recorded</p>'
    head = (
        '<tr><th class="name">decided at</th><th class="name">thread</th><th class="name">tool</th>'
        '<th class="name">decision</th><th class="name">by</th><th class="name">reason / arguments</th></tr>'
    )
    body = []
    for r in rows:
        detail = r.get("reason") or ""
        if r.get("edited_args") is not None:
            detail = f"{detail + '; ' if detail else ''}args {r['args']} → {r['edited_args']}"
        elif not detail:
            detail = f"args {r.get('args')}"
        cells = [utc(r["decided_at"]), r.get("thread_id") or "-", r["tool"], r["decision"], r.get("decided_by") or "-"]
        body.append(
            "<tr>"
            + "".join(f'<td class="name">{escape(str(c))}</td>' for c in cells)
            + f'<td class="name">{escape(detail)}</td></tr>'
        )
    return f'<table id="approval-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
