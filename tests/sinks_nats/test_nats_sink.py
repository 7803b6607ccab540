"""The NATS JetStream sink and listen("nats://...") against a real nats-server (JetStream on,
a temporary store): order and wire form, the cap, replay, dedupe across a server restart, a
dead address, secrets, existing streams, and options refused before anything starts."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import obbws_jupyter as obbws
import obbws_jupyter.sinks as obbws_sinks
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import InvalidParameterError, UnauthorizedError
from obbws_jupyter.listen import Listener, listen
from obbws_jupyter.protocol import Field, FieldType
from obbws_jupyter.sinks import Batch, SinkContext
from obbws_jupyter.sinks.nats import NatsSink, default_stream_name
from tests.conftest import TIMEOUT, RecordWaiter, wait_until
from tests.sinks_nats.conftest import NatsServer, free_port, jetstream

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests drive the sink class itself, in this process; by default a network sink
    runs in a child process (tests/sinks_process covers that path)."""
    monkeypatch.setattr(obbws_sinks, "PROCESS_DEFAULT", {})


def demo(name: str, **kwargs: Any) -> obbws.Connection:
    kwargs.setdefault("symbol", "btcusd,ethusd")
    return obbws.create_connection(provider="demo", name=name, **kwargs)


def nats_sink(conn: obbws.Connection) -> NatsSink:
    (sink,) = conn.get_client()._sink_list
    assert isinstance(sink, NatsSink)
    return sink


def ready(sink: NatsSink) -> bool:
    """Wait until the sink has dialled and set its stream up."""
    return wait_until(lambda: sink.stream_name is not None)


def started(listener: Listener) -> Listener:
    assert listener.wait_connected(TIMEOUT), listener.error
    return listener


def test_records_arrive_in_order_as_the_broadcast_sends_them(nats_server: NatsServer) -> None:
    """Each record reaches JetStream once, in id order, on obbws.<name>.<symbol>, and a NATS
    listener gets dicts identical to a broadcast listener's for the same records, even
    through a small in-flight window."""
    conn = demo("nats-order", rate=2_000, limit=None)
    conn.start_broadcasting(port=0)
    sink = conn.add_sink(nats_server.url, max_inflight=7, flush_interval=0.02)
    assert isinstance(sink, NatsSink) and ready(sink)
    from_nats = started(listen(nats_server.url, subject="obbws.nats-order.>", block=False))
    address = conn.status.broadcast_address
    assert address is not None
    from_ws = started(listen(address, block=False))
    assert from_nats.wait(1_000) and from_ws.wait(1_000)
    conn.stop_connection()
    sink.flush(TIMEOUT)
    last = conn.status.records_received
    assert from_nats.wait(last - from_nats.records[0]["id"] + 1)
    from_nats.stop()
    from_ws.stop()
    ids = [r["id"] for r in from_nats.records]
    assert ids == list(range(ids[0], last + 1))  # in order, none missing, none twice
    ws_by_id = {r["id"]: r for r in from_ws.records}
    common = [r for r in from_nats.records if r["id"] in ws_by_id]
    assert len(common) >= 900
    for record in common:
        twin = ws_by_id[record["id"]]
        assert record == twin and list(record) == list(twin)  # same keys, same order
        assert [type(v) for v in record.values()] == [type(v) for v in twin.values()]
    stream = default_stream_name("nats-order")
    state = nats_server.stream_state(stream)
    assert state.messages == sink.health().rows_written
    info = jetstream(nats_server.url, lambda js: js.stream_info(stream, subjects_filter=">"))
    assert set(info.state.subjects) == {
        "obbws.nats-order.BTCUSD",
        "obbws.nats-order.ETHUSD",
    }


def test_the_stream_cap_mirrors_the_limit(nats_server: NatsServer) -> None:
    """The stream is created with max_msgs = the connection's limit and never holds more;
    it keeps the newest records, as the DuckDB table does."""
    conn = demo("nats-cap", rate=3_000, limit=100)
    sink = conn.add_sink(nats_server.url, flush_interval=0.02)
    assert isinstance(sink, NatsSink) and ready(sink)
    stream = sink.stream_name
    assert stream == "OBBWS_nats-cap"
    assert nats_server.stream_config(stream).max_msgs == 100
    waiter = RecordWaiter(conn.get_client())
    seen = []
    for _ in range(5):
        assert waiter.wait_more(200)
        seen.append(nats_server.stream_state(stream).messages)
    conn.stop_connection()
    sink.flush(TIMEOUT)
    state = nats_server.stream_state(stream)
    assert max(seen) <= 100 and state.messages == 100
    newest = started(listen(nats_server.url, subject="obbws.nats-cap.>", replay=100, block=False))
    assert newest.wait(100)
    newest.stop()
    stored = conn.get_results()["id"].tolist()
    assert [r["id"] for r in newest.records] == stored  # the same 100 newest records


