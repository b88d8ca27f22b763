"""Credentials made at test time: bearer tokens and their tokens file, signing keys and their JWKS file."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.test"
AUDIENCE = "agentstream"


@dataclass(frozen=True)
class Token:
    """A bearer token and the tokens-file entry that accepts it."""

    value: str
    tenant: str
    roles: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()


def new_token(tenant: str, *roles: str) -> Token:
    return Token(secrets.token_urlsafe(32), tenant, roles)


def write_tokens_file(path: Path, tokens: Sequence[Token]) -> Path:
    """A tokens file holding the hashes (never the values) of ``tokens``."""
    lines = []
    for token in tokens:
        lines += ["[[tokens]]", f'tenant = "{token.tenant}"', f'sha256 = "{token.sha256}"']
        if token.roles:
            lines.append("roles = [" + ", ".join(f'"{role}"' for role in token.roles) + "]")
    path.write_text("\n".join(lines) + "\n")
    return path


class SigningKey:
    """A private key (EC P-256, or RSA 2048) that signs JWTs, with its public half as a JWK."""

    def __init__(self, kid: str, kind: str = "EC") -> None:
        self.kid = kid
        self.algorithm = "ES256" if kind == "EC" else "RS256"
        if kind == "EC":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
            self.jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk["kid"] = kid

    def sign(
        self, *, expires_in: float = 300, kid: str | None = "", algorithm: str | None = None, **claims: Any
    ) -> str:
        """A JWT with iss, aud, exp and the given claims (a claim given as None is left out)."""
        body: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time() + expires_in), **claims}
        body = {key: value for key, value in body.items() if value is not None}
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(body, self.private, algorithm=algorithm or self.algorithm, headers=headers)


def write_jwks_file(path: Path, keys: Sequence[SigningKey]) -> Path:
    path.write_text(json.dumps({"keys": [key.jwk for key in keys]}))
    return path
