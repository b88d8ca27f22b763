"""The committed generated stubs match what protos/ generates now."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "clients" / "python" / "agentstream" / "v1"


def test_generated_python_stubs_match_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / ".ci" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    fresh = tmp_path / "agentstream" / "v1"
    generated = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.is_file())
    assert generated == committed, "run `make proto` and commit the result"
    _, mismatch, errors = filecmp.cmpfiles(fresh, COMMITTED, generated, shallow=False)
    assert not mismatch and not errors, f"stale generated files {mismatch + errors}: run `make proto`"
