"""BroadcastServer on 127.0.0.1, on the runtime's background loop, with real websockets clients."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from obbws_jupyter import runtime
from obbws_jupyter._broadcast import WIRE_LOGGER, BroadcastServer
from obbws_jupyter.exceptions import InvalidParameterError, PortInUseError
from tests.conftest import TIMEOUT
from tests.integration._wire import BASE_NS, FIELDS, TOKEN

pytestmark = pytest.mark.integration


def record(i: int, **overrides: Any) -> dict[str, Any]:
    """Record ``i`` as a provider stream would publish it."""
    rec = {
        "id": i,
        "received_at": BASE_NS + i * 1_000,
        "date": BASE_NS,
        "symbol": "btcusd",
        "price": 100.0 + i,
    }
    rec.update(overrides)
    return rec


async def publish(server: BroadcastServer, records: list[dict[str, Any]]) -> None:
    """Run server.publish on the loop thread; return once it has run."""

    async def _publish() -> None:
        server.publish(records)

    await asyncio.wrap_future(runtime.submit(_publish()))


async def recv_ids(ws: ClientConnection, n: int) -> list[int]:
    """Receive ``n`` frames and return their ids."""
    ids = []
    async with asyncio.timeout(TIMEOUT):
        for _ in range(n):
            ids.append(json.loads(await ws.recv())["id"])
    return ids


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket for the whole test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def refused_status(address: str, **kwargs: Any) -> int:
    """Try to connect; return the HTTP status of the refusal (fails if accepted)."""

    async def attempt() -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(address, open_timeout=TIMEOUT, **kwargs):
                pass
        return info.value.response.status_code

    return asyncio.run(attempt())


# -- wire format -----------------------------------------------------------------------------


def test_frames_are_plain_json_objects_with_schema_keys_and_iso_dates(make_server):
    """Each record is one text frame with one JSON object: id, received_at, fields, ISO dates."""
    server = make_server(tz="America/New_York")

    async def body() -> list[str | bytes]:
        async with connect(server.address) as ws:
            await publish(server, [record(1), record(2, price=float("nan"), symbol=None)])
            async with asyncio.timeout(TIMEOUT):
                return [await ws.recv(), await ws.recv()]

    first, second = asyncio.run(body())
    assert isinstance(first, str)
    one, two = json.loads(first), json.loads(second)
    assert list(one) == ["id", "received_at", "date", "symbol", "price"]
    assert one == {
        "id": 1,
        "received_at": "2026-11-25T08:12:33.123457-05:00",
        "date": "2026-11-25T08:12:33.123456-05:00",
        "symbol": "btcusd",
        "price": 101.0,
    }
    assert two["price"] is None and two["symbol"] is None
    assert server.stats["sent"] == 2


def test_only_records_published_after_the_join_are_sent(make_server):
    """A listener gets no backlog: the first frame is the first record after it joined."""
    server = make_server()

    async def body() -> list[int]:
        async with connect(server.address) as early:
            await publish(server, [record(1), record(2)])
            assert await recv_ids(early, 2) == [1, 2]
            async with connect(server.address) as late:
                await publish(server, [record(3), record(4)])
                return await recv_ids(late, 2)

    assert asyncio.run(body()) == [3, 4]


def test_address_port_and_listener_count(make_server):
    """address is ws://host:port while serving; listeners counts connected clients."""
    server = make_server()
    assert server.is_serving and server.address == f"ws://127.0.0.1:{server.port}"

    async def count() -> int:
        return server.listeners

    async def body() -> int:
        async with connect(server.address), connect(server.address):
            # Read on the loop thread: the handler registers right after the handshake there.
            return await asyncio.wrap_future(runtime.submit(count()))

    assert asyncio.run(body()) == 2
    assert server.stats["listeners_total"] == 2


def test_broken_listener_never_raises_into_publish(make_server):
    """A listener whose socket died is skipped; publish() goes on for the others."""
    server = make_server()

    async def body() -> list[int]:
        async with connect(server.address) as good:
            broken = await connect(server.address)
            broken.transport.abort()
            await publish(server, [record(1)])
            await publish(server, [record(2)])
            return await recv_ids(good, 2)

    assert asyncio.run(body()) == [1, 2]


# -- replay ----------------------------------------------------------------------------------


def test_replay_sends_last_n_stored_then_live(make_server):
    """?replay=N sends the last N stored records first, then live ones, in id order."""
    stored = [record(i) for i in range(1, 21)]

    def source(n: int, before_id: int | None) -> list[dict[str, Any]]:
        rows = [r for r in stored if before_id is None or r["id"] < before_id]
        return rows[-n:]

    server = make_server(replay_source=source)

    async def body() -> list[int]:
        async with connect(server.address + "/?replay=5") as ws:
            await publish(server, [record(21), record(22)])
            return await recv_ids(ws, 7)

    assert asyncio.run(body()) == [16, 17, 18, 19, 20, 21, 22]
    assert server.stats["replayed"] == 5


