"""The Berkeley Function-Calling Leaderboard (BFCL) as ironloop tools: an outside source of real tool schemas.

BFCL ships thousands of function definitions written by other people, with the calls a correct model makes.
That makes it a test of `tools.validation.ToolCatalog` against schemas we did not write: every ground-truth
call must pass the catalog, and every call we corrupt must be refused before dispatch.

Definitions are JSON-Schema-like (``dict``, ``float``, ``tuple``, ``any``, Java and JavaScript type names);
`to_json_schema` maps them to JSON Schema and `convert_functions` turns each into a LangChain
``StructuredTool`` with that dict ``args_schema`` whose function only echoes (and reports) its arguments.
Ground truth lists acceptable values per parameter (``""`` among them: the parameter may be omitted);
`realise_call` picks one concrete call out of it.

The data comes from the ``bfcl-eval`` package (``bfcl_eval/data``), read with importlib.resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from langchain_core.tools import StructuredTool

CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
"""BFCL's single-turn Python categories: one question, a few functions, one or more expected calls."""

OTHER_LANGUAGES = ("simple_java", "simple_javascript")
"""Categories whose definitions use Java and JavaScript type names; their ground truth is source code."""

ANY = object()
"""Marks a BFCL type that constrains nothing (``any``): the JSON schema gets no ``type``."""

TYPES: dict[str, str | object] = {
    # Python-style names used by BFCL
    "dict": "object",
    "object": "object",
    "float": "number",
    "number": "number",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "any": ANY,
    # Java and JavaScript names (BFCL's simple_java / simple_javascript); kept so any definition converts
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "Bigint": "integer",
    "double": "number",
    "char": "string",
    "String": "string",
    "Boolean": "boolean",
    "Array": "array",
    "ArrayList": "array",
    "Queue": "array",
    "Stack": "array",
    "Set": "array",
    "HashMap": "object",
    "Hashtable": "object",
    "Any": ANY,
    "": ANY,  # one blank type in simple_javascript (simple_javascript_23, options.issuer)
}
"""BFCL type name → JSON Schema type. Like ``bfcl_eval/constants/type_mappings.py`` (GORILLA_TO_OPENAPI), except
that ``any`` means any JSON value here, where BFCL narrows it to ``string``."""

NOT_JSON_SCHEMA = frozenset({"optional"})
"""BFCL-only keys dropped in conversion (``optional`` is sometimes ``true``, sometimes a list of names)."""

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""Tool names OpenAI-compatible APIs accept; BFCL names such as ``math.gcd`` do not match."""

OMIT = ""
"""In ground truth, this among a parameter's acceptable values means the parameter may be left out."""


def data_lines(relative: str) -> Iterator[dict[str, Any]]:
    """The objects of one BFCL data file (JSON Lines, despite the ``.json`` name)."""
    text = files("bfcl_eval").joinpath("data", relative).read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def load_entries(category: str) -> list[dict[str, Any]]:
    """A category's entries (``id``, ``question``, ``function``)."""
    return list(data_lines(f"BFCL_v4_{category}.json"))


def load_answers(category: str) -> dict[str, list[dict[str, Any]]]:
    """A category's ground truth by entry id: a list of ``{function name: {parameter: [acceptable values]}}``."""
    return {item["id"]: item["ground_truth"] for item in data_lines(f"possible_answer/BFCL_v4_{category}.json")}


