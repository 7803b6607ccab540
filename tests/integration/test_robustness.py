"""Nothing hangs or leaks: reconnect limits, kill from the loop thread, endpoints from many
threads, replay and listener bounds, honest timeouts, provider errors (issue #7)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import ObbwsError, ObbwsTimeoutError
from obbws_jupyter.listen import listen
from tests.conftest import TIMEOUT, RecordWaiter, kill_all, wait_until
from tests.integration.test_broadcast import publish, record, refused_status

pytestmark = pytest.mark.integration


def _listening_ports() -> set[int]:
    conns = psutil.Process().net_connections(kind="tcp")
    return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}


def _store_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("obbws-store-")]


def _my_temp_dirs() -> list[str]:
    prefix = f"obbws-{os.getpid()}-"
    return [e for e in os.listdir(tempfile.gettempdir()) if e.startswith(prefix)]


class _LoginThenClose:
    """A demo-protocol server that accepts the login and then closes, every time."""

    def __init__(self) -> None:
        self.logins = 0
        self.server: Any = None

    async def _handler(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps([{"ev": "status", "status": "connected", "message": "hi"}]))
        async for message in ws:
            if json.loads(message).get("action") == "auth":
                self.logins += 1
                await ws.send(json.dumps([{"ev": "status", "status": "auth_success"}]))
                await ws.close(1000, "bye")

    async def start(self) -> str:
        self.server = await serve(self._handler, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/crypto"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def test_max_reconnects_triggers_when_the_provider_closes_after_every_login() -> None:
    """Logins that are closed again before any data count as failures: the stream gives up."""
    fake = _LoginThenClose()
    url = runtime.run(fake.start())
    try:
        conn = obbws.create_connection(
            provider="demo",
            name="flappy",
            symbol="btcusd",
            url=url,
            max_reconnects=3,
            reconnect_base=0.01,
            reconnect_cap=0.05,
        )
        assert conn.get_client().wait_stopped(TIMEOUT) == "failed"
        status = conn.status
        assert status.state == "failed" and "gave up" in (status.last_error or "")
        assert fake.logins <= 1 + 3 + 1
    finally:
        kill_all()
        runtime.run(fake.stop())


def test_kill_from_a_record_hook_tears_the_connection_down() -> None:
    """kill() called inside a record hook (on the loop thread) ends the connection for good."""
    before = _listening_ports()
    conn = obbws.create_connection(provider="demo", name="hooked", symbol="btcusd", rate=500)
    client = conn.get_client()
    client.start_broadcasting(port=0)
    results: list[Any] = []

    def hook(records: list[dict[str, Any]]) -> None:
        if not results:
            try:
                results.append(obbws.kill("hooked"))
            except BaseException as exc:
                results.append(exc)

    client.add_record_hook(hook)
    assert wait_until(lambda: bool(results))
    assert isinstance(results[0], str) and "hooked" in results[0], results[0]
    assert wait_until(lambda: client.closed and not client.is_running)
    assert obbws.default_registry().names() == []
    assert wait_until(lambda: _listening_ports() <= before)


def test_kill_from_a_listen_callback_tears_the_connection_down() -> None:
    """kill() called inside a background listen() callback ends the connection for good."""
    conn = obbws.create_connection(provider="demo", name="heard", symbol="btcusd", rate=500)
    client = conn.get_client()
    address = conn.start_broadcasting(port=0).broadcast_address
    results: list[Any] = []

    def callback(record: dict[str, Any]) -> None:
        if not results:
            try:
                results.append(conn.kill())
            except BaseException as exc:
                results.append(exc)

    listener = listen(address, callback=callback, block=False)
    assert wait_until(lambda: bool(results))
    assert isinstance(results[0], str), results[0]
    assert wait_until(lambda: client.closed and not (client.is_running or client.is_broadcasting))
    listener.stop()


_OPS: list[tuple[str, Callable[[str], Any]]] = [
    (
        "create",
        lambda n: obbws.create_connection(
            provider="demo", name=n, symbol="btcusd", rate=300, connect_timeout=5
        ),
    ),
    ("kill", obbws.kill),
    ("start_broadcasting", lambda n: obbws.start_broadcasting(n, port=0)),
    ("stop_broadcasting", obbws.stop_broadcasting),
    ("get_results", obbws.get_results),
    ("status", obbws.get_client_status),
    ("subscribe", lambda n: obbws.subscribe(n, "ethusd")),
    ("unsubscribe", lambda n: obbws.unsubscribe(n, "ethusd")),
    ("stop_connection", obbws.stop_connection),
    ("restart_connection", obbws.restart_connection),
    ("clear_results", obbws.clear_results),
    ("query", lambda n: obbws.get_client(n).query("SELECT count(*) FROM records")),
]


def test_endpoints_from_many_threads_leave_nothing_behind() -> None:
    """Six threads calling endpoints at random raise only ObbwsError, and once every
    connection is killed no port, store thread or temp dir is left."""
    ports_before = _listening_ports()
    raw: list[str] = []
    calls = {"n": 0}

    def worker(seed: int, stop_at: float) -> None:
        rnd = random.Random(seed)
        while time.monotonic() < stop_at:
            op_name, op = rnd.choice(_OPS)
            name = rnd.choice(["a", "b", "c"])
            try:
                op(name)
            except ObbwsError:
                pass
            except BaseException as exc:
                raw.append(f"{op_name}({name}): {type(exc).__module__}.{type(exc).__name__}: {exc}")
            calls["n"] += 1

    stop_at = time.monotonic() + 4.0
    threads = [threading.Thread(target=worker, args=(i, stop_at)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(6 * TIMEOUT)
    assert not any(t.is_alive() for t in threads), "an endpoint call hung"
    kill_all()
    assert raw == []
    assert calls["n"] > 50
    assert wait_until(lambda: _listening_ports() <= ports_before), _listening_ports() - ports_before
    assert wait_until(lambda: _store_threads() == []), _store_threads()
    assert _my_temp_dirs() == []


def test_connect_timeout_message_states_the_real_timeout() -> None:
    """A provider that never answers the handshake fails after connect_timeout, and the error
    says that timeout and what to do."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        with pytest.raises(ObbwsTimeoutError) as info:
            obbws.create_connection(
                provider="demo",
                name="silent",
                symbol="btcusd",
                url=f"ws://127.0.0.1:{sock.getsockname()[1]}/crypto",
                connect_timeout=1.5,
            )
    finally:
        sock.close()
    message = str(info.value)
    assert "1.5 s" in message and "connect_timeout" in message
    assert "within 17" not in message


