"""MCP sessions: the per-call cost of one long-lived session against a new session for every call.

``ironloop bench mcp_sessions`` calls the bundled MCP search tool (`demo.services.mcp_search`, no faults) over
stdio (the server as a child process, started as its users start it) and over streamable HTTP (the server in a
process of its own), three ways each:

- ``ironloop``: `tools.mcp.MCPServers`, one session per server for the life of the process;
- ``adapters_per_call``: langchain-mcp-adapters at its defaults, ``MultiServerMCPClient.get_tools()``: a new
  session for each call (over stdio, a new server process);
- ``adapters_session``: langchain-mcp-adapters with a session held open (``client.session(...)`` and
  ``load_mcp_tools``), for reference.

Each call is the LangChain tool's ``ainvoke`` (no agent around it), timed from the call to its answer. Contenders
take turns round by round (``--rounds``), so a change in the machine's load hits them alike. Every answer is
checked; a wrong one fails the run. Writes ``benchmarks/results/mcp-sessions.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironloop.benchmarks import RESULTS_DIR
from ironloop.benchmarks.chaos import machine_facts
from ironloop.terminal import ProgressBar

QUERY = {"query": "Paris population"}
EXPECTED = "Paris (France) has a population of 2,160,000"
CONTENDERS = {
    "ironloop": "ironloop MCPServers (one long-lived session)",
    "adapters_session": "langchain-mcp-adapters, session held open",
    "adapters_per_call": "langchain-mcp-adapters defaults (a session per call)",
}


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        from ironloop.checkpoints.stats import percentile

        values = self.seconds
        return {
            "calls": len(values),
            "p50_ms": round(1000 * percentile(values, 50), 2),
            "p95_ms": round(1000 * percentile(values, 95), 2),
            "mean_ms": round(1000 * sum(values) / len(values), 2),
            "client_cpu_ms_per_call": round(1000 * self.cpu_s / len(values), 2),
        }


Call = Callable[[], Awaitable[Any]]


@contextlib.asynccontextmanager
async def contenders(connection: dict[str, Any]) -> AsyncIterator[dict[str, Call]]:
    """The three ways to call the search tool over ``connection`` (a langchain-mcp-adapters connection dict)."""
    from ironloop.tools.mcp import MCPServers
    from langchain_mcp_adapters.client import MultiServerMCPClient
    from langchain_mcp_adapters.tools import load_mcp_tools

    entry = {k: v for k, v in connection.items() if k != "transport"}
    if connection["transport"] == "streamable_http":
        entry["transport"] = "streamable_http"
    client = MultiServerMCPClient({"search": connection})  # type: ignore[dict-item]
    (per_call,) = await client.get_tools()
    async with MCPServers.from_config({"mcpServers": {"search": entry}}) as servers, client.session("search") as held:
        (ours,) = servers.tools
        (adapters_held,) = await load_mcp_tools(held)
        yield {
            "ironloop": lambda: ours.ainvoke(QUERY),
            "adapters_session": lambda: adapters_held.ainvoke(QUERY),
            "adapters_per_call": lambda: per_call.ainvoke(QUERY),
        }


async def measure(connection: dict[str, Any], rounds: int, calls: dict[str, int]) -> dict[str, Timings]:
    timings = {name: Timings() for name in CONTENDERS}
    async with contenders(connection) as calling:
        for name in CONTENDERS:  # warm up each path once
            await _checked(calling[name])
        with ProgressBar(rounds, f"{connection['transport']} rounds") as bar:
            for _ in range(rounds):
                for name in CONTENDERS:
                    cpu = time.process_time()
                    for _ in range(calls[name]):
                        started = time.perf_counter()
                        await _checked(calling[name])
                        timings[name].seconds.append(time.perf_counter() - started)
                    timings[name].cpu_s += time.process_time() - cpu
                bar.advance()
    return timings


async def _checked(call: Call) -> None:
    answer = await call()
    text = json.dumps(answer) if not isinstance(answer, str) else answer
    if EXPECTED not in text:
        raise RuntimeError(f"unexpected answer from the MCP search tool: {text[:200]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=10, help="turns each contender takes (default 10)")
    parser.add_argument("--calls", type=int, default=20, help="calls per turn, long-lived sessions (default 20)")
    parser.add_argument("--per-call-calls", type=int, default=2, help="calls per turn, a session per call (2)")
    parser.add_argument("--transports", default="stdio,streamable_http", help="stdio, streamable_http or both")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON and table go")


def run(args: argparse.Namespace) -> int:
    from ironloop.benchmarks.chaos_service import RemoteServices

    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if unknown := [t for t in transports if t not in ("stdio", "streamable_http")]:
        print(f"ironloop bench mcp_sessions: unknown transport(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    calls = {"ironloop": args.calls, "adapters_session": args.calls, "adapters_per_call": args.per_call_calls}
    results: dict[str, dict[str, Any]] = {}
    for transport in transports:
        print(f"{transport}: {args.rounds} rounds ...", flush=True)
        if transport == "stdio":
            server = [sys.executable, "-m", "ironloop.demo.services.mcp_search", "--profile", "none"]
            connection: dict[str, Any] = {"transport": "stdio", "command": server[0], "args": server[1:]}
            timings = asyncio.run(measure(connection, args.rounds, calls))
        else:
            with RemoteServices("none", 0, mcp=True) as services:
                connection = {"transport": "streamable_http", "url": services.mcp_url}
                timings = asyncio.run(measure(connection, args.rounds, calls))
        results[transport] = {name: {"label": CONTENDERS[name], **t.summary()} for name, t in timings.items()}
        persistent = results[transport]["ironloop"]["p50_ms"]
        for summary in results[transport].values():
            summary["p50_vs_ironloop"] = round(summary["p50_ms"] / persistent, 2) if persistent else None

    table = format_markdown(results)
    print(table)
    argv = sys.argv[1:]
    argv = argv[2:] if argv[:2] == ["bench", "mcp_sessions"] else argv
    command = "ironloop bench mcp_sessions " + " ".join(shlex.quote(a) for a in argv)
    facts = machine_facts()
    report = {"benchmark": "mcp_sessions", "command": command, "machine": facts, "results": results}
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "mcp-sessions.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    header = f"`{command}` — {facts['date']}, {facts['cores']} cores"
    (out / "mcp-sessions.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
    print(f"wrote {out / 'mcp-sessions.json'}, {out / 'mcp-sessions.md'}")
    return 0


def format_markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| transport | contender | calls | p50 ms | p95 ms | mean ms | client CPU ms/call | p50 vs ironloop |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for transport, by_name in results.items():
        for s in by_name.values():
            lines.append(
                f"| {transport} | {s['label']} | {s['calls']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | "
                f"{s['mean_ms']:.1f} | {s['client_cpu_ms_per_call']:.2f} | {s['p50_vs_ironloop']:.1f}× |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m ironloop.benchmarks.mcp_sessions")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
