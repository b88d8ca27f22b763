"""Text from outside (the LLM endpoint) made encodable as UTF-8, as protobuf strings must be."""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""json.loads joins escaped surrogate pairs into one character, so any surrogate left in a str is a lone one."""

REPLACEMENT = "\ufffd"
"""What a lone surrogate is replaced with: U+FFFD REPLACEMENT CHARACTER."""


def utf8_safe(text: str) -> str:
    """The text with each lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD; ASCII text as it is."""
    if text.isascii():
        return text
    try:
        text.encode()  # faster than a regex search for the usual text with no surrogate
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub(REPLACEMENT, text)
    return text
