"""matplotlib for the benchmarks that draw a plot: an optional dependency (``ironloop[bench]``), so a benchmark
checks for it before it starts, not after a run of many minutes."""

from __future__ import annotations

from typing import Any

INSTALL = "pip install 'ironloop[bench]'"


def pyplot() -> Any:
    """``matplotlib.pyplot`` drawing to files (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def missing_matplotlib() -> str | None:
    """One line saying how to install matplotlib if it cannot be imported, else None."""
    try:
        pyplot()
    except ImportError as exc:
        return f"the plot needs matplotlib, which cannot be imported ({exc}): {INSTALL}, or pass --no-plot"
    return None
