"""Server transport security: the grpc credentials for TLS and mTLS, built from PEM files in the settings.

The files are read and checked once at start (with the standard library's ssl module, which says whether
the key matches the certificate), so a wrong path or a mismatched pair stops the server with a message
naming the file, before it listens. Messages name files and OpenSSL reasons, never file contents.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from agentstream_server.config import Settings


class TLSConfigError(ValueError):
    """A TLS file is missing, unreadable, not PEM, or the key does not match the certificate."""


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured (requiring client certificates when a client CA
    is), else None: serve plaintext."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise TLSConfigError("--tls-client-ca (AGENTSTREAM_TLS_CLIENT_CA) needs --tls-cert and --tls-key")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise TLSConfigError(
            "--tls-cert and --tls-key (AGENTSTREAM_TLS_CERT, AGENTSTREAM_TLS_KEY) go together: "
            f"only {'--tls-cert' if settings.tls_key is None else '--tls-key'} is set"
        )
    cert = _read(settings.tls_cert, "TLS certificate (--tls-cert, AGENTSTREAM_TLS_CERT)", b"CERTIFICATE-----")
    key = _read(settings.tls_key, "TLS key (--tls-key, AGENTSTREAM_TLS_KEY)", b"PRIVATE KEY-----")
    _check_pair(settings.tls_cert, settings.tls_key)
    client_ca = None
    if settings.tls_client_ca is not None:
        client_ca = _read(
            settings.tls_client_ca, "TLS client CA (--tls-client-ca, AGENTSTREAM_TLS_CLIENT_CA)", b"CERTIFICATE-----"
        )
        _check_ca(settings.tls_client_ca)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def describe(settings: Settings) -> str:
    """One line for the start-up log: plaintext, TLS or mTLS, and from which files."""
    if settings.tls_cert is None:
        return "plaintext (no TLS; set --tls-cert and --tls-key to encrypt)"
    if settings.tls_client_ca is None:
        return f"TLS on (certificate {settings.tls_cert}); client certificates not required"
    return (
        f"mTLS on (certificate {settings.tls_cert}); client certificates required, "
        f"verified against {settings.tls_client_ca}"
    )


def _read(path: Path, what: str, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise TLSConfigError(f"the {what} {path} is not a PEM file holding a {marker[:-5].decode().lower()}")
    return data


def _check_pair(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback, so an encrypted key fails here instead of prompting on the terminal.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"the TLS key {key} does not match the TLS certificate {cert}") from None
        raise TLSConfigError(
            f"cannot use the TLS certificate {cert} with the key {key} "
            f"(an encrypted key is not supported): {exc.reason or exc}"
        ) from None


def _check_ca(path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"the TLS client CA {path} holds no usable certificate: {exc.reason or exc}") from None
