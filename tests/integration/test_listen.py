"""listen() / alisten() against a real BroadcastServer (and tiny ad-hoc servers) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from obbws_jupyter import runtime
from obbws_jupyter._broadcast import BroadcastServer
from obbws_jupyter.exceptions import BroadcastError, InvalidParameterError, UnauthorizedError
from obbws_jupyter.listen import WIRE_LOGGER, Listener, alisten, listen, normalize_url
from tests.conftest import TIMEOUT
from tests.integration._wire import BASE_NS, TOKEN

pytestmark = pytest.mark.integration


def record(i: int, **overrides: Any) -> dict[str, Any]:
    """Record ``i`` as a provider stream would publish it."""
    rec = {"id": i, "received_at": BASE_NS, "date": BASE_NS, "symbol": "btcusd", "price": 1.0 * i}
    rec.update(overrides)
    return rec


def stored_source(ids: range) -> Callable[[int, int | None], list[dict[str, Any]]]:
    """A replay_source over records with these ids."""
    rows = [record(i) for i in ids]

    def source(n: int, before_id: int | None) -> list[dict[str, Any]]:
        return [r for r in rows if before_id is None or r["id"] < before_id][-n:]

    return source


async def publish(server: BroadcastServer, records: list[dict[str, Any]]) -> None:
    """Run server.publish on the loop thread; return once it has run."""

    async def _publish() -> None:
        server.publish(records)

    await asyncio.wrap_future(runtime.submit(_publish()))


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    """Background listeners to stop after the test."""
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop(TIMEOUT)


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_in_thread(func: Callable[[], Any]) -> Any:
    """Run ``func`` in a fresh thread (no event loop there) and return or raise its outcome."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(3 * TIMEOUT)
    assert not thread.is_alive(), "listen() did not return"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost:6666", "ws://localhost:6666"),
        ("127.0.0.1:6666", "ws://127.0.0.1:6666"),
        ("http://127.0.0.1:6666", "ws://127.0.0.1:6666"),
        ("https://example.com/feed", "wss://example.com/feed"),
        ("ws://127.0.0.1:6666/", "ws://127.0.0.1:6666/"),
    ],
)
def test_urls_are_normalized_like_openbb(given, expected):
    """http -> ws, a bare host:port gets ws://, a ws URL is kept."""
    assert normalize_url(given) == expected


def test_replay_is_added_to_the_query():
    """replay=N is appended to the URL's query (replacing one already there)."""
    assert normalize_url("ws://h:1/?auth_token=x&replay=2", replay=7) == (
        "ws://h:1/?auth_token=x&replay=7"
    )
    assert normalize_url("h:1", replay=5) == "ws://h:1/?replay=5"


@pytest.mark.parametrize("url", ["", "ftp://127.0.0.1:6666", "ws://", "ws://host:notaport"])
def test_invalid_url_raises_invalid_parameter(url):
    """A URL that is not ws(s)://HOST:PORT is an InvalidParameterError before connecting."""
    with pytest.raises(InvalidParameterError):
        listen(url, block=True)


def test_bad_arguments_are_refused_at_once():
    """Bad replay/max_records/connect options raise InvalidParameterError before connecting."""
    with pytest.raises(InvalidParameterError, match="replay"):
        listen("ws://127.0.0.1:1", replay=0, block=True)
    with pytest.raises(InvalidParameterError, match="max_records"):
        listen("ws://127.0.0.1:1", max_records=0, block=True)
    with pytest.raises(InvalidParameterError, match="no_such_option"):
        listen("ws://127.0.0.1:1", block=True, no_such_option=1)


# -- background mode -------------------------------------------------------------------------


def test_background_listen_inside_a_running_loop_returns_at_once_and_collects(
    make_server, listeners
):
    """In a running loop (Jupyter) listen() returns at once and collects records off-loop."""
    server = make_server()

    async def body() -> tuple[Listener, int]:
        listener = listen(server.address)
        listeners.append(listener)
        others = len(asyncio.all_tasks())  # nothing was scheduled on the caller's loop
        assert listener.is_running
        assert listener.wait_connected(TIMEOUT)
        await publish(server, [record(1), record(2), record(3)])
        assert listener.wait(3, TIMEOUT)
        return listener, others

    listener, tasks_on_caller_loop = asyncio.run(body())
    assert tasks_on_caller_loop == 1
    assert [r["id"] for r in listener.records] == [1, 2, 3]
    assert listener.records[0]["date"] == "2026-11-25T08:12:33.123456-05:00"
    assert listener.count == 3 and listener.error is None
    listener.stop(TIMEOUT)
    assert not listener.is_running and listener.error is None


