"""Hypothesis strategies for JSON a sloppy or hostile peer might send: every type, huge numbers, NaN/Infinity,
lone surrogates, nesting."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

texts = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=st.characters(categories=["Cs", "Ll", "So"]), min_size=1, max_size=4),  # lone surrogates
)
"""Strings, often with lone surrogates (json.dumps writes them as \\ud800 escapes)."""

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and +-Infinity included: json.dumps writes them as NaN/Infinity literals
    st.sampled_from([0, -1, 127, 128, 2**31, 2**63, 2**64, 10**400]),
)

scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


def values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value (with Python's NaN/Infinity extension), nested."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
        max_leaves=max_leaves,
    )
