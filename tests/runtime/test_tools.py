"""tool_from_function / load_tool: schemas from signatures and docstrings, validation, sync and async functions."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import threading
from pathlib import Path
from typing import Annotated

import pydantic
import pytest

from agentstream_server.runtime.tools import ToolArgumentsError, load_tool, openai_tool_spec, tool_from_function
from tests.runtime.helper_tools import lookup


async def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


async def test_schema_and_description_come_from_the_signature_and_docstring() -> None:
    tool = tool_from_function(lookup)
    assert tool.name == "lookup"
    assert tool.description == "Look up the weather for a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "title": "City", "description": 'The city, e.g. "Paris".'},
            "days": {"type": "integer", "title": "Days", "default": 1, "description": "How many days to look ahead."},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert await tool.call({"city": "Paris"}) == '{"city": "Paris", "days": 1}'


def test_openai_tool_spec_wraps_the_schema() -> None:
    tool = tool_from_function(shout)
    assert openai_tool_spec(tool) == {
        "type": "function",
        "function": {"name": "shout", "description": "Upper-case the text.", "parameters": dict(tool.parameters)},
    }


def test_annotated_field_descriptions_win_over_the_docstring() -> None:
    def search(
        query: Annotated[str, pydantic.Field(description="from Field", min_length=1)],
        limit: int = pydantic.Field(5, description="a Field default", le=10),
    ) -> str:
        """Search.

        Args:
            query: from the docstring
        """
        return query

    properties = tool_from_function(search).parameters["properties"]
    assert properties["query"]["description"] == "from Field"
    assert properties["query"]["minLength"] == 1
    assert properties["limit"] == {
        "default": 5,
        "description": "a Field default",
        "maximum": 10,
        "title": "Limit",
        "type": "integer",
    }


async def test_async_functions_are_awaited_on_the_loop_and_sync_ones_run_in_a_thread() -> None:
    loop_thread = threading.get_ident()

    def where() -> str:
        """The thread it ran on."""
        return "loop" if threading.get_ident() == loop_thread else "worker"

    async def where_async() -> str:
        """The thread it ran on."""
        return "loop" if threading.get_ident() == loop_thread else "worker"

    assert await tool_from_function(shout).call({"text": "hi"}) == "HI"
    assert await tool_from_function(where).call({}) == "worker"
    assert await tool_from_function(where_async).call({}) == "loop"


async def test_callable_objects_with_an_async_call_are_awaited() -> None:
    class Doubler:
        async def __call__(self, n: int) -> int:
            await asyncio.sleep(0)
            return n * 2

    assert await tool_from_function(Doubler(), name="double").call({"n": 4}) == "8"


async def test_parameters_may_use_any_name_and_kind() -> None:
    def odd(pos: int, /, json: str, model_name: str, _hidden: int = 0, *, copy: bool = False) -> str:
        """Parameter names that are BaseModel attributes, protected or private in pydantic."""
        return f"{pos} {json} {model_name} {_hidden} {copy}"

    tool = tool_from_function(odd)
    assert list(tool.parameters["properties"]) == ["pos", "json", "model_name", "_hidden", "copy"]
    arguments = {"pos": 1, "json": "j", "model_name": "m", "_hidden": 2, "copy": True}
    assert await tool.call(arguments) == "1 j m 2 True"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Reading(pydantic.BaseModel):
    value: float


class Opaque:
    def __str__(self) -> str:
        return "opaque"


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ("plain", "plain"),
        ([1, "a"], '[1, "a"]'),
        ({"when": datetime.date(2024, 5, 1)}, '{"when": "2024-05-01"}'),
        (Point(1, 2), '{"x": 1, "y": 2}'),
        (Reading(value=1.5), '{"value": 1.5}'),
        (7, "7"),
        (None, "null"),
        (Opaque(), "opaque"),
    ],
    ids=["str", "list", "dict-with-date", "dataclass", "pydantic", "int", "none", "not-serialisable"],
)
async def test_results_become_text(result: object, text: str) -> None:
    def produce() -> object:
        """Returns the result."""
        return result

    assert await tool_from_function(produce).call({}) == text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "invalid arguments for lookup: city: Field required"),
        ({"city": "x", "days": "many"}, "days: Input should be a valid integer"),
        ({"city": "x", "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_raise_a_clear_error(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ToolArgumentsError, match=message):
        await tool_from_function(lookup).call(arguments)


class Unschemable:
    pass


def takes_varargs(*items: int) -> int:
    """Sums."""
    return sum(items)


def takes_unschemable(thing: Unschemable) -> str:
    """Cannot be described."""
    return ""


def takes_unresolvable(thing: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821
    """Annotation that does not resolve."""
    return ""


@pytest.mark.parametrize(
    ("fn", "name", "message"),
    [
        (takes_varargs, None, r"\*args/\*\*kwargs"),
        (takes_unschemable, None, "cannot build a schema"),
        (takes_unresolvable, None, "cannot build a schema.*NoSuchType"),
        (lambda: 1, None, "tool name '<lambda>' must match"),
        (shout, "has space", "tool name 'has space' must match"),
    ],
    ids=["varargs", "unschemable", "unresolvable", "lambda", "bad-name"],
)
def test_functions_that_cannot_be_described_raise_value_error(fn: object, name: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tool_from_function(fn, name=name)  # type: ignore[arg-type]


def test_name_overrides_the_function_name() -> None:
    assert tool_from_function(shout, name="yell").name == "yell"


def test_load_tool_by_import_path() -> None:
    tool = load_tool("tests.runtime.helper_tools:lookup")
    assert (tool.name, tool.description) == ("lookup", "Look up the weather for a city.")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "'no_colon' must be an import path of the form 'package.module:function'"),
        ("module:", "form 'package.module:function'"),
        (":function", "form 'package.module:function'"),
        ("tests.nonexistent:fn", "'tests.nonexistent:fn': cannot import module 'tests.nonexistent'"),
        ("tests.runtime.helper_tools:missing", "has no function 'missing'"),
        ("tests.runtime.helper_tools:NOT_A_FUNCTION", "'NOT_A_FUNCTION' in module .* is not a function"),
        ("tests.runtime.test_tools:takes_varargs", r"'tests.runtime.test_tools:takes_varargs': .*\*args"),
    ],
)
def test_load_tool_errors_name_the_path_and_the_problem(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_tool(path)


def test_load_tool_reports_a_module_that_fails_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_tools_module.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ValueError, match="importing module 'broken_tools_module' failed: RuntimeError: broken on"):
        load_tool("broken_tools_module:anything")
