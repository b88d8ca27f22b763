"""The built-in tools: calculator (arithmetic by parsing, never eval) and current_time."""

from __future__ import annotations

import ast
import datetime
import operator
import zoneinfo
from collections.abc import Callable

from agentstream_server.runtime.tools import Tool, tool_from_function

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
MAX_EXPRESSION_LENGTH = 1000
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100
MAX_DEPTH = 500
"""Deepest nesting evaluated (a flat sum of 500 terms nests 500 deep); Python's recursion limit stays far off."""
_TOO_LARGE = "the result is too large (the limit is 1e100)"


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses, e.g. "12 * (3 + 4)".

    Args:
        expression: The expression, with numbers only (no names or functions).
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _evaluate(tree.body)
    except RecursionError:  # MAX_DEPTH, or the interpreter's own limit when called from deep down a stack
        raise ValueError(f"the expression is nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return str(value)


def _evaluate(node: ast.expr, depth: int = 0) -> float:
    if depth > MAX_DEPTH:
        raise RecursionError
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:  # x / 0, x // 0, x % 0 and 0 ** -1 alike
            raise ValueError("division by zero") from None
        except OverflowError:
            raise ValueError(_TOO_LARGE) from None
        if isinstance(result, complex):
            raise ValueError("the result is not a real number")  # e.g. (-8) ** 0.5
        return _checked(result)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, depth + 1))
    raise ValueError(f"unsupported element in expression: {ast.unparse(node)[:100]!r}")


def _checked(value: float) -> float:
    if not abs(value) <= MAX_MAGNITUDE:  # also catches inf and nan
        raise ValueError(_TOO_LARGE)
    return value


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in ISO 8601 for an IANA time zone such as "Europe/Paris".

    Args:
        timezone: An IANA time zone name; UTC when omitted.
    """
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}; use an IANA name such as 'UTC'") from None
    return datetime.datetime.now(zone).isoformat(timespec="seconds")


BUILTIN_TOOLS: dict[str, Tool] = {
    "calculator": tool_from_function(calculator),
    "current_time": tool_from_function(current_time),
}
"""Tools an agents file can name without an import path."""
