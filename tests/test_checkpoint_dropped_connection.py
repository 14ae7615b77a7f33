"""The database goes away in the middle of a run, then comes back.

A loopback TCP proxy (`tests.tcp_proxy`) sits between the saver and the database server. The demo agent runs
through it; once the thread's third checkpoint is saved (input, step 0, step 1: the model has asked for the two
searches), the proxy drops every connection and refuses new ones. The run must fail with
`DatabaseUnavailableError` quickly (no hang), the step-1 checkpoint must be the thread's latest, and once the proxy
is back the same saver (or a new one) resumes the thread from it to the right answer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from ironloop.checkpoints import DatabaseUnavailableError, SQLAlchemySaver, make_engine
from ironloop.demo.agent import build_demo_agent
from ironloop.demo.scenario import DEMO_QUESTION
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from sqlalchemy import make_url

from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

ANSWER = "The combined city-proper population of Paris and Lyon is 2,673,000 (2,160,000 + 513,000)."
QUESTION = {"messages": [("user", DEMO_QUESTION)]}
FAILS_WITHIN_S = 10.0
CUT_AFTER = 3
"""Checkpoints saved before the cut: the input one, step 0 (before the model), step 1 (before the searches)."""


class CuttingSaver(SQLAlchemySaver):
    """A saver that cuts its own database off (through the proxy) right after its ``CUT_AFTER``-th checkpoint.

    Async calls go through `put` too (on the saver's threads), so sync and async runs are cut the same way.
    """

    def __init__(self, *args: Any, proxy: TcpProxy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.proxy = proxy
        self.saved = 0
        self.cut_at: float | None = None

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stored = super().put(config, checkpoint, metadata, new_versions)
        self.saved += 1
        if self.saved == CUT_AFTER and self.cut_at is None:
            self.proxy.cut()
            self.cut_at = time.monotonic()
        return stored


@pytest.fixture(params=("postgresql", "mariadb"))
def server_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mariadb_url")


def proxied(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


def finished(values: dict[str, Any]) -> bool:
    messages = values.get("messages") or []
    return bool(messages) and messages[-1].content == ANSWER


def cutting_saver(url: str, proxy: TcpProxy) -> CuttingSaver:
    return CuttingSaver(make_engine(url), owns_engine=True, proxy=proxy)


def test_a_dropped_connection_fails_the_run_and_the_same_saver_resumes(server_url: str, search_service: Any) -> None:
    service, _ = search_service
    target = make_url(server_url)
    config = {"configurable": {"thread_id": f"dropped-{uuid.uuid4().hex}"}}
    with TcpProxy(target.host or "127.0.0.1", target.port or 0) as proxy:
        saver = cutting_saver(proxied(proxy, server_url), proxy)
        agent = build_demo_agent(service.url, checkpointer=saver)

        with pytest.raises(DatabaseUnavailableError) as caught:
            agent.invoke(QUESTION, config)
        assert saver.cut_at is not None, "the run ended before its third checkpoint"
        assert time.monotonic() - saver.cut_at < FAILS_WITHIN_S
        assert f"at 127.0.0.1:{proxy.port}" in str(caught.value)

        proxy.restore()
        # The same saver object works again, and the last good checkpoint is the latest one.
        interrupted = agent.get_state(config)
        # Step 1's two search tasks; those whose writes were saved before the cut are not run again.
        assert interrupted.metadata["step"] == 1 and [t.name for t in interrupted.tasks] == ["tools", "tools"]
        assert interrupted.values["messages"][0].content == DEMO_QUESTION and not finished(interrupted.values)
        assert agent.invoke(None, config)["messages"][-1].content == ANSWER
        assert agent.get_state(config).next == ()
        saver.close()


def test_a_fresh_saver_resumes_an_async_run_cut_midway(server_url: str, search_service: Any) -> None:
    service, _ = search_service
    target = make_url(server_url)
    config = {"configurable": {"thread_id": f"dropped-async-{uuid.uuid4().hex}"}}
    with TcpProxy(target.host or "127.0.0.1", target.port or 0) as proxy:
        url = proxied(proxy, server_url)

        async def run_until_cut() -> CuttingSaver:
            async with cutting_saver(url, proxy) as saver:
                agent = build_demo_agent(service.url, checkpointer=saver)
                with pytest.raises(DatabaseUnavailableError):
                    await asyncio.wait_for(agent.ainvoke(QUESTION, config), FAILS_WITHIN_S)
                return saver

        started = time.monotonic()
        assert asyncio.run(run_until_cut()).cut_at is not None
        assert time.monotonic() - started < FAILS_WITHIN_S
        proxy.restore()

        async def resume() -> str:
            async with SQLAlchemySaver.from_url(url) as saver:  # a new process would start like this
                agent = build_demo_agent(service.url, checkpointer=saver)
                interrupted = await agent.aget_state(config)
                assert interrupted.metadata["step"] == 1 and not finished(interrupted.values)
                state = await agent.ainvoke(None, config)
                return state["messages"][-1].content

        assert asyncio.run(resume()) == ANSWER
