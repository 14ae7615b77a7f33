"""The checkpointer LangGraph Studio (``langgraph dev``) uses, named by ``langgraph.json``'s ``checkpointer.path``.

Studio sessions then persist to ironloop's own database (``$IRONLOOP_DB_URL``, default ``./ironloop.db``), where
``ironloop threads``, ``history`` and ``resume`` see them too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ironloop.checkpoints.saver import SQLAlchemySaver


@asynccontextmanager
async def studio_checkpointer() -> AsyncIterator[SQLAlchemySaver]:
    async with SQLAlchemySaver.from_url() as saver:
        await saver.aget_tuple({"configurable": {"thread_id": "__ironloop_probe__"}})  # migrate and connect now
        yield saver
