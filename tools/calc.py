"""Safe arithmetic for the ``calc`` tool: a whitelist over Python's AST, never ``eval``."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from ironloop.tools.errors import PermanentToolError

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression of numbers, + - * / // % ** and parentheses.

    Raises `PermanentToolError` (with a reason the model can act on) for anything else.
    """
    text = expression.strip()
    if not text:
        raise PermanentToolError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise PermanentToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise PermanentToolError(f"not an arithmetic expression: {exc.msg}") from exc
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError as exc:
        raise PermanentToolError("division by zero") from exc
    except OverflowError as exc:
        raise PermanentToolError("result too large") from exc
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise PermanentToolError("result too large")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise PermanentToolError(f"exponent larger than {MAX_EXPONENT}")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, int) and result.bit_length() > 1000:
            raise PermanentToolError("result too large")
        return result
    raise PermanentToolError(f"unsupported element {type(node).__name__!r}: only numbers and + - * / // % ** ( )")


def format_number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.10g}"
