"""The server's layers import one way: transport -> runs -> store / runtime; nothing imports the transport."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "service" / "agentstream_server"
LAYERS = ("transport", "runs", "store", "runtime")
ALLOWED: dict[str, set[str]] = {
    "transport": {"runs", "store", "runtime"},
    "runs": {"store", "runtime"},
    "store": {"runtime"},
    "runtime": set(),
}
"""Which layers each layer may import (the package root's config, errors and redact are open to all)."""
FORBIDDEN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "runtime": ("grpc", "google.protobuf", "agentstream.v1", "redis"),
    "store": ("grpc", "google.protobuf", "agentstream.v1", "openai"),
    "runs": ("grpc", "google.protobuf", "agentstream.v1", "openai", "redis"),
}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer_files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    for path in layer_files(layer):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] != "agentstream_server" or len(parts) < 2 or parts[1] not in LAYERS:
                continue
            target = parts[1]
            assert target == layer or target in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {name}"


@pytest.mark.parametrize("layer", list(FORBIDDEN_LIBRARIES))
def test_inner_layers_never_touch_the_wire_format_or_foreign_backends(layer: str) -> None:
    for path in layer_files(layer):
        for name in imports_of(path):
            for forbidden in FORBIDDEN_LIBRARIES[layer]:
                assert not (name == forbidden or name.startswith(forbidden + ".")), (
                    f"{path.relative_to(PACKAGE)} imports {name}"
                )


def test_the_root_modules_import_no_layer() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name in ("cli.py", "__main__.py"):  # the process entry point wires everything
            continue
        for name in imports_of(path):
            parts = name.split(".")
            assert not (parts[0] == "agentstream_server" and len(parts) > 1 and parts[1] in LAYERS), (
                f"{path.name} imports {name}"
            )


def test_observability_imports_no_layer_and_no_grpc_so_every_layer_may_call_it() -> None:
    for path in sorted((PACKAGE / "observability").rglob("*.py")):
        for name in imports_of(path):
            parts = name.split(".")
            assert not (parts[0] == "agentstream_server" and len(parts) > 1 and parts[1] in LAYERS), (
                f"{path.relative_to(PACKAGE)} imports {name}"
            )
            assert parts[0] != "grpc", f"{path.relative_to(PACKAGE)} imports {name}"
        assert len(path.read_text().splitlines()) <= 400, path


def test_every_layer_file_exists_and_is_small() -> None:
    for layer in LAYERS:
        files = layer_files(layer)
        assert files, layer
        for path in files:
            lines = len(path.read_text().splitlines())
            assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by concept"
