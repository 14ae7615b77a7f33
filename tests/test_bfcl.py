"""BFCL as an outside test suite for the checks made before dispatch (`tools.validation.ToolCatalog`).

Every function definition of BFCL's single-turn Python categories becomes a tool with a JSON-schema dict
(`tests.bfcl_tools`). Every ground-truth call must pass the catalog, except the few listed in `SKIPS`, whose
data contradicts its own schema. Every accepted call is then corrupted three ways (a required argument
dropped, a value of the wrong JSON type, an argument the tool does not have) and each corruption must be
refused. A sample also runs through the real graph: valid calls reach their tool, corrupted ones never do.
The figures are printed and written to ``benchmarks/results/bfcl.json``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ironloop.graph import build_agent
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.validation import ToolCatalog
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool, tool

from tests.bfcl_tools import (
    CATEGORIES,
    NAME,
    OTHER_LANGUAGES,
    Converted,
    convert_functions,
    echo_tool,
    load_answers,
    load_entries,
    realise_call,
    to_json_schema,
)
from tests.helpers import observations, record, replay_model, turn

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bfcl.json"

SKIPS: dict[str, tuple[str, str]] = {
    # entry id: (what the catalog must say about the bad call, why BFCL's data is wrong)
    "parallel_multiple_12": (
        "unexpected argument 'permeability'",
        "ground truth passes 'permeability', which calculate_voltage_difference does not declare",
    ),
    "parallel_multiple_21": (
        "'x': \"data['sales']\" is not of type 'array'",
        "ground truth passes the Python expressions \"data['sales']\" / \"data['future_sales']\" as arrays",
    ),
    "parallel_multiple_26": (
        "unexpected argument 'type'",
        "ground truth passes 'type', which bank.calculate_balance does not declare",
    ),
    "parallel_multiple_94": (
        "'elements.0': 'apple' is not of type 'integer'",
        "sort_list declares integer items; ground truth sorts fruit names",
    ),
    "live_simple_71-35-0": (
        "'metrics': ['view'] is not one of",
        "the enum of metric names is declared on the array itself, so no array can match it",
    ),
    "live_simple_106-63-0": (
        "missing required argument 'auto_loan_payment_start'",
        "required parameters have empty lists of acceptable values",
    ),
    "live_simple_112-68-0": (
        "missing required argument 'acc_routing_start'",
        "required parameters have empty lists of acceptable values",
    ),
    "live_multiple_87-38-4": ("'type': 'openai' is not one of", "'openai' is outside the enum of server types"),
    "live_multiple_152-58-6": (
        "'metrics': ['temperature', 'humidity'] is not one of",
        "the enum of metric names is declared on the array itself, so no array can match it",
    ),
    "live_multiple_507-149-4": (
        "missing required argument 'origin_airport'",
        "ground truth leaves out the required 'origin_airport'",
    ),
    "live_multiple_552-153-1": (
        "'is_unisex': True is not of type 'string'",
        "boolean True for a string enum of 'True'/'False'/'dontcare'",
    ),
    "live_multiple_595-158-1": (
        "'number_of_rooms': 2 is not of type 'string'",
        "integer 2 for a string enum of '1'/'2'/'3'/'dontcare'",
    ),
    "live_multiple_596-158-2": (
        "'number_of_rooms': 1 is not of type 'string'",
        "integer 1 for a string enum of '1'/'2'/'3'/'dontcare'",
    ),
    "live_multiple_731-167-2": (
        "'in_unit_laundry': True is not of type 'string'",
        "boolean True for a string enum of 'True'/'False'/'dontcare'",
    ),
    "live_multiple_733-167-4": (
        "'in_unit_laundry': True is not of type 'string'",
        "boolean True for a string enum of 'True'/'False'/'dontcare'",
    ),
    "live_multiple_735-167-6": (
        "'in_unit_laundry': True is not of type 'string'",
        "boolean True for a string enum of 'True'/'False'/'dontcare'",
    ),
    "live_multiple_750-169-5": ("'genre': 'Any' is not one of", "'Any' is outside the enum of genres"),
    "live_multiple_756-169-11": (
        "'genre': 'horror' is not one of",
        "'horror' is outside the enum of genres (which has 'Horror')",
    ),
    "live_multiple_835-178-10": ("'genre': 'Reggaeton' is not one of", "'Reggaeton' is outside the enum of genres"),
    "live_multiple_862-181-3": (
        "unexpected argument 'journey_start_time'",
        "ground truth passes 'journey_start_time', which Trains_1_FindTrains does not declare",
    ),
    "live_multiple_871-182-8": ("'genre': 'Play' is not one of", "'Play' is outside the enum of genres"),
    "live_multiple_947-197-0": (
        "'duration': '5 minutes' is not one of",
        "'5 minutes' is outside the enum of durations",
    ),
    "live_multiple_964-207-0": (
        "unexpected argument 'question'",
        "ground truth passes 'question' for transfer_to_human_agent, whose only parameter is 'statement'",
    ),
    "live_multiple_1038-265-0": (
        "'start_date': None is not of type 'string'",
        "null for a string parameter (its default is null, but its type does not allow it)",
    ),
    "live_parallel_multiple_2-2-0": (
        "'command': '침실, 공기청정기, 중지' is not one of",
        "the command '침실, 공기청정기, 중지' is outside the enum of commands",
    ),
}
"""Ground-truth calls that are genuine BFCL data errors: the value breaks the function's own schema."""

