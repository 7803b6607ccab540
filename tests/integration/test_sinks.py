"""Sinks on a live demo stream: conn.add_sink / remove_sink / sinks, create_connection(sinks=),
status.sinks, and a slow or failing sink that never slows the stream or the DuckDB store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.sinks import _SCHEMES, Batch, BatchingSink, register_sink
from tests.conftest import TIMEOUT, RecordWaiter, wait_until

pytestmark = pytest.mark.integration


class MemorySink(BatchingSink):
    """Keeps every row it is given (a test destination); ``hold`` stalls deliveries and
    ``fail`` makes them raise."""

    kind = "memory"
    instances: list[MemorySink] = []

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.rows: list[dict[str, Any]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail = False
        MemorySink.instances.append(self)

    def deliver(self, batches: list[Batch]) -> None:
        self.hold.wait()
        if self.fail:
            raise ConnectionError("memory sink refuses")
        for batch in batches:
            self.rows.extend(batch.rows())


@pytest.fixture(autouse=True)
def memory_scheme() -> Iterator[None]:
    register_sink("memory", MemorySink, replace=True)
    MemorySink.instances.clear()
    yield
    _SCHEMES.pop("memory", None)
    for sink in MemorySink.instances:
        sink.hold.set()


def demo(name: str, **kwargs: Any) -> obbws.Connection:
    return obbws.create_connection(provider="demo", name=name, symbol="btcusd,ethusd", **kwargs)


def test_a_sink_gets_every_stored_record_in_order() -> None:
    """A sink added to a running stream receives the records from then on, in id order, with
    the same keys and values as the stored rows; status.sinks reports it."""
    conn = demo("sink-order", rate=2_000, limit=None)
    sink = conn.add_sink("memory://one", flush_interval=0.02)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(500)
    conn.stop_connection()
    sink.flush(TIMEOUT)
    ids = [r["id"] for r in sink.rows]
    assert ids == sorted(ids) and len(ids) >= 500
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing missed
    stored = conn.get_results().set_index("id")
    first = sink.rows[0]
    assert first["symbol"] == stored.loc[first["id"], "symbol"]
    assert first["price"] == stored.loc[first["id"], "price"]
    (status,) = conn.status.sinks
    assert (status.url, status.kind, status.state) == ("memory://one", "memory", "ok")
    assert status.rows_written == len(ids) and status.rows_dropped == 0


def test_a_stalled_sink_never_slows_the_stream_and_counts_its_drops() -> None:
    """A sink whose destination hangs fills its bounded backlog and drops (counted) while
    the stream and the DuckDB store keep their pace."""
    conn = demo("sink-slow", rate=5_000, limit=None)
    sink = conn.add_sink("memory://slow", max_pending=1_000, flush_interval=0.02)
    sink.hold.clear()
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(5_000, 3 * TIMEOUT)
    status = conn.status
    assert status.records_received >= 5_000
    (health,) = status.sinks
    assert health.rows_pending <= 1_000 and health.rows_dropped > 0
    assert health.lag_seconds is not None
    conn.stop_connection()
    assert len(conn.get_results()) == conn.status.records_received  # the store kept all
    sink.hold.set()


def test_a_failing_sink_shows_its_error_and_recovers() -> None:
    """A sink whose writes fail shows state retrying and the error in the status, then ok
    again once its destination works, with every row delivered."""
    conn = demo("sink-fail", rate=500, limit=None)
    sink = conn.add_sink("memory://flaky", flush_interval=0.02, retry_base=0.02, retry_cap=0.1)
    sink.fail = True
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(50)
    assert wait_until(lambda: conn.status.sinks[0].state == "retrying")
    assert "memory sink refuses" in str(conn.status.sinks[0].last_error)
    sink.fail = False
    conn.stop_connection()
    sink.flush(TIMEOUT)
    health = conn.status.sinks[0]
    assert health.state == "ok" and health.last_error is None and health.rows_dropped == 0
    # every record since the sink was added, in order, none lost across the failures
    ids = [int(row["id"]) for row in sink.rows]
    assert health.rows_written == len(ids) > 0
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert ids[-1] == int(conn.get_results()["id"].iloc[-1])


def test_sinks_from_create_connection_and_remove_sink() -> None:
    """create_connection(sinks=[...]) opens them; remove_sink closes one and reports its
    undelivered rows; kill closes the rest."""
    conn = demo(
        "sink-create", rate=500, sinks=["memory://a", {"url": "memory://b", "drop": "newest"}]
    )
    assert [s.url for s in conn.sinks] == ["memory://a", "memory://b"]
    assert conn.remove_sink("memory://a") == 0
    assert [s.url for s in conn.sinks] == ["memory://b"]
    with pytest.raises(InvalidParameterError, match="no sink"):
        conn.remove_sink("memory://a")
    b = MemorySink.instances[1]
    conn.kill()
    assert b.health().state == "closed"


def test_remove_sink_takes_the_shown_url_or_the_sink() -> None:
    """remove_sink accepts the masked URL that conn.sinks shows (the user cannot see the
    secret in it) and the Sink object add_sink returned, as well as the URL given."""
    conn = demo("sink-remove", rate=200)
    first = conn.add_sink("memory://user:pa55word@host/a")
    conn.add_sink("memory://user:pa55word@host/b")
    shown = conn.sinks[0].url
    assert "pa55word" not in shown
    assert conn.remove_sink(shown) == 0
    assert [s.url for s in conn.sinks] == ["memory://user:********@host/b"]
    with pytest.raises(InvalidParameterError, match="no sink"):
        conn.remove_sink(first)  # already removed
    second = MemorySink.instances[1]
    assert conn.remove_sink(second) == 0 and conn.sinks == []
    conn.kill()


@pytest.mark.parametrize(
    ("sinks", "match"),
    [(["ftp://nowhere"], "known schemes"), ([42], "sinks takes"), ("memory", "URL")],
)
def test_bad_sinks_fail_before_anything_starts(sinks: Any, match: str) -> None:
    """An unusable sink raises from create_connection and no connection is left."""
    with pytest.raises(InvalidParameterError, match=match):
        demo("sink-bad", sinks=sinks)
    with pytest.raises(obbws.ObbwsError):
        obbws.get_client("sink-bad")
