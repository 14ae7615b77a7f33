"""Credentials for one call: the secrets its policy grants, bound to the tool for that call only, and scrubbed
from everything any tool hands back.

The secrets never enter the tool call. ``ToolNode`` strips any value the model wrote for an injected parameter
and then invokes the request's tool; for a call granted secrets, `CredentialGrants` hands ``ToolNode`` (through
the request, ``request.override(tool=...)``) a `SecretBoundTool` made for that one call, which adds them to the
arguments of that one invocation. So no secret is in the AIMessage, a checkpoint, a stream or a ledger
(tests/test_least_privilege.py checks each).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ironloop.tools import observations
from ironloop.tools.credentials import Credentials, Secret
from ironloop.tools.delegating import DelegatingTool
from ironloop.tools.errors import CredentialsConfigError, PermanentToolError
from ironloop.tools.redaction import Redact, scrub_exception, scrub_message
from ironloop.tools.steps import CallContext, Execute, Result, Step
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from pydantic import PrivateAttr


class SecretBoundTool(DelegatingTool):
    """``tool`` with some of its injected arguments filled in, for one call.

    ``invoke``/``ainvoke`` add the secrets to the arguments and hand the call to ``tool``, which does the rest
    (validation, callbacks, the ``ToolMessage``); LangChain keeps injected arguments out of callback inputs.
    """

    _secrets: dict[str, Secret] = PrivateAttr(default_factory=dict)

    def __init__(self, tool: BaseTool, secrets: Mapping[str, Secret]):
        super().__init__(tool)
        self._secrets = dict(secrets)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.tool.invoke(self._with_secrets(input), config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self.tool.ainvoke(self._with_secrets(input), config, **kwargs)

    def _with_secrets(self, input: Any) -> Any:
        if isinstance(input, dict) and input.get("type") == "tool_call":
            return {**input, "args": {**input["args"], **self._secrets}}
        if isinstance(input, dict):
            return {**input, **self._secrets}
        return input


class CredentialGrants:
    """The layer that gives a call the secrets its policy grants, and scrubs every known secret from results.

    ``needs`` is tool → {credential name → required} (`tools.credentials.check_grants`). ``credentials`` is the
    store, or a function giving it when first needed (then loaded from the environment and the config file).
    A required secret that is missing fails the call before it starts (`MissingCredentialError`, permanent).
    """

    def __init__(
        self,
        needs: Mapping[str, Mapping[str, bool]] | None = None,
        credentials: Credentials | Callable[[], Credentials] = Credentials,
    ):
        self.needs = {tool: dict(names) for tool, names in (needs or {}).items() if names}
        self._credentials = credentials
        self._lock = threading.Lock()

    @property
    def credentials(self) -> Credentials:
        """The credentials store (made on first use when a function was given)."""
        if not isinstance(self._credentials, Credentials):
            with self._lock:
                if not isinstance(self._credentials, Credentials):
                    self._credentials = self._credentials()
        return self._credentials

    def secrets_for(self, tool: str) -> dict[str, Secret]:
        """The secrets one call of ``tool`` is given: only those its policy lists (maybe none)."""
        store = self.credentials
        secrets: dict[str, Secret] = {}
        for name, required in self.needs.get(tool, {}).items():
            secret = store.require(tool, name) if required else store.get(tool, name)
            if secret is not None:
                secrets[name] = secret
        return secrets

    async def __call__(self, call: CallContext, proceed: Step) -> Result:
        if not self.needs:
            return await proceed(call)
        try:
            secrets = self.secrets_for(call.name)
        except (PermanentToolError, CredentialsConfigError) as error:
            return observations.failed(call.tool_call, call.policy, call.record, PermanentToolError(str(error)))
        execute = bound(call.execute, secrets) if secrets else call.execute
        if self.credentials:
            execute = scrubbed(execute, self.credentials.redact)
        return await proceed(call.but(execute=execute))


def bound(execute: Execute, secrets: Mapping[str, Secret]) -> Execute:
    """``execute`` whose tool gets ``secrets`` as arguments (a `SecretBoundTool` for the request's tool)."""

    async def run(request: ToolCallRequest) -> Result:
        if request.tool is None:
            return await execute(request)
        return await execute(request.override(tool=SecretBoundTool(request.tool, secrets)))

    return run


def scrubbed(execute: Execute, redact: Redact) -> Execute:
    """``execute`` whose result and error carry no known secret (the one place tool output enters the runtime)."""

    async def run(request: ToolCallRequest) -> Result:
        try:
            result = await execute(request)
        except (GraphBubbleUp, asyncio.CancelledError):
            raise
        except Exception as error:
            cleaned = scrub_exception(error, redact)
            if cleaned is error:
                raise
            raise cleaned from None
        return scrub_message(result, redact)

    return run