def test_listen_replays_the_last_n_then_goes_live(nats_server: NatsServer) -> None:
    """listen(replay=N) first yields the last N stored records in order, then live ones
    without a gap; with a subject of one symbol, the last N of that symbol."""
    conn = demo("nats-replay", rate=1_000, limit=None)
    sink = conn.add_sink(nats_server.url, flush_interval=0.02)
    assert isinstance(sink, NatsSink) and ready(sink)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(500)
    conn.stop_connection()
    sink.flush(TIMEOUT)
    rows = conn.get_results()
    last = int(rows["id"].iloc[-1])
    btc_before = rows[rows["symbol"] == "BTCUSD"]["id"].tolist()
    both = started(listen(nats_server.url, subject="obbws.nats-replay.>", replay=50, block=False))
    one = started(
        listen(nats_server.url, subject="obbws.nats-replay.BTCUSD", replay=20, block=False)
    )
    assert both.wait(50) and one.wait(20)
    assert [r["id"] for r in both.records] == list(range(last - 49, last + 1))
    assert [r["id"] for r in one.records] == btc_before[-20:]
    conn.restart_connection()  # live records follow the replayed ones
    assert both.wait(250) and one.wait(60)
    both.stop()
    one.stop()
    ids = [r["id"] for r in both.records]
    assert ids == list(range(last - 49, last - 49 + len(ids)))  # no gap, nothing twice
    rows = conn.get_results()
    btc = rows[rows["symbol"] == "BTCUSD"]["id"].tolist()
    got = [r["id"] for r in one.records]
    assert got == btc[len(btc_before) - 20 : len(btc_before) - 20 + len(got)]
    assert {r["symbol"] for r in one.records} == {"BTCUSD"}


def test_a_retried_publish_is_stored_once(nats_server: NatsServer) -> None:
    """Publishing the same records twice (a retry) stores them once: JetStream drops the copy
    by its Nats-Msg-Id and acknowledges it as a duplicate."""
    fields = (Field("symbol", FieldType.STRING), Field("price", FieldType.FLOAT))
    rows = [{"id": i, "received_at": 0, "symbol": "BTCUSD", "price": 1.0 * i} for i in (1, 2, 3)]
    batch = Batch.from_records(rows, fields)
    sink = NatsSink(nats_server.url)
    sink.open(SinkContext(name="nats-dedupe", provider="demo", fields=fields, limit=None))
    try:
        runtime.call_soon(sink.write, batch)
        sink.flush(TIMEOUT)
        runtime.call_soon(sink.write, batch)  # the same records, the same ids: a retry
        sink.flush(TIMEOUT)
        assert sink.health().rows_written == 6 and sink.duplicates == 3
        assert nats_server.stream_state("OBBWS_nats-dedupe").messages == 3
    finally:
        sink.close(TIMEOUT)


def test_a_server_restart_loses_nothing_and_never_pauses_duckdb(nats_server: NatsServer) -> None:
    """With the server stopped mid-stream the sink shows retrying while DuckDB keeps growing;
    after the restart (same port and store) the stream holds exactly the records the
    connection published, each once."""
    conn = demo(
        "nats-restart",
        rate=1_000,
        limit=None,
        sinks=[{"url": nats_server.url, "retry_base": 0.05, "retry_cap": 0.5}],
    )
    sink = nats_sink(conn)
    assert ready(sink)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(500)
    nats_server.stop()
    assert wait_until(lambda: conn.status.sinks[0].state == "retrying")
    stored_at_outage = len(conn.get_results())
    assert waiter.wait_more(1_500)  # ingestion goes on while NATS is down
    assert wait_until(lambda: len(conn.get_results()) >= stored_at_outage + 1_500)
    assert conn.status.sinks[0].rows_pending > 0
    nats_server.start()
    assert wait_until(lambda: conn.status.sinks[0].state == "ok", 3 * TIMEOUT)
    assert waiter.wait_more(500)
    conn.stop_connection()
    sink.flush(3 * TIMEOUT)
    health = conn.status.sinks[0]
    received = conn.status.records_received
    assert len(conn.get_results()) == received  # DuckDB has every record
    message = jetstream(nats_server.url, lambda js: js.get_msg("OBBWS_nats-restart", 1))
    first = json.loads(message.data)["id"]
    published = received - first + 1  # the sink opens just after the stream starts
    assert health.rows_dropped == 0 and health.rows_written == published
    state = nats_server.stream_state("OBBWS_nats-restart")
    assert state.messages == published  # each record once, whatever was sent twice
    assert (state.first_seq, state.last_seq) == (1, published)


