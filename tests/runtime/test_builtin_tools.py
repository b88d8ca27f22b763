"""calculator parses arithmetic (never eval) and agrees with Python; current_time reads zones."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.runtime.builtin_tools import BUILTIN_TOOLS, calculator, current_time


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        return str(draw(st.integers(min_value=0, max_value=1000)))
    op = draw(st.sampled_from(["+", "-", "*"]))
    return f"({draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))})"


@given(expressions())
def test_calculator_agrees_with_python_arithmetic(expression: str) -> None:
    expected = eval(expression, {"__builtins__": {}})  # the oracle only; calculator itself never evals
    assert calculator(expression) == str(expected)


@pytest.mark.parametrize(
    ("expression", "result"),
    [("12 * (3 + 4)", "84"), ("7 / 2", "3.5"), ("7 // 2", "3"), ("-2 ** 2", "-4"), ("10 % 4", "2"), ("1.5 * 2", "3")],
)
def test_calculator_operators(expression: str, result: str) -> None:
    assert calculator(expression) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "unsupported"),
        ("x + 1", "unsupported"),
        ("(1).real", "unsupported"),
        ("1 / 0", "division by zero"),
        ("2 ** 100000", "exponent"),
        ("1 +", "not an arithmetic expression"),
        ("'a' * 3", "unsupported"),
    ],
)
def test_calculator_rejects_anything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calculator(expression)


def test_current_time_is_iso_8601_in_the_zone() -> None:
    parsed = datetime.datetime.fromisoformat(current_time("Europe/Paris"))
    assert parsed.utcoffset() in {datetime.timedelta(hours=1), datetime.timedelta(hours=2)}
    with pytest.raises(ValueError, match="unknown time zone"):
        current_time("Mars/Olympus")


async def test_builtin_tools_have_schemas_from_their_signatures() -> None:
    calc = BUILTIN_TOOLS["calculator"]
    assert calc.parameters["required"] == ["expression"]
    assert calc.parameters["properties"]["expression"]["type"] == "string"
    assert await calc.call({"expression": "2 + 2"}) == "4"
    assert "required" not in BUILTIN_TOOLS["current_time"].parameters
