"""The committed generated code (Python, TypeScript, Go) matches what protos/ generates now."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assert_same_tree(fresh: Path, committed: Path) -> None:
    generated = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    existing = sorted(
        str(p.relative_to(committed)) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert generated == existing, f"{committed}: run `make proto` and commit the result"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, generated, shallow=False)
    assert not mismatch and not errors, f"stale generated files {mismatch + errors}: run `make proto`"


def test_generated_python_stubs_match_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / ".ci" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert_same_tree(tmp_path / "agentstream" / "v1", ROOT / "clients" / "python" / "agentstream" / "v1")


def test_generated_typescript_and_go_code_match_the_protos(tmp_path: Path) -> None:
    buf = ROOT / ".ci" / "tools" / "node_modules" / ".bin" / "buf"
    subprocess.run([str(buf), "generate", "-o", str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    assert_same_tree(tmp_path / "clients" / "go" / "agentstreamv1", ROOT / "clients" / "go" / "agentstreamv1")
    assert_same_tree(
        tmp_path / "clients" / "typescript" / "src" / "gen", ROOT / "clients" / "typescript" / "src" / "gen"
    )
