"""`make bench-quick` runs end to end and prints all fourteen figures (no timing assertions)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_bench_quick_prints_every_figure_with_a_baseline() -> None:
    result = subprocess.run(["make", "--no-print-directory", "bench-quick"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = set(re.findall(r"^## (\d+)\. ", result.stdout, flags=re.MULTILINE))
    assert figures == {str(n) for n in range(1, 15)}, result.stdout
    assert "none lost" in result.stdout
    assert "all 14 figures printed" in result.stdout
    for block in result.stdout.split("\n## ")[1:]:
        assert "baseline" in block.splitlines()[1], f"figure without a baseline column: {block[:200]}"