# -- provider messages and rejected rows ----------------------------------------------------


def test_huge_provider_error_message_is_clipped_in_logs_and_status(
    demo_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 200 KB provider error message is truncated in the log and in status.last_error."""
    conn = obbws.create_connection(
        provider="demo", name="loud", symbol="btcusd", url=demo_server.url_for("crypto")
    )
    huge = "E" * 200_000
    demo_server.wait_connections(1, TIMEOUT)  # inject() reaches only connected clients
    demo_server.inject(json.dumps([{"ev": "status", "status": "error", "message": huge}]))
    assert wait_until(lambda: conn.status.errors >= 1)
    last_error = conn.status.last_error or ""
    assert "EEEE" in last_error and len(last_error) < 2_000
    longest = max(len(r.getMessage()) for r in caplog.records)
    assert longest < 2_000


def test_rows_the_store_rejects_are_not_broadcast(demo_server: Any) -> None:
    """A record whose values the store rejects is neither stored nor sent to listeners."""
    conn = obbws.create_connection(
        provider="demo",
        name="rej",
        symbol="btcusd",
        url=demo_server.url_for("crypto"),
        limit=None,
    )
    demo_server.set_rate(0)
    demo_server.wait_connections(1, TIMEOUT)  # inject() reaches only connected clients
    address = conn.start_broadcasting(port=0).broadcast_address
    listener = listen(address, block=False)
    assert listener.wait_connected(TIMEOUT)
    t = int(time.time() * 1000)
    good = {"ev": "T", "sym": "INJ", "x": "DEMO", "p": 1.5, "s": 2.0, "t": t}
    bad = dict(good, p="not a price")
    demo_server.inject(json.dumps([good, bad, dict(good, p=2.5)]))
    demo_server.inject(json.dumps([dict(good, p=3.5)]))

    def injected() -> list[float]:
        return [r["price"] for r in list(listener.records) if r["symbol"] == "INJ"]

    assert wait_until(lambda: len(injected()) >= 3)
    df = conn.get_results()
    assert df[df["symbol"] == "INJ"]["price"].tolist() == [1.5, 2.5, 3.5]
    # the stream is ordered: had the bad record been sent, it would be among these
    assert injected() == [1.5, 2.5, 3.5]
    assert conn.status.rejected_records == 1
    listener.stop()


# -- broadcast bounds ------------------------------------------------------------------------


def test_concurrent_replays_are_bounded_and_excess_refused(make_server: Any) -> None:
    """At most max_replays replays load at once; beyond the waiting room new replay requests
    get HTTP 503; every admitted replay completes correctly."""
    stored = [record(i) for i in range(1, 201)]
    active = {"now": 0, "max": 0}
    lock = threading.Lock()
    gate = threading.Event()

    def source(n: int, before_id: int | None) -> list[dict[str, Any]]:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        try:
            assert gate.wait(TIMEOUT)
            rows = [r for r in stored if before_id is None or r["id"] < before_id]
            return rows[-n:]
        finally:
            with lock:
                active["now"] -= 1

    server = make_server(replay_source=source, max_replays=1, max_waiting_replays=3)

    async def body() -> list[list[int]]:
        sockets = [await connect(server.address + "/?replay=100") for _ in range(4)]
        with pytest.raises(InvalidStatus) as info:
            await connect(server.address + "/?replay=100")
        assert info.value.response.status_code == 503
        gate.set()
        out = []
        for ws in sockets:
            async with asyncio.timeout(TIMEOUT):
                out.append([json.loads(await ws.recv())["id"] for _ in range(100)])
            await ws.close()
        return out

    got = asyncio.run(body())
    assert got == [list(range(101, 201))] * 4
    assert active["max"] == 1


def test_non_reading_listeners_are_bounded_in_total(make_server: Any) -> None:
    """Listeners that never read are dropped once their buffers together pass
    max_total_buffer, even though each stays under max_buffer."""
    server = make_server(max_buffer=1 << 20, max_total_buffer=256 * 1024)
    big = "x" * 16 * 1024

    async def body() -> None:
        socks = []
        for _ in range(8):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            socks.append(await connect(server.address, sock=sock, max_queue=1, compression=None))
        for i in range(200):
            await publish(server, [record(i, symbol=big)])
            assert server.buffered_bytes <= 256 * 1024 + 8 * 17 * 1024
        assert server.stats["dropped_slow"] >= 1
        for ws in socks:
            ws.transport.abort()

    asyncio.run(body())


def test_replay_requires_the_token_when_there_is_one(make_server: Any) -> None:
    """?replay=N without the token is refused like any other handshake (401)."""
    server = make_server(auth_token="tok", replay_source=lambda n, b: [])
    assert refused_status(f"{server.address}/?replay=5") == 401


def test_kill_during_replays_returns_promptly(demo_server: Any) -> None:
    """Thirty concurrent 100k-record replays neither stop ingestion and the writer nor make
    kill() time out."""
    conn = obbws.create_connection(
        provider="demo", name="rp", symbol="btcusd", url=demo_server.url_for("crypto"), limit=None
    )
    client = conn.get_client()
    waiter = RecordWaiter(client)
    demo_server.set_rate(100_000)
    assert waiter.wait(100_000, timeout=6 * TIMEOUT)
    demo_server.set_rate(2_000)
    address = conn.start_broadcasting(port=0).broadcast_address

    async def open_replays() -> list[Any]:
        out = []
        for _ in range(30):
            try:
                out.append(await connect(address + "/?replay=100000", max_queue=1))
            except InvalidStatus as exc:
                assert exc.response.status_code == 503
        return out

    sockets = runtime.run(open_replays())
    assert waiter.wait_more(500)  # ingestion goes on meanwhile
    client.store.flush(timeout=TIMEOUT)  # and so does the writer
    assert conn.kill() == "Client rp killed."
    assert not client.is_broadcasting and client.closed

    async def abort_all() -> None:
        for ws in sockets:
            ws.transport.abort()

    runtime.run(abort_all())


def test_status_rows_in_table_is_filled(demo_server: Any) -> None:
    """status.rows_in_table is the stored row count (capped by limit), not None."""
    conn = obbws.create_connection(
        provider="demo", name="cnt", symbol="btcusd", url=demo_server.url_for("crypto"), limit=50
    )
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(120)
    demo_server.set_rate(0)
    conn.get_client().store.flush(timeout=TIMEOUT)
    assert conn.status.rows_in_table == len(conn.get_results()) == 50


def test_kill_says_how_many_rows_were_lost_when_the_store_fails(
    demo_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the results file cannot be written, get_results returns the committed rows and
    the status says 'retrying'; kill() then says (and warns) how many rows were lost."""
    import duckdb

    conn = obbws.create_connection(
        provider="demo", name="lossy", symbol="btcusd", url=demo_server.url_for("crypto")
    )
    client = conn.get_client()
    waiter = RecordWaiter(client)
    assert waiter.wait(50)
    client.store.flush(timeout=TIMEOUT)  # some rows are committed before the fault

    def broken(*args: Any) -> Any:
        raise duckdb.IOException("No space left on device")

    monkeypatch.setattr(client.store, "_insert", broken)
    assert waiter.wait_more(50)
    assert wait_until(lambda: conn.status.store_state == "retrying")
    assert "No space left" in (conn.status.last_error or "")
    committed = conn.status.rows_in_table
    assert committed and len(conn.get_results()) == committed  # without waiting for a flush
    demo_server.set_rate(0)
    with pytest.warns(RuntimeWarning, match="could not be written"):
        text = conn.kill()
    assert text.startswith("Client lossy killed.") and "rows could not be written" in text
    lost = int(text.split(". ")[1].split()[0])
    assert lost >= 50
