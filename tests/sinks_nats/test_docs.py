"""docs/scale_out.md's notebook example runs as written against a real nats-server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.sinks_nats.conftest import NatsServer

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale_out.md"


def test_the_scale_out_guide_runs(nats_server: NatsServer, tmp_path: Path) -> None:
    """The guide's python block publishes a demo stream to NATS and reads it back with a
    replay of one symbol."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks
    script = tmp_path / "example.py"
    script.write_text("\n\n".join(blocks))
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
        cwd=tmp_path,
        env={**os.environ, "NATS_URL": nats_server.url},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["ok True", "['BTCUSD'] True"]
