"""Reading other processes from ``/proc`` (Linux): a worker's pool processes, and the CPU time they used."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The pids of a process's children now alive."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                found += [int(p) for p in handle.read().split()]
    return found


def cpu_s(pid: int) -> float:
    """CPU time (user + system) of a process and its children now alive."""
    total = 0.0
    for each in [pid, *children(pid)]:
        with contextlib.suppress(OSError, IndexError):
            with open(f"/proc/{each}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def stop_group(process: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    """Stop a process started in a session of its own, and everything it started: SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
