"""Checks a model's tool calls before anything is dispatched.

A call with an unknown name, arguments that are not JSON (or that a checkpoint cannot hold: `tools.storable`),
arguments the tool does not declare, or values of the wrong type never reaches the tool. The model gets an
observation that names the problem and shows the expected schema, so it can repair the call on its next turn.

Tools come with one of two kinds of schema. A pydantic model (``@tool`` functions, pydantic ``args_schema``)
is checked by pydantic in JSON-strict mode. A plain JSON-schema dict (``StructuredTool.from_function(...,
args_schema={...})``, MCP and OpenAPI tools) is checked by ``jsonschema``, with a validator built once per
tool when the catalog is made: Draft 2020-12 unless the schema names another dialect in ``$schema``, and
``format`` taken as an annotation, as the specification has it by default.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ironloop.tools.storable import UNSTORABLE, storable_problem
from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaViolation
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from langchain_core.messages import AIMessage, ToolCall
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)

MAX_PHRASE_CHARS = 200
"""Longest single problem phrase: enough to name the argument and the rule, short enough for any context."""

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
_short.maxlist = _short.maxdict = _short.maxtuple = _short.maxset = 4
_short.maxlevel = 2


@dataclass(frozen=True, slots=True)
class Rejection:
    """A call that will not be dispatched, and the observation that says why."""

    tool_call_id: str
    name: str
    reason: str


class ToolCatalog:
    """The agent's tools by name, with the JSON schema (and, for dict schemas, the validator) of each computed once.

    A dict schema that is not a valid JSON Schema (``jsonschema`` rejects it, or LangChain cannot render it)
    does not stop the catalog: that tool falls back to the two checks that need no validator, missing
    required arguments and undeclared arguments, and `schema_errors` says why (a warning is logged too).
    """

    def __init__(self, tools: Iterable[BaseTool]):
        self.tools: dict[str, BaseTool] = {}
        for tool in tools:
            if tool.name in self.tools:
                raise ValueError(f"two tools are named {tool.name!r}; tool names must be unique")
            self.tools[tool.name] = tool
        self.parameters: dict[str, dict[str, Any]] = {name: _parameters(tool) for name, tool in self.tools.items()}
        self.validators: dict[str, Validator] = {}
        """Validators of the tools whose schema is a valid JSON-schema dict."""
        self.schema_errors: dict[str, str] = {}
        """Tools whose dict schema is malformed, and why: they get the fallback checks only."""
        for name, tool in self.tools.items():
            schema = tool.tool_call_schema
            if isinstance(schema, type) and issubclass(schema, BaseModel):
                continue
            validator, error = _validator(schema)
            if validator is not None:
                self.validators[name] = validator
            else:
                self.schema_errors[name] = error
                logger.warning("tool %r: invalid JSON Schema, checking required keys only: %s", name, error)

    def schema_text(self, name: str) -> str:
        return json.dumps(self.parameters[name], separators=(",", ":"), sort_keys=True, default=str)

    def unknown_tool_text(self, name: str) -> str:
        return f"there is no tool named {name!r}. Available tools: {', '.join(sorted(self.tools)) or 'none'}."

    def split(self, message: AIMessage) -> tuple[list[ToolCall], list[Rejection]]:
        """Divide a model message's calls into those to dispatch and those to answer with an error."""
        dispatch: list[ToolCall] = []
        rejected: list[Rejection] = []
        for call in message.tool_calls:
            problem = self.check(call["name"], call["args"])
            if problem is None:
                dispatch.append(call)
            else:
                rejected.append(Rejection(call["id"] or "", call["name"], problem))
        for bad in message.invalid_tool_calls:
            name = bad.get("name") or ""
            raw = bad.get("args") or ""
            error = bad.get("error") or ""
            if error.startswith(UNSTORABLE):  # JSON, but not what a checkpoint can hold (`tools.storable`)
                reason = f"Error: {name}: invalid arguments: {error.removeprefix(UNSTORABLE)}: {raw[:200]}."
            else:
                detail = f" ({error})" if error else ""
                reason = f"Error: {name or 'the call'}: the arguments are not valid JSON{detail}: {raw[:200]!r}."
            if name in self.tools:
                reason += f" Expected arguments: {self.schema_text(name)}"
            else:
                reason += f" Also, {self.unknown_tool_text(name)}"
            rejected.append(Rejection(bad.get("id") or "", name, reason))
        return dispatch, rejected

    def check(self, name: str, args: Any) -> str | None:
        """The reason a call must not run, or ``None`` if it may."""
        if name not in self.tools:
            return f"Error: {self.unknown_tool_text(name)}"
        if not isinstance(args, dict):
            return f"Error: {name}: arguments must be a JSON object. Expected arguments: {self.schema_text(name)}"
        unstorable = storable_problem(args)
        problems = [unstorable] if unstorable is not None else self.argument_problems(name, args)
        if not problems:
            return None
        return f"Error: {name}: invalid arguments: {'; '.join(problems)}. Expected arguments: {self.schema_text(name)}"

    def argument_problems(self, name: str, args: dict[str, Any]) -> list[str]:
        """Everything wrong with ``args`` for this tool, one short phrase each, no phrase twice (empty if nothing).

        Arguments the tool does not declare are unexpected whether or not its schema says
        ``additionalProperties: false``: a model that invents an argument has misread the tool.
        """
        parameters = self.parameters[name]
        declared = _mapping(parameters.get("properties"))
        problems = [f"unexpected argument {key!r}" for key in args if key not in declared]
        schema = self.tools[name].tool_call_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            problems += _pydantic_problems(schema, args)
        elif name in self.validators:
            problems += _json_schema_problems(self.validators[name], args)
        else:  # malformed schema: only what needs no validator
            problems += [f"missing required argument {key!r}" for key in _required(parameters) if key not in args]
        return list(dict.fromkeys(problems))


