"""The seed's API: ``Runners.streaming_run(...)`` iterated directly with ``async for``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field

import grpc

from agentstream.client import Client
from agentstream.messages import Message
from agentstream.tls import PemSource
from agentstream.types import StreamingMode


@dataclass
class Task:
    """A task to run: the input and how to run it."""

    input: str
    agent: str | None = None
    streaming_mode: StreamingMode = StreamingMode.CORE
    session_id: str | None = None
    run_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None


class Runners:
    """Entry points that open a client for the duration of one streamed run."""

    @staticmethod
    async def streaming_run(
        input: str,
        agent: str | None = None,
        streaming_mode: StreamingMode = StreamingMode.CORE,
        *,
        target: str | None = None,
        token: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        tls: bool = False,
        root_ca: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> AsyncGenerator[Message, None]:
        """Run an agent on an input and yield its messages as they happen, ending with the terminal TaskMessage.

        Opens a Client on ``target`` (else ``$AGENTSTREAM_TARGET``, else 127.0.0.1:50051) for the duration
        of the iteration, with ``token`` (else ``$AGENTSTREAM_TOKEN``) and with TLS when asked (``tls``,
        ``root_ca``, ``client_cert``, ``client_key``, ``credentials``: as for Client); leaving the loop early
        cancels the run. Raises a typed AgentStreamError when the call fails.
        """
        async with (
            Client(
                target,
                token=token,
                tls=tls,
                root_ca=root_ca,
                client_cert=client_cert,
                client_key=client_key,
                credentials=credentials,
            ) as client,
            aclosing(
                client.streaming_run(
                    input,
                    agent=agent,
                    streaming_mode=streaming_mode,
                    session_id=session_id,
                    run_id=run_id,
                    metadata=metadata,
                    timeout=timeout,
                )
            ) as stream,
        ):
            async for message in stream:
                yield message

    @staticmethod
    async def streaming_run_task(
        task: Task,
        *,
        target: str | None = None,
        token: str | None = None,
        tls: bool = False,
        root_ca: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> AsyncGenerator[Message, None]:
        """Run a Task and yield its messages as they happen (see streaming_run)."""
        stream = Runners.streaming_run(
            task.input,
            task.agent,
            task.streaming_mode,
            target=target,
            token=token,
            session_id=task.session_id,
            run_id=task.run_id,
            metadata=task.metadata,
            timeout=task.timeout,
            tls=tls,
            root_ca=root_ca,
            client_cert=client_cert,
            client_key=client_key,
            credentials=credentials,
        )
        async with aclosing(stream):
            async for message in stream:
                yield message
