"""The demo agent as a worker runs it (``ironloop worker`` without ``--agent``; `distributed.settings.DEFAULT_AGENT`
names it): its tools on the services every worker shares, its calls in the attempt ledger."""

from __future__ import annotations

import os
from typing import Any

from ironloop.distributed.agents import AgentSpecError
from langgraph.checkpoint.base import BaseCheckpointSaver


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
