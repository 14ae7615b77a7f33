"""A structured final answer (``build_agent(response_format=Schema)``), as ``create_agent``'s ``response_format``
gives one.

When the model answers without calling a tool, one more model call turns the conversation into ``Schema``
(``with_structured_output``: a Pydantic model, a TypedDict or a JSON schema) under the same model policy, and the
result is the state's ``structured_response``. This costs that extra call (``create_agent``'s tool strategy
instead binds the schema as one more tool), and keeps the ReAct loop itself unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, get_type_hints

from ironloop.graph.model_call import ModelCaller, ModelPolicy, model_name
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END
from typing_extensions import TypedDict

RESPONSE_KEY = "structured_response"


def with_structured_response(schema: type) -> type:
    """``schema`` (a TypedDict state) plus the ``structured_response`` channel."""
    hints = {**get_type_hints(schema, include_extras=True), RESPONSE_KEY: NotRequired[Any]}
    return TypedDict(f"{schema.__name__}WithResponse", hints)  # type: ignore[operator]


class StructuredAnswer:
    """The ``respond`` node: the final answer as ``response_format``, by one more model call."""

    def __init__(self, model: BaseChatModel, response_format: Any, policy: ModelPolicy, system_prompt: str | None):
        if type(response_format).__module__.startswith("langchain.agents"):
            raise TypeError(
                "build_agent(response_format=...) takes the schema itself (a Pydantic model, a TypedDict or a JSON "
                f"schema), not {type(response_format).__name__}"
            )
        try:
            structured = model.with_structured_output(response_format)
        except (NotImplementedError, AttributeError) as exc:
            raise TypeError(f"{type(model).__name__} cannot give structured output: {exc}") from exc
        self.caller = ModelCaller([(model_name(model), structured)], policy)
        self.system_prompt = system_prompt

    def node(self) -> RunnableLambda:
        return RunnableLambda(self.respond, afunc=self.arespond, name="respond")

    def _prompt(self, state: dict[str, Any]) -> list[AnyMessage]:
        messages = list(state["messages"])
        return [SystemMessage(self.system_prompt), *messages] if self.system_prompt else messages

    def respond(self, state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {RESPONSE_KEY: self.caller.invoke(self._prompt(state), config)}

    async def arespond(self, state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {RESPONSE_KEY: await self.caller.ainvoke(self._prompt(state), config)}

    @staticmethod
    def routed(route: Callable[..., Any]) -> Callable[..., Any]:
        """``route`` with its end of the run sent through ``respond`` first."""

        def then_respond(state: Any, config: RunnableConfig) -> Any:
            where = route(state, config)
            return "respond" if where == END else where

        return then_respond
