"""parse_arguments: any text gives usable params (a Struct carries them) or a problem to tell the model."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstream_server.runtime.arguments import MAX_DEPTH, parse_arguments
from tests.support import wild_json

json_values = wild_json.values(max_leaves=30)


def struct_round_trips(params: dict[str, Any]) -> None:
    struct = struct_pb2.Struct()
    struct.update(params)
    struct_pb2.Struct.FromString(struct.SerializeToString())


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=40), json_values.map(json.dumps)))
def test_any_text_gives_params_a_struct_carries_or_a_problem(raw: str) -> None:
    params, problem = parse_arguments(raw)
    assert type(params) is dict
    if problem is None:
        struct_round_trips(params)
        json.dumps(params, allow_nan=False).encode()
    else:
        assert params == {}
        assert 0 < len(problem) < 100


def test_blank_arguments_are_an_empty_object() -> None:
    assert parse_arguments("  \n") == ({}, None)


def test_big_but_finite_numbers_are_kept() -> None:
    assert parse_arguments('{"a": 1e308, "b": 12345678901234567890}') == ({"a": 1e308, "b": 12345678901234567890}, None)


def test_the_nesting_limit_counts_arrays_too() -> None:
    assert parse_arguments('{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}")[1] is None
    assert parse_arguments('{"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}")[1] == "nested more than 20 levels deep"