def to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A BFCL parameter schema as JSON Schema, recursively (``properties``, ``items``, ``additionalProperties``).

    Raises ``ValueError`` for a type name it does not know, so a new BFCL type fails loudly instead of
    turning into an unconstrained parameter.
    """
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key in NOT_JSON_SCHEMA:
            continue
        if key == "type":
            if value not in TYPES:
                raise ValueError(f"unknown BFCL type {value!r}")
            if TYPES[value] is not ANY:
                schema["type"] = TYPES[value]
        elif key == "properties" and isinstance(value, Mapping):
            schema["properties"] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            schema[key] = to_json_schema(value)
        elif key == "required" and not isinstance(value, list):
            continue  # a stray non-list "required" is not JSON Schema; BFCL means nothing by it
        else:
            schema[key] = value
    return schema


def sanitise_name(name: str, taken: set[str]) -> str:
    """``name`` made to match `NAME` (dots and other characters → ``_``, at most 64), unique among ``taken``."""
    base = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "_"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"_{n}"
        candidate = base[: 64 - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


OnCall = Callable[[str, dict[str, Any]], None]
"""Told (tool name, arguments) each time an echo tool runs."""


def echo_tool(name: str, description: str, schema: dict[str, Any], on_call: OnCall | None = None) -> StructuredTool:
    """A tool with this JSON schema whose function returns its arguments as JSON (and reports them).

    LangChain keeps an argument named ``config`` or ``run_manager`` for itself (a ``StructuredTool``'s
    function never receives it). One BFCL definition, ``transformers.pipeline``, declares ``config``; no
    ground-truth call passes it.
    """

    def echo(**kwargs: Any) -> str:
        if on_call is not None:
            on_call(name, kwargs)
        return json.dumps(kwargs, sort_keys=True, ensure_ascii=False)

    return StructuredTool.from_function(
        func=echo, name=name, description=description or name, args_schema=schema, infer_schema=False
    )


@dataclass
class Converted:
    """One entry's functions as tools, with the names both ways."""

    tools: list[StructuredTool]
    tool_name: dict[str, str] = field(default_factory=dict)
    """BFCL name → tool name."""
    bfcl_name: dict[str, str] = field(default_factory=dict)
    """Tool name → BFCL name."""


def convert_functions(functions: list[dict[str, Any]], on_call: OnCall | None = None) -> Converted:
    """An entry's BFCL function definitions as echo tools with JSON-schema ``args_schema``s."""
    converted = Converted(tools=[])
    taken: set[str] = set()
    for function in functions:
        name = sanitise_name(function["name"], taken)
        converted.tool_name[function["name"]] = name
        converted.bfcl_name[name] = function["name"]
        schema = to_json_schema(function.get("parameters") or {"type": "dict", "properties": {}})
        converted.tools.append(echo_tool(name, function.get("description", ""), schema, on_call))
    return converted


@dataclass
class Realised:
    """A concrete call picked from ground truth, and the parameters for which nothing acceptable fits."""

    args: dict[str, Any]
    unfit: list[str]


def realise_call(acceptable: Mapping[str, list[Any]], schema: Mapping[str, Any]) -> Realised:
    """For each parameter, the first acceptable value that fits its schema; left out when ``""`` is
    acceptable and nothing else fits. A parameter the schema does not declare, or with no fitting value
    and no ``""``, is listed in ``unfit`` (its first value is used, so the catalog sees the problem too)."""
    properties = schema.get("properties") or {}
    args: dict[str, Any] = {}
    unfit: list[str] = []
    for param, values in acceptable.items():
        if param not in properties:
            unfit.append(f"{param!r} is not declared")
            if first := [v for v in values if v != OMIT]:
                args[param] = materialise(first[0], {})
            continue
        picked = pick(values, properties[param])
        if picked is not _NOTHING:
            args[param] = picked
        elif OMIT not in values:
            unfit.append(f"{param!r}: none of {values!r} fits {properties[param]!r}"[:300])
            if values:
                args[param] = materialise(values[0], properties[param])
    return Realised(args, unfit)


_NOTHING = object()


def pick(values: list[Any], schema: Mapping[str, Any]) -> Any:
    """The first value (made concrete) that fits the schema, or `_NOTHING`."""
    for value in values:
        if value == OMIT:
            continue
        candidate = materialise(value, schema)
        if fits(candidate, schema):
            return candidate
    return _NOTHING


def materialise(value: Any, schema: Mapping[str, Any]) -> Any:
    """Ground truth made concrete. A dict whose values are all lists is a pattern (key → acceptable values,
    recursively); a list of such dicts is a list of patterns; anything else is a literal value."""
    if _is_pattern(value):
        properties = schema.get("properties") or {}
        concrete: dict[str, Any] = {}
        for key, options in value.items():
            sub = properties.get(key, {})
            picked = pick(options, sub)
            if picked is not _NOTHING:
                concrete[key] = picked
            elif OMIT not in options and options:
                concrete[key] = materialise(options[0], sub)
        return concrete
    if isinstance(value, list) and value and all(_is_pattern(item) for item in value):
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        return [materialise(item, items) for item in value]
    return value


def _is_pattern(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, list) for v in value.values())


def fits(value: Any, schema: Mapping[str, Any]) -> bool:
    return _validator(json.dumps(schema, sort_keys=True)).is_valid(value)


@cache
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))
