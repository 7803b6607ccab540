"""kill() closes a connection's sinks together, within one deadline, and its text counts the
rows they could not deliver."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter.sinks import Batch, Sink, SinkHealth
from tests.conftest import TIMEOUT, wait_until
from tests.sinks_redis.conftest import free_port

pytestmark = pytest.mark.integration


class HoldingSink(Sink):
    """Keeps every row (a destination that never answers) and, at close, waits for the other
    sinks' close() to start too: closed one after the other, the barrier breaks."""

    kind = "holding"

    def __init__(self, url: str, barrier: threading.Barrier) -> None:
        super().__init__(url)
        self.barrier = barrier
        self.rows = 0

    def write(self, batch: Batch) -> None:
        self.rows += batch.n

    def close(self, timeout: float = 10.0) -> int:
        self.barrier.wait(TIMEOUT)  # BrokenBarrierError unless the others close meanwhile
        return self.rows

    def health(self) -> SinkHealth:
        return SinkHealth(url=self.url, kind=self.kind, state="ok", rows_pending=self.rows)


def test_kill_closes_sinks_together_and_counts_what_they_kept() -> None:
    """Two sinks that each hold their rows until close: kill() closes both at once (each
    waits for the other inside close) and says how many rows they could not deliver."""
    barrier = threading.Barrier(2)
    sinks = [HoldingSink(f"holding://{i}", barrier) for i in range(2)]
    conn = obbws.create_connection(
        provider="demo", name="ps-kill", symbol="btcusd", rate=2_000, sinks=list(sinks)
    )
    assert wait_until(lambda: all(s.rows > 100 for s in sinks))
    text = conn.kill()
    assert not barrier.broken
    assert text == (
        f"Client ps-kill killed. Its sinks could not deliver {sinks[0].rows + sinks[1].rows} "
        "rows (dropped; see the log)."
    )


def test_kill_counts_the_rows_a_dead_process_sink_kept() -> None:
    """A process sink whose server is down: kill()'s text counts every row it held."""
    dead: dict[str, Any] = {
        "url": f"redis://127.0.0.1:{free_port()}/0",
        "process": True,
        "connect_timeout": 0.5,
        "retry_base": 0.05,
    }
    conn = obbws.create_connection(
        provider="demo", name="ps-kill-dead", symbol="btcusd", rate=2_000, sinks=[dead]
    )
    assert wait_until(lambda: conn.status.records_received > 500)
    conn.stop_connection()
    received = conn.status.records_received
    assert conn.kill().endswith(
        f"Its sinks could not deliver {received} rows (dropped; see the log)."
    )
