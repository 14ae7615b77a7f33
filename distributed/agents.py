"""The agent a worker runs: a factory named ``module:function`` that builds it from a checkpointer (like
``langgraph.json`` names a graph). The default, `demo_agent`, is the offline demo agent on the shared services.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

AgentFactory = Callable[[BaseCheckpointSaver], Any]
"""``factory(checkpointer)`` → a compiled LangGraph agent (``ironloop.build_agent(..., checkpointer=...)``)."""


FACTORY_PREFIX = "factory:"
"""Checkpoint metadata ``ironloop_agent`` of a thread run by a factory's agent: ``factory:module:function``."""


class AgentSpecError(ValueError):
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


def demo_agent(checkpointer: BaseCheckpointSaver) -> Any:
    """The demo agent, its calls recorded in the attempt ledger, its tools on the services every worker shares:
    ``$IRONLOOP_SEARCH_URL`` (and ``$IRONLOOP_PAYMENTS_URL``, by default the same). A worker never starts private
    copies of them: two workers charging through two private payment services could not be exactly once."""
    from ironloop.checkpoints import SQLAlchemySaver
    from ironloop.checkpoints.ledger import AttemptLedger
    from ironloop.demo.agent import build_demo_agent
    from ironloop.tools.builtin import PAYMENTS_URL_ENV, SEARCH_URL_ENV
    from ironloop.tools.credentials import Credentials

    search_url = os.environ.get(SEARCH_URL_ENV)
    if not search_url:
        raise AgentSpecError(
            f"the demo agent's tools need ${SEARCH_URL_ENV} (and ${PAYMENTS_URL_ENV}, by default the same): the "
            "services every worker shares, e.g. `ironloop serve-tools` on one machine"
        )
    listeners = [AttemptLedger(checkpointer.engine)] if isinstance(checkpointer, SQLAlchemySaver) else []
    return build_demo_agent(
        # Both variables set: the tools read them at each call; only search's: payments is the same service.
        None if os.environ.get(PAYMENTS_URL_ENV) else search_url,
        checkpointer=checkpointer,
        listeners=listeners,
        credentials=Credentials.load(scrub_environ=True),
    )
