"""Agent factories for worker processes started by tests (``ironloop worker --agent tests.fleet_agents:NAME``)."""

from __future__ import annotations

import os
from typing import Any

from ironloop.checkpoints.ledger import AttemptLedger
from ironloop.demo.scripted_model import ScriptedChatModel
from ironloop.graph import build_agent
from ironloop.tools.builtin import BUILTIN_POLICIES, builtin_tools
from langgraph.checkpoint.base import BaseCheckpointSaver

from tests.injection import obedient_script


def injected_agent(checkpointer: BaseCheckpointSaver) -> Any:
    """A model that obeys the injected search result and charges a card: the charge waits for approval."""
    url = os.environ["IRONLOOP_SEARCH_URL"]
    return build_agent(
        ScriptedChatModel(script=obedient_script),
        builtin_tools(url),
        policies=BUILTIN_POLICIES,
        checkpointer=checkpointer,
        listeners=[AttemptLedger(checkpointer.engine)],  # type: ignore[attr-defined]
    )
