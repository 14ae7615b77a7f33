"""Benchmarks run by ``ironloop bench NAME``: each module has ``add_arguments(parser)`` and ``run(args) -> int``,
and writes its results under ``benchmarks/results/``. Timings live here, never in pass/fail tests."""

from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

BENCHMARKS = ("checkpoint", "crash", "chaos")
