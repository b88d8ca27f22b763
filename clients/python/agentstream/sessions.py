"""Sessions (conversations) as the SDK returns them: GetSession's answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agentstream.messages import ActionModel, action_from_proto
from agentstream.v1 import runner_service_pb2 as rpb


@dataclass(frozen=True, slots=True)
class SessionTurn:
    """One entry of a conversation's history, as the model sees it."""

    role: str
    """"user", "assistant" or "tool"."""
    content: str
    tool_calls: list[ActionModel] = field(default_factory=list)
    """assistant turns: the tool calls the model asked for."""
    tool_call_id: str = ""
    """tool turns: the call this result answers."""
    reasoning_content: str = ""
    run_id: str = ""
    agent_name: str = ""


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation: the runs that shared a session_id and the history they built (within the server's bounds)."""

    session_id: str
    turns: list[SessionTurn]
    run_ids: list[str]
    created_at: datetime
    updated_at: datetime
    live_run_id: str = ""
    """The run in progress on the session, if any."""


def session_from_proto(session: rpb.Session) -> Session:
    """The SDK form of a GetSession answer."""
    return Session(
        session_id=session.session_id,
        turns=[
            SessionTurn(
                role=turn.role,
                content=turn.content,
                tool_calls=[action_from_proto(a) for a in turn.tool_calls],
                tool_call_id=turn.tool_call_id,
                reasoning_content=turn.reasoning_content,
                run_id=turn.run_id,
                agent_name=turn.agent_name,
            )
            for turn in session.turns
        ],
        run_ids=list(session.run_ids),
        created_at=session.created_at.ToDatetime(),
        updated_at=session.updated_at.ToDatetime(),
        live_run_id=session.live_run_id,
    )
