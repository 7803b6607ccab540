"""The twelve endpoints end to end against the demo provider on real loopback sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    NameInUseError,
    NotBroadcastingError,
    ObbwsError,
    PortInUseError,
    ProviderAuthError,
    ProviderConnectionError,
    SchemaMismatchError,
    SymbolError,
    UnauthorizedError,
    UnknownConnectionError,
    UnknownProviderError,
)
from obbws_jupyter.listen import listen
from tests.conftest import TIMEOUT, RecordWaiter, wait_until

pytestmark = pytest.mark.integration

SEED_KEYS = [
    "name",
    "auth_required",
    "subscribed_symbols",
    "is_running",
    "provider_pid",
    "is_broadcasting",
    "broadcast_address",
    "broadcast_pid",
    "results_file",
    "table_name",
    "save_results",
]


def _demo(name: str = "t", **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("symbol", "btcusd,ethusd")
    kwargs.setdefault("rate", 500)
    return obbws.create_connection(provider="demo", name=name, **kwargs)


def _waiter(conn) -> RecordWaiter:  # type: ignore[no-untyped-def]
    return RecordWaiter(conn.get_client())


def test_create_connection_streams_into_typed_results() -> None:
    """A demo connection returns at once, runs, and stores typed rows with tz-aware dates."""
    conn = _demo()
    waiter = _waiter(conn)
    status = conn.status
    assert list(status.model_dump())[: len(SEED_KEYS)] == SEED_KEYS
    assert status.is_running and status.provider_pid == os.getpid()
    assert status.subscribed_symbols == "BTCUSD,ETHUSD"
    assert not status.is_broadcasting and status.broadcast_pid is None
    assert waiter.wait(20)
    df = conn.get_results()
    assert len(df) >= 20
    assert list(df.columns) == [
        "id",
        "received_at",
        "date",
        "symbol",
        "type",
        "exchange",
        "price",
        "size",
    ]
    assert str(df["date"].dt.tz) == "America/New_York"
    assert df["id"].is_monotonic_increasing
    assert set(df["symbol"]) <= {"BTCUSD", "ETHUSD"}
    assert (df["price"] > 0).all()
    assert pd.api.types.is_float_dtype(df["size"])


def test_module_functions_and_methods_cover_every_endpoint() -> None:
    """Every endpoint works by name and as a method, returning status, text or a DataFrame."""
    conn = _demo("ep")
    waiter = _waiter(conn)
    assert waiter.wait(5)
    assert isinstance(obbws.get_results("ep"), pd.DataFrame)
    assert obbws.get_client("ep") is conn.get_client()
    statuses = obbws.get_client_status("all")
    assert [s.name for s in statuses] == ["ep"]
    st = obbws.subscribe("ep", "solusd")
    assert st.subscribed_symbols == "BTCUSD,ETHUSD,SOLUSD"
    assert waiter.wait_symbol("SOLUSD")
    st = conn.unsubscribe("ethusd")
    assert st.subscribed_symbols == "BTCUSD,SOLUSD"
    st = obbws.start_broadcasting("ep", port=0)
    assert st.is_broadcasting and st.broadcast_address.startswith("ws://127.0.0.1:")
    assert st.broadcast_pid == os.getpid()
    st = conn.stop_broadcasting()
    assert not isinstance(st, str) and not st.is_broadcasting
    st = obbws.stop_connection("ep")
    assert not st.is_running and st.provider_pid is None
    st = conn.restart_connection()
    assert st.is_running and st.subscribed_symbols == "BTCUSD,SOLUSD"
    assert obbws.clear_results("ep").endswith("results cleared from ep.")
    assert conn.kill() == "Client ep killed."
    assert obbws.default_registry().names() == []
    with pytest.raises(UnknownConnectionError):
        conn.get_results()


def test_stop_broadcasting_removes_a_stopped_connection() -> None:
    """stop_broadcasting on a connection whose stream is stopped removes it (OpenBB's rule)."""
    conn = _demo("sb")
    conn.start_broadcasting(port=0)
    conn.stop_connection()
    message = conn.stop_broadcasting()
    assert message == "Client sb stopped broadcasting and was not running, client removed."
    assert "sb" not in obbws.default_registry().names()
    with pytest.raises(NotBroadcastingError):
        _demo("sb2").stop_broadcasting()


def test_unknown_provider_lists_the_installed_ones() -> None:
    """An unknown provider name fails before anything starts and names the known ones."""
    with pytest.raises(UnknownProviderError, match="demo") as info:
        obbws.create_connection(provider="nope", name="x", symbol="a")
    assert "replay" in str(info.value)
    assert obbws.default_registry().names() == []


def test_duplicate_name_is_refused() -> None:
    """A second create_connection with a used name fails; the first keeps running."""
    conn = _demo("dup")
    with pytest.raises(NameInUseError, match="already connected"):
        _demo("dup")
    assert conn.status.is_running
    conn.stop_connection()
    with pytest.raises(NameInUseError, match="not running"):
        _demo("dup")


ENDPOINT_CALLS = {
    "get_results": lambda n, t: obbws.get_results(n, auth_token=t),
    "clear_results": lambda n, t: obbws.clear_results(n, auth_token=t),
    "subscribe": lambda n, t: obbws.subscribe(n, "solusd", auth_token=t),
    "unsubscribe": lambda n, t: obbws.unsubscribe(n, "btcusd", auth_token=t),
    "get_client": lambda n, t: obbws.get_client(n, auth_token=t),
    "get_client_status": lambda n, t: obbws.get_client_status(n, auth_token=t),
    "stop_connection": lambda n, t: obbws.stop_connection(n, auth_token=t),
    "restart_connection": lambda n, t: obbws.restart_connection(n, auth_token=t),
    "start_broadcasting": lambda n, t: obbws.start_broadcasting(n, auth_token=t, port=0),
    "stop_broadcasting": lambda n, t: obbws.stop_broadcasting(n, auth_token=t),
    "kill": lambda n, t: obbws.kill(n, auth_token=t),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_CALLS))
