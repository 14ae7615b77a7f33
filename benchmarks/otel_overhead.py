"""Tracing overhead: ``ironloop bench chaos`` (ironloop only, same seed) with OpenTelemetry off, and on exporting to
a local OTLP/HTTP receiver, interleaved.

``ironloop bench otel_overhead --tasks N --rounds R`` runs ``ironloop bench chaos --contenders ironloop`` 2R times
in fresh processes, alternating off and on (the order flips each round, so drift in the machine's load falls on
both); "on" is configured the standard way, ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a receiver this process
runs (`benchmarks.otlp_receiver`), and "off" has no ``OTEL_*`` variable at all. Reported per mode: the median over
rounds of the chaos run's CPU time per task (the process's, exporter thread included), its latency p50 and p95,
its success rate, and the spans and metric points received; and the on/off CPU ratio of each round's pair.
Writes ``otel-overhead.json`` and ``.md`` under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ironloop.benchmarks import RESULTS_DIR

MODES = ("off", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=200, help="tasks per chaos run (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode, interleaved (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="the chaos run's fault and task seed (default 7)")
    parser.add_argument("--concurrency", type=int, default=8, help="the chaos run's tasks in flight (default 8)")
    parser.add_argument("--profile", default="reference", help="fault profile (default reference)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON and table go")


def chaos_run(args: argparse.Namespace, mode: str, endpoint: str, out: Path) -> dict[str, Any]:
    """One ``ironloop bench chaos`` of ironloop alone, in a fresh process; its summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "IRONLOOP_OTEL"))}
    if mode == "on":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    command = [sys.executable, "-m", "ironloop", "bench", "chaos", "--contenders", "ironloop", "--no-plot"]
    command += ["--tasks", str(args.tasks), "--seed", str(args.seed), "--concurrency", str(args.concurrency)]
    command += ["--profile", args.profile, "--out-dir", str(out)]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=3600)
    report = json.loads((out / f"chaos-{args.profile}.json").read_text())
    return dict(report["contenders"]["ironloop"])


def run(args: argparse.Namespace) -> int:
    from ironloop.benchmarks.otlp_receiver import OTLPReceiver

    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with OTLPReceiver() as receiver, tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                spans, points = len(receiver.received.spans), len(receiver.received.points)
                summary = chaos_run(args, mode, receiver.url, Path(scratch) / f"{mode}-{round_}")
                summary["spans"] = len(receiver.received.spans) - spans
                summary["metric_points"] = len(receiver.received.points) - points
                results[mode].append(summary)
                print(
                    f"round {round_ + 1} {mode:>3}: cpu {summary['cpu_ms_per_task']:.1f} ms/task, p50 "
                    f"{summary['latency_ms']['p50']:.0f} ms, p95 {summary['latency_ms']['p95']:.0f} ms, success "
                    f"{summary['success_rate']:.1%}, {summary['spans']} spans",
                    flush=True,
                )
    figures = {
        mode: {
            "cpu_ms_per_task": statistics.median(r["cpu_ms_per_task"] for r in runs),
            "latency_p50_ms": statistics.median(r["latency_ms"]["p50"] for r in runs),
            "latency_p95_ms": statistics.median(r["latency_ms"]["p95"] for r in runs),
            "success_rate": statistics.median(r["success_rate"] for r in runs),
            "spans_per_task": statistics.median(r["spans"] for r in runs) / args.tasks,
            "metric_points": statistics.median(r["metric_points"] for r in runs),
            "runs": [
                {k: r[k] for k in ("cpu_ms_per_task", "latency_ms", "success_rate", "spans", "metric_points")}
                for r in runs
            ],
        }
        for mode, runs in results.items()
    }
    ratio = figures["on"]["cpu_ms_per_task"] / figures["off"]["cpu_ms_per_task"]
    paired = [
        on["cpu_ms_per_task"] / off["cpu_ms_per_task"] for on, off in zip(results["on"], results["off"], strict=True)
    ]
    command = (
        f"ironloop bench otel_overhead --tasks {args.tasks} --rounds {args.rounds} --seed {args.seed} "
        f"--concurrency {args.concurrency} --profile {args.profile}"
    )
    report = {
        "benchmark": "otel_overhead",
        "command": command,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_ratio_on_over_off": round(ratio, 3),
        "cpu_ratio_per_round": [round(r, 3) for r in paired],
        "modes": figures,
    }
    table = [
        f"`{command}`; load average {report['load_average_before'][0]} before, {report['load_average_after'][0]} "
        "after; medians over the rounds",
        "",
        "| tracing | CPU ms/task | latency p50 ms | latency p95 ms | success | spans/task |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        f = figures[mode]
        table.append(
            f"| {mode} | {f['cpu_ms_per_task']:.1f} | {f['latency_p50_ms']:.0f} | {f['latency_p95_ms']:.0f} | "
            f"{f['success_rate']:.1%} | {f['spans_per_task']:.1f} |"
        )
    rounds = ", ".join(f"{r:.2f}" for r in paired)
    table += ["", f"CPU per task, on / off: {ratio:.3f} (medians); round by round: {rounds}"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "otel-overhead.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out_dir / "otel-overhead.md").write_text("\n".join(table) + "\n", encoding="utf-8")
    print("\n".join(table))
    return 0