def test_background_callback_errors_are_counted_not_fatal(make_server, listeners):
    """A callback that raises is logged and counted; the listener keeps receiving."""
    server = make_server()

    def bad_callback(rec: dict[str, Any]) -> None:
        raise ValueError("boom")

    listener = listen(server.address, callback=bad_callback, block=False)
    listeners.append(listener)
    assert listener.wait_connected(TIMEOUT)
    asyncio.run(publish(server, [record(1), record(2)]))
    assert listener.wait(2, TIMEOUT)
    assert listener.callback_errors == 2 and listener.is_running and listener.error is None


def test_background_listener_ends_without_error_when_the_server_stops(make_server, listeners):
    """A server closing the stream (1001) ends the listener normally."""
    server = make_server()
    listener = listen(server.address, block=False)
    listeners.append(listener)
    assert listener.wait_connected(TIMEOUT)
    runtime.run(server.stop(), TIMEOUT)
    assert not listener.wait(1, TIMEOUT)  # returns as soon as the listener ended
    assert not listener.is_running and listener.error is None


def test_background_wrong_token_sets_error(make_server, listeners):
    """In the background a refused token ends the listener with .error = UnauthorizedError."""
    server = make_server(auth_token=TOKEN)
    listener = listen(server.address, auth_token="wrong", block=False)
    listeners.append(listener)
    assert not listener.wait_connected(TIMEOUT)
    assert isinstance(listener.error, UnauthorizedError)
    assert not listener.is_running


def test_block_true_inside_a_running_loop_is_refused():
    """block=True in a running loop would freeze it: InvalidParameterError instead."""

    async def body() -> None:
        listen("ws://127.0.0.1:1", block=True)

    with pytest.raises(InvalidParameterError, match="alisten"):
        asyncio.run(body())


# -- blocking mode ---------------------------------------------------------------------------


def test_blocking_listen_in_a_thread_stops_after_max_records(make_server, capsys):
    """Without a running loop listen() blocks, prints JSON lines and returns at max_records."""
    server = make_server(replay_source=stored_source(range(1, 11)))

    listener = run_in_thread(lambda: listen(server.address, replay=3, max_records=3))

    assert isinstance(listener, Listener)
    assert not listener.is_running and listener.error is None
    assert [r["id"] for r in listener.records] == [8, 9, 10]
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [8, 9, 10]


def test_blocking_listen_returns_when_the_server_closes(make_server):
    """A blocking listen() returns normally when the broadcast stops."""
    server = make_server(replay_source=stored_source(range(1, 2)))
    first = threading.Event()

    def on_record(rec: dict[str, Any]) -> None:
        first.set()

    thread_result: list[Listener] = []
    thread = threading.Thread(
        target=lambda: thread_result.append(listen(server.address, callback=on_record, replay=1))
    )
    thread.start()
    assert first.wait(TIMEOUT)
    runtime.run(server.stop(), TIMEOUT)
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    (listener,) = thread_result
    assert listener.count == 1 and listener.error is None


def test_blocking_wrong_token_raises_unauthorized(make_server):
    """A refused token raises UnauthorizedError with a clear, token-free message."""
    server = make_server(auth_token=TOKEN)
    with pytest.raises(UnauthorizedError) as info:
        run_in_thread(lambda: listen(f"{server.address}/?auth_token=wrong-{TOKEN}"))
    message = str(info.value)
    assert "refused the auth token" in message and "auth_token=..." in message
    assert TOKEN not in message and "auth_token=********" in message


def test_blocking_missing_token_raises_unauthorized(make_server):
    """No token on a protected broadcast raises UnauthorizedError."""
    server = make_server(auth_token=TOKEN)
    with pytest.raises(UnauthorizedError):
        run_in_thread(lambda: listen(server.address))


