"""agentstream: the Python SDK for the agentstream gRPC service (stream LLM agent runs)."""

from agentstream.client import Client
from agentstream.errors import (
    AgentNotFound,
    AgentStreamError,
    InternalError,
    InvalidArgument,
    LLMUpstreamError,
    MaxStepsExceeded,
    RunAlreadyExists,
    RunCancelled,
    RunTimedOut,
    ServerDraining,
    TooManyRuns,
    TransportError,
)
from agentstream.messages import (
    ActionModel,
    AgentMessage,
    ChunkMessage,
    GroupMessage,
    MemoryMessage,
    Message,
    OutputMessage,
    TaskMessage,
    ToolMessage,
    ToolResultMessage,
)
from agentstream.runners import Runners, Task
from agentstream.sync_client import SyncClient
from agentstream.types import StreamingMode, TaskStatus, TopicType

__all__ = [
    "ActionModel",
    "AgentMessage",
    "AgentNotFound",
    "AgentStreamError",
    "ChunkMessage",
    "Client",
    "GroupMessage",
    "InternalError",
    "InvalidArgument",
    "LLMUpstreamError",
    "MaxStepsExceeded",
    "MemoryMessage",
    "Message",
    "OutputMessage",
    "RunAlreadyExists",
    "RunCancelled",
    "RunTimedOut",
    "Runners",
    "ServerDraining",
    "StreamingMode",
    "SyncClient",
    "Task",
    "TaskMessage",
    "TaskStatus",
    "TooManyRuns",
    "ToolMessage",
    "ToolResultMessage",
    "TopicType",
    "TransportError",
]