def test_a_listener_rides_out_a_server_restart(nats_server: NatsServer) -> None:
    """A NATS listener keeps reading across a server restart: after it, records go on with
    no gap and no repeat."""
    conn = demo("nats-relisten", rate=500, limit=None)
    sink = conn.add_sink(nats_server.url, retry_base=0.05, retry_cap=0.5)
    assert isinstance(sink, NatsSink) and ready(sink)
    listener = started(listen(nats_server.url, block=False))
    assert listener.wait(100)
    nats_server.stop()
    assert wait_until(lambda: sink.health().state == "retrying")
    nats_server.start()
    assert listener.wait(listener.count + 300, 3 * TIMEOUT), listener.error
    listener.stop()
    ids = [r["id"] for r in listener.records]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_a_live_listener_gets_no_old_records_after_a_server_restart(
    nats_server: NatsServer,
) -> None:
    """A listener without replay that had received nothing when the server restarted still
    gets only records published after it joined (not the stream from its start)."""
    conn = demo("nats-fresh", rate=500, limit=None)
    sink = conn.add_sink(nats_server.url, retry_base=0.05, retry_cap=0.5)
    assert isinstance(sink, NatsSink) and ready(sink)
    assert conn.wait(200)
    conn.stop_connection()
    sink.flush(TIMEOUT)
    stored = conn.status.records_received
    listener = started(listen(nats_server.url, block=False))
    nats_server.stop()
    nats_server.start()
    conn.restart_connection()
    assert listener.wait(50, 3 * TIMEOUT), listener.error
    listener.stop()
    assert listener.records[0]["id"] == stored + 1


def test_a_dead_address_shows_retrying_while_store_and_broadcast_go_on() -> None:
    """A sink pointed where no server listens does not fail create_connection: the status
    shows it retrying with its error, and DuckDB and the broadcast get every record."""
    dead = f"nats://127.0.0.1:{free_port()}"
    conn = demo(
        "nats-dead",
        rate=2_000,
        limit=None,
        sinks=[{"url": dead, "max_pending": 500, "connect_timeout": 0.5}],
    )
    conn.start_broadcasting(port=0)
    address = conn.status.broadcast_address
    assert address is not None
    listener = started(listen(address, block=False))
    assert listener.wait(2_000)
    (health,) = conn.status.sinks
    assert health.state == "retrying" and health.rows_written == 0
    assert f"no NATS server answers at {dead}" in str(health.last_error)
    assert health.rows_dropped > 0 and health.rows_pending <= 500
    conn.stop_connection()
    received = conn.status.records_received
    assert listener.wait(received - listener.records[0]["id"] + 1)
    listener.stop()
    assert len(conn.get_results()) == received  # the store kept every record
    ids = [r["id"] for r in listener.records]
    assert ids == list(range(ids[0], received + 1))  # and the broadcast sent each one


def test_an_unreachable_server_shows_before_the_first_record() -> None:
    """add_sink returns at once for a dead address; the sink dials in the background and
    its health turns to retrying with the error even while no record has come yet."""
    dead = f"nats://127.0.0.1:{free_port()}"
    conn = demo("nats-quiet", rate=0)
    sink = conn.add_sink(dead, connect_timeout=0.5)
    assert wait_until(lambda: sink.health().state == "retrying")
    health = sink.health()
    assert f"no NATS server answers at {dead}" in str(health.last_error)
    assert health.rows_written == health.rows_pending == 0


