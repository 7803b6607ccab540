"""The Redis Streams sink against a real redis-server: order and the broadcast frame's form,
the MAXLEN ~ cap, dedupe of retried deliveries, a server restart mid-stream, a dead address,
masked passwords and options refused before anything starts."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import orjson
import pytest

import obbws_jupyter as obbws
import obbws_jupyter.sinks as obbws_sinks
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.listen import listen
from obbws_jupyter.sinks import Batch, SinkContext, sink_from_url
from obbws_jupyter.sinks.redis import RedisSink
from obbws_providers.demo import TRADE_FIELDS
from tests.conftest import TIMEOUT, RecordWaiter, wait_until
from tests.sinks_redis.conftest import RedisServer, finish, free_port

pytestmark = pytest.mark.integration

KEYS = ["id", "received_at", "date", "symbol", "type", "exchange", "price", "size"]
FAST = {"flush_interval": 0.02, "retry_base": 0.05, "retry_cap": 0.5}


@pytest.fixture(autouse=True)
def _in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests drive the sink class itself, in this process; by default a network sink
    runs in a child process (tests/sinks_process covers that path)."""
    monkeypatch.setattr(obbws_sinks, "PROCESS_DEFAULT", {})


def demo(name: str, **kwargs: Any) -> obbws.Connection:
    kwargs.setdefault("rate", 2_000)
    return obbws.create_connection(provider="demo", name=name, symbol="btcusd,ethusd", **kwargs)


def entries(server: RedisServer, key: str) -> list[tuple[str, dict[str, Any]]]:
    """Every entry of the stream: (entry id, decoded record)."""
    client = server.client()
    try:
        return [(i.decode(), orjson.loads(f[b"record"])) for i, f in client.xrange(key)]
    finally:
        client.close()


def test_records_arrive_in_order_as_broadcast_frames(redis_server: RedisServer) -> None:
    """Every record lands once, in id order, as the broadcast frame's JSON (same keys, order and
    values as a broadcast listener gets), under entry id <received_at ms>-<record id>."""
    conn = demo("rs-order", limit=None, start_broadcast=True, broadcast_port=0)
    on_air = listen(conn.status.broadcast_address, block=False)
    assert on_air.wait_connected(TIMEOUT)
    conn.add_sink(redis_server.url, **FAST)
    assert RecordWaiter(conn.get_client()).wait_more(600)
    finish(conn)
    on_air.stop()
    stored = entries(redis_server, "obbws:rs-order")
    ids = [record["id"] for _, record in stored]
    assert len(ids) >= 600 and ids == list(range(ids[0], ids[0] + len(ids)))
    assert conn.sinks[0].rows_written == len(ids) and conn.sinks[0].rows_dropped == 0
    for entry_id, record in stored:
        ms, _, seq = entry_id.partition("-")
        assert int(seq) == record["id"] and list(record) == KEYS
        assert abs(int(ms) / 1000 - time.time()) < 3600  # the millisecond part is a time
    broadcast = {record["id"]: record for record in on_air.records}
    common = [record for _, record in stored if record["id"] in broadcast]
    assert len(common) >= 500
    assert all(record == broadcast[record["id"]] for record in common)
    sample = common[0]
    assert isinstance(sample["price"], float) and isinstance(sample["date"], str)
    assert datetime.fromisoformat(sample["received_at"]).tzinfo is not None


@pytest.mark.parametrize("method", ["script", "pipeline"])
def test_the_cap_holds_approximately(redis_server: RedisServer, method: str) -> None:
    """With limit=300 the stream keeps at least 300 and fewer than 300 + stream-node-max-entries
    entries (MAXLEN ~ trims whole macro nodes only), the newest ones."""
    conn = demo("rs-cap", rate=5_000, limit=300)
    conn.add_sink(redis_server.url, method=method, **FAST)
    assert RecordWaiter(conn.get_client()).wait_more(3_000, 2 * TIMEOUT)
    finish(conn)
    client = redis_server.client()
    node = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    length = client.xlen("obbws:rs-cap")
    newest = client.xrevrange("obbws:rs-cap", count=1)[0]
    client.close()
    assert 300 <= length < 300 + node
    assert orjson.loads(newest[1][b"record"])["id"] == conn.status.records_received


def test_maxlen_none_keeps_every_entry_and_key_names_the_stream(redis_server: RedisServer) -> None:
    """maxlen=None turns the trim off (limit=100, yet every record stays); key= picks the stream."""
    conn = demo("rs-nocap", rate=5_000, limit=100)
    conn.add_sink(redis_server.url, maxlen=None, key="desk:trades", **FAST)
    assert RecordWaiter(conn.get_client()).wait_more(1_500)
    finish(conn)
    assert len(entries(redis_server, "desk:trades")) == conn.sinks[0].rows_written >= 1_500


def _open_sink(url: str, **options: Any) -> RedisSink:
    sink = sink_from_url(url, **options)
    assert isinstance(sink, RedisSink)
    sink.open(SinkContext(name="rs-direct", provider="demo", fields=TRADE_FIELDS, limit=None))
    return sink


