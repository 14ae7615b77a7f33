"""Help text that always says an argument's default and choices, written once here instead of in every
``help=`` string: `HelpFormatter` adds ``(default: X)`` and ``(choices: a, b)`` where the text does not say them
already. `apply` sets it on a parser and every subcommand's parser under it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

UNSHOWN_DEFAULTS = (None, False, argparse.SUPPRESS)
"""Defaults not worth a word: no value, or a switch that is off unless given."""


class HelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        return described(action)


def described(action: argparse.Action) -> str:
    """``action``'s help with its default and choices appended where it does not mention them."""
    text = action.help or ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        choices = [str(c) for c in action.choices]
        if not all(c in text for c in choices):
            text += f" (choices: {', '.join(choices)})"
    if shows_default(action) and "default" not in text:
        text += " (default: %(default)s)"
    return text


def shows_default(action: argparse.Action) -> bool:
    """An option whose default is a value (not ``None``, not an off switch)."""
    return bool(action.option_strings) and not any(action.default is unshown for unshown in UNSHOWN_DEFAULTS)


def apply(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for each in parsers(parser):
        each.formatter_class = HelpFormatter
    return parser


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser of its subcommands, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from parsers(sub)


def arguments(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """(command path, action) for every argument a person can give, help and subcommand lists left out."""
    for each in parsers(parser):
        for action in each._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction | argparse._VersionAction):
                continue
            yield each.prog, action


def expanded(action: argparse.Action) -> str:
    """The help line as ``--help`` prints it (``%(default)s`` filled in)."""
    params: dict[str, Any] = dict(vars(action), prog="")
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return described(action) % params