def test_secrets_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A NATS token or password (in the URL or as an option) is masked in the sink's URL,
    repr, status, errors and logs; the right token works and a wrong password is reported."""
    token = "tok-s3cret-4711"
    server = NatsServer(tmp_path / "js", token=token)
    server.start()
    try:
        caplog.set_level(logging.DEBUG, logger="obbws_jupyter")
        conn = demo("nats-secret", rate=500, limit=None)
        good = conn.add_sink(f"nats://{token}@127.0.0.1:{server.port}")
        bad = conn.add_sink(
            f"nats://alice:wr0ng-pa55@127.0.0.1:{server.port}", retry_base=0.05, retry_cap=0.2
        )
        assert isinstance(good, NatsSink) and ready(good)
        assert wait_until(lambda: bad.health().last_error is not None)
        listener = started(listen(server.url, auth_token=token, subject="obbws.>", block=False))
        assert listener.wait(10)
        listener.stop()
        shown = " ".join(
            [repr(good), repr(bad), str(conn.status.model_dump()), repr(conn), caplog.text]
        )
        assert "authorization" in str(bad.health().last_error).lower()
        assert good.health().state == "ok" and bad.health().state == "retrying"
        assert token not in shown and "wr0ng-pa55" not in shown
        assert "********" in good.display_url and "********" in bad.display_url
    finally:
        from tests.conftest import kill_all

        kill_all()
        server.stop()


def test_an_existing_stream_is_used_and_fitted(nats_server: NatsServer) -> None:
    """A stream that already takes the subjects is used as it is; a named shared stream gets
    the connection's subjects added and keeps its own cap unless max_msgs is given."""
    for name, subjects, cap in (("ALL", ["obbws.>"], 50), ("SHARED", ["desk.other.>"], 40)):
        jetstream(
            nats_server.url,
            lambda js, n=name, s=subjects, c=cap: js.add_stream(name=n, subjects=s, max_msgs=c),
        )
    conn = demo("nats-fit", rate=500, limit=1_000)
    found = conn.add_sink(nats_server.url)
    shared = conn.add_sink(
        nats_server.url + "/", stream="SHARED", subject_prefix="desk", max_msgs=None
    )
    assert isinstance(found, NatsSink) and isinstance(shared, NatsSink)
    assert ready(found) and ready(shared)
    assert found.stream_name == "ALL" and shared.stream_name == "SHARED"
    assert nats_server.stream_config("ALL").max_msgs == 50  # not given: left alone
    config = nats_server.stream_config("SHARED")
    assert config.subjects == ["desk.other.>", "desk.nats-fit.>"]
    assert config.max_msgs == -1  # given (None: no cap): changed
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(100)
    conn.stop_connection()
    found.flush(TIMEOUT)
    shared.flush(TIMEOUT)
    assert nats_server.stream_state("ALL").messages == 50
    assert nats_server.stream_state("SHARED").messages == shared.health().rows_written


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"url": "nats://127.0.0.1:notaport"}, "not a NATS server address"),
        ({"url": "nats://127.0.0.1:4222/x"}, "not a NATS server address"),
        ({"stream": "a.b"}, "stream must be"),
        ({"subject_prefix": "ob bws"}, "subject_prefix"),
        ({"subject_prefix": "obbws.>"}, "subject_prefix"),
        ({"max_msgs": 0}, "max_msgs"),
        ({"duplicate_window": -1}, "duplicate_window"),
        ({"storage": "disk"}, "storage"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"user": "alice"}, "user and password"),
        ({"creds": "/no/such.creds"}, "creds"),
        ({"max_pending": 0}, "max_pending"),
    ],
)
def test_bad_sink_options_fail_before_anything_starts(options: dict[str, Any], match: str) -> None:
    """Bad NATS sink options raise InvalidParameterError from create_connection, naming the
    option, and leave no connection behind."""
    spec = {"url": f"nats://127.0.0.1:{free_port()}", **options}
    with pytest.raises(InvalidParameterError, match=match):
        demo("nats-bad", sinks=[spec])
    with pytest.raises(obbws.ObbwsError):
        obbws.get_client("nats-bad")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subject": "a..b"}, "not a valid NATS subject"),
        ({"subject": "a.>.b"}, "not a valid NATS subject"),
        ({"replay": 0}, "replay"),
        ({"stream": "x y"}, "stream"),
        ({"colour": "red"}, "unknown option"),
        ({"name": "desk"}, r"unknown option.*subject='obbws\.<name>\.>'"),  # Redis' way
        ({"connect_timeout": -1}, "connect_timeout"),
    ],
)
def test_bad_listen_options_fail_at_once(kwargs: dict[str, Any], match: str) -> None:
    """listen("nats://...") with a bad option raises InvalidParameterError before it dials."""
    with pytest.raises(InvalidParameterError, match=match):
        listen(f"nats://127.0.0.1:{free_port()}", block=False, **kwargs)


