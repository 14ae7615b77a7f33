"""The ``ironloop`` command line: a thin layer over the agent graph, the checkpoint store and the demo."""

from ironloop.cli.app import main

__all__ = ["main"]
