"""The terminal, for every command (the benchmarks too, which sit below the command line): whether a stream is
one, and a progress bar for long work (``demo --tasks``, ``bench ...``) drawn on standard error only when it is
a terminal: a log file or a pipe gets no bar (nor its carriage returns), standard output stays data.

The bar is one line, redrawn at most every `REDRAW_S`, erased when done; safe to advance from several threads.
Only the standard library is imported.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

REDRAW_S = 0.1


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class ProgressBar:
    """``with ProgressBar(total, "tasks") as bar: ... bar.advance()``."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None):
        self.total = max(0, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.on = self.total > 0 and is_terminal(self.stream)
        self.done = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done = max(0, min(self.total, self.done + count))
            now = time.monotonic()
            if self.on and (now - self._drawn_at >= REDRAW_S or self.done == self.total):
                self._drawn_at = now
                self._draw(now)

    def update(self, done: int) -> None:
        """Set how much is done (for work counted elsewhere)."""
        if done != self.done:
            self.advance(done - self.done)

    def print(self, text: str) -> None:
        """Print a line on standard output without mangling the bar: erase it, print, draw it again."""
        with self._lock:
            if self.on:
                self.stream.write("\r" + " " * self._width() + "\r")
                self.stream.flush()
            print(text, flush=True)
            if self.on:
                self._draw(time.monotonic())

    def close(self) -> None:
        with self._lock:
            if self.on:
                self.stream.write("\r" + " " * self._width() + "\r")
                self.stream.flush()
                self.on = False

    def __enter__(self) -> ProgressBar:
        if self.on:
            self._draw(time.monotonic())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def line(self, now: float) -> str:
        """The bar's text: label, bar, count, share, elapsed and, once started, the time left."""
        elapsed = now - self._started
        share = self.done / self.total if self.total else 1.0
        left = f", {elapsed / self.done * (self.total - self.done):.0f} s left" if 0 < self.done < self.total else ""
        tail = f" {self.done}/{self.total} {share:4.0%} {elapsed:.0f} s{left}"
        room = max(10, min(40, self._width() - len(self.label) - len(tail) - 4))
        filled = int(room * share)
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{tail}"

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.line(now)[: self._width()])
        self.stream.flush()

    def _width(self) -> int:
        return shutil.get_terminal_size().columns - 1