EXTRA = "unexpected_extra"

WRONG_TYPE: dict[str, Any] = {
    "string": 12345,
    "integer": "12",
    "number": "1.5",
    "boolean": "true",
    "array": "[1, 2]",
    "object": '{"a": 1}',
}
"""A value of another JSON type for each declared type: the stringified JSON models often send by mistake."""


@dataclass
class Corruption:
    kind: str
    args: dict[str, Any]
    expect: str
    """Phrase the rejection must contain."""


@dataclass
class Accepted:
    entry_id: str
    tool: str
    args: dict[str, Any]
    corruptions: list[Corruption]


@dataclass
class Sweep:
    definitions: int = 0
    entries: int = 0
    calls: int = 0
    accepted: list[Accepted] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)
    """Entry id → rejections of its ground-truth calls."""
    applicable: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unfit_but_accepted: list[str] = field(default_factory=list)
    """Calls the catalog accepted although `realise_call` found a parameter with no fitting value."""
    leaks: list[str] = field(default_factory=list)
    """Corrupted calls the catalog let through, or refused without naming the problem."""
    schema_errors: dict[str, str] = field(default_factory=dict)
    bad_names: list[str] = field(default_factory=list)
    entries_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def corruptions(args: dict[str, Any], schema: dict[str, Any], index: int) -> list[Corruption]:
    """The three corruptions of a valid call that apply to it; ``index`` varies which argument is mistyped."""
    properties: dict[str, Any] = schema.get("properties", {})
    found: list[Corruption] = []
    required = [p for p in schema.get("required", []) if p in args]
    if required:
        dropped = required[index % len(required)]
        found.append(
            Corruption(
                "drop_required",
                {k: v for k, v in args.items() if k != dropped},
                f"missing required argument {dropped!r}",
            )
        )
    typed = [p for p in args if isinstance(properties.get(p, {}).get("type"), str)]
    if typed:
        param = typed[index % len(typed)]
        declared = properties[param]["type"]
        found.append(
            Corruption(
                "wrong_type",
                {**args, param: WRONG_TYPE[declared]},
                f"{param!r}: {WRONG_TYPE[declared]!r} is not of type {declared!r}",
            )
        )
    extra = EXTRA + "_" * sum(1 for p in properties if p.startswith(EXTRA))
    found.append(Corruption("extra_argument", {**args, extra: 1}, f"unexpected argument {extra!r}"))
    return found


