"""An OpenAI-compatible chat-completions server for tests, on 127.0.0.1.

It speaks the wire format ``ChatOpenAI`` uses (JSON and server-sent-event streaming, tool calls streamed as
deltas). What it answers is scripted: by default it plays the reference scenario by handing the
conversation, converted back to LangChain messages, to `graph.scenario.population_script`. Tests can queue
faults (HTTP status with headers) and canned replies ahead of the script, and read every request received.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ironloop.demo.scenario import population_script
from ironloop.demo.services.server import ServiceThread
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class HTTPFault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted fault"


@dataclass
class RawReply:
    """An assistant message exactly as it goes on the wire (for arguments that are not valid JSON)."""

    message: dict[str, Any]


Reply = AIMessage | HTTPFault | RawReply


def to_langchain(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    converted: list[BaseMessage] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "system":
            converted.append(SystemMessage(content))
        elif role == "user":
            converted.append(HumanMessage(content))
        elif role == "tool":
            converted.append(ToolMessage(content, tool_call_id=m["tool_call_id"]))
        else:
            calls, invalid = [], []
            for c in m.get("tool_calls") or []:
                try:
                    calls.append(
                        {
                            "name": c["function"]["name"],
                            "args": json.loads(c["function"]["arguments"] or "{}"),
                            "id": c["id"],
                        }
                    )
                except ValueError:
                    invalid.append(
                        {
                            "name": c["function"]["name"],
                            "args": c["function"]["arguments"],
                            "id": c["id"],
                            "error": "not JSON",
                        }
                    )
            converted.append(AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid))
    return converted


class OpenAIStub:
    def __init__(self, script: Callable[[list[BaseMessage]], AIMessage] = population_script):
        self.script = script
        self.queue: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.failing_models: set[str] = set()
        """Models that always answer HTTP 503 (for fallback tests)."""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])
        self.service = ServiceThread(app, name="OpenAI-compatible stub")

    @property
    def base_url(self) -> str:
        return f"{self.service.url}/v1"

    def __enter__(self) -> OpenAIStub:
        self.service.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop()

    def tool_results(self, request_index: int = -1) -> dict[str, str]:
        """The observations (tool messages) the model received in a request, by tool call id."""
        messages = self.requests[request_index]["messages"]
        return {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            if body.get("model") in self.failing_models:
                return HTTPFault(503, message=f"{body['model']} is overloaded")
            if self.queue:
                return self.queue.pop(0)
        return self.script(to_langchain(body["messages"]))

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        reply = self._next_reply(body)
        if isinstance(reply, HTTPFault):
            error = {"error": {"message": reply.message, "type": "scripted", "code": reply.status}}
            return JSONResponse(error, status_code=reply.status, headers=reply.headers)
        if isinstance(reply, RawReply):
            content, calls = reply.message.get("content") or "", reply.message.get("tool_calls") or []
        else:
            content = str(reply.content)
            calls = [
                {
                    "id": c.get("id") or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
                }
                for c in reply.tool_calls
            ]
        finish = "tool_calls" if calls else "stop"
        base = {"id": f"chatcmpl-{next(self._ids)}", "created": 0, "model": body.get("model", "stub")}
        if body.get("stream"):
            return StreamingResponse(self._sse(base, content, calls, finish), media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    async def _sse(
        self, base: dict[str, Any], content: str, calls: list[dict[str, Any]], finish: str
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        words = content.split(" ") if content else []
        for index, word in enumerate(words):
            yield chunk({"content": word if index == len(words) - 1 else word + " "})
        for index, c in enumerate(calls):
            head = {"index": index, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"]}}
            yield chunk({"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]})
            arguments = c["function"]["arguments"]
            middle = len(arguments) // 2
            for piece in (arguments[:middle], arguments[middle:]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, finish)
        yield "data: [DONE]\n\n"
