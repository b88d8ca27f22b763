"""Sessions (conversations) in the run store: the protocol, its bounds, and the in-memory implementation."""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agentstream_server.errors import SessionBusy, SessionNotFound
from agentstream_server.runtime.history import Turn

MAX_SESSION_RUNS = 1000
"""The most run ids a session lists (the oldest are dropped first)."""


@dataclass(frozen=True, slots=True)
class SessionBounds:
    """How much history a session keeps, and for how long it is kept once idle."""

    max_turns: int = 100
    max_chars: int = 200_000
    idle_ttl_s: float = 3600.0
    max_sessions: int = 10_000
    """Memory store only: the most sessions kept; a new one past it forgets the least recently used idle one."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What is known about a session: GetSession's answer."""

    session_id: str
    turns: tuple[Turn, ...]
    run_ids: tuple[str, ...]
    created_at: float
    updated_at: float
    live_run_id: str = ""


class SessionStore(Protocol):
    """Session histories, shared like the runs of the store they belong to; sessions belong to a tenant.

    One live run per session: ``claim`` is atomic across every replica on the store, and a claim whose
    replica died lapses (Redis: with the replica's lease), so a session is never held forever.
    """

    async def claim(self, session_id: str, run_id: str, *, tenant: str = "") -> tuple[Turn, ...]:
        """Make run_id the session's live run (creating the session) and return its history, oldest first.

        SessionBusy (metadata ``run_id``: the live run) when another run holds the session.
        """
        ...

    async def release(self, session_id: str, run_id: str, added: Sequence[Turn] | None, *, tenant: str = "") -> None:
        """End run_id's hold on the session, appending its turns (then bounding the history).

        ``added`` None: the run never started; it is forgotten (with the session, if that run created it).
        """
        ...

    async def describe(self, session_id: str, *, tenant: str = "") -> SessionInfo:
        """The session's history, runs and times; SessionNotFound when unknown, deleted or expired."""
        ...

    async def delete(self, session_id: str, *, tenant: str = "") -> int:
        """Forget the session; how many turns it held. SessionBusy while a run holds it, else SessionNotFound."""
        ...


def bounded(turns: Sequence[Turn], bounds: SessionBounds) -> tuple[Turn, ...]:
    """The newest turns that fit the bounds: the oldest go first, an assistant turn together with the tool
    results that answer it (never half a call/result pair, never a tool result without its call)."""
    count, chars = len(turns), sum(turn.size for turn in turns)
    start = 0
    while start < len(turns) and (count > bounds.max_turns or chars > bounds.max_chars or turns[start].role == "tool"):
        end = start + 1
        while end < len(turns) and turns[end].role == "tool":
            end += 1
        for turn in turns[start:end]:
            count -= 1
            chars -= turn.size
        start = end
    return tuple(turns[start:])


def busy(session_id: str, live_run_id: str) -> SessionBusy:
    """The error for a session another run holds."""
    return SessionBusy(
        f"session {session_id!r} has a live run ({live_run_id}); wait for it to end or cancel it",
        field="session_id",
        metadata={"run_id": live_run_id, "session_id": session_id},
    )


def not_found(session_id: str, bounds: SessionBounds) -> SessionNotFound:
    """The error for a session that is not known."""
    return SessionNotFound(
        f"session {session_id!r} is not known (never used, deleted, or idle for more than {bounds.idle_ttl_s:g} s)",
        field="session_id",
        metadata={"session_id": session_id},
    )


@dataclass(slots=True)
class _Session:
    created_at: float
    updated_at: float
    turns: tuple[Turn, ...] = ()
    run_ids: list[str] = field(default_factory=list)
    live_run_id: str = ""
    idle_since: float = 0.0
    """time.monotonic() of the last change (expiry counts from it)."""


