"""Every issue #8 benchmark runs end to end in its smoke mode and prints its table.

No figure is asserted (speed is proven by the benchmarks' own output, never by tests): these
tests only prove the scripts still work against the public API, for a few seconds each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = {
    "consumer": "### Consumer side",
    "ingest": "### Ingest",
    "latency": "### Latency",
    "fanout": "### Fan-out",
    "results": "### Results",
    "soak_ingest": "### Soak",
    "profile_ingest": "### Profile",
    "sinks": "### Sinks",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.timeout(180)
def test_benchmark_smoke_run_prints_its_table(name: str) -> None:
    """benchmarks/NAME.py --quick --smoke --json exits 0, prints its Markdown table and a
    JSON line of results, and leaves benchmarks/README.md alone."""
    readme = BENCHMARKS / "README.md"
    before = readme.read_text() if readme.exists() else None
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert SCRIPTS[name] in out
    assert "|---|" in out and "load average" in out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["benchmark"] == name and last["results"]
    assert (readme.read_text() if readme.exists() else None) == before
