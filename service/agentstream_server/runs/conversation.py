"""A run's part in its session: it holds the session while it runs, starts from its history, adds its turns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from agentstream_server.runtime.history import Turn, TurnRecorder, chat_messages
from agentstream_server.store.sessions import SessionStore

logger = logging.getLogger("agentstream.runs")

END_TIMEOUT_S = 10.0
"""The longest a run's end waits for its session to record its turns (a lost store must not hold it)."""
_ending: set[asyncio.Task[None]] = set()


class Conversation:
    """The session a run holds: ``history`` for its LLM calls, ``observe`` for its top-level events, ``end``.

    Built by ``open_conversation``, which claims the session (SessionBusy when another run holds it).
    """

    def __init__(
        self, sessions: SessionStore, session_id: str, run_id: str, tenant: str, history: list[dict[str, Any]],
        recorder: TurnRecorder,
    ) -> None:  # fmt: skip
        self.session_id = session_id
        self.history = history
        """The session's earlier turns as chat messages (sent between the system prompt and the input)."""
        self._sessions = sessions
        self._run_id = run_id
        self._tenant = tenant
        self._recorder = recorder
        self.observe = recorder.observe
        """Take one top-level event of the run (events of nested agents are not the session's)."""
        self._ended = False

    @property
    def ended(self) -> bool:
        """True once end() or abandon() has been called."""
        return self._ended

    async def end(self, *, record: bool = True) -> None:
        """Release the session, appending the run's complete turns (``record`` False: none). Never raises:
        a store that fails is logged, and the run still ends."""
        if self._ended:
            return
        self._ended = True
        await self._release(self._recorder.turns if record else ())

    def end_soon(self) -> None:
        """end() in the background (for a run that ended before its first step: its input is its one turn)."""
        if not self._ended:
            task = asyncio.get_running_loop().create_task(self.end())
            _ending.add(task)
            task.add_done_callback(_ending.discard)

    async def abandon(self) -> None:
        """Release the session for a run that could not start at all: the run is forgotten by the session."""
        if not self._ended:
            self._ended = True
            await self._release(None)

    async def _release(self, turns: Sequence[Turn] | None) -> None:
        try:
            async with asyncio.timeout(END_TIMEOUT_S):
                await self._sessions.release(self.session_id, self._run_id, turns, tenant=self._tenant)
        except Exception as exc:  # the store's failure, or the timeout: the history misses this run's turns
            logger.error(
                "run %s: could not record its turns in session %r: %s: %s",
                self._run_id, self.session_id, type(exc).__name__, exc,
            )  # fmt: skip


async def open_conversation(
    sessions: SessionStore, session_id: str, run_id: str, user_input: str, agent_name: str, *, tenant: str = ""
) -> Conversation:
    """Claim the session for the run and load its history; raises SessionBusy when another run holds it."""
    turns = await sessions.claim(session_id, run_id, tenant=tenant)
    recorder = TurnRecorder(run_id, user_input, agent_name)
    return Conversation(sessions, session_id, run_id, tenant, chat_messages(turns), recorder)