def test_unknown_name_is_refused_by_every_endpoint(endpoint: str) -> None:
    """Every endpoint refuses a name that is not registered."""
    _demo("known", rate=0)
    with pytest.raises(UnknownConnectionError):
        ENDPOINT_CALLS[endpoint]("unknown", None)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_CALLS))
def test_auth_token_is_checked_by_every_endpoint(endpoint: str) -> None:
    """Every endpoint refuses a missing or wrong token and accepts the right one."""
    conn = _demo("sec", auth_token="s3cret-token", rate=0)
    with pytest.raises(UnauthorizedError, match="required"):
        ENDPOINT_CALLS[endpoint]("sec", None)
    with pytest.raises(UnauthorizedError, match="Invalid"):
        ENDPOINT_CALLS[endpoint]("sec", "wrong")
    assert conn.status.is_running  # nothing was changed by the refused calls
    if endpoint == "stop_broadcasting":
        conn.start_broadcasting(port=0)
    ENDPOINT_CALLS[endpoint]("sec", "s3cret-token")
    assert "s3cret-token" not in repr(conn)


def test_token_never_shows_in_status_or_repr() -> None:
    """The auth token appears in no status, repr or HTML repr."""
    conn = _demo("hide", auth_token="tok-123456", rate=0, start_broadcast=False)
    text = repr(conn) + conn._repr_html_() + repr(conn.get_client()) + str(conn.status)
    assert "tok-123456" not in text
    assert conn.status.auth_required is True


