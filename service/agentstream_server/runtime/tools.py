"""Tools: plain Python functions with a JSON schema from their signature, validated and run safely."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_origin

import pydantic
import pydantic_core
from pydantic.fields import FieldInfo

from agentstream_server.runtime.tool_threads import TOOL_THREADS

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Tool names the OpenAI chat-completions API accepts."""
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields?|Examples?|Notes?):\s*$")
_PARAM_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_ARG_SECTIONS = {"Args", "Arguments", "Parameters", "Params"}


class ToolArgumentsError(ValueError):
    """The model called a tool with arguments that do not match its schema."""


class ToolFailure(Exception):
    """A tool's own error result: the model is told its message as it is (no exception type in front)."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool offered to the model: a name, a description, a JSON schema and an async call."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    call: Callable[[Mapping[str, Any]], Awaitable[str]]
    mcp_server: str = ""
    """The MCP server the tool comes from; empty for a built-in or Python tool."""


def tool_from_function(fn: Callable[..., Any], *, name: str | None = None) -> Tool:
    """A Tool for a sync or async function; its schema comes from the signature, its descriptions from the docstring.

    A sync function runs on the bounded daemon threads of tool_threads.TOOL_THREADS, not on the event loop.

    The description is the docstring's first paragraph; parameters are described by a Google-style
    ``Args:`` section or by ``Annotated[..., pydantic.Field(description=...)]``. Raises ValueError when
    the function cannot be described to a model.
    """
    tool_name = name if name is not None else str(getattr(fn, "__name__", ""))
    if not TOOL_NAME.match(tool_name):
        raise ValueError(f"tool name {tool_name!r} must match {TOOL_NAME.pattern}; pass name=...")
    summary, documented = _parse_docstring(inspect.getdoc(fn) or "")
    try:
        parameters = list(inspect.signature(fn, eval_str=True).parameters.values())
        arguments_model = _arguments_model(tool_name, parameters, documented)
        schema = arguments_model.model_json_schema(by_alias=True)
    except ValueError:
        raise
    except Exception as exc:  # NameError, TypeError, PydanticUserError: all mean "cannot describe this function"
        raise ValueError(f"tool {tool_name}: cannot build a schema from its signature: {exc}") from None
    schema.pop("title", None)
    fields = [(f"p{i}", p.name, p.kind is p.POSITIONAL_ONLY) for i, p in enumerate(parameters)]
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    async def call(arguments: Mapping[str, Any]) -> str:
        try:
            parsed = arguments_model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolArgumentsError(f"invalid arguments for {tool_name}: {problems}") from None
        args = [getattr(parsed, field) for field, _, positional in fields if positional]
        kwargs = {param: getattr(parsed, field) for field, param, positional in fields if not positional}
        result = await fn(*args, **kwargs) if is_async else await TOOL_THREADS.run(fn, *args, **kwargs)
        if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
            result = await result
        return _as_text(result)

    return Tool(name=tool_name, description=summary or tool_name, parameters=schema, call=call)


def _arguments_model(
    tool_name: str, parameters: list[inspect.Parameter], documented: Mapping[str, str]
) -> type[pydantic.BaseModel]:
    # Fields are named p0, p1 ... with the parameter names as aliases, so parameters may be called
    # anything (json, model_config, _private) without clashing with BaseModel's own attributes.
    fields: dict[str, Any] = {}
    for i, param in enumerate(parameters):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"tool {tool_name}: *args/**kwargs parameters cannot be described to a model")
        annotation: Any = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default: Any = ... if param.default is inspect.Parameter.empty else param.default
        if isinstance(default, FieldInfo):  # def f(x: int = Field(3, description=...))
            annotation, default = Annotated[annotation, default], ...
        field = pydantic.Field(default, alias=param.name)
        if param.name in documented and not _has_description(annotation):
            field = pydantic.Field(default, alias=param.name, description=documented[param.name])
        fields[f"p{i}"] = (annotation, field)
    config = pydantic.ConfigDict(extra="forbid")
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{tool_name}_arguments", __config__=config, **fields)
    return model


def _has_description(annotation: Any) -> bool:
    if get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in annotation.__metadata__)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph of a (dedented) docstring, and the parameter descriptions of its Args section."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    in_args, param_indent, current = False, -1, ""
    for line in lines:
        if not line.strip():
            continue
        header = _SECTION.match(line)
        if header:
            in_args, param_indent, current = header.group(1) in _ARG_SECTIONS, -1, ""
            continue
        if not in_args:
            continue
        indent = len(line) - len(line.lstrip())
        param_indent = indent if param_indent < 0 else param_indent
        match = _PARAM_LINE.match(line.strip())
        if indent == param_indent and match:
            current = match.group(1).lstrip("*")
            params[current] = match.group(2).strip()
        elif indent > param_indent and current:
            params[current] = f"{params[current]} {line.strip()}".strip()
        else:
            in_args = False
    return " ".join(summary), {name: text for name, text in params.items() if text}


def _as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, default=pydantic_core.to_jsonable_python)
    except (TypeError, ValueError, pydantic_core.PydanticSerializationError):
        return str(result)


def load_tool(path: str) -> Tool:
    """The Tool for a function named by import path, ``package.module:function``; ValueError says what is wrong."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"tool {path!r} must be an import path of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"tool {path!r}: cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself is broken: report it against the path, not as a crash
        raise ValueError(
            f"tool {path!r}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    fn = getattr(module, attribute, None)
    if fn is None:
        raise ValueError(f"tool {path!r}: module {module_name!r} has no function {attribute!r}")
    if not callable(fn):
        raise ValueError(f"tool {path!r}: {attribute!r} in module {module_name!r} is not a function")
    try:
        return tool_from_function(fn, name=attribute)
    except ValueError as exc:
        raise ValueError(f"tool {path!r}: {exc}") from None


def openai_tool_spec(tool: Tool) -> dict[str, Any]:
    """The tool as an OpenAI chat-completions tool spec."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)},
    }
