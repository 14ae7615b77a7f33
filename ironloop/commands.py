"""What every ``ironloop`` command shares: exit codes, the one-line error, the thread metadata naming an agent.

Here, below both, because the benchmarks (``ironloop bench ...``, also run on their own) and the worker fleet
are commands too, and must not import the command line (`ironloop.cli`) to speak like it. Only the standard
library is imported: ``ironloop --help`` stays quick.
"""

from __future__ import annotations

import argparse

EXIT_FAILED = 1
"""The run failed (it can be resumed), or a decision came second."""
EXIT_USAGE = 2
"""Bad usage or configuration."""
EXIT_PAUSED = 3
"""A tool call waits for a human's approval."""

AGENT_KEY = "ironloop_agent"
"""Checkpoint metadata naming the agent that ran a thread (``demo``, ``openai``, ``factory:module:function``), so
a resume, in any process, rebuilds the same agent."""


class CommandError(Exception):
    """A failure to report as one line, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
