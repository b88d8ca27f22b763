"""Caller authentication: one server interceptor checks ``authorization: Bearer <token>`` before any handler runs.

Tokens come from a tokens file (``--auth-tokens``: SHA-256 hashes, re-read on SIGHUP) and/or are JWTs
checked against a JWKS file (``--auth-jwks``, also re-read on SIGHUP). Health and reflection stay open.
A handler learns who called with ``caller = auth.caller_of(context)`` (``Caller(tenant, roles)``; the tenant
is '' when the server has no authentication configured); the servicer's ``tenant_of`` hook is
``auth.tenant_of``. See credentials.py for the role model.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import grpc

from agentstream_server.config import Settings
from agentstream_server.errors import AgentStreamError, PermissionDenied, Unauthenticated
from agentstream_server.transport.credentials import (
    ANONYMOUS,
    Caller,
    JwtVerifier,
    TokenTable,
    least_role_for,
    load_jwt_verifier,
    load_token_table,
    looks_like_jwt,
    may_call,
)
from agentstream_server.transport.status import Context, abort

logger = logging.getLogger("agentstream.auth")

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.")
"""Method prefixes any caller may use without a token."""
MAX_TOKEN_CHARS = 4096
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
_VERIFIED: ContextVar[tuple[str, Caller] | None] = ContextVar("agentstream_verified_caller", default=None)
"""The authorization value the interceptor accepted for the current call, and its caller (caller_of's cache)."""

Metadata = Iterable[tuple[str, str | bytes]]


class Authenticator:
    """The server's credentials (a token table, a JWT verifier, either or both, or none) and the checks on them."""

    def __init__(
        self,
        tokens: TokenTable | None = None,
        jwts: JwtVerifier | None = None,
        *,
        tokens_file: Path | None = None,
        jwks_file: Path | None = None,
    ) -> None:
        self._tokens = tokens
        self._jwts = jwts
        self._tokens_file = tokens_file
        self._jwks_file = jwks_file

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Load the files the settings name; a ValueError says which file, entry and key is at fault."""
        tokens = load_token_table(settings.auth_tokens_file) if settings.auth_tokens_file else None
        jwts = None
        if settings.auth_jwks_file:
            jwts = load_jwt_verifier(
                settings.auth_jwks_file,
                issuer=settings.auth_jwt_issuer,
                audience=settings.auth_jwt_audience,
                tenant_claim=settings.auth_tenant_claim,
            )
        return cls(tokens, jwts, tokens_file=settings.auth_tokens_file, jwks_file=settings.auth_jwks_file)

    @property
    def enabled(self) -> bool:
        """True when calls need a token."""
        return self._tokens is not None or self._jwts is not None

    @property
    def description(self) -> str:
        parts = []
        if self._tokens is not None:
            parts.append(f"{len(self._tokens)} tokens from {self._tokens_file}")
        if self._jwts is not None:
            parts.append(f"JWTs signed by {len(self._jwts)} keys from {self._jwks_file}")
        return "; ".join(parts) or "none"

    def authenticate(self, metadata: Metadata) -> Caller:
        """The caller the call's bearer token names; Unauthenticated when it names none."""
        value = _authorization(metadata)
        token = _bearer_token(value)
        caller = self._tokens.lookup(token) if self._tokens is not None else None
        if caller is None and self._jwts is not None and looks_like_jwt(token):
            caller = self._jwts.verify(token)
        if caller is None:
            raise Unauthenticated("unknown token")
        _VERIFIED.set((value, caller))
        return caller

    def authorize(self, caller: Caller, method: str) -> None:
        """PermissionDenied unless one of the caller's roles may call ``method`` (a RunnerService method name)."""
        if not may_call(caller.roles, method):
            raise PermissionDenied(
                f"the caller's roles ({', '.join(caller.roles)}) may not call {method}",
                metadata={"method": method, "required_role": least_role_for(method)},
            )

    def caller_of(self, context: Context) -> Caller:
        """Who made the current call (ANONYMOUS, tenant '', without authentication). For handlers:
        ``caller = auth.caller_of(context)``; the interceptor already checked the call, so this is a cache hit."""
        if not self.enabled:
            return ANONYMOUS
        metadata = context.invocation_metadata() or ()
        verified = _VERIFIED.get()
        if verified is not None and verified[0] == _authorization(metadata):
            return verified[1]
        return self.authenticate(metadata)

    def tenant_of(self, context: Context) -> str:
        """The current call's tenant ('' without authentication): the servicer's ``tenant_of`` hook."""
        return self.caller_of(context).tenant

    def reload(self) -> None:
        """Re-read the tokens and JWKS files (SIGHUP). A file that fails to load keeps its previous contents."""
        if not self.enabled:
            logger.info("SIGHUP: no authentication configured, nothing to reload")
            return
        if self._tokens is not None and self._tokens_file is not None:
            try:
                self._tokens = load_token_table(self._tokens_file)
                logger.info("reloaded %d tokens from %s", len(self._tokens), self._tokens_file)
            except ValueError as exc:
                logger.error("reload failed, keeping the previous %d tokens: %s", len(self._tokens), exc)
        if self._jwts is not None and self._jwks_file is not None:
            try:
                fresh = load_jwt_verifier(self._jwks_file, issuer=None, audience=None, tenant_claim="")
                self._jwts = self._jwts.with_keys_of(fresh)
                logger.info("reloaded %d JWT keys from %s", len(self._jwts), self._jwks_file)
            except ValueError as exc:
                logger.error("reload failed, keeping the previous %d JWT keys: %s", len(self._jwts), exc)

    def interceptors(self, service_name: str) -> list[grpc.aio.ServerInterceptor]:
        """The interceptor to put first in the server's chain; none when authentication is off."""
        return [AuthInterceptor(self, service_name)] if self.enabled else []


def _authorization(metadata: Metadata) -> str:
    values = [value for key, value in metadata if key == "authorization"]
    if not values:
        raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <token>'")
    if len(values) > 1:
        raise Unauthenticated("more than one authorization metadata entry")
    if not isinstance(values[0], str):
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return values[0]


def _bearer_token(value: str) -> str:
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    token = rest.lstrip(" ")
    if not 0 < len(token) <= MAX_TOKEN_CHARS or not _BEARER_TOKEN.fullmatch(token):
        raise Unauthenticated("malformed bearer token")
    return token


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a call to anything but health and reflection unless its token names a caller whose roles allow it."""

    def __init__(self, auth: Authenticator, service_name: str) -> None:
        self._auth = auth
        self._prefix = f"/{service_name}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(handler_call_details)
        try:
            caller = self._auth.authenticate(handler_call_details.invocation_metadata)
            name = method.removeprefix(self._prefix) if method.startswith(self._prefix) else method
            self._auth.authorize(caller, name)
        except AgentStreamError as error:
            return _refusal(await continuation(handler_call_details), error)
        return await continuation(handler_call_details)


def _ignore(data: bytes) -> None:
    """A refused call's request is never parsed."""


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any] | None, error: AgentStreamError
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that ends the call with ``error``'s status."""

    async def refuse(request: Any, context: Context) -> None:
        await abort(context, error)

    async def refuse_stream(request: Any, context: Context) -> AsyncIterator[None]:
        await abort(context, error)
        yield

    serializer = handler.response_serializer if handler is not None else None
    request_streaming = handler is not None and handler.request_streaming
    response_streaming = handler is not None and handler.response_streaming
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, _ignore, serializer)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, _ignore, serializer)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, _ignore, serializer)
    return grpc.unary_unary_rpc_method_handler(refuse, _ignore, serializer)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_auth(settings: Settings) -> Authenticator:
    """The server's authenticator, after the start-up rules: a non-loopback address needs authentication, TLS
    or ``--insecure``; without authentication one warning line says so."""
    auth = Authenticator.from_settings(settings)
    tls = settings.tls_cert is not None
    if not auth.enabled and not tls and not settings.insecure and not is_loopback(settings.host):
        raise ValueError(
            f"refusing to listen on {settings.host} without authentication or TLS: set --auth-tokens or "
            "--auth-jwks (or TLS), or pass --insecure (AGENTSTREAM_INSECURE=1) to accept unauthenticated calls "
            "from the network"
        )
    if auth.enabled:
        logger.info("authentication: %s", auth.description)
    else:
        logger.warning(
            "calls are not authenticated: any caller that reaches %s may run agents "
            "(set --auth-tokens or --auth-jwks to require a token)",
            settings.host,
        )
    return auth
