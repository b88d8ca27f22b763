"""Secrets kept out of what callers and logs see: credentials in URLs, and keys echoed back in text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import SplitResult, unquote_plus, urlsplit

MASK = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 4
"""Shorter strings are not redacted from text: replacing them would mangle ordinary words."""

_SECRET_NAMES = frozenset(
    {"key", "apikey", "api_key", "token", "secret", "password", "passwd", "sig", "signature", "access_token"}
)
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password", "_sig", "_signature")

_FALLBACK_USERINFO = re.compile(r"(?<=//)[^/?#@]*@")
_FALLBACK_PARAM = re.compile(r"([?&;#]([^=&;#]*)=)([^&;#]*)")


def is_secret_name(name: str) -> bool:
    """True for query parameter names that look like they hold a secret (api-key, X-Api-Key, sas_token, sig...)."""
    normalized = unquote_plus(name).strip().lower().replace("-", "_")
    return normalized in _SECRET_NAMES or normalized.endswith(_SECRET_SUFFIXES)


def redact_url(url: str) -> str:
    """The URL with its userinfo password (or a userinfo that is all token) and secret-looking parameter values
    masked: ``https://user:***@host/v1?api-key=***&v=1``. Never raises; unparsable input is masked by pattern."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return _FALLBACK_PARAM.sub(_mask_param, _FALLBACK_USERINFO.sub(MASK + "@", url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon and user else f"{MASK}@{host}"
    return SplitResult(
        parts.scheme, netloc, parts.path, _redact_params(parts.query), _redact_params(parts.fragment)
    ).geturl()


def url_secrets(url: str) -> list[str]:
    """The secrets a URL holds (as written and percent-decoded): what redact_url masks, for redact_text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        found.append(password if colon and user else userinfo)
    for params in (parts.query, parts.fragment):
        for param in params.split("&"):
            name, equals, value = param.partition("=")
            if equals and is_secret_name(name):
                found.append(value)
    return [form for secret in found for form in {secret, unquote_plus(secret)} if secret]


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """The text with every occurrence of each secret (of MIN_SECRET_LENGTH characters or more) replaced by MASK."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _redact_params(params: str) -> str:
    if "=" not in params:
        return params
    redacted = []
    for param in params.split("&"):
        name, equals, value = param.partition("=")
        redacted.append(f"{name}={MASK}" if equals and value and is_secret_name(name) else param)
    return "&".join(redacted)


def _mask_param(match: re.Match[str]) -> str:
    return match.group(1) + MASK if is_secret_name(match.group(2)) else match.group(0)


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in records (for third-party loggers that log URLs)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        """Also mask these secrets from now on."""
        self._secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with the secrets masked; never drops a record."""
        if self._secrets:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a malformed record: leave it to logging's own error handling
                return True
            record.msg, record.args = redact_text(message, self._secrets), None
        return True