def _batch(first_id: int, n: int) -> Batch:
    now = time.time_ns()
    rows = [
        {"id": i, "received_at": now, "date": now, "symbol": "BTCUSD", "type": "trade"}
        | {"exchange": "DEMO", "price": 100.0 + i, "size": 1.5}
        for i in range(first_id, first_id + n)
    ]
    return Batch.from_records(rows, TRADE_FIELDS)


@pytest.mark.parametrize("method", ["script", "pipeline"])
def test_a_retried_delivery_is_stored_once(redis_server: RedisServer, method: str) -> None:
    """A delivery retried after part of it reached Redis (the connection broke before the reply)
    sends the same entry ids; Redis refuses those it holds, counted as already stored."""
    sink = _open_sink(redis_server.url, method=method, flush_interval=60)
    batch = _batch(1, 2_500)
    ids, values = sink._entries(batch)  # the first attempt: ids fixed, "part of it stored"
    client = redis_server.client()
    for entry_id, value in zip(ids[:1_200], values, strict=False):
        client.xadd("obbws:rs-direct", {"record": value}, id=entry_id)
    runtime.run(sink.deliver([batch]), TIMEOUT)  # the retry
    ids = [orjson.loads(f[b"record"])["id"] for _, f in client.xrange("obbws:rs-direct")]
    client.close()
    sink.close()
    assert ids == list(range(1, 2_501))
    assert (sink.duplicates, sink.conflicts) == (1_200, 0)


