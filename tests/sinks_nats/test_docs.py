"""docs/scale_out.md's notebook example runs as written against a real nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.integration.test_docs import _python_blocks, run_example
from tests.sinks_nats.conftest import NatsServer

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale_out.md"


def test_the_scale_out_guide_runs(nats_server: NatsServer, tmp_path: Path) -> None:
    """The guide's python block publishes a demo stream to NATS and reads it back with a
    replay of one symbol."""
    code = _python_blocks(DOC)
    assert code
    out = run_example(code, tmp_path, 6 * TIMEOUT, env={"NATS_URL": nats_server.url})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["ok True", "['BTCUSD'] True"]
