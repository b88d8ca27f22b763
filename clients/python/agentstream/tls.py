"""Channel credentials for TLS and mTLS: what ``Client``, ``SyncClient`` and ``Runners`` build their channel with."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

PemSource = str | os.PathLike[str] | bytes
"""A PEM file's path (str or Path), or its contents as bytes."""


def channel_credentials(
    *,
    tls: bool = False,
    root_ca: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.ChannelCredentials | None:
    """The channel credentials for these options, or None for a plaintext channel.

    ``tls=True`` verifies the server against the system's CAs; ``root_ca`` against this CA instead;
    ``client_cert`` with ``client_key`` present a client certificate (mTLS). Giving ``root_ca``,
    ``client_cert`` or ``client_key`` turns TLS on. ``credentials`` is a ready-made
    ``grpc.ChannelCredentials`` and excludes the other options.
    """
    if credentials is not None:
        if tls or root_ca is not None or client_cert is not None or client_key is not None:
            raise ValueError("credentials= already says how to connect: drop tls=, root_ca=, client_cert=, client_key=")
        return credentials
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert= and client_key= go together (mTLS needs both)")
    if not (tls or root_ca is not None or client_cert is not None):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(root_ca, "root_ca"),
        private_key=_pem(client_key, "client_key"),
        certificate_chain=_pem(client_cert, "client_cert"),
    )


def _pem(source: PemSource | None, option: str) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {option} file {os.fspath(source)}: {exc.strerror or exc}") from None