def _parameters(tool: BaseTool) -> dict[str, Any]:
    """The tool's parameters as OpenAI renders them, or its raw dict schema if LangChain cannot render it."""
    try:
        return convert_to_openai_tool(tool)["function"].get("parameters", {})
    except Exception:  # e.g. a dangling $ref in a dict schema; the validator step reports it
        schema = tool.tool_call_schema
        return {k: v for k, v in schema.items() if k != "description"} if isinstance(schema, dict) else {}


def _validator(schema: Any) -> tuple[Validator | None, str]:
    """A validator for the schema (its ``$schema`` dialect, Draft 2020-12 if none), or ``None`` and why not.

    Checking a schema against its metaschema takes about a millisecond, so validators are shared between
    catalogs by the schema's canonical JSON (agents built per request, thousands of tools in a benchmark).
    """
    if not isinstance(schema, dict):
        return None, f"expected a JSON object, got {type(schema).__name__}"
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):  # not JSON: cannot be a valid schema, but let the metaschema say why
        return _build_validator(schema)
    return _shared_validator(key)


@functools.lru_cache(maxsize=1024)
def _shared_validator(schema_json: str) -> tuple[Validator | None, str]:
    return _build_validator(json.loads(schema_json))


def _build_validator(schema: dict[str, Any]) -> tuple[Validator | None, str]:
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
    except Exception as exc:  # SchemaError, an unknown $schema, anything a broken schema raises
        detail = getattr(exc, "message", None) or str(exc)
        return None, _cut(f"{type(exc).__name__}: {detail}")
    if dangling := [ref for ref in _local_refs(schema) if not _resolves(schema, ref)]:
        return None, _cut(f"$ref to nothing: {', '.join(dangling)}")
    return cls(schema), ""