def run_sweep() -> Sweep:
    sweep = Sweep()
    started = time.perf_counter()
    index = 0
    for category in CATEGORIES:
        answers = load_answers(category)
        for entry in load_entries(category):
            sweep.entries += 1
            converted = convert_functions(entry["function"])
            sweep.definitions += len(converted.tools)
            sweep.bad_names += [t.name for t in converted.tools if not NAME.match(t.name)]
            catalog = ToolCatalog(converted.tools)
            sweep.schema_errors.update({f"{entry['id']}:{k}": v for k, v in catalog.schema_errors.items()})
            sweep.entries_by_id[entry["id"]] = entry
            for ground_truth in answers[entry["id"]]:
                sweep.calls += 1
                index += 1
                ((bfcl_name, acceptable),) = ground_truth.items()
                name = converted.tool_name[bfcl_name]
                schema: dict[str, Any] = catalog.tools[name].args_schema  # type: ignore[assignment]
                realised = realise_call(acceptable, schema)
                problem = catalog.check(name, realised.args)
                if problem is not None:
                    sweep.failed.setdefault(entry["id"], []).append(problem)
                    continue
                if realised.unfit:
                    sweep.unfit_but_accepted.append(f"{entry['id']}: {realised.unfit}")
                accepted = Accepted(entry["id"], name, realised.args, corruptions(realised.args, schema, index))
                sweep.accepted.append(accepted)
                for corruption in accepted.corruptions:
                    sweep.applicable[corruption.kind] += 1
                    refusal = catalog.check(name, corruption.args)
                    if refusal is not None and corruption.expect in refusal:
                        sweep.rejected[corruption.kind] += 1
                    else:
                        sweep.leaks.append(f"{entry['id']} {corruption.kind}: {corruption.args!r} -> {refusal!r}")
    sweep.seconds = time.perf_counter() - started
    return sweep


@pytest.fixture(scope="module")
def sweep() -> Sweep:
    return run_sweep()


def test_every_definition_converts_to_a_valid_json_schema_tool(sweep: Sweep) -> None:
    assert sweep.entries > 2000 and sweep.definitions > 6000  # the data is there (BFCL v4: 2,351 and 6,226)
    assert sweep.schema_errors == {}  # every converted schema is valid JSON Schema: no fallback checks
    assert sweep.bad_names == []


def test_java_and_javascript_definitions_convert_too() -> None:
    """Their ground truth is Java / JavaScript source, so only the conversion of their type names is checked."""
    converted = 0
    for category in OTHER_LANGUAGES:
        for entry in load_entries(category):
            catalog = ToolCatalog(convert_functions(entry["function"]).tools)
            assert catalog.schema_errors == {}, entry["id"]
            converted += len(catalog.tools)
    assert converted >= 150


def test_ground_truth_calls_pass_except_documented_data_errors(sweep: Sweep) -> None:
    assert set(sweep.failed) == set(SKIPS), "SKIPS must list exactly the entries whose ground truth is rejected"
    for entry_id, problems in sweep.failed.items():
        expected, _why = SKIPS[entry_id]
        assert len(problems) == 1, f"{entry_id}: only the documented call should fail: {problems}"
        assert expected in problems[0], f"{entry_id}: rejected for another reason: {problems[0]}"
    assert len(sweep.accepted) == sweep.calls - len(SKIPS)
    assert sweep.unfit_but_accepted == []


def test_every_corrupted_call_is_refused_naming_the_problem(sweep: Sweep) -> None:
    assert sweep.leaks == []
    assert sweep.rejected == sweep.applicable
    assert sweep.applicable["extra_argument"] == len(sweep.accepted)
    assert sweep.applicable["drop_required"] > 0.8 * len(sweep.accepted)
    assert sweep.applicable["wrong_type"] > 0.9 * len(sweep.accepted)


GRAPH_SAMPLE_EVERY = 12
"""Every twelfth entry (about 200) also runs through a real graph."""


@dataclass
class GraphRun:
    entries: int = 0
    dispatched: int = 0
    refused: int = 0


