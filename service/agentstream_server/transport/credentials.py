"""Who a caller is: the role model, the tokens file (SHA-256 hashes only) and JWTs checked against a JWKS file.

No grpc here: ``auth.py`` reads the ``authorization`` metadata and asks these. Nothing in this module puts a
token, a token's hash or a JWT into an exception message or a log line: messages name the problem and, for
a file, the entry and key at fault, never a value from it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from agentstream_server.errors import Unauthenticated

# --------------------------------------------------------------------------------------------- callers and roles


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a call: the tenant its credentials name, and the roles they grant ('' and () without auth)."""

    tenant: str
    roles: tuple[str, ...] = ()


ANONYMOUS = Caller("")
"""The caller of every call when the server has no authentication configured."""

READER_METHODS = frozenset({"SubscribeRun", "GetRun", "GetSession"})
RUNNER_METHODS = READER_METHODS | {"StreamingRun", "StartRun", "CancelRun", "DeleteSession", "ResolveInterrupt"}
ROLE_METHODS: Mapping[str, frozenset[str] | None] = {"reader": READER_METHODS, "runner": RUNNER_METHODS, "admin": None}
"""The RunnerService methods each role may call (None: every method, including ones added later).

A caller whose credentials list no roles may call everything; one with roles may call what any of its roles
allows; a role not in this table allows nothing.
"""


def may_call(roles: Sequence[str], method: str) -> bool:
    """Whether a caller with these roles may call the RunnerService method named ``method`` ('GetRun')."""
    if not roles:
        return True
    for role in roles:
        allowed = ROLE_METHODS.get(role, frozenset())
        if allowed is None or method in allowed:
            return True
    return False


def least_role_for(method: str) -> str:
    """The smallest role that may call ``method`` (told to a caller that was refused)."""
    return next(role for role, allowed in ROLE_METHODS.items() if allowed is None or method in allowed)


MAX_TENANT_CHARS = 256
MAX_ROLES = 64
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")


