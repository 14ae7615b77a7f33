"""Tool schemas as OpenAI-compatible endpoints want them: strict where the schema allows it.

OpenAI's strict mode (``"strict": true``) guarantees the model's arguments match the schema, but only accepts
schemas in which every object lists all its properties as required and forbids others. A tool whose schema
meets that rule (ironloop's built-in tools do) is bound strict; any other tool is bound as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def strict_compatible(schema: Any) -> bool:
    """True if every object in the schema (nested ones and ``$defs`` included) requires all its properties."""
    if isinstance(schema, list):
        return all(strict_compatible(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties")
    if isinstance(properties, dict) and set(schema.get("required", [])) != set(properties):
        return False
    if schema.get("additionalProperties") not in (None, False):
        return False
    children: list[Any] = list(_subschemas(schema))
    return all(strict_compatible(child) for child in children)


def _subschemas(schema: dict[str, Any]) -> Iterable[Any]:
    yield from (schema.get("properties") or {}).values()
    yield from (schema.get("$defs") or {}).values()
    if "items" in schema:
        yield schema["items"]
    for key in _SUBSCHEMA_LISTS:
        yield from schema.get(key) or []


def openai_tool_specs(tools: Sequence[BaseTool]) -> list[dict[str, Any]]:
    """OpenAI tool definitions, each ``strict`` when its schema allows it."""
    specs = []
    for tool in tools:
        parameters = convert_to_openai_tool(tool)["function"].get("parameters", {})
        specs.append(convert_to_openai_tool(tool, strict=True if strict_compatible(parameters) else None))
    return specs
