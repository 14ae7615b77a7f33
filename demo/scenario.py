"""The offline scenarios, as `Script`s for `ScriptedChatModel`; `demo_script` picks one by the question.

- Population (the reference scenario): asked for the combined population of some places, turn 1 searches
  every place in parallel, turn 2 adds the numbers with ``calc``, turn 3 answers from the calc result, naming
  the kind of figure the results state (city proper); asked for another kind (metro), it says the results
  do not give it rather than pass one off as the other.
- Payments: asked to charge customers (``Charge cus_1 $12.50 and cus_2 $7.25``), turn 1 calls
  ``charge_card`` for each in parallel, turn 2 reports the charges.

The scripts read only what a real model would read (the observations' text), so a failed, fallback or
unknown observation leads to an honest answer that says what is missing, never to an invented result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ironloop.graph.state import current_run
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

DEMO_QUESTION = "What is the combined city-proper population of Paris and Lyon?"
"""The corpus states city-proper figures ("(city proper, latest estimate)"), so the question asks for them and
the answer names them."""

PAYMENTS_QUESTION = "Charge cus_ada $12.50 and cus_bob $7.25."

HELP = (
    "I am ironloop's offline scripted model: I can only answer questions like "
    f"{DEMO_QUESTION!r} (places in the bundled search corpus) or {PAYMENTS_QUESTION!r}. Run `ironloop run` "
    "with a real model (--model, --base-url) for anything else."
)

_CHARGE = re.compile(r"\b(?P<customer>cus_\w+)\s+\$(?P<dollars>\d+)(?:\.(?P<cents>\d{2}))?")
_CHARGED = re.compile(
    r"^Charged (?P<customer>\S+) (?P<amount>\d+) cents: charge (?P<charge>\S+) succeeded\.$", re.MULTILINE
)
"""A charge's observation: its first line (a human's edit adds a note below it)."""


def charges_in(question: str) -> list[tuple[str, int]]:
    """(customer, amount in cents) for each charge a question asks for."""
    return [
        (m.group("customer"), int(m.group("dollars")) * 100 + int(m.group("cents") or 0))
        for m in _CHARGE.finditer(question)
    ]


def demo_script(messages: Sequence[BaseMessage]) -> AIMessage:
    """The offline model: the payments script for charge requests, else the population script."""
    question = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
    return payments_script(messages) if charges_in(question) else population_script(messages)


def payments_script(messages: Sequence[BaseMessage]) -> AIMessage:
    run = current_run(list(messages))
    question = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
    charges = charges_in(question)
    turns = [m for m in run if isinstance(m, AIMessage)]
    if not turns:
        return AIMessage(
            content="",
            tool_calls=[
                {"name": "charge_card", "args": {"customer_id": c, "amount_cents": a}, "id": None} for c, a in charges
            ],
        )
    observations = {m.tool_call_id: m for m in run if isinstance(m, ToolMessage)}
    done, problems = [], []
    for call in turns[-1].tool_calls:
        seen = observations.get(call["id"] or "")
        match = _CHARGED.match(seen.text) if seen is not None and seen.status != "error" else None
        customer, amount = call["args"].get("customer_id"), call["args"].get("amount_cents", 0)
        if match:
            done.append(f"{customer} ${amount / 100:.2f} (charge {match.group('charge')})")
        else:
            problems.append(f"{customer}: {seen.text[:200] if seen is not None else 'no observation'}")
    if problems:
        return AIMessage(content="Not every charge went through. " + "; ".join(problems))
    return AIMessage(content=f"Charged {_join(done)}.")


_QUESTION = re.compile(r"population of (?P<places>.+?)\s*[?.!]*\s*$", re.IGNORECASE | re.DOTALL)
_SEPARATORS = re.compile(r"\s*(?:,|\band\b|&)\s*", re.IGNORECASE)
_POPULATION = re.compile(r"population of (?P<n>\d[\d,]*)", re.IGNORECASE)
_KINDS = {"city proper": "city-proper", "city-proper": "city-proper", "metro": "metro", "metropolitan": "metro",
          "metro area": "metro", "urban area": "urban-area"}  # fmt: skip
_ASKED_KIND = re.compile(r"\b(city[ -]proper|metro(?:politan)?|urban area)\b", re.IGNORECASE)
_STATED_KIND = re.compile(r"\((city proper|metro(?:politan)?(?: area)?|urban area)\b", re.IGNORECASE)


def places_in(question: str) -> list[str]:
    """The places a population question asks about, in order: "... of Paris and Lyon?" → [Paris, Lyon]."""
    match = _QUESTION.search(question)
    if not match:
        return []
    return [p.strip() for p in _SEPARATORS.split(match.group("places")) if p.strip()]


def population_script(messages: Sequence[BaseMessage]) -> AIMessage:
    run = current_run(list(messages))
    question = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
    places = places_in(question)
    if not places:
        return AIMessage(content=HELP)
    turns = [m for m in run if isinstance(m, AIMessage)]
    if not turns:
        return AIMessage(
            content="",
            tool_calls=[{"name": "search", "args": {"query": f"{p} population"}, "id": None} for p in places],
        )
    observations = {m.tool_call_id: m for m in run if isinstance(m, ToolMessage)}
    last_calls = turns[-1].tool_calls
    stated = stated_kind([m for m in run if isinstance(m, ToolMessage)])
    if last_calls and all(c["name"] == "search" for c in last_calls):
        return _after_search(
            places, [observations.get(c["id"] or "") for c in last_calls], asked_kind(question), stated
        )
    if len(last_calls) == 1 and last_calls[0]["name"] == "calc":
        calc = last_calls[0]
        return _after_calc(places, calc["args"].get("expr", ""), observations.get(calc["id"] or ""), stated)
    return AIMessage(content=f"I could not complete the task: unexpected state after {len(turns)} turns.")


def asked_kind(question: str) -> str | None:
    """Which population a question asks for (``city-proper``, ``metro``, ``urban-area``), if it says."""
    match = _ASKED_KIND.search(question)
    return _KINDS[match.group(1).lower().replace("-", " ")] if match else None


def stated_kind(observations: Sequence[ToolMessage]) -> str | None:
    """Which population the search results state, if they say (the bundled corpus: city proper)."""
    for observation in observations:
        if match := _STATED_KIND.search(observation.text):
            return _KINDS[match.group(1).lower()]
    return None


def _after_search(
    places: list[str], observations: list[ToolMessage | None], asked: str | None, stated: str | None
) -> AIMessage:
    numbers: list[int] = []
    for place, observation in zip(places, observations, strict=False):
        number = _population_in(place, observation)
        if number is None:
            seen = "no observation" if observation is None else observation.text[:300]
            return AIMessage(content=f"I could not find the population of {place}. The search said: {seen}")
        numbers.append(number)
    if asked and stated and asked != stated:  # never answer a metro question with city-proper figures
        figures = "; ".join(f"{p} {n:,}" for p, n in zip(places, numbers, strict=False))
        return AIMessage(content=f"The search gives {stated} figures only, not {asked} ones: {figures}.")
    if len(numbers) == 1:
        return AIMessage(content=f"The {_kind_words(stated)}population of {places[0]} is {numbers[0]:,}.")
    return AIMessage(
        content="",
        tool_calls=[{"name": "calc", "args": {"expr": " + ".join(str(n) for n in numbers)}, "id": None}],
    )


def _after_calc(places: list[str], expr: str, observation: ToolMessage | None, stated: str | None) -> AIMessage:
    if observation is None or observation.status == "error" or not observation.text.strip().isdigit():
        seen = "no observation" if observation is None else observation.text[:300]
        return AIMessage(content=f"I could not add the populations ({expr}): {seen}")
    total = int(observation.text.strip())
    parts = " + ".join(f"{int(n):,}" for n in expr.split(" + "))
    return AIMessage(content=f"The combined {_kind_words(stated)}population of {_join(places)} is {total:,} ({parts}).")


def _population_in(place: str, observation: ToolMessage | None) -> int | None:
    """The population of ``place`` stated in a real (not fallback, not error) search observation."""
    if observation is None or observation.status == "error":
        return None
    text = observation.text
    if text.startswith("[fallback]"):
        return None
    for line in text.splitlines():
        if place.lower() in line.lower() and (match := _POPULATION.search(line)):
            return int(match.group("n").replace(",", ""))
    return None


def _join(places: list[str]) -> str:
    return places[0] if len(places) == 1 else ", ".join(places[:-1]) + " and " + places[-1]


def _kind_words(kind: str | None) -> str:
    return f"{kind} " if kind else ""


def expected_answer(places: Sequence[str], populations: Sequence[int], kind: str | None = "city-proper") -> str:
    """The answer a successful run ends with (the demo's success check); ``kind``: what the corpus states."""
    return f"The combined {_kind_words(kind)}population of {_join(list(places))} is {sum(populations):,}"
