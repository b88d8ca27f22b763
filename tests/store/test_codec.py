"""The store codec: every event kind round-trips exactly; anything else is a CodecError, never executed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstream_server.runtime import events as ev
from agentstream_server.store.codec import CodecError, decode_record, decode_terminal, encode_record, encode_terminal

text = st.text(max_size=20)  # includes lone surrogates: they must round-trip too
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
params = st.dictionaries(text, json_values, max_size=3)
actions = st.builds(ev.Action, text, text, text, params, text)
usages = st.builds(ev.Usage, st.integers(0, 2**31), st.integers(0, 2**31), st.integers(0, 2**31))
errors = st.builds(ev.TaskError, text, text, st.dictionaries(text, text, max_size=3))
seconds = st.floats(0, 1e6)
terminals = st.builds(
    ev.TaskFinished, st.sampled_from(ev.TaskStatus), st.booleans(), text, text, text, usages, seconds,
    st.none() | errors,
)  # fmt: skip
events = st.one_of(
    st.builds(ev.Chunk, text, text, text, st.integers(0, 100), text),
    st.builds(ev.ToolCall, st.lists(actions, max_size=3).map(tuple)),
    st.builds(ev.ToolResult, text, text, text, st.booleans(), seconds, text),
    st.builds(
        ev.AgentStep,
        text,
        st.integers(0, 100),
        text,
        st.lists(actions, max_size=2).map(tuple),
        text,
        st.none() | usages,
    ),
    st.builds(ev.TaskStarted, text, text),
    terminals,
    st.builds(ev.Output, text, text),
    st.builds(ev.GroupEvent, text, st.lists(text, max_size=3).map(tuple), text),
    st.builds(ev.MemoryAppended, text, text, text),
)
records = st.builds(
    ev.RunEvent, text, st.integers(1, 2**40), st.integers(0, 2**62), events, text, text, text, text,
    st.dictionaries(text, text, max_size=3),
)  # fmt: skip
NOT_EVENTS = [
    b"",
    b"not json",
    b"[]",
    b"[1,2,3]",
    b'[1,2,"r","","","","",{},["nope"]]',
    b'[1,2,"r","","","","",{},["chunk"]]',
    b"\x80\x04\x95",
    b'{"__reduce__": 1}',
]


@given(records)
def test_every_event_kind_round_trips_exactly(record: ev.RunEvent) -> None:
    assert decode_record(encode_record(record)) == record


@given(terminals)
def test_terminal_responses_round_trip(event: ev.TaskFinished) -> None:
    assert decode_terminal(encode_terminal(event)) == event


@pytest.mark.parametrize("data", NOT_EVENTS)
def test_anything_else_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_record(data)


def test_a_record_is_not_a_terminal_response() -> None:
    with pytest.raises(CodecError, match="not an encoded terminal response"):
        decode_terminal(encode_terminal(ev.TaskFinished(ev.TaskStatus.SUCCEEDED, True, "", "", "a"))[:-1])
    chunk = encode_record(ev.RunEvent("r", 1, 0, ev.Chunk("x", "m", "a", 1)))
    with pytest.raises(CodecError):
        decode_terminal(chunk)
