"""Tools: plain Python functions with a JSON schema from their signature, validated and run safely."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic


class ToolArgumentsError(ValueError):
    """The model called a tool with arguments that do not match its schema."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool offered to the model: a name, a description, a JSON schema and an async call."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    call: Callable[[Mapping[str, Any]], Awaitable[str]]


def tool_from_function(fn: Callable[..., Any], *, name: str | None = None) -> Tool:
    """A Tool for a sync or async function; its schema comes from the signature, its description from the docstring."""
    tool_name = name or fn.__name__
    arguments_model = _arguments_model(fn, tool_name)
    is_async = inspect.iscoroutinefunction(fn)

    async def call(arguments: Mapping[str, Any]) -> str:
        try:
            parsed = arguments_model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolArgumentsError(f"invalid arguments for {tool_name}: {problems}") from None
        kwargs = {field: getattr(parsed, field) for field in type(parsed).model_fields}
        result = await fn(**kwargs) if is_async else await asyncio.to_thread(fn, **kwargs)
        return _as_text(result)

    schema = arguments_model.model_json_schema()
    schema.pop("title", None)
    return Tool(
        name=tool_name,
        description=inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0] or tool_name,
        parameters=schema,
        call=call,
    )


def _arguments_model(fn: Callable[..., Any], tool_name: str) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    hints = inspect.signature(fn, eval_str=True).parameters
    for param in hints.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"tool {tool_name}: *args/**kwargs parameters cannot be described to a model")
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model: type[pydantic.BaseModel] = pydantic.create_model(
        f"{tool_name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    return model


def _as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, pydantic.BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result)
    except TypeError:
        return str(result)


def load_tool(path: str) -> Tool:
    """The Tool for a function named by import path, ``package.module:function``."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"tool {path!r} must be an import path of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"tool {path!r}: cannot import module {module_name!r}: {exc}") from None
    fn = getattr(module, attribute, None)
    if fn is None or not callable(fn):
        raise ValueError(f"tool {path!r}: module {module_name!r} has no function {attribute!r}")
    return tool_from_function(fn)


def openai_tool_spec(tool: Tool) -> dict[str, Any]:
    """The tool as an OpenAI chat-completions tool spec."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)},
    }