def _local_refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` to a JSON pointer in the same document (``#/...``); others are resolved at validation."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            yield ref
        for value in node.values():
            yield from _local_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _local_refs(value)


def _resolves(schema: dict[str, Any], ref: str) -> bool:
    node: Any = schema
    for token in ref[2:].split("/"):
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def _pydantic_problems(schema: type[BaseModel], args: dict[str, Any]) -> list[str]:
    try:
        # A lone surrogate ("\ud800") is a legal Python and JSON-escape string that pydantic's parser refuses;
        # it becomes "?" here only (same length, still a string): the tool gets the arguments as sent.
        document = json.dumps(args, default=str, ensure_ascii=False).encode("utf-8", "replace")
    except (RecursionError, ValueError) as exc:  # nested deeper than Python follows, an int too long to print
        return [_cut(f"the arguments cannot be written as JSON ({type(exc).__name__}: {exc})")]
    try:
        # JSON-mode strict: only what a JSON document can carry; no "5" for 5, no 1.5 for an int.
        schema.model_validate_json(document, strict=True)
    except ValidationError as exc:
        return [_phrase(err) for err in exc.errors(include_url=False)]
    return []


def _json_schema_problems(validator: Validator, args: dict[str, Any]) -> list[str]:
    """Phrases for what ``jsonschema`` finds. If validation itself fails (a value nested deeper than Python can
    follow, a ``$ref`` that only breaks at run time), the call is refused rather than let through unchecked."""
    try:
        return [phrase for error in validator.iter_errors(args) for phrase in _schema_phrases(error)]
    except RecursionError:
        return ["the arguments are nested too deeply to be checked"]
    except Exception as exc:
        return [_cut(f"the arguments could not be checked against the schema ({type(exc).__name__}: {exc})")]


def _schema_phrases(error: SchemaViolation) -> list[str]:
    """One short phrase per problem in a ``jsonschema`` error, values abridged so one huge value stays short."""
    path = [str(part) for part in error.absolute_path]
    where = ".".join(path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict) and isinstance(error.validator_value, list):
        missing = [key for key in error.validator_value if key not in instance]
        return [f"missing required argument {'.'.join([*path, str(key)])!r}" for key in missing]
    if error.validator == "additionalProperties" and isinstance(instance, dict) and isinstance(error.schema, dict):
        extras = _undeclared(instance, error.schema)
        if not path:
            return [f"unexpected argument {key!r}" for key in extras]
        return [f"{where!r}: unexpected key {key!r}" for key in extras]
    label = repr(where) if path else "'arguments'"
    if error.validator == "type":
        return [_cut(f"{label}: {_short.repr(instance)} is not of type {_types(error.validator_value)}")]
    if (
        error.validator in ("anyOf", "oneOf")
        and error.context
        and all(sub.validator == "type" and not sub.relative_path for sub in error.context)
    ):
        # Optional[X] and unions: "is not of type 'string' or 'null'" says more than "not valid under any".
        types = [t for sub in error.context for t in _as_list(sub.validator_value)]
        return [_cut(f"{label}: {_short.repr(instance)} is not of type {_types(types)}")]
    message = error.message
    full = repr(instance)
    if message.startswith(full):
        message = _short.repr(instance) + message[len(full) :]
    return [_cut(f"{label}: {message}")]


def _undeclared(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    properties = _mapping(schema.get("properties"))
    patterns = list(_mapping(schema.get("patternProperties")))
    return [key for key in instance if key not in properties and not any(re.search(p, key) for p in patterns)]


def _types(value: Any) -> str:
    return " or ".join(repr(t) for t in dict.fromkeys(_as_list(value)))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _required(parameters: dict[str, Any]) -> list[str]:
    required = parameters.get("required")
    return [key for key in required if isinstance(key, str)] if isinstance(required, list) else []


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PHRASE_CHARS else text[: MAX_PHRASE_CHARS - 1] + "…"


def _phrase(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
    if error.get("type") == "missing":
        return f"missing required argument {where!r}"
    return f"{where!r}: {error.get('msg', 'invalid value')}"