def test_listen_reports_a_missing_server_or_stream(nats_server: NatsServer) -> None:
    """A listener on a dead address, or on a subject no stream holds, ends with a
    BroadcastError saying so."""
    dead = listen(f"nats://127.0.0.1:{free_port()}", block=False, connect_timeout=0.5)
    assert not dead.wait_connected(TIMEOUT)
    assert "no NATS server answers" in str(dead.error)
    nothing = listen(nats_server.url, subject="obbws.nobody.>", block=False)
    assert not nothing.wait_connected(TIMEOUT)
    assert isinstance(nothing.error, obbws.ObbwsError)
    assert "no JetStream stream" in str(nothing.error)


def test_the_cli_reads_one_symbol_from_another_process(nats_server: NatsServer) -> None:
    """`obbws listen nats://... --subject obbws.<name>.BTCUSD --replay 5 --max-records 5`, run
    as a separate process, prints that symbol's 5 newest records as JSON lines."""
    conn = demo("nats-cli", rate=1_000, limit=None)
    sink = conn.add_sink(nats_server.url, flush_interval=0.02)
    assert isinstance(sink, NatsSink) and ready(sink)
    assert RecordWaiter(conn.get_client()).wait_more(100)
    conn.stop_connection()
    sink.flush(TIMEOUT)
    rows = conn.get_results()
    btc = rows[rows["symbol"] == "BTCUSD"]["id"].tolist()
    flags = ["--subject", "obbws.nats-cli.BTCUSD", "--replay", "5", "--max-records", "5"]
    out = subprocess.run(
        [sys.executable, "-m", "obbws_jupyter", "listen", nats_server.url, *flags],
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == btc[-5:]


def test_the_connection_repr_shows_each_sink_and_its_state(tmp_path: Path) -> None:
    """repr(conn) names each sink's kind and state, so a sink that cannot reach its server
    shows as 'retrying' without asking conn.sinks; without sinks the repr says nothing."""
    conn = demo("nats-repr", rate=200)
    assert "sinks=" not in repr(conn)
    conn.add_sink(f"parquet://{tmp_path / 'pq'}")
    dead = conn.add_sink(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.2, retry_cap=0.5)
    assert wait_until(lambda: "sinks='parquet ok, nats retrying'" in repr(conn)), repr(conn)
    assert dead.close(0.1) > 0  # given up now, so kill() need not wait for it
    conn.kill()


@contextlib.contextmanager
def failing_sink(server: NatsServer) -> Iterator[NatsSink]:
    """``server`` started, and a demo connection's sink to it that has failed at least once;
    afterwards the sink gives up its rows at once (kill() need not wait), all is stopped."""
    server.start()
    try:
        conn = demo(f"nats-failing-{server.port}")
        sink = conn.add_sink(server.url, retry_base=0.05, retry_cap=0.2)
        assert isinstance(sink, NatsSink)
        assert wait_until(lambda: sink.health().last_error is not None)
        yield sink
        sink.close(0.1)
    finally:
        from tests.conftest import kill_all

        kill_all()
        server.stop()


def test_a_missing_token_is_reported_as_refused_not_as_no_server(tmp_path: Path) -> None:
    """Against a server that requires a token, a sink and a listener given none say that
    NATS refused the credentials (the listener with UnauthorizedError), not that no server
    answers: the server closes the connection after refusing, and the reset must not hide
    the refusal."""
    server = NatsServer(tmp_path / "js", token="tok-required")
    with failing_sink(server) as sink:
        assert "refused the credentials" in str(sink.health().last_error)
        listener = listen(server.url, subject="obbws.>", block=False)
        assert not listener.wait_connected(TIMEOUT)
        assert isinstance(listener.error, UnauthorizedError)  # as for a ws:// or redis:// URL
        assert "refused the credentials" in str(listener.error)
        assert "start nats-server" not in str(listener.error)


def test_a_server_without_jetstream_is_named_as_such(tmp_path: Path) -> None:
    """A sink pointed at a nats-server started without -js reports, in its last_error, that
    JetStream is off and how to turn it on (nats-py's own error has no text)."""
    with failing_sink(NatsServer(tmp_path / "js", jetstream=False)) as sink:
        error = str(sink.health().last_error)
        assert "does not run JetStream: start nats-server with -js" in error