def test_a_stream_with_newer_ids_is_reported(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries refused on a first attempt (another writer holds newer ids) are counted as
    conflicts and logged with the fix, not taken for retries."""
    client = redis_server.client()
    client.xadd("obbws:rs-direct", {"record": b"{}"}, id=f"{int(time.time() * 1000) + 60_000}-1")
    client.close()
    sink = _open_sink(redis_server.url, flush_interval=60)
    with caplog.at_level(logging.WARNING, "obbws_jupyter.sinks.redis"):
        runtime.run(sink.deliver([_batch(1, 10)]), TIMEOUT)
    sink.close()
    assert (sink.duplicates, sink.conflicts) == (0, 10)
    assert "own key=" in caplog.text


def test_a_restarted_server_ends_with_every_record_once(durable_redis: RedisServer) -> None:
    """Redis stopped for a while and restarted (same port and data) mid-stream: the sink shows
    retrying meanwhile, DuckDB keeps storing, and afterwards the stream holds every record
    exactly once, in order."""
    conn = demo("rs-restart", limit=None, sinks=[{"url": durable_redis.url, **FAST}])
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(400)
    durable_redis.stop()
    assert wait_until(lambda: conn.sinks[0].state == "retrying")
    stored = conn.status.records_stored
    assert waiter.wait_more(5_000, 2 * TIMEOUT)  # ~2.5 s: the stream goes on while Redis is down
    assert wait_until(lambda: conn.status.records_stored >= stored + 4_000)  # and DuckDB too
    assert conn.sinks[0].last_error
    durable_redis.start()
    assert wait_until(lambda: conn.sinks[0].state == "ok", 2 * TIMEOUT)
    assert waiter.wait_more(200)
    finish(conn)
    ids = [record["id"] for _, record in entries(durable_redis, "obbws:rs-restart")]
    received = conn.status.records_received
    assert ids == list(range(1, received + 1))
    assert len(conn.get_results()) == received and conn.status.dropped_records == 0
    health = conn.sinks[0]
    assert health.rows_written == received and health.rows_dropped == 0


def test_a_dead_address_is_reported_and_slows_nothing(tmp_path: Any) -> None:
    """A sink at an address where nothing listens: add_sink succeeds, status.sinks says
    retrying with the error, and DuckDB and the broadcast keep pace with a twin connection
    that has no sink (counts compared, every record stored and broadcast)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    sink = {"url": dead, "connect_timeout": 0.5, **FAST}
    conn = demo(
        "rs-dead", rate=1_000, limit=None, sinks=[sink], start_broadcast=True, broadcast_port=0
    )
    twin = demo("rs-twin", rate=1_000, limit=None)
    on_air = listen(conn.status.broadcast_address, block=False)
    assert on_air.wait_connected(TIMEOUT)
    assert wait_until(lambda: conn.sinks[0].state == "retrying")
    assert "connect" in str(conn.sinks[0].last_error).lower()
    assert RecordWaiter(conn.get_client()).wait_more(2_000, 2 * TIMEOUT)
    conn.stop_connection()
    twin.stop_connection()
    status = conn.status
    assert status.records_received >= 0.8 * twin.status.records_received
    assert len(conn.get_results()) == status.records_received and status.dropped_records == 0
    assert on_air.wait(1, TIMEOUT)
    ids = [record["id"] for record in on_air.records]
    assert ids == list(range(ids[0], status.records_received + 1))  # every one since the join
    on_air.stop()
    health = conn.sinks[0]
    assert health.rows_written == 0
    assert health.rows_pending + health.rows_dropped == status.records_received
    assert conn.get_client()._sink_list[0].close(timeout=0.2) == status.records_received


def test_the_password_never_shows(
    secured_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The URL's password works for AUTH and is masked in the sink's repr, status and logs; a
    wrong one shows as retrying with an error that names no password."""
    secret = secured_redis.password
    assert secret
    wrong = secured_redis.url.replace(secret, "not-the-pw-1234")
    with caplog.at_level(logging.DEBUG, "obbws_jupyter"):
        conn = demo("rs-secret", limit=None, sinks=[{"url": secured_redis.url, **FAST}])
        conn.add_sink(wrong, **FAST)
        assert RecordWaiter(conn.get_client()).wait_more(300)
        assert wait_until(lambda: conn.sinks[1].state == "retrying")
        good, bad = conn.get_client()._sink_list
        shown = [repr(good), conn.status.model_dump_json(), str(conn.sinks), repr(conn)]
        assert good.health().rows_written > 0
        assert bad.close(timeout=0.2) > 0  # it could deliver nothing
        conn.kill()
    text = "\n".join([*shown, caplog.text])
    assert secret not in text and "not-the-pw-1234" not in text
    assert "********" in text


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("redis://127.0.0.1:6379/zero", {}, "database must be a number"),
        ("redis://:6379/0", {}, "no host"),
        ("redis://127.0.0.1:port/0", {}, "Invalid Redis URL"),
        ("redis://127.0.0.1:6379/0", {"maxlen": 0}, "maxlen"),
        ("redis://127.0.0.1:6379/0", {"maxlen": "all"}, "maxlen"),
        ("redis://127.0.0.1:6379/0", {"connect_timeout": -1}, "connect_timeout"),
        ("redis://127.0.0.1:6379/0", {"timeout": "10"}, "timeout"),
        ("redis://127.0.0.1:6379/0", {"key": ""}, "key"),
        ("redis://127.0.0.1:6379/0", {"method": "lua"}, "method"),
        ("redis://127.0.0.1:6379/0", {"entry_ids": "mine"}, "entry_ids"),
        ("redis://127.0.0.1:6379/0", {"drop": "middle"}, "drop"),
    ],
)
def test_bad_sink_options_fail_before_anything_starts(
    url: str, options: dict[str, Any], match: str
) -> None:
    """A bad Redis URL or option raises InvalidParameterError from create_connection, and no
    connection is left behind."""
    with pytest.raises(InvalidParameterError, match=match):
        demo("rs-bad", sinks=[{"url": url, **options}])
    with pytest.raises(obbws.ObbwsError):
        obbws.get_client("rs-bad")


def test_an_unknown_sink_option_is_refused() -> None:
    """An option the sink does not know raises InvalidParameterError naming it (and the known
    ones) from add_sink, and no sink is added."""
    conn = demo("rs-unknown")
    with pytest.raises(InvalidParameterError, match=r"colour.*known"):
        conn.add_sink("redis://127.0.0.1:6379/0", colour="red")
    assert conn.sinks == []


def test_a_user_without_scripts_falls_back_to_xadd(redis_server: RedisServer) -> None:
    """A Redis user whose ACL forbids scripts still gets every record: the sink switches from
    the Lua script to one XADD per entry, once."""
    admin = redis_server.client()
    admin.acl_setuser(
        "capture",
        enabled=True,
        passwords=["+capture-pw"],
        keys=["*"],
        commands=["+@all", "-@scripting"],
    )
    admin.close()
    url = f"redis://capture:capture-pw@127.0.0.1:{redis_server.port}/0"
    conn = demo("rs-noscript", limit=None, sinks=[{"url": url, **FAST}])
    assert RecordWaiter(conn.get_client()).wait_more(300)
    finish(conn)
    sink = conn.get_client()._sink_list[0]
    assert isinstance(sink, RedisSink) and sink.method == "pipeline"
    ids = [record["id"] for _, record in entries(redis_server, "obbws:rs-noscript")]
    assert ids == list(range(1, conn.status.records_received + 1))


def test_rediss_carries_records_over_tls(tls_redis: RedisServer) -> None:
    """A rediss:// URL (TLS, the CA given in the URL's query) works for the sink and for
    listen(), with the same records."""
    conn = demo("rs-tls", limit=None, sinks=[{"url": tls_redis.url, **FAST}])
    assert RecordWaiter(conn.get_client()).wait_more(200)
    finish(conn)
    stored = [record for _, record in entries(tls_redis, "obbws:rs-tls")]
    assert [r["id"] for r in stored] == list(range(1, conn.status.records_received + 1))
    listener = listen(tls_redis.url, name="rs-tls", replay=50, block=False)
    assert listener.wait(50, TIMEOUT), listener.error
    listener.stop()
    assert list(listener.records) == stored[-50:]
