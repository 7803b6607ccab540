"""docs/sinks.md's ``python`` blocks run as written, against the demo provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.integration.test_docs import _python_blocks, run_example

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_sinks_guide_runs(tmp_path: Path) -> None:
    """The guide's example adds a Parquet sink, queries its files, reads them back, and plugs
    in a JSON-lines sink of its own; every step prints what the guide says."""
    out = run_example(_python_blocks(ROOT / "docs" / "sinks.md"), tmp_path, 6 * TIMEOUT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['parquet'] ok"
    assert lines[1].startswith("date=") and "/symbol=" in lines[1]
    assert any(line.split()[1:] == ["BTCUSD", "True"] for line in lines)
    assert any(line.split()[1:] == ["ETHUSD", "True"] for line in lines)
    assert lines[lines.index("   same") + 1].split() == ["0", "True"]
    assert "True ['id', 'received_at', 'date', 'symbol']" in out.stdout
    assert "True jsonl ok" in out.stdout
    assert "Client sinks_doc killed." in out.stdout
