"""Benchmarks run by ``ironloop bench NAME``: each module has ``add_arguments(parser)`` and ``run(args) -> int``,
and writes its results under ``benchmarks/results/`` in the working directory (``$IRONLOOP_BENCH_DIR`` overrides
it). Timings live here, never in pass/fail tests."""

import os
from pathlib import Path

RESULTS_DIR = Path(os.environ.get("IRONLOOP_BENCH_DIR") or Path("benchmarks") / "results")

BENCHMARKS = ("checkpoint", "crash", "chaos", "scale", "mcp_sessions", "overhead")