def test_replay_has_no_gap_or_duplicate_when_live_records_arrive_meanwhile(make_server):
    """Records published while the replay loads are backlogged; stored copies are not resent."""
    stored = [record(i) for i in range(1, 51)]
    calls: list[tuple[int, int | None]] = []
    loading = threading.Event()
    release = threading.Event()

    def source(n: int, before_id: int | None) -> list[dict[str, Any]]:
        calls.append((n, before_id))
        if len(calls) == 1:
            loading.set()
            assert release.wait(TIMEOUT)
        rows = [r for r in stored if before_id is None or r["id"] < before_id]
        return rows[-n:]

    server = make_server(replay_source=source)

    async def body() -> list[int]:
        async with connect(server.address + "/?replay=10") as ws:
            assert await asyncio.to_thread(loading.wait, TIMEOUT)
            live = [record(i) for i in range(51, 56)]
            await publish(server, live)
            stored.extend(live)  # the store caught up while the replay was loading
            release.set()
            await publish(server, [record(56)])
            return await recv_ids(ws, 16)

    assert asyncio.run(body()) == list(range(41, 57))
    assert calls == [(10, None), (10, 51)]


@pytest.mark.parametrize("query", ["replay=0", "replay=abc", "replay=100001", "replay="])
def test_invalid_replay_is_refused_with_400(make_server, query):
    """An invalid ?replay= value is refused at the handshake with HTTP 400."""
    server = make_server(replay_source=lambda n, before: [])
    assert refused_status(f"{server.address}/?{query}") == 400
    assert server.stats["refused"] == 1


def test_replay_without_history_is_refused_with_400(make_server):
    """?replay=N on a server without a replay_source is refused with HTTP 400."""
    server = make_server()
    assert refused_status(f"{server.address}/?replay=5") == 400


def test_failing_replay_source_closes_with_1011(make_server):
    """A replay_source that raises closes the listener with 1011 instead of hanging."""

    def source(n: int, before_id: int | None) -> list[dict[str, Any]]:
        raise RuntimeError("store is gone")

    server = make_server(replay_source=source)

    async def body() -> int | None:
        async with connect(server.address + "/?replay=3") as ws:
            with pytest.raises(ConnectionClosedError):
                async with asyncio.timeout(TIMEOUT):
                    await ws.recv()
            return ws.close_code

    assert asyncio.run(body()) == 1011


# -- auth and origin -------------------------------------------------------------------------


def test_missing_token_is_refused_with_401(make_server):
    """Without a token the handshake is refused with HTTP 401, before any data."""
    server = make_server(auth_token=TOKEN)
    assert refused_status(server.address) == 401
    assert server.stats["refused"] == 1 and server.stats["listeners_total"] == 0


def test_wrong_token_is_refused_with_403(make_server):
    """A wrong token (query or Bearer header) is refused with HTTP 403."""
    server = make_server(auth_token=TOKEN)
    assert refused_status(f"{server.address}/?auth_token=nope") == 403
    headers = {"Authorization": "Bearer nope"}
    assert refused_status(server.address, additional_headers=headers) == 403
    assert server.stats["refused"] == 2 and server.stats["listeners_total"] == 0


@pytest.mark.parametrize("how", ["query", "bearer"])
def test_right_token_is_accepted_by_query_or_bearer_header(make_server, how):
    """The token is accepted as ?auth_token= and as an Authorization: Bearer header."""
    server = make_server(auth_token=TOKEN)
    if how == "query":
        url, kwargs = f"{server.address}/?auth_token={TOKEN}", {}
    else:
        url, kwargs = server.address, {"additional_headers": {"Authorization": f"Bearer {TOKEN}"}}

    async def body() -> list[int]:
        async with connect(url, **kwargs) as ws:
            await publish(server, [record(1)])
            return await recv_ids(ws, 1)

    assert asyncio.run(body()) == [1]


def test_foreign_origin_is_refused_with_403(make_server):
    """A browser Origin other than localhost is refused with HTTP 403."""
    server = make_server()
    assert refused_status(server.address, origin="https://evil.example") == 403


@pytest.mark.parametrize(
    "origin", ["http://localhost:8888", "http://127.0.0.1:8888", "http://[::1]:8888"]
)
def test_localhost_origins_are_accepted(make_server, origin):
    """Origins on localhost (a local JupyterLab page) are accepted."""
    server = make_server()

    async def body() -> list[int]:
        async with connect(server.address, origin=origin) as ws:
            await publish(server, [record(1)])
            return await recv_ids(ws, 1)

    assert asyncio.run(body()) == [1]


def test_allowed_origins_are_honoured(make_server):
    """An origin listed in allowed_origins is accepted; others still refused."""
    server = make_server(allowed_origins=["https://dash.example/"])

    async def body() -> None:
        async with connect(server.address, origin="https://dash.example"):
            pass

    asyncio.run(body())
    assert refused_status(server.address, origin="https://other.example") == 403


