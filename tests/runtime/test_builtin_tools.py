"""calculator parses arithmetic (never eval) and agrees with Python; current_time reads zones."""

from __future__ import annotations

import ast
import datetime
import math
import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstream_server.runtime import builtin_tools
from agentstream_server.runtime.builtin_tools import (
    BUILTIN_TOOLS,
    MAX_EXPONENT,
    MAX_MAGNITUDE,
    calculator,
    current_time,
)
from agentstream_server.runtime.tools import ToolArgumentsError


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    """Small integer expressions with every operator; bounded so no intermediate value passes 1e100."""
    if depth >= 3 or draw(st.booleans()):
        number = str(draw(st.integers(min_value=0, max_value=1000)))
        if draw(st.integers(0, 4)) == 0:
            return f"{number} ** {draw(st.integers(min_value=0, max_value=3))}"
        return number
    if draw(st.integers(0, 5)) == 0:
        return f"-({draw(expressions(depth + 1))})"
    op = draw(st.sampled_from(["+", "-", "*", "/", "//", "%"]))
    return f"({draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))})"


@given(expressions())
def test_calculator_agrees_with_python_arithmetic(expression: str) -> None:
    try:
        expected = eval(expression, {"__builtins__": {}})  # the oracle only; calculator itself never evals
    except ZeroDivisionError:
        with pytest.raises(ValueError, match="division by zero"):
            calculator(expression)
        return
    result = calculator(expression)
    if isinstance(expected, int):
        assert result == str(expected)
    else:
        assert float(result) == expected


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("12 * (3 + 4)", "84"),
        ("7 / 2", "3.5"),
        ("6 / 2", "3"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("-2 ** 2", "-4"),
        ("(-2) ** 2", "4"),
        ("2 ** -1", "0.5"),
        ("10 % 4", "2"),
        ("+1.5 * 2", "3"),
        ("  ((1 + 2))  ", "3"),
        ("2 ** 300 // 2 ** 290", "1024"),
    ],
)
def test_calculator_operators(expression: str, result: str) -> None:
    assert calculator(expression) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "unsupported"),
        ("x + 1", "unsupported element in expression: 'x'"),
        ("abs(-1)", "unsupported"),
        ("(1).real", "unsupported"),
        ("[1][0]", "unsupported"),
        ("1 if 1 else 2", "unsupported"),
        ("1 < 2", "unsupported"),
        ("1 & 3", "unsupported"),
        ("not 1", "unsupported"),
        ("True + 1", "unsupported element in expression: 'True'"),
        ("1j * 1", "unsupported"),
        ("'a' * 3", "unsupported"),
        ("1; 2", "not an arithmetic expression"),
        ("1 +", "not an arithmetic expression"),
        ("", "not an arithmetic expression"),
        ("1 / 0", "division by zero"),
        ("1 // (2 - 2)", "division by zero"),
        ("1 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("2 ** 100000", "exponent 100000 is too large"),
        ("2 ** (10 ** 4)", "exponent 10000 is too large"),
        ("10 ** 101", "too large"),
        ("10.0 ** 1000", "too large"),
        ("1e400", "too large"),
        ("1e308 * 10", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("9" * 102, "a number has 102 digits; the limit is 101"),
        ("0." + "0" * 101 + "1", "a number has 103 digits"),
        ("1 + " * 300 + "1", "longer than 1000 characters"),
    ],
)
def test_calculator_rejects_anything_but_bounded_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calculator(expression)


def test_a_flat_sum_as_long_as_allowed_is_not_too_deep() -> None:
    assert calculator("1+" * 499 + "1") == "500"


def test_regression_huge_literal_to_the_1000th_is_rejected_without_computing_it() -> None:
    with pytest.raises(ValueError, match="a number has 993 digits; the limit is 101"):
        calculator("9" * 993 + "**1000")


def test_regression_pow_never_computes_a_result_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[tuple[float, float]] = []

    def recording_pow(left: float, right: float) -> float:
        computed.append((left, right))
        return operator.pow(left, right)

    monkeypatch.setitem(builtin_tools._BINARY, ast.Pow, recording_pow)
    for expression in ["(10 ** 100) ** 1000", "(9 ** 99) ** 999", "1.5 ** 1000", "(-(10 ** 50)) ** 3"]:
        with pytest.raises(ValueError, match="too large"):
            calculator(expression)
    assert computed == [(10, 100), (9, 99), (10, 50)]


@given(st.integers(min_value=-(10**4), max_value=10**4), st.integers(min_value=0, max_value=MAX_EXPONENT))
def test_pow_agrees_with_python_up_to_the_magnitude_limit(base: int, exponent: int) -> None:
    expression = f"({base}) ** {exponent}"
    if abs(base) > 1 and exponent * math.log10(abs(base)) > 110:  # far over: do not make the oracle compute it
        expected = None
    else:
        value = base**exponent
        expected = str(value) if abs(value) <= MAX_MAGNITUDE else None
    if expected is None:
        with pytest.raises(ValueError, match="too large"):
            calculator(expression)
    else:
        assert calculator(expression) == expected


def test_regression_deep_unary_minus_is_evaluated_without_recursion() -> None:
    assert calculator("-" * 998 + "1") == "1"
    assert calculator("-" * 997 + "1") == "-1"
    tree: ast.expr = ast.Constant(value=7)
    for _ in range(100_000):  # far deeper than Python's recursion limit: only an explicit stack gets through
        tree = ast.UnaryOp(op=ast.USub(), operand=tree)
    assert builtin_tools._evaluate(tree, "") == 7


def test_current_time_is_iso_8601_in_the_zone() -> None:
    parsed = datetime.datetime.fromisoformat(current_time("Europe/Paris"))
    assert parsed.utcoffset() in {datetime.timedelta(hours=1), datetime.timedelta(hours=2)}
    utc = datetime.datetime.fromisoformat(current_time())
    assert utc.utcoffset() == datetime.timedelta(0)
    assert abs(utc - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "America", "../etc/passwd", "/UTC"])
def test_current_time_rejects_unknown_zones(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        current_time(zone)


async def test_builtin_tools_have_schemas_from_their_signatures() -> None:
    calc = BUILTIN_TOOLS["calculator"]
    assert calc.parameters["required"] == ["expression"]
    assert calc.parameters["properties"]["expression"]["type"] == "string"
    assert calc.parameters["properties"]["expression"]["description"]
    assert await calc.call({"expression": "2 + 2"}) == "4"
    assert "required" not in BUILTIN_TOOLS["current_time"].parameters
    with pytest.raises(ToolArgumentsError, match="expression: Field required"):
        await calc.call({})
