"""Tool-call arguments: the model's JSON text -> params a tool can take and a protobuf Struct can carry."""

from __future__ import annotations

import json
import math
from typing import Any

from agentstream_server.runtime.utf8 import utf8_safe

MAX_DEPTH = 20
"""Deepest nesting of objects and arrays accepted (the arguments object itself is level 1).

Each level costs protobuf up to three message levels inside a Message; at about 32 levels a Message exceeds
the default decoding depth limit (100) of protobuf runtimes, and no tool schema needs anything near 20.
"""


class _NotJSONNumber(ValueError):
    """NaN, Infinity or -Infinity: Python's json accepts them, JSON does not."""


def _reject_constant(name: str) -> Any:
    raise _NotJSONNumber(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """The params of a tool call, and None; or an empty dict and what is wrong with the arguments, for the model.

    Blank arguments are an empty object. Usable params are a JSON object nested at most MAX_DEPTH levels whose
    numbers are finite doubles (protobuf's Struct stores numbers as doubles) and whose strings are UTF-8 encodable
    (lone surrogates become U+FFFD).
    """
    if not raw.strip():
        return {}, None
    try:
        params = _DECODER.decode(raw)
    except _NotJSONNumber as exc:
        return {}, f"{exc} is not a JSON number"
    except RecursionError:
        return {}, f"nested more than {MAX_DEPTH} levels deep"
    except json.JSONDecodeError:
        return {}, "not valid JSON"
    except ValueError:  # an integer literal over the interpreter's digit limit (4300)
        return {}, "a number is too large"
    if type(params) is not dict:
        return {}, "not a JSON object"
    try:
        return _clean(params, 1), None
    except _Unusable as exc:
        return {}, str(exc)


class _Unusable(Exception):
    """Parsed arguments that a tool or protobuf cannot take."""


def _clean(value: Any, depth: int) -> Any:
    """The value with strings made UTF-8 safe; raises _Unusable for too deep nesting or non-finite numbers."""
    kind = type(value)
    if kind is str:
        return utf8_safe(value)
    if kind is dict or kind is list:
        if depth > MAX_DEPTH:
            raise _Unusable(f"nested more than {MAX_DEPTH} levels deep")
        if kind is dict:
            return {utf8_safe(key): _clean(item, depth + 1) for key, item in value.items()}
        return [_clean(item, depth + 1) for item in value]
    if kind is int:
        try:
            float(value)
        except OverflowError:
            raise _Unusable("a number is too large") from None
    elif kind is float and not math.isfinite(value):  # 1e400 parses as inf
        raise _Unusable("a number is too large")
    return value