def test_get_client_status_all_skips_connections_of_other_tokens() -> None:
    """get_client_status('all') lists only connections the caller may see."""
    _demo("open", rate=0)
    _demo("locked", auth_token="abc", rate=0)
    assert [s.name for s in obbws.get_client_status("all")] == ["open"]
    assert {s.name for s in obbws.get_client_status("all", auth_token="abc")} == {"open", "locked"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_explicit_busy_broadcast_port_is_an_error() -> None:
    """start_broadcasting on a port that is taken raises PortInUseError; the stream goes on."""
    conn = _demo("port", rate=0)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(PortInUseError, match=str(port)):
            conn.start_broadcasting(port=port)
    assert conn.status.is_running and not conn.status.is_broadcasting


def _try_bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        return False
    return True


def test_default_broadcast_port_falls_forward(caplog: pytest.LogCaptureFixture) -> None:
    """With the default port taken, broadcasting moves to a free one with a warning."""
    with socket.socket() as blocker:
        # Hold 6666 ourselves. Another process (a parallel test run) may hold it for a moment
        # and then let it go, which would hand the default port back to the connection: wait
        # until it is ours, or, if it stays taken, the fallback is exercised all the same.
        wait_until(lambda: _try_bind(blocker, 6666), timeout=TIMEOUT / 4)
        conn = _demo("fwd", rate=0, start_broadcast=True)
        address = conn.status.broadcast_address
    assert address is not None and not address.endswith(":6666")
    assert "6666" in caplog.text and "in use" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"table_name": "bad name"}, InvalidParameterError, "table_name"),
        ({"table_name": "1abc"}, InvalidParameterError, "table_name"),
        ({"limit": 0}, InvalidParameterError, "limit"),
        ({"limit": -5}, InvalidParameterError, "limit"),
        ({"connect_kwargs": "{not json"}, InvalidParameterError, "Invalid JSON"),
        ({"connect_kwargs": "[1, 2]"}, InvalidParameterError, "Must be a dictionary"),
        ({"connect_kwargs": {"pign_interval": 1}}, InvalidParameterError, "pign_interval"),
        ({"asset_type": "bonds"}, InvalidParameterError, "asset_type"),
        ({"feed": "l3"}, InvalidParameterError, "feed"),
        ({"symbol": "bad symbol!"}, SymbolError, "bad symbol"),
        ({"rate": -1}, InvalidParameterError, "rate"),
        ({"broadcast_port": 70000}, InvalidParameterError, "broadcast_port"),
        ({"unknown_param": 1}, InvalidParameterError, "unknown_param"),
        ({"save_results": "maybe"}, InvalidParameterError, "save_results"),
        ({"start_broadcast": 2}, InvalidParameterError, "start_broadcast"),
    ],
)
def test_bad_arguments_fail_before_anything_starts(kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    """Invalid arguments raise a specific error and leave no connection, thread or file."""
    threads = {t.name for t in threading.enumerate()}
    with pytest.raises(error, match=match):
        _demo("bad", **kwargs)
    assert obbws.default_registry().names() == []
    assert not any(t.name == "obbws-store-bad" for t in threading.enumerate())
    assert {t.name for t in threading.enumerate()} - threads <= {"obbws-loop"}


def test_bad_credentials_are_refused_and_nothing_stays(tmp_path: Path) -> None:
    """A rejected API key raises ProviderAuthError from create_connection; nothing registered."""
    from obbws_jupyter.offline.demo_server import start_demo_server

    server = start_demo_server(api_key="right-key", rate=100)
    try:
        results = tmp_path / "r.duckdb"
        with pytest.raises(ProviderAuthError) as info:
            _demo("cred", url=server.url, api_key="wrong-key", results_file=str(results))
        assert "wrong-key" not in str(info.value)
        assert obbws.default_registry().names() == []
        assert not results.exists()
        conn = _demo("cred", url=server.url, api_key="right-key")
        assert _waiter(conn).wait(3)
    finally:
        server.close()


def test_unreachable_provider_fails_fast() -> None:
    """A URL nobody listens on gives ProviderConnectionError, not a hang."""
    port = _free_port()
    with pytest.raises(ProviderConnectionError, match="Could not connect"):
        _demo("gone", url=f"ws://127.0.0.1:{port}")
    assert obbws.default_registry().names() == []


def test_limit_caps_the_table_under_a_high_rate() -> None:
    """At 20k events/s with limit=500 the table holds exactly the newest 500 rows."""
    conn = _demo("cap", rate=20_000, limit=500)
    client = conn.get_client()
    waiter = RecordWaiter(client)
    assert waiter.wait(5_000)
    conn.stop_connection()
    df = conn.get_results()
    received = client.status().records_received
    assert len(df) == 500
    assert df["id"].iloc[-1] == df["id"].max()
    assert df["id"].tolist() == list(range(received - 499, received + 1))


def test_limit_none_keeps_everything() -> None:
    """limit=None keeps every received row."""
    conn = _demo("all", rate=5_000, limit=None)
    waiter = _waiter(conn)
    assert waiter.wait(3_000)
    conn.stop_connection()
    assert len(conn.get_results()) == conn.status.records_received


def test_clear_stop_restart_keep_rows_and_ids() -> None:
    """Stop keeps rows, restart appends to them, clear empties the table and ids keep growing."""
    conn = _demo("life", limit=None)
    waiter = _waiter(conn)
    assert waiter.wait(10)
    conn.stop_connection()
    before = conn.get_results()
    assert len(before) >= 10
    conn.restart_connection()
    assert waiter.wait_more(10)
    after = conn.get_results()
    assert after["id"].iloc[: len(before)].tolist() == before["id"].tolist()
    assert len(after) > len(before)
    message = conn.clear_results()
    assert int(message.split()[0]) >= len(after)
    last_id = int(after["id"].max())
    assert waiter.wait_more(5)
    fresh = conn.get_results()
    assert len(fresh) > 0 and fresh["id"].min() > last_id


def test_reconnect_resubscribes_after_a_drop(demo_server) -> None:  # type: ignore[no-untyped-def]
    """When the provider drops the socket the stream reconnects and re-sends every symbol."""
    conn = _demo("rc", url=demo_server.url, symbol="btcusd", reconnect_base=0.05)
    waiter = _waiter(conn)
    conn.subscribe("ethusd")
    assert waiter.wait_symbol("ETHUSD")
    demo_server.drop_connections()
    demo_server.wait_connections(2, TIMEOUT)
    assert waiter.wait_symbol("ETHUSD") and waiter.wait_symbol("BTCUSD")
    status = conn.status
    assert status.reconnects >= 1 and status.is_running
    last = demo_server.subscribe_requests[-1]
    assert "BTCUSD" in last and "ETHUSD" in last


def test_malformed_frame_is_counted_not_fatal(demo_server) -> None:  # type: ignore[no-untyped-def]
    """A malformed provider frame is counted and logged; the stream keeps going."""
    conn = _demo("mal", url=demo_server.url)
    waiter = _waiter(conn)
    assert waiter.wait(5)
    demo_server.inject("this is not json {")
    demo_server.inject(b"\x00\x01binary")
    assert waiter.wait_more(20)
    status = conn.status
    assert status.malformed_frames == 2
    assert status.is_running and status.reconnects == 0


def test_silent_stream_is_treated_as_dead(demo_server) -> None:  # type: ignore[no-untyped-def]
    """A stream silent for longer than stale_timeout is dropped and reconnected."""
    conn = _demo("stale", url=demo_server.url, stale_timeout=0.5, reconnect_base=0.05)
    waiter = _waiter(conn)
    assert waiter.wait(5)
    demo_server.pause()
    demo_server.wait_connections(2, TIMEOUT)
    demo_server.resume()
    assert waiter.wait_more(5)
    assert conn.status.reconnects >= 1


def test_giving_up_is_reported_in_the_status(demo_server) -> None:  # type: ignore[no-untyped-def]
    """After max_reconnects failed attempts the status says failed, with the reason."""
    conn = _demo("giveup", url=demo_server.url, max_reconnects=1, reconnect_base=0.01)
    assert _waiter(conn).wait(3)
    demo_server.close()
    assert conn.get_client().wait_stopped(TIMEOUT) == "failed"
    status = conn.status
    assert status.state == "failed" and not status.is_running
    assert "gave up" in (status.last_error or "")


def test_listener_with_wrong_token_gets_no_data() -> None:
    """A broadcast listener with a wrong token is refused before any record."""
    conn = _demo("bc", auth_token="bc-token", rate=1000)
    conn.start_broadcasting(port=0)
    address = conn.status.broadcast_address
    bad = listen(address, auth_token="nope", block=False)
    with contextlib.suppress(ObbwsError):
        bad.wait(1, timeout=2)
    assert isinstance(bad.error, UnauthorizedError)
    assert bad.count == 0
    good = listen(address, auth_token="bc-token", block=False)
    assert good.wait(10, timeout=TIMEOUT)
    good.stop()
    record = good.records[0]
    assert {"id", "received_at", "date", "symbol", "price"} <= set(record)
    assert isinstance(record["date"], str) and "T" in record["date"]


def test_kill_leaves_no_thread_port_or_temp_file() -> None:
    """kill stops the store thread, frees both ports and deletes the temp results dir."""
    conn = _demo("bye", start_broadcast=False)
    conn.start_broadcasting(port=0)
    client = conn.get_client()
    results_dir = Path(client.results_file).parent
    broadcast_port = int(conn.status.broadcast_address.rsplit(":", 1)[1])
    provider_port = int(client._server.url.rsplit(":", 1)[1].split("/")[0])
    assert results_dir.exists()
    conn.kill()
    assert not results_dir.exists()
    assert not any(t.name.startswith("obbws-store-bye") for t in threading.enumerate())
    for port in (broadcast_port, provider_port):
        with socket.socket() as probe:  # nobody listens any more ...
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        with socket.socket() as probe:  # ... and the port can be bound again
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()


def test_saved_results_survive_kill_and_are_reused(tmp_path: Path) -> None:
    """save_results keeps the file; a new connection reuses it and continues the ids."""
    path = tmp_path / "keep.duckdb"
    conn = _demo("keep", results_file=str(path), save_results=True)
    assert _waiter(conn).wait(5)
    conn.stop_connection()
    first = conn.get_results()
    conn.kill()
    assert path.exists()
    conn2 = _demo("keep", results_file=str(path), save_results=True)
    assert _waiter(conn2).wait(5)
    conn2.stop_connection()
    again = conn2.get_results()
    assert again["id"].iloc[: len(first)].tolist() == first["id"].tolist()
    assert again["id"].max() > first["id"].max()
    conn2.kill()
    with pytest.raises(SchemaMismatchError):
        _demo("other", results_file=str(path), feed="quote")
    assert path.exists()


def test_query_and_export(tmp_path: Path) -> None:
    """query() runs read-only SQL over the table; export() writes a Parquet file."""
    conn = _demo("sql")
    assert _waiter(conn).wait(20)
    conn.stop_connection()
    agg = conn.query("SELECT symbol, count(*) AS n, avg(price) AS p FROM records GROUP BY 1")
    assert set(agg["symbol"]) <= {"BTCUSD", "ETHUSD"} and agg["n"].sum() == len(conn.get_results())
    with pytest.raises(InvalidParameterError):
        conn.query("DELETE FROM records")
    out = conn.export(tmp_path / "x.parquet")
    assert len(pd.read_parquet(out)) == len(conn.get_results())


def test_record_targets_are_checked_before_anything_starts(tmp_path: Path) -> None:
    """An existing record file, a missing folder, or recording a replay is refused up front."""
    existing = tmp_path / "taken.jsonl"
    existing.write_text("x")
    with pytest.raises(InvalidParameterError, match="already exists"):
        _demo("r1", record_file=str(existing))
    with pytest.raises(InvalidParameterError, match="does not exist"):
        _demo("r2", record_file=str(tmp_path / "nope" / "c.jsonl"))
    assert obbws.default_registry().names() == []
    conn = _demo("r3", record_file=str(tmp_path / "c.jsonl"))
    assert _waiter(conn).wait(5)
    conn.stop_connection()
    assert conn.stop_capture() == tmp_path / "c.jsonl"
    conn.kill()
    replay = obbws.create_connection(
        provider="replay", name="r4", path=str(tmp_path / "c.jsonl"), speed=0
    )
    with pytest.raises(InvalidParameterError, match="replay connection cannot be recorded"):
        replay.capture(tmp_path / "again.jsonl")
    assert replay.get_client().wait_stopped(TIMEOUT) == "finished"
    assert len(replay.get_results()) > 0


def test_openbb_style_text_arguments_are_understood(tmp_path: Path) -> None:
    """limit="None", save_results="True", start_broadcast="False" mean what they say."""
    path = tmp_path / "text.duckdb"
    conn = _demo(
        "text",
        limit="None",
        save_results="True",
        start_broadcast="False",
        results_file=str(path),
        rate=0,
    )
    status = conn.status
    assert status.limit is None and status.save_results is True
    assert status.is_broadcasting is False
    conn.kill()
    assert path.exists()


def test_sequence_gaps_are_counted_in_the_status(demo_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A session's SequenceGap events add up in status.sequence_gaps; the stream goes on."""
    import json
    from dataclasses import replace

    from obbws_jupyter.protocol import SequenceGap, _lookup, available_providers
    from obbws_providers import demo

    class GapSession(demo.DemoSession):
        def parse(self, frame):  # type: ignore[no-untyped-def]
            data = json.loads(frame)
            if isinstance(data, dict) and "gap" in data:
                self._emit(SequenceGap(int(data["gap"]), "BTCUSD"))
                return []
            return super().parse(frame)

    available_providers()
    spec = replace(demo.PROVIDER, name="gappy", session_class=GapSession, embedded_server=None)
    monkeypatch.setitem(_lookup._specs, "gappy", spec)
    conn = obbws.create_connection(
        provider="gappy", name="gaps", symbol="btcusd", url=demo_server.url
    )
    waiter = _waiter(conn)
    assert waiter.wait(1)
    demo_server.inject('{"gap": 3}')
    demo_server.inject('{"gap": 2}')
    assert waiter.wait_more(1)  # frames are handled in order: data after the injected ones
    assert conn.status.sequence_gaps == 5
    assert conn.status.is_running
