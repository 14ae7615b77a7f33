"""The chaos benchmark's latency plot: successes and failures apart (a fast failure never looks fastest), and
the legend over no data."""

from __future__ import annotations

import os
import random
from pathlib import Path

from ironloop.benchmarks.chaos import ContenderRun, TaskRecord, latency_figure, plot_latencies


def runs() -> list[ContenderRun]:
    """ironloop: all succeed, slowly (retries); create_react_agent: 60 % fail within 20 ms, the rest succeed fast;
    plain_loop: a few hangs at the deadline."""
    rng = random.Random(3)
    ironloop = [TaskRecord(i, "population", rng.uniform(0.3, 2.0), "answer", 3, success=True) for i in range(100)]
    fast_failures = [
        TaskRecord(i, "population", rng.uniform(0.005, 0.02), "error", 1, success=False) for i in range(60)
    ] + [TaskRecord(60 + i, "population", rng.uniform(0.1, 0.3), "answer", 3, success=True) for i in range(40)]
    hangs = [TaskRecord(i, "population", 15.0, "hang", 2, success=False) for i in range(5)] + [
        TaskRecord(5 + i, "population", rng.uniform(0.5, 5.0), "answer", 3, success=True) for i in range(95)
    ]
    return [
        ContenderRun("ironloop", ironloop, 10.0, {}),
        ContenderRun("create_react_agent", fast_failures, 10.0, {}),
        ContenderRun("plain_loop", hangs, 10.0, {}),
    ]


def test_successes_and_failures_are_drawn_apart_and_share_all_tasks() -> None:
    figure = latency_figure(runs(), profile="reference", deadline_s=15.0)
    succeeded, failed = figure.axes[:2]
    tops = {
        name: (max(line.get_ydata(), default=0.0), max(fail.get_ydata(), default=0.0))
        for name, line, fail in zip(
            ("ironloop", "create_react_agent", "plain_loop"),
            succeeded.get_lines()[:3],
            failed.get_lines()[:3],
            strict=True,
        )
    }
    assert tops["ironloop"] == (1.0, 0.0)
    assert tops["create_react_agent"] == (0.4, 0.6)  # its fast failures climb the failure panel only
    assert tops["plain_loop"] == (0.95, 0.05)
    fastest_success = min(line.get_xdata()[0] for line in succeeded.get_lines()[:3] if len(line.get_xdata()))
    assert fastest_success >= 100  # ms: the 5-20 ms failures are not on the success panel


def test_the_legend_covers_no_panel(tmp_path: Path) -> None:
    figure = latency_figure(runs(), profile="reference", deadline_s=15.0)
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    legend = figure.legends[0].get_window_extent(renderer)
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert len(texts) == 3 and "create_react_agent (defaults): 40.0% succeeded (n=100)" in texts
    for axes in figure.axes:
        panel = axes.get_tightbbox(renderer)  # the plot area with its tick labels and axis label
        assert not legend.overlaps(panel), (legend, panel)
    assert legend.x0 >= 0 and legend.x1 <= figure.bbox.width and legend.y0 >= 0  # inside the picture
    out = Path(os.environ.get("IRONLOOP_SCREENSHOT_DIR", tmp_path)) / "chaos-plot.png"
    plot_latencies(runs(), out, profile="reference", deadline_s=15.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
