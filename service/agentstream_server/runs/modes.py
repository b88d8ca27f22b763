"""Streaming modes and the server-side filter table: which event categories each mode passes."""

from __future__ import annotations

import enum

from agentstream_server.runtime.events import RunEvent


class Mode(enum.IntEnum):
    """A streaming mode; values are the contract's StreamingMode numbers (0 means CORE)."""

    CORE = 1
    CHUNK = 2
    OUTPUT = 3
    CHUNK_OUTPUT = 4
    ALL = 5


MODE_CATEGORIES: dict[Mode, frozenset[str] | None] = {
    Mode.CORE: frozenset({"agent", "tool", "chunk", "task", "group"}),
    Mode.CHUNK: frozenset({"chunk"}),
    Mode.OUTPUT: frozenset({"output"}),
    Mode.CHUNK_OUTPUT: frozenset({"chunk", "output"}),
    Mode.ALL: None,
}
"""Categories each mode passes; None passes everything. The terminal task response passes in every mode."""


def mode_from_number(number: int) -> Mode | None:
    """The mode for a contract enum number (0 = CORE), or None when the number is unknown."""
    if number == 0:
        return Mode.CORE
    try:
        return Mode(number)
    except ValueError:
        return None


def passes(categories: frozenset[str] | None, record: RunEvent) -> bool:
    """True when a stream with these categories carries this event."""
    return categories is None or record.event.category in categories or record.is_terminal
