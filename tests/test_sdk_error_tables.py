"""Every SDK inverts the server's whole error table: a new row without a TypeScript or Go error fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentstream_server.errors import ERROR_TABLE, ErrorRow

ROOT = Path(__file__).resolve().parents[1]
TYPESCRIPT = (ROOT / "clients" / "typescript" / "src" / "errors.ts").read_text()
GO = (ROOT / "clients" / "go" / "agentstream" / "errors.go").read_text()


def go_code(code: str) -> str:
    return "codes." + {"CANCELLED": "Canceled"}.get(code, "".join(p.capitalize() for p in code.split("_")))


@pytest.mark.parametrize("row", ERROR_TABLE, ids=lambda r: r.reason)
def test_the_typescript_sdk_maps_the_reason_to_an_error_class(row: ErrorRow) -> None:
    assert re.search(rf"^\s+{row.reason}: \w+Error,$", TYPESCRIPT, re.MULTILINE), f"no TS class for {row.reason}"


@pytest.mark.parametrize("row", ERROR_TABLE, ids=lambda r: r.reason)
def test_the_go_sdk_has_an_error_value_with_the_same_code(row: ErrorRow) -> None:
    pattern = rf"Err\w+ += &Error\{{Code: {re.escape(go_code(row.code))}, Reason: \"{row.reason}\"\}}"
    assert re.search(pattern, GO), f"no Go Err value for {row.reason} with {go_code(row.code)}"
