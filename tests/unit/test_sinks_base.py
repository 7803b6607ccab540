"""The sink seam's own logic, without a real destination: Batch conversions, and the batching
bases' backlog bound, drop policies, retry with backoff, flush and close accounting."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from obbws_jupyter import runtime
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsTimeoutError
from obbws_jupyter.protocol import Field, FieldType
from obbws_jupyter.sinks import AsyncBatchingSink, Batch, BatchingSink, SinkContext, sink_from_url
from tests.conftest import TIMEOUT

FIELDS = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("price", FieldType.FLOAT),
)
CONTEXT = SinkContext(name="t", provider="demo", fields=FIELDS)


def rows(first: int, n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "received_at": 7, "date": 1_000 + i, "symbol": "X", "price": float(i)}
        for i in range(first, first + n)
    ]


def test_batch_converts_between_rows_and_columns_once() -> None:
    """A batch built from rows gives columns in table order (None where missing), and one
    built from columns gives rows without the missing values; both are cached."""
    records = rows(1, 2)
    del records[1]["price"]
    batch = Batch.from_records(records, FIELDS)
    assert batch.names == ("id", "received_at", "date", "symbol", "price")
    assert batch.columns() == {
        "id": [1, 2],
        "received_at": [7, 7],
        "date": [1001, 1002],
        "symbol": ["X", "X"],
        "price": [1.0, None],
    }
    assert batch.columns() is batch.columns()
    back = Batch(FIELDS, columns=batch.columns())
    assert back.rows() == records
    assert (len(back), back.first_id, back.last_id) == (2, 1, 2)


class Recorder(BatchingSink):
    """Delivers into a list; ``fail`` makes deliveries raise; ``gate`` holds them."""

    kind = "recorder"

    def __init__(self, **options: Any) -> None:
        super().__init__("recorder://", **options)
        self.delivered: list[int] = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def deliver(self, batches: list[Batch]) -> None:
        self.gate.wait()
        if self.fail:
            raise ConnectionError("destination down")
        for batch in batches:
            self.delivered.extend(int(i) for i in batch.column("id"))


def test_batching_sink_delivers_in_order_and_flushes() -> None:
    """Rows written are delivered in order; flush returns once they are; health counts them."""
    sink = Recorder(flush_interval=0.01)
    sink.open(CONTEXT)
    try:
        for first in range(1, 100, 10):
            sink.write(Batch.from_records(rows(first, 10), FIELDS))
        sink.flush(TIMEOUT)
        assert sink.delivered == list(range(1, 101))
        health = sink.health()
        assert (health.state, health.rows_written, health.rows_pending) == ("ok", 100, 0)
    finally:
        assert sink.close() == 0


def test_failed_deliveries_are_retried_then_recover() -> None:
    """A failing destination keeps the rows (state retrying, last_error set); once it works
    again they are delivered in order and the error clears."""
    sink = Recorder(flush_interval=0.01, retry_base=0.01, retry_cap=0.05)
    sink.open(CONTEXT)
    try:
        sink.fail = True
        sink.write(Batch.from_records(rows(1, 5), FIELDS))
        with pytest.raises(ObbwsTimeoutError, match="destination down"):
            sink.flush(0.3)
        health = sink.health()
        assert health.state == "retrying" and "destination down" in str(health.last_error)
        assert health.rows_pending == 5
        sink.fail = False
        sink.write(Batch.from_records(rows(6, 5), FIELDS))
        sink.flush(TIMEOUT)
        assert sink.delivered == list(range(1, 11))
        assert sink.health().state == "ok" and sink.health().last_error is None
    finally:
        sink.close()


@pytest.mark.parametrize(("drop", "kept"), [("oldest", [21, 30]), ("newest", [1, 10])])
def test_the_backlog_is_bounded_and_drops_are_counted(drop: str, kept: list[int]) -> None:
    """Beyond max_pending rows the drop policy discards the oldest or newest rows, counted."""
    sink = Recorder(max_pending=10, flush_interval=0.01, drop=drop)
    sink.gate.clear()  # the destination hangs
    sink.open(CONTEXT)
    try:
        sink.write(Batch.from_records(rows(1, 10), FIELDS))
        for first in (11, 21):
            sink.write(Batch.from_records(rows(first, 10), FIELDS))
        pending = sink.health().rows_pending
        assert pending <= 10
        sink.gate.set()
        sink.flush(TIMEOUT)
        health = sink.health()
        assert health.rows_written + health.rows_dropped == 30
        assert health.rows_dropped >= 10
        if drop == "oldest":
            assert sink.delivered[-10:] == list(range(kept[0], kept[1] + 1))
        else:
            assert sink.delivered[:10] == list(range(kept[0], kept[1] + 1))
    finally:
        sink.close()


def test_close_reports_rows_it_could_not_deliver() -> None:
    """Closing a sink whose destination is down returns (and counts) what is lost."""
    sink = Recorder(flush_interval=0.01, retry_base=0.01, retry_cap=0.02)
    sink.open(CONTEXT)
    sink.fail = True
    sink.write(Batch.from_records(rows(1, 7), FIELDS))
    assert sink.close(timeout=0.3) == 7
    assert sink.health().state == "closed" and sink.health().rows_dropped == 7


class AsyncRecorder(AsyncBatchingSink):
    kind = "arecorder"

    def __init__(self, **options: Any) -> None:
        super().__init__("arecorder://", **options)
        self.delivered: list[int] = []
        self.loop_thread = False

    async def deliver(self, batches: list[Batch]) -> None:
        self.loop_thread = runtime.in_loop_thread()
        for batch in batches:
            self.delivered.extend(int(i) for i in batch.column("id"))


def test_async_batching_sink_delivers_on_the_loop() -> None:
    """The asyncio base delivers on the obbws loop, in order, and flushes from sync code."""
    sink = AsyncRecorder(flush_interval=0.01)
    sink.open(CONTEXT)
    try:
        for first in (1, 4):
            runtime.call_soon(sink.write, Batch.from_records(rows(first, 3), FIELDS))
        sink.flush(TIMEOUT)
        assert sink.delivered == [1, 2, 3, 4, 5, 6] and sink.loop_thread
    finally:
        assert sink.close() == 0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_pending": 0}, "max_pending"),
        ({"batch_rows": "many"}, "batch_rows"),
        ({"flush_interval": -1}, "flush_interval"),
        ({"drop": "random"}, "drop"),
    ],
)
def test_bad_sink_options_are_refused(options: dict[str, Any], match: str) -> None:
    """Invalid batching options raise InvalidParameterError naming the option."""
    with pytest.raises(InvalidParameterError, match=match):
        Recorder(**options)


@pytest.mark.parametrize(
    ("url", "match"), [("nowhere", "URL"), ("ftp://x", "known schemes"), (3, "URL")]
)
def test_unknown_sink_urls_are_refused(url: Any, match: str) -> None:
    """A sink URL without a known scheme raises InvalidParameterError listing the schemes."""
    with pytest.raises(InvalidParameterError, match=match):
        sink_from_url(url)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Recorder(flush_intervall=1), r"unknown option\(s\) for the recorder sink: "),
        (
            lambda: sink_from_url("nats://127.0.0.1:4222", max_msg=5),
            r"nats sink: max_msg; .*max_msgs",
        ),
    ],
    ids=["own-sink", "nats"],
)
def test_unknown_sink_options_name_themselves(make: Any, match: str) -> None:
    """A misspelt option raises InvalidParameterError naming it and the known options, not a
    TypeError from a private base class."""
    with pytest.raises(InvalidParameterError, match=match) as caught:
        make()
    assert "flush_interval" in str(caught.value)  # the batching options are listed too


def test_a_missing_client_library_names_the_extra_for_sinks_and_listen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sink or a listen() whose engine library is not installed raises before anything
    starts, naming the library and the extra that installs it."""
    import importlib

    from obbws_jupyter.sinks import import_engine

    listen_module = importlib.import_module("obbws_jupyter.listen")

    with pytest.raises(InvalidParameterError, match=r"obbws-jupyter\[redis\]"):
        import_engine("redis", "obbws_no_such_client", "the redis:// sink")
    monkeypatch.setitem(listen_module.ENGINE_SOURCES, "nats", "obbws_no_such_client")
    with pytest.raises(InvalidParameterError, match=r"listening to nats://.*obbws-jupyter\[nats\]"):
        listen_module.listen("nats://127.0.0.1:4222", block=False)
