"""The built-in tools: calculator (arithmetic by parsing, never eval) and current_time."""

from __future__ import annotations

import ast
import datetime
import math
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
MAX_LITERAL_DIGITS = 101
"""Digits a number in the expression may have: enough for every integer up to MAX_MAGNITUDE."""
_TOO_LARGE = "the result is too large (the limit is 1e100)"
_LOG10_MAX = math.log10(MAX_MAGNITUDE)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses, e.g. "12 * (3 + 4)".

    Args:
        expression: The expression, with numbers only (no names or functions).
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    source = expression.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, MemoryError):
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    except RecursionError:  # the parser's own limit, reached only when called from deep down a stack
        raise ValueError("the expression is nested too deeply") from None
    value = _evaluate(tree.body, source)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return str(value)


def _evaluate(root: ast.expr, source: str) -> float:
    """The value of an arithmetic tree, computed with an explicit stack: any depth, no recursion."""
    values: list[float] = []
    stack: list[tuple[ast.expr, bool]] = [(root, False)]
    while stack:
        node, operands_done = stack.pop()
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            values.append(_literal(node.value, ast.get_source_segment(source, node) or ""))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            if operands_done:
                right = values.pop()
                values.append(_binary(node.op, values.pop(), right))
            else:  # left is pushed last so that it is evaluated first
                stack += [(node, True), (node.right, False), (node.left, False)]
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            if operands_done:
                values.append(_UNARY[type(node.op)](values.pop()))
            else:
                stack += [(node, True), (node.operand, False)]
        else:
            element = ast.get_source_segment(source, node) or type(node).__name__
            raise ValueError(f"unsupported element in expression: {element[:100]!r}")
    (value,) = values
    return value


def _literal(value: float, text: str) -> float:
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_LITERAL_DIGITS:
        raise ValueError(f"a number has {digits} digits; the limit is {MAX_LITERAL_DIGITS}")
    return _checked(value)


def _binary(op: ast.operator, left: float, right: float) -> float:
    if isinstance(op, ast.Pow):
        if abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
        if abs(left) > 1 and right > 0 and right * math.log10(abs(left)) > _LOG10_MAX + 1:
            raise ValueError(_TOO_LARGE)  # known from the logarithm, without computing a huge int first
    try:
        result = _BINARY[type(op)](left, right)
    except ZeroDivisionError:  # x / 0, x // 0, x % 0 and 0 ** -1 alike
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError(_TOO_LARGE) from None
    if isinstance(result, complex):
        raise ValueError("the result is not a real number")  # e.g. (-8) ** 0.5
    return _checked(result)


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