def test_right_token_in_header_is_accepted(make_server):
    """auth_token= is sent as a Bearer header and accepted."""
    server = make_server(auth_token=TOKEN, replay_source=stored_source(range(1, 3)))
    listener = run_in_thread(
        lambda: listen(server.address, TOKEN, replay=2, max_records=2, callback=lambda r: None)
    )
    assert [r["id"] for r in listener.records] == [1, 2]


def test_nothing_listening_raises_broadcast_error():
    """Connecting where nothing broadcasts raises BroadcastError naming the URL."""
    port = free_port()
    with pytest.raises(BroadcastError, match=f"Nothing is broadcasting at ws://127.0.0.1:{port}"):
        run_in_thread(lambda: listen(f"127.0.0.1:{port}"))


def test_token_never_in_repr_or_logs(make_server, listeners, caplog):
    """The token shows neither in repr(Listener) nor in any log record."""
    caplog.set_level(logging.DEBUG, logger="obbws_jupyter")
    caplog.set_level(logging.DEBUG, logger=WIRE_LOGGER)
    server = make_server(auth_token=TOKEN)
    listener = listen(f"{server.address}/?auth_token={TOKEN}", auth_token=TOKEN, block=False)
    listeners.append(listener)
    assert listener.wait_connected(TIMEOUT)
    asyncio.run(publish(server, [record(1)]))
    assert listener.wait(1, TIMEOUT)
    listener.stop(TIMEOUT)
    refused = listen(server.address, auth_token=f"wrong-{TOKEN}", block=False)
    refused.wait(1, TIMEOUT)
    # given both ways, the token travels in the header only: the URL loses it
    assert TOKEN not in repr(listener) and "auth_token" not in repr(listener)
    assert TOKEN not in repr(refused) and TOKEN not in str(refused.error)
    assert "listening to" in caplog.text
    assert TOKEN not in caplog.text


# -- alisten and the wire ------------------------------------------------------------------


def test_dropped_as_too_slow_raises_broadcast_error(make_server):
    """A listener closed with 1013 raises BroadcastError 'dropped ... listener too slow'."""
    server = make_server(max_buffer=64 * 1024, replay_source=stored_source(range(1, 2)))
    big = "x" * 32 * 1024

    async def body() -> list[int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        stream = alisten(server.address, replay=1, sock=sock, max_queue=1)
        ids = [(await anext(stream))["id"]]  # joined: the replayed record arrived
        published = 1
        while server.stats["dropped_slow"] == 0:
            published += 1
            assert published < 20_000, "the listener was never dropped"
            await publish(server, [record(published, symbol=big)])
        with pytest.raises(BroadcastError, match="dropped this listener: listener too slow"):
            async with asyncio.timeout(TIMEOUT):
                async for rec in stream:
                    ids.append(rec["id"])
        return ids

    ids = asyncio.run(body())
    assert ids == list(range(1, len(ids) + 1))


async def _serve_once(frames: list[str], close_code: int, reason: str = "") -> Any:
    """A tiny websockets server that sends ``frames`` then closes with ``close_code``."""

    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame)
        await ws.close(close_code, reason)

    return await serve(handler, "127.0.0.1", 0, compression=None)


def test_non_json_frames_are_skipped_and_double_encoded_ones_read(caplog):
    """Non-JSON frames are logged and skipped; an OpenBB double-encoded record still reads."""
    frames = ["not json", json.dumps(json.dumps({"id": 1})), "[1, 2]", json.dumps({"id": 2})]

    async def body() -> list[dict[str, Any]]:
        server = await _serve_once(frames, 1000)
        port = server.sockets[0].getsockname()[1]
        try:
            return [rec async for rec in alisten(f"127.0.0.1:{port}")]
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(body()) == [{"id": 1}, {"id": 2}]
    assert "not JSON" in caplog.text and "not a JSON object" in caplog.text


def test_close_1008_raises_unauthorized():
    """A broadcast that closes with 1008 (policy, e.g. an OpenBB token check) is Unauthorized."""

    async def body() -> None:
        server = await _serve_once([], 1008, "Invalid authentication token")
        port = server.sockets[0].getsockname()[1]
        try:
            async for _ in alisten(f"ws://127.0.0.1:{port}"):
                pass
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(UnauthorizedError):
        asyncio.run(body())