def test_token_never_appears_in_logs(make_server, caplog):
    """Neither the server's logs nor websockets' debug logs it drives show the token."""
    caplog.set_level(logging.DEBUG, logger="obbws_jupyter")
    caplog.set_level(logging.DEBUG, logger=WIRE_LOGGER)
    server = make_server(auth_token=TOKEN)
    refused_status(f"{server.address}/?auth_token=wrong-{TOKEN}")

    async def body() -> None:
        async with connect(f"{server.address}/?auth_token={TOKEN}") as ws:
            await publish(server, [record(1)])
            await recv_ids(ws, 1)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(server.address, additional_headers=headers) as ws:
            await publish(server, [record(2)])
            await recv_ids(ws, 1)

    asyncio.run(body())
    runtime.run(server.stop(), TIMEOUT)
    assert "listener connected" in caplog.text
    assert TOKEN not in caplog.text


# -- ports -----------------------------------------------------------------------------------


def test_explicit_busy_port_raises_port_in_use(make_server, busy_port):
    """An explicitly requested busy port is an error naming host:port and the way out."""
    with pytest.raises(PortInUseError) as info:
        make_server(port=busy_port)
    assert f"127.0.0.1:{busy_port}" in str(info.value)
    assert "port=0" in str(info.value)
    assert info.value.errno == errno.EADDRINUSE


def test_default_port_falls_forward_with_a_warning(make_server, busy_port, caplog):
    """With port_fallback the next free port is used and a warning says so."""
    caplog.set_level(logging.WARNING, logger="obbws_jupyter.broadcast")
    server = make_server(port=busy_port, port_fallback=True)
    assert server.port is not None and busy_port < server.port <= busy_port + 100
    expected = f"Port {busy_port} is already in use; broadcasting on {server.port} instead."
    assert expected in caplog.messages


def test_bad_options_are_refused_before_starting():
    """Unknown server options and invalid ports raise InvalidParameterError at once."""
    with pytest.raises(InvalidParameterError, match="no_such_option"):
        BroadcastServer(fields=FIELDS, no_such_option=1)
    with pytest.raises(InvalidParameterError, match="port"):
        BroadcastServer(fields=FIELDS, port=70000)


# -- slow listeners and shutdown -------------------------------------------------------------


def test_slow_listener_is_dropped_with_1013_while_a_fast_one_keeps_receiving(make_server):
    """A listener that stops reading is closed with 1013; the fast one gets every record.

    The slow client has a tiny socket receive buffer and max_queue=1 and never reads: once
    the kernel buffers are full, the server's transport buffer grows past max_buffer. The fast
    client reads each record before the next is published, so its buffer never holds more
    than one record (32 KiB < max_buffer).
    """
    server = make_server(max_buffer=64 * 1024)
    big = "x" * 32 * 1024

    async def body() -> tuple[int, list[int], ConnectionClosedError]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        slow = await connect(server.address, sock=sock, max_queue=1, compression=None)
        async with connect(server.address, compression=None) as fast:
            published = 0
            while server.stats["dropped_slow"] == 0:
                published += 1
                assert published < 20_000, "the slow listener was never dropped"
                await publish(server, [record(published, symbol=big)])
                assert await recv_ids(fast, 1) == [published]
            assert server.listeners == 1
            await publish(server, [record(published + 1)])
            assert await recv_ids(fast, 1) == [published + 1]
        received = []
        with pytest.raises(ConnectionClosedError) as info:
            async with asyncio.timeout(TIMEOUT):
                async for message in slow:
                    received.append(json.loads(message)["id"])
        return published, received, info.value

    published, received, closed = asyncio.run(body())
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1013, "listener too slow")
    # It got what was written before the drop, in order, and nothing published after it.
    assert received == list(range(1, len(received) + 1))
    assert len(received) <= published
    assert server.stats["dropped_slow"] == 1


def test_stop_closes_listeners_with_1001_and_frees_the_port(make_server):
    """stop() closes listeners with 1001 'server shutting down' and the port can be reused."""
    server = make_server()
    port = server.port

    async def body() -> ConnectionClosedOK:
        async with connect(server.address) as ws:
            await asyncio.wrap_future(runtime.submit(server.stop()))
            with pytest.raises(ConnectionClosedOK) as info:
                async with asyncio.timeout(TIMEOUT):
                    await ws.recv()
            return info.value

    closed = asyncio.run(body())
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server shutting down")
    assert not server.is_serving and server.address is None and server.port is None
    runtime.run(server.stop(), TIMEOUT)  # idempotent
    again = make_server(port=port)
    assert again.port == port


def test_publish_after_stop_is_a_no_op(make_server):
    """publish() on a stopped server does nothing and does not raise."""
    server = make_server()
    runtime.run(server.stop(), TIMEOUT)
    asyncio.run(publish(server, [record(1)]))
    assert server.stats["sent"] == 0
