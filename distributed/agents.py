"""The agent a worker runs: a factory named ``module:function`` that builds it from a checkpointer (like
``langgraph.json`` names a graph). The default (`settings.DEFAULT_AGENT`) is the offline demo agent on the shared
services, named by module path like any other: the fleet never imports the demo itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ironloop.tools.errors import IronloopError
from langgraph.checkpoint.base import BaseCheckpointSaver

AgentFactory = Callable[[BaseCheckpointSaver], Any]
"""``factory(checkpointer)`` → a compiled LangGraph agent (``ironloop.build_agent(..., checkpointer=...)``)."""


FACTORY_PREFIX = "factory:"
"""Checkpoint metadata ``ironloop_agent`` of a thread run by a factory's agent: ``factory:module:function``."""


class AgentSpecError(IronloopError, ValueError):
    """``--agent`` / ``$IRONLOOP_AGENT`` does not name a usable factory."""


def load_factory(spec: str) -> AgentFactory:
    """The factory ``spec`` names (``package.module:function``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AgentSpecError(f"--agent takes MODULE:FACTORY (e.g. myapp.agents:build), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentSpecError(f"cannot import {module_name!r} for --agent {spec}: {exc}") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise AgentSpecError(f"{module_name!r} has no callable {attribute!r} (--agent {spec})")
    return factory
