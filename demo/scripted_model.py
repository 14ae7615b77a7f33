"""`ScriptedChatModel`: a real LangChain chat model that plays a script instead of calling an API.

It is the offline default (no machine here reaches a hosted model) and a test double: it binds tools,
streams, and runs sync or async like any chat model, but its next message is a function of the conversation
(`Script`). `graph.scenario.population_script` is the script of the reference scenario.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

Script = Callable[[Sequence[BaseMessage]], AIMessage]
"""Given the conversation so far, the model's next message."""


class ScriptedChatModel(BaseChatModel):
    """A chat model whose answers come from a `Script`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Script
    bound_tool_names: tuple[str, ...] = ()
    """Names of the tools bound with `bind_tools` (a script may still call others, as real models do)."""

    @property
    def _llm_type(self) -> str:
        return "ironloop-scripted"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> ScriptedChatModel:
        names = tuple(convert_to_openai_tool(t)["function"]["name"] for t in tools)
        return self.model_copy(update={"bound_tool_names": names})

    def _next(self, messages: Sequence[BaseMessage]) -> AIMessage:
        message = self.script(messages)
        for call in message.tool_calls:
            call["id"] = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
        return message

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in _chunks(self._next(messages)):
            if run_manager is not None:
                run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks(self._next(messages)):
            if run_manager is not None:
                await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk


def _chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """The message as a token stream: its words, then its tool calls as tool-call chunks."""
    text = str(message.content)
    words = text.split(" ")
    for index, word in enumerate(words):
        piece = word if index == len(words) - 1 else word + " "
        if piece:
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message.id))
    if message.tool_calls:
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                id=message.id,
                tool_call_chunks=[
                    {
                        "name": c["name"],
                        "args": json.dumps(c["args"]),
                        "id": c["id"],
                        "index": i,
                        "type": "tool_call_chunk",
                    }
                    for i, c in enumerate(message.tool_calls)
                ],
            )
        )


class Replay:
    """A `Script` that answers with the given messages in order (for tests); the last one repeats."""

    def __init__(self, messages: Sequence[AIMessage]):
        if not messages:
            raise ValueError("Replay needs at least one message")
        self.messages = list(messages)
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, conversation: Sequence[BaseMessage]) -> AIMessage:
        with self._lock:
            index = min(self.calls, len(self.messages) - 1)
            self.calls += 1
        return self.messages[index].model_copy(deep=True)