@pytest.fixture(scope="module")
def graph_run(sweep: Sweep) -> GraphRun:
    """Sampled entries through `build_agent`: ground-truth calls and their corruptions in one model turn."""
    by_entry: dict[str, list[Accepted]] = {}
    for accepted in sweep.accepted:
        by_entry.setdefault(accepted.entry_id, []).append(accepted)
    run = GraphRun()
    fast = ToolPolicy(timeout_s=5.0, max_attempts=1)
    for number, (entry_id, calls) in enumerate(by_entry.items()):
        if number % GRAPH_SAMPLE_EVERY or entry_id in SKIPS:
            continue
        entry = sweep.entries_by_id[entry_id]
        ran: list[tuple[str, dict[str, Any]]] = []
        converted = convert_functions(entry["function"], on_call=lambda name, args, ran=ran: ran.append((name, args)))
        valid = [{"name": c.tool, "args": c.args, "id": f"{entry_id}-ok-{i}"} for i, c in enumerate(calls)]
        bad = [
            ({"name": c.tool, "args": x.args, "id": f"{entry_id}-{x.kind}-{i}"}, x.expect)
            for i, c in enumerate(calls)
            for x in c.corruptions
        ]
        agent = build_agent(replay_model(turn(*valid, *(b for b, _ in bad))), converted.tools, default_policy=fast)
        seen = observations(agent.invoke({"messages": [("user", str(entry["question"]))]})["messages"])
        check_graph_entry(converted, valid, bad, seen, ran)
        run.entries += 1
        run.dispatched += len(valid)
        run.refused += len(bad)
    return run


def check_graph_entry(
    converted: Converted,
    valid: list[dict[str, Any]],
    bad: list[tuple[dict[str, Any], str]],
    seen: dict[str, ToolMessage],
    ran: list[tuple[str, dict[str, Any]]],
) -> None:
    assert len(seen) == len(valid) + len(bad)  # one observation per call
    for call in valid:
        observation = seen[call["id"]]
        assert observation.status == "success", observation.content
        assert json.loads(str(observation.content)) == call["args"]  # the echo tool ran with these arguments
    assert sorted(_key(n, a) for n, a in ran) == sorted(_key(c["name"], c["args"]) for c in valid)
    for call, expected in bad:
        observation = seen[call["id"]]
        assert observation.status == "error" and record(observation)["outcome"] == "rejected"
        assert expected in str(observation.content)
        assert call["name"] in converted.bfcl_name


def _key(name: str, args: dict[str, Any]) -> str:
    return json.dumps([name, args], sort_keys=True)


def test_sampled_entries_through_the_graph(graph_run: GraphRun) -> None:
    assert graph_run.entries >= 150
    assert graph_run.dispatched >= graph_run.entries and graph_run.refused >= 2 * graph_run.entries


def test_report(sweep: Sweep, graph_run: GraphRun, capsys: pytest.CaptureFixture[str]) -> None:
    """Print the figures and write them for BENCHMARKS.md (no timings in the file, so it only changes with the data)."""
    report = {
        "source": "bfcl-eval data, BFCL_v4 single-turn Python categories",
        "categories": list(CATEGORIES),
        "entries": sweep.entries,
        "definitions_converted": sweep.definitions,
        "ground_truth_calls": sweep.calls,
        "ground_truth_accepted": len(sweep.accepted),
        "ground_truth_skipped": sum(len(problems) for problems in sweep.failed.values()),
        "skipped": {entry_id: why for entry_id, (_, why) in SKIPS.items()},
        "corrupted_calls": {
            kind: {"made": sweep.applicable[kind], "rejected": sweep.rejected[kind]}
            for kind in sorted(sweep.applicable)
        },
        "graph_sample": {
            "entries": graph_run.entries,
            "dispatched": graph_run.dispatched,
            "refused": graph_run.refused,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    corrupted = ", ".join(f"{k} {v['rejected']}/{v['made']}" for k, v in report["corrupted_calls"].items())
    with capsys.disabled():
        print(
            f"\nBFCL: {sweep.definitions} definitions converted ({sweep.entries} entries); "
            f"ground-truth calls accepted {len(sweep.accepted)}/{sweep.calls}, {len(SKIPS)} skipped as data errors; "
            f"corrupted calls rejected: {corrupted}; graph sample: {graph_run.entries} entries, "
            f"{graph_run.dispatched} calls dispatched, {graph_run.refused} refused; sweep {sweep.seconds:.1f} s; "
            f"written to {RESULTS.relative_to(RESULTS.parents[2])}"
        )
    assert json.loads(RESULTS.read_text(encoding="utf-8"))["ground_truth_accepted"] == len(sweep.accepted)


# The dict-schema checks the sweep relies on, one behaviour at a time.

PHONE_BOOK = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "nick": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["home", "work"]}},
    },
    "required": ["name", "age"],
}