def _valid_tenant(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TENANT_CHARS and _PRINTABLE.fullmatch(value) is not None


# --------------------------------------------------------------------------------------------- the tokens file


@dataclass(frozen=True, slots=True)
class _TokenEntry:
    digest: bytes
    caller: Caller


class TokenTable:
    """The ``[[tokens]]`` of a tokens file: SHA-256 digests of the accepted tokens and the caller each names."""

    def __init__(self, entries: Sequence[_TokenEntry]) -> None:
        self._entries = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Caller | None:
        """The caller of ``token``, or None. Every entry is compared, in constant time, with no early exit."""
        digest = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.caller
        return found


_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN_KEYS = frozenset({"tenant", "sha256", "roles"})


def load_token_table(path: Path) -> TokenTable:
    """Read and check a tokens file; a ValueError names the entry and key at fault, never a value."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        position = re.search(r"\(at .*\)", str(exc))  # the line and column only: the text may hold a secret
        raise ValueError(
            f"tokens file {path} is not valid TOML {position.group(0) if position else ''}".rstrip()
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read tokens file {path}: {type(exc).__name__}") from None
    unknown = set(document) - {"tokens"}
    if unknown:
        raise ValueError(f"tokens file {path}: unknown top-level key(s) {sorted(unknown)}; expected [[tokens]] tables")
    tables = document.get("tokens", [])
    if not isinstance(tables, list):
        raise ValueError(f"tokens file {path}: 'tokens' must be an array of tables ([[tokens]])")
    entries: list[_TokenEntry] = []
    seen: set[bytes] = set()
    for index, table in enumerate(tables):
        where = f"tokens file {path}, tokens[{index}]"
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table")
        if extra := set(table) - _TOKEN_KEYS:
            raise ValueError(f"{where}: unknown key(s) {sorted(extra)}; a token is given by its sha256 only")
        if not _valid_tenant(table.get("tenant")):
            raise ValueError(f"{where}: 'tenant' must be a non-empty string of at most {MAX_TENANT_CHARS} characters")
        sha256 = table.get("sha256")
        if not isinstance(sha256, str) or not _HEX_SHA256.fullmatch(sha256):
            raise ValueError(f"{where}: 'sha256' must be the 64 hex digits of the token's SHA-256")
        roles = table.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise ValueError(f"{where}: 'roles' must be a list of strings")
        if unknown_roles := sorted(set(roles) - set(ROLE_METHODS)):
            raise ValueError(f"{where}: unknown role(s) {unknown_roles}; roles are {', '.join(ROLE_METHODS)}")
        digest = bytes.fromhex(sha256)
        if digest in seen:
            raise ValueError(f"{where}: the same sha256 appears twice")
        seen.add(digest)
        entries.append(_TokenEntry(digest, Caller(table["tenant"], tuple(roles))))
    return TokenTable(entries)


# --------------------------------------------------------------------------------------------- JWTs and JWKS

JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""Signature algorithms a JWT may use: public-key ones only (never 'none', never a shared HMAC secret)."""
_RSA_ALGORITHMS = tuple(name for name in JWT_ALGORITHMS if name[:2] in ("RS", "PS"))
JWT_LEEWAY_S = 30
"""Clock skew allowed when checking exp and nbf."""
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_CLAIM_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
)


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments joined by dots (a JWS compact serialization)."""
    return _JWT_SHAPE.fullmatch(token) is not None


class JwtVerifier:
    """Checks JWTs against the public keys of a JWKS file: signature, exp (required), nbf, iss and aud when set."""

    def __init__(
        self,
        keys: Mapping[tuple[str | None, str], jwt.PyJWK],
        *,
        issuer: str | None,
        audience: str | None,
        tenant_claim: str,
    ) -> None:
        self._keys = dict(keys)
        self._kids = {kid for kid, _ in self._keys}
        self._issuer = issuer
        self._audience = audience
        self._tenant_claim = tenant_claim
        self._required = ["exp", *(["iss"] if issuer else []), *(["aud"] if audience else [])]

    def __len__(self) -> int:
        return len(self._kids)

    def with_keys_of(self, other: JwtVerifier) -> JwtVerifier:
        """This verifier's checks with the keys of ``other`` (a reloaded file)."""
        return JwtVerifier(other._keys, issuer=self._issuer, audience=self._audience, tenant_claim=self._tenant_claim)

    def verify(self, token: str) -> Caller:
        """The caller a valid JWT names; Unauthenticated (with a message free of the token) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except Exception:
            raise Unauthenticated("malformed token") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in JWT_ALGORITHMS:
            raise Unauthenticated("token algorithm is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("malformed token")
        if kid is None and len(self._kids) == 1:
            kid = next(iter(self._kids))
        if kid not in self._kids:
            raise Unauthenticated("token is signed by an unknown key" if kid else "token names no key (kid)")
        key = self._keys.get((kid, algorithm))
        if key is None:
            raise Unauthenticated("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=JWT_LEEWAY_S,
                options={"require": self._required},
            )
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in self._required else "a required"
            raise Unauthenticated(f"token lacks the {claim} claim") from None
        except Exception as exc:
            message = next((text for cls, text in _CLAIM_ERRORS if isinstance(exc, cls)), "malformed token")
            raise Unauthenticated(message) from None
        return self._caller(claims)

    def _caller(self, claims: dict[str, Any]) -> Caller:
        tenant = claims.get(self._tenant_claim)
        if not _valid_tenant(tenant):
            raise Unauthenticated(f"token has no usable {self._tenant_claim!r} claim (a non-empty string)")
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or len(roles) > MAX_ROLES or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated(f"token's 'roles' claim is not a list of at most {MAX_ROLES} strings")
        return Caller(str(tenant), tuple(roles))


def load_jwt_verifier(path: Path, *, issuer: str | None, audience: str | None, tenant_claim: str) -> JwtVerifier:
    """Read a JWKS file (``{"keys": [...]}``) of public keys; a ValueError names the key at fault."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"cannot read JWKS file {path}: {type(exc).__name__}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError(f"JWKS file {path} must be a JSON object with a non-empty 'keys' array")
    usable: dict[tuple[str | None, str], jwt.PyJWK] = {}
    for index, data in enumerate(keys):
        where = f"JWKS file {path}, keys[{index}]"
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object")
        if data.get("use", "sig") != "sig":
            continue  # an encryption key: not for signatures
        if "d" in data or data.get("kty") == "oct":
            raise ValueError(f"{where} is a private or symmetric key; the file must hold public keys only")
        kid = data.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ValueError(f"{where}: 'kid' must be a string")
        algorithms = [data["alg"]] if "alg" in data else _RSA_ALGORITHMS if data.get("kty") == "RSA" else [None]
        for algorithm in algorithms:
            try:
                key = jwt.PyJWK(data, algorithm)
            except Exception as exc:
                raise ValueError(f"{where} is not a usable public key ({type(exc).__name__})") from None
            if key.algorithm_name not in JWT_ALGORITHMS:
                raise ValueError(f"{where}: algorithm {key.algorithm_name!r} is not accepted")
            if (kid, key.algorithm_name) in usable:
                raise ValueError(f"{where}: two keys share the kid {kid!r}")
            usable[(kid, key.algorithm_name)] = key
    if not usable:
        raise ValueError(f"JWKS file {path} holds no signature key")
    return JwtVerifier(usable, issuer=issuer, audience=audience, tenant_claim=tenant_claim)
