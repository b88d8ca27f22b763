"""redact_url, url_secrets, redact_text: credentials in URLs and echoed keys never shown."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstream_server.redact import RedactingFilter, redact_text, redact_url, url_secrets


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://user:hunter22@llm.example/v1", "https://user:***@llm.example/v1"),
        ("https://sk-abcdef@llm.example/v1", "https://***@llm.example/v1"),
        ("https://:pw@llm.example/v1", "https://***@llm.example/v1"),
        ("https://llm.example/v1?api-key=abc123&v=2", "https://llm.example/v1?api-key=***&v=2"),
        (
            "https://h/v1?API_KEY=a&Key=b&token=c&Secret=d&password=e",
            "https://h/v1?API_KEY=***&Key=***&token=***&Secret=***&password=***",
        ),
        (
            "https://h/v1?sig=a&signature=b&access_token=c&x-api-key=d&sas_token=e",
            "https://h/v1?sig=***&signature=***&access_token=***&x-api-key=***&sas_token=***",
        ),
        ("https://h/v1?monkey=1&keys=2&api-key=", "https://h/v1?monkey=1&keys=2&api-key="),
        ("https://h/v1#access_token=abc", "https://h/v1#access_token=***"),
        ("https://u:p@[::1/v1?api-key=abc", "https://***@[::1/v1?api-key=***"),  # unparsable: masked by pattern
        ("not a url at all", "not a url at all"),
        ("", ""),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@given(st.text())
def test_redact_url_never_raises(url: str) -> None:
    redact_url(url)
    url_secrets(url)


def test_url_secrets_are_the_masked_values_as_written_and_decoded() -> None:
    url = "https://me:p%40ss@h/v1?api-key=a%2Fb&v=2"
    assert sorted(url_secrets(url)) == sorted(["p%40ss", "p@ss", "a%2Fb", "a/b"])
    assert url_secrets("https://tok-123@h/") == ["tok-123"]
    assert url_secrets("http://h/v1?v=1") == []


def test_redact_text_masks_each_secret_of_four_characters_or_more() -> None:
    text = "key sk-live-123 rejected (sk-live-123456), pw abc"
    assert redact_text(text, ["sk-live-123", "sk-live-123456", "abc", ""]) == "key *** rejected (***), pw abc"


def test_the_redacting_filter_masks_formatted_log_records(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tests.redact")
    only = RedactingFilter()
    only.add(["s3cr3t-value", "no"])
    log.addFilter(only)
    try:
        with caplog.at_level(logging.INFO, "tests.redact"):
            log.info("HTTP Request: %s %s", "POST", "http://u:s3cr3t-value@h/v1")
    finally:
        log.removeFilter(only)
    assert caplog.messages == ["HTTP Request: POST http://u:***@h/v1"]