def catalog_of(schema: dict[str, Any], name: str = "book") -> ToolCatalog:
    return ToolCatalog([echo_tool(name, "a test tool", schema)])


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        ({"name": "Ann"}, ["missing required argument 'age'"]),
        ({"name": "Ann", "age": "abc"}, ["'age': 'abc' is not of type 'integer'"]),
        ({"name": "Ann", "age": 3, "y": 1}, ["unexpected argument 'y'"]),
        ({"name": "Ann", "age": 3, "nick": 5}, ["'nick': 5 is not of type 'string' or 'null'"]),
        ({"name": "Ann", "age": 3, "address": {}}, ["missing required argument 'address.city'"]),
        ({"name": "Ann", "age": 3, "tags": ["home", "pub"]}, ["'tags.1': 'pub' is not one of ['home', 'work']"]),
        ({"name": "x" * 100_000, "age": True}, ["'age': True is not of type 'integer'"]),
        ({"age": 1.5, "zz": 1}, ["unexpected argument 'zz'", "'age': 1.5 is not of type 'integer'", "'name'"]),
    ],
)
def test_dict_schema_problems_are_short_phrases(args: dict[str, Any], phrases: list[str]) -> None:
    problems = catalog_of(PHONE_BOOK).argument_problems("book", args)
    for phrase in phrases:
        assert any(phrase in p for p in problems), problems
    assert len(problems) == len(set(problems))
    assert all(len(p) <= 200 for p in problems)


def test_valid_arguments_pass_a_dict_schema() -> None:
    catalog = catalog_of(PHONE_BOOK)
    assert catalog.check("book", {"name": "Ann", "age": 3, "nick": None, "address": {"city": "Rome"}}) is None


def test_a_huge_value_is_abridged_in_the_observation() -> None:
    reason = catalog_of(PHONE_BOOK).check("book", {"name": "Ann", "age": "9" * 1_000_000})
    assert reason is not None and "'age':" in reason and len(reason) < 1000


def test_additional_properties_false_does_not_repeat_the_phrase() -> None:
    catalog = catalog_of({**PHONE_BOOK, "additionalProperties": False})
    assert catalog.argument_problems("book", {"name": "Ann", "age": 3, "y": 1}) == ["unexpected argument 'y'"]


def test_an_undeclared_argument_is_unexpected_even_without_additional_properties_false() -> None:
    assert "additionalProperties" not in PHONE_BOOK
    assert catalog_of(PHONE_BOOK).argument_problems("book", {"name": "A", "age": 1, "b": 2}) == [
        "unexpected argument 'b'"
    ]


def test_nested_objects_follow_their_own_schema() -> None:
    strict_address = {
        **PHONE_BOOK,
        "properties": {
            **PHONE_BOOK["properties"],
            "address": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False},
        },
    }
    problems = catalog_of(strict_address).argument_problems("book", {"name": "A", "age": 1, "address": {"zip": 1}})
    assert problems == ["'address': unexpected key 'zip'"]
    # Without additionalProperties: false, a nested object may carry more keys, as JSON Schema says.
    assert catalog_of(PHONE_BOOK).check("book", {"name": "A", "age": 1, "address": {"city": "R", "zip": 1}}) is None


