"""Summary statistics shared by ``ironloop report``, the demo's figures and the benchmarks (no SQL, no LangGraph:
the commands' ``--help`` imports it)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]): a value that occurred, never an interpolation; NaN for none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]
