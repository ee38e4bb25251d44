"""The benchmark suite's quick mode runs end to end (tiny sizes), so the scripts cannot rot.
No timings are asserted: the figures belong in docs/benchmarks.md (python -m bench.run_all)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_mode_writes_the_report(tmp_path, azurite_endpoint):
    env = {**os.environ, "AZURITE_BLOB_ENDPOINT": azurite_endpoint}
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "--parts", "per-file", "combine",
         "--docs", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in text and "MultiZarrToZarr" in text
    assert (tmp_path / "benchmarks.png").stat().st_size > 1000