@pytest.mark.parametrize(
    ("schema", "error"),
    [
        ({"type": "object", "properties": {"n": {"type": "dict"}}, "required": ["n"]}, "SchemaError"),
        ({"type": "object", "properties": {"n": {"$ref": "#/$defs/missing"}}, "required": ["n"]}, "$ref to nothing"),
    ],
)
def test_a_malformed_schema_falls_back_to_required_and_unexpected_checks(schema: dict[str, Any], error: str) -> None:
    catalog = catalog_of(schema)  # must not raise
    assert error in catalog.schema_errors["book"]
    assert "book" not in catalog.validators
    assert catalog.argument_problems("book", {}) == ["missing required argument 'n'"]
    assert catalog.argument_problems("book", {"n": 1, "m": 2}) == ["unexpected argument 'm'"]
    assert catalog.check("book", {"n": "anything goes"}) is None


def test_a_check_that_cannot_run_refuses_the_call() -> None:
    """Fail closed: a remote $ref (never fetched) or a value nested past Python's recursion limit is refused."""
    remote = catalog_of({"type": "object", "properties": {"n": {"$ref": "https://example.com/n.json"}}})
    assert "could not be checked" in (remote.check("book", {"n": 1}) or "")
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    reason = catalog_of(PHONE_BOOK).check("book", {"name": "Ann", "age": deep})
    assert reason is not None and "nested deeper than 100 levels" in reason  # refused before the schema check

    @tool
    def count(n: int) -> int:
        """A pydantic-schema tool."""
        return n

    assert "nested deeper than 100 levels" in (ToolCatalog([count]).check("count", {"n": deep}) or "")


def test_validators_are_built_with_the_catalog_not_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = catalog_of(PHONE_BOOK)
    validator = catalog.validators["book"]

    def no_building(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a validator was built during a check")

    monkeypatch.setattr("ironloop.tools.validation._build_validator", no_building)
    monkeypatch.setattr("ironloop.tools.validation._shared_validator", no_building)
    for args in ({"name": "A", "age": 1}, {"age": "x"}, {"q": 1}):
        catalog.check("book", args)
    assert catalog.validators["book"] is validator


def test_bfcl_types_map_to_json_schema() -> None:
    converted = to_json_schema(
        {
            "type": "dict",
            "properties": {
                "a": {"type": "float"},
                "b": {"type": "tuple", "items": {"type": "integer"}},
                "c": {"type": "any", "description": "anything"},
                "d": {"type": "array", "items": {"type": "dict", "properties": {"e": {"type": "HashMap"}}}},
                "f": {"type": "boolean", "optional": True},
            },
            "required": ["a"],
        }
    )
    assert converted == {
        "type": "object",
        "properties": {
            "a": {"type": "number"},
            "b": {"type": "array", "items": {"type": "integer"}},
            "c": {"description": "anything"},
            "d": {"type": "array", "items": {"type": "object", "properties": {"e": {"type": "object"}}}},
            "f": {"type": "boolean"},
        },
        "required": ["a"],
    }
    with pytest.raises(ValueError, match="unknown BFCL type"):
        to_json_schema({"type": "complex"})


def test_names_are_sanitised_and_mapped_back() -> None:
    functions = [
        {"name": "math.gcd", "description": "g", "parameters": {"type": "dict", "properties": {}}},
        {"name": "math_gcd", "description": "h", "parameters": {"type": "dict", "properties": {}}},
        {"name": "x" * 70, "description": "i", "parameters": {"type": "dict", "properties": {}}},
    ]
    converted = convert_functions(functions)
    names = [t.name for t in converted.tools]
    assert names[0] == "math_gcd" and names[1] != names[0] and len(names[2]) == 64
    assert all(NAME.match(n) for n in names)
    assert {converted.bfcl_name[converted.tool_name[f["name"]]] for f in functions} == {f["name"] for f in functions}


def test_echo_tool_reports_and_returns_its_arguments() -> None:
    heard: list[tuple[str, dict[str, Any]]] = []
    tool: StructuredTool = echo_tool(
        "t", "d", {"type": "object", "properties": {"a": {}}}, lambda name, args: heard.append((name, args))
    )
    assert json.loads(tool.invoke({"a": [1, "é"]})) == {"a": [1, "é"]}
    assert heard == [("t", {"a": [1, "é"]})]
