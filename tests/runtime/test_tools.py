"""tool_from_function / load_tool: schemas from signatures, validation, sync and async functions."""

from __future__ import annotations

import pytest

from service.runtime.tools import ToolArgumentsError, load_tool, openai_tool_spec, tool_from_function


def lookup(city: str, days: int = 1) -> dict[str, object]:
    """Look up the weather for a city.

    More text that is not part of the description.
    """
    return {"city": city, "days": days}


async def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


async def test_schema_and_description_come_from_the_signature_and_docstring() -> None:
    tool = tool_from_function(lookup)
    assert tool.name == "lookup"
    assert tool.description == "Look up the weather for a city."
    assert tool.parameters["required"] == ["city"]
    assert tool.parameters["properties"]["days"] == {"default": 1, "title": "Days", "type": "integer"}
    assert await tool.call({"city": "Paris"}) == '{"city": "Paris", "days": 1}'
    spec = openai_tool_spec(tool)
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "lookup"


async def test_async_functions_are_awaited() -> None:
    assert await tool_from_function(shout).call({"text": "hi"}) == "HI"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({}, "city: Field required"), ({"city": "x", "days": "many"}, "days"), ({"city": "x", "extra": 1}, "extra")],
)
async def test_invalid_arguments_raise_a_clear_error(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ToolArgumentsError, match=message):
        await tool_from_function(lookup).call(arguments)


def test_load_tool_by_import_path() -> None:
    tool = load_tool("tests.runtime.test_tools:lookup")
    assert tool.name == "lookup"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "form 'package.module:function'"),
        ("tests.nonexistent:fn", "cannot import module"),
        ("tests.runtime.test_tools:missing", "has no function 'missing'"),
    ],
)
def test_load_tool_errors_name_the_path(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_tool(path)
