"""docs/sinks.md's Redis Streams example runs as written against a real redis-server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.integration.test_docs import run_example
from tests.sinks_redis.conftest import RedisServer

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "sinks.md"
DOC_URL = "redis://127.0.0.1:6379/0"  # the address the guide shows


def redis_section_blocks() -> str:
    """The ``py`` blocks of the guide's "Redis Streams" section (the ``python`` blocks of the
    page run without a Redis server, in tests/sinks_parquet/test_docs.py)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Redis Streams\n", 1)[1].split("\n## ", 1)[0]
    return "\n\n".join(re.findall(r"^```py\n(.*?)^```", section, re.MULTILINE | re.DOTALL))


def test_the_redis_guide_runs(redis_server: RedisServer, tmp_path: Path) -> None:
    """The guide's Redis example publishes a demo stream with sinks=[...] and reads it back
    with a replay, printing what its comments say."""
    code = redis_section_blocks()
    assert DOC_URL in code
    out = run_example(code.replace(DOC_URL, redis_server.url), tmp_path, 6 * TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "True True"
    assert lines[1].startswith(f"[SinkHealth(url='{redis_server.url}', kind='redis', state='ok'")
    assert lines[2] == "Client desk killed."
