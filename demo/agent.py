"""The offline demo agent: the scripted model, the built-in tools and their policies.

``graph`` is the module-level compiled graph that ``langgraph.json`` points at (no checkpointer: the
LangGraph server brings its own). Its tools use ``$IRONLOOP_SEARCH_URL`` / ``$IRONLOOP_PAYMENTS_URL``, or else
the demo's local services (reference fault profile, or ``$IRONLOOP_SEARCH_PROFILE``), started on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable

from ironloop.demo.scenario import demo_script
from ironloop.demo.scripted_model import ScriptedChatModel
from ironloop.graph.agent import build_agent
from ironloop.tools.builtin import BUILTIN_POLICIES, PAYMENTS_URL_ENV, SEARCH_URL_ENV, ServiceURL, builtin_tools
from ironloop.tools.credentials import Credentials
from ironloop.tools.records import CallListener
from ironloop.tools.sentinels import DEFAULT, Default
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph


def build_demo_agent(
    search_url: ServiceURL | None = None,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    listeners: Iterable[CallListener] = (),
    max_turns: int = 10,
    credentials: Credentials | Default | None = DEFAULT,
) -> CompiledStateGraph:
    """The demo agent. Without ``search_url`` its tools find their services as `graph`'s do. ``credentials`` as
    in `build_agent`: omitted, loaded from the environment and ``ironloop.toml`` when first needed."""
    payments_url: ServiceURL | None = None
    if search_url is None:
        search_url, payments_url = _from_env_or_local(SEARCH_URL_ENV), _from_env_or_local(PAYMENTS_URL_ENV)
    return build_agent(
        ScriptedChatModel(script=demo_script),
        builtin_tools(search_url, payments_url),
        policies=BUILTIN_POLICIES,
        checkpointer=checkpointer,
        listeners=listeners,
        max_turns=max_turns,
        credentials=credentials,
        name="ironloop-demo",
    )


def _from_env_or_local(env: str) -> ServiceURL:
    async def url() -> str:
        started = os.environ.get(env) or _local_services_url
        return started if started is not None else await asyncio.to_thread(local_services_url)

    return url


_local_services_lock = threading.Lock()
_local_services_url: str | None = None


def local_services_url() -> str:
    """The URL of the demo's local tool services, started once per process (profile ``$IRONLOOP_SEARCH_PROFILE``)."""
    global _local_services_url
    with _local_services_lock:
        if _local_services_url is None:
            from ironloop.demo.services.server import start_tool_services

            services = start_tool_services(profile=os.environ.get("IRONLOOP_SEARCH_PROFILE", "reference"))
            _local_services_url = services.url
        return _local_services_url


graph = build_demo_agent()