class MemorySessions:
    """The sessions of one process (the memory store's): idle ones expire as sessions are used."""

    def __init__(self, bounds: SessionBounds | None = None) -> None:
        self.bounds = bounds or SessionBounds()
        self._sessions: collections.OrderedDict[tuple[str, str], _Session] = collections.OrderedDict()
        """By (tenant, session id), least recently changed first."""

    def __len__(self) -> int:
        return len(self._sessions)

    async def claim(self, session_id: str, run_id: str, *, tenant: str = "") -> tuple[Turn, ...]:
        """Make run_id the live run; its history (see SessionStore)."""
        session = self._lookup(tenant, session_id)
        if session is None:
            self._make_room()
            now = time.time()
            session = self._sessions[tenant, session_id] = _Session(created_at=now, updated_at=now)
        elif session.live_run_id:
            raise busy(session_id, session.live_run_id)
        session.live_run_id = run_id
        session.run_ids = [*session.run_ids, run_id][-MAX_SESSION_RUNS:]
        self._touch(tenant, session_id, session)
        return session.turns

    async def release(self, session_id: str, run_id: str, added: Sequence[Turn] | None, *, tenant: str = "") -> None:
        """End run_id's hold, appending its turns (see SessionStore)."""
        session = self._sessions.get((tenant, session_id))
        if session is None or session.live_run_id != run_id:
            return  # deleted or expired meanwhile (cannot happen while held), or never held: nothing to end
        session.live_run_id = ""
        if added is None:
            session.run_ids = [r for r in session.run_ids if r != run_id]
            if not session.run_ids and not session.turns:
                del self._sessions[tenant, session_id]
                return
        elif added:
            session.turns = bounded([*session.turns, *added], self.bounds)
            session.updated_at = time.time()
        self._touch(tenant, session_id, session)

    async def describe(self, session_id: str, *, tenant: str = "") -> SessionInfo:
        """The session (see SessionStore)."""
        session = self._get(tenant, session_id)
        return SessionInfo(
            session_id, session.turns, tuple(session.run_ids), session.created_at, session.updated_at,
            session.live_run_id,
        )  # fmt: skip

    async def delete(self, session_id: str, *, tenant: str = "") -> int:
        """Forget the session (see SessionStore)."""
        session = self._get(tenant, session_id)
        if session.live_run_id:
            raise busy(session_id, session.live_run_id)
        del self._sessions[tenant, session_id]
        return len(session.turns)

    def _get(self, tenant: str, session_id: str) -> _Session:
        session = self._lookup(tenant, session_id)
        if session is None:
            raise not_found(session_id, self.bounds)
        return session

    def _lookup(self, tenant: str, session_id: str) -> _Session | None:
        """The session unless it is unknown or idle past the TTL (then forgotten)."""
        self._expire()
        session = self._sessions.get((tenant, session_id))
        if session is not None and not session.live_run_id and session.idle_since <= self._cutoff():
            del self._sessions[tenant, session_id]
            return None
        return session

    def _cutoff(self) -> float:
        return time.monotonic() - self.bounds.idle_ttl_s

    def _touch(self, tenant: str, session_id: str, session: _Session) -> None:
        session.idle_since = time.monotonic()
        self._sessions.move_to_end((tenant, session_id))

    def _make_room(self) -> None:
        """Below max_sessions before a new one is added: the least recently used idle sessions are forgotten (held
        ones never are; there are at most as many as live runs)."""
        surplus = len(self._sessions) - self.bounds.max_sessions + 1
        if surplus <= 0:
            return
        idle: list[tuple[str, str]] = []
        for key, session in self._sessions.items():  # least recently changed first: usually the first one goes
            if not session.live_run_id:
                idle.append(key)
                if len(idle) == surplus:
                    break
        for key in idle:
            del self._sessions[key]

    def _expire(self) -> None:
        """Forget sessions idle past the TTL, oldest first (a held one is never idle: it stops the sweep)."""
        cutoff = self._cutoff()
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if session.live_run_id or session.idle_since > cutoff:
                return
            del self._sessions[key]
