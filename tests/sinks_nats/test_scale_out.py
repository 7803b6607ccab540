"""The scale-out example (docs/scale_out.md) as it is meant to run: two capture processes,
each a shard of the demo provider with its own symbols, publishing to one nats-server, and a
reader process that sees both shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.sinks_nats.conftest import NatsServer

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scale_out"


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def captures(nats_server: NatsServer) -> Iterator[list[subprocess.Popen[str]]]:
    """Two capture processes (shards), stopped with SIGTERM after the test."""
    procs = [
        spawn(
            "capture.py",
            "--name",
            name,
            "--symbols",
            symbols,
            "--nats",
            nats_server.url,
            "--param",
            "rate=200",
        )
        for name, symbols in (("shard-a", "btcusd"), ("shard-b", "ethusd,solusd"))
    ]
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


def test_two_capture_processes_and_one_reader(
    nats_server: NatsServer, captures: list[subprocess.Popen[str]]
) -> None:
    """Both shards' records reach the reader (replayed, then live), each shard in id order;
    the captures stop cleanly on SIGTERM having published every record they captured."""
    for proc in captures:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("capturing"), proc.stderr
    reader = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "reader.py"),
            "--nats",
            nats_server.url,
            "--replay",
            "20",
            "--max-records",
            "400",
            "--wait",
            str(TIMEOUT),
        ],
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
        check=False,
    )
    assert reader.returncode == 0, reader.stderr[-2000:]
    records = [json.loads(line) for line in reader.stdout.splitlines()]
    assert len(records) == 400
    by_shard = {
        "a": [r["id"] for r in records if r["symbol"] == "BTCUSD"],
        "b": [r["id"] for r in records if r["symbol"] in ("ETHUSD", "SOLUSD")],
    }
    assert by_shard["a"] and by_shard["b"]
    assert len(by_shard["a"]) + len(by_shard["b"]) == 400
    for ids in by_shard.values():
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # in order, no gap
    for shard, proc in zip(("shard-a", "shard-b"), captures, strict=True):
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=3 * TIMEOUT)
        assert proc.returncode == 0, err[-2000:]
        name, _, counts = out.strip().rpartition("\n")[2].partition(": ")
        assert name == shard
        captured, published = (int(word) for word in counts.split() if word.isdigit())
        assert 0 < published == captured  # the sink opened before the first record
