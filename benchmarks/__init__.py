"""Benchmarks run by ``ironloop bench NAME``: each module has ``add_arguments(parser)`` and ``run(args) -> int``,
and writes its results under ``benchmarks/results/`` in the working directory (``$IRONLOOP_BENCH_DIR`` overrides
it). Timings live here, never in pass/fail tests."""

import os
from pathlib import Path
from typing import Any


def __getattr__(name: str) -> Any:
    """``RESULTS_DIR``, read when a benchmark imports it: after the command line applied ``ironloop.toml``."""
    if name == "RESULTS_DIR":
        return Path(os.environ.get("IRONLOOP_BENCH_DIR") or Path("benchmarks") / "results")
    raise AttributeError(f"module 'ironloop.benchmarks' has no attribute {name!r}")


BENCHMARKS = ("checkpoint", "crash", "chaos", "scale", "mcp_sessions", "otel_overhead", "overhead")
