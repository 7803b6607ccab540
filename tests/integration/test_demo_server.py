"""The demo and replay fake servers over real sockets on 127.0.0.1 (port 0), on the obbws loop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from obbws_jupyter import runtime
from obbws_jupyter.capture import CaptureWriter
from obbws_jupyter.offline.demo_server import DemoServer, serve, start_demo_server
from obbws_jupyter.offline.replay_server import ReplayServer
from obbws_jupyter.offline.replay_server import serve as replay_serve
from obbws_jupyter.protocol import Authenticated, Heartbeat, StreamEnded, Subscribed
from obbws_providers import demo, replay
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration

T = TypeVar("T")


def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Run a scenario on the obbws background loop (where the toolkit runs its servers)."""
    return runtime.run(coro, timeout=6 * TIMEOUT)


async def with_server(scenario: Callable[[DemoServer], Awaitable[T]], **kwargs: Any) -> T:
    server = await DemoServer(**kwargs).start()
    try:
        return await scenario(server)
    finally:
        await server.close()


async def recv_json(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def recv_until(ws: ClientConnection, predicate: Callable[[Any], bool]) -> Any:
    """Next frame (JSON) for which predicate is true; other frames are skipped."""

    async def _loop() -> Any:
        while True:
            frame = json.loads(await ws.recv())
            if predicate(frame):
                return frame

    return await asyncio.wait_for(_loop(), TIMEOUT)


def is_status(status: str) -> Callable[[Any], bool]:
    return lambda frame: any(e.get("status") == status for e in frame)


async def login(ws: ClientConnection, key: str = "any") -> None:
    assert await recv_json(ws) == [
        {"ev": "status", "status": "connected", "message": "obbws demo market"}
    ]
    await ws.send(json.dumps({"action": "auth", "params": key}))
    assert await recv_until(ws, is_status("auth_success"))


# demo server ---------------------------------------------------------------------------------


def test_auth_accepts_any_key_without_configured_key() -> None:
    """A server without api_key answers connected, then auth_success for any key."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws, "whatever")
        assert server.auth_attempts == 1 and server.connections_total == 1

    arun(with_server(scenario, heartbeat_interval=60))


def test_auth_with_wrong_key_fails_and_closes_1008() -> None:
    """A wrong key gets auth_failed and a close with code 1008."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("stock")) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"action": "auth", "params": "wrong"}))
            frame = await recv_json(ws)
            assert frame == [
                {"ev": "status", "status": "auth_failed", "message": "authentication failed"}
            ]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert ws.close_code == 1008
        async with connect(server.url_for("stock")) as ws:
            await login(ws, "right")

    arun(with_server(scenario, api_key="right", heartbeat_interval=60))


def test_subscribe_before_auth_is_an_error() -> None:
    """subscribe before auth -> status error, no data."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"action": "subscribe", "params": "T.BTCUSD"}))
            (status,) = await recv_json(ws)
            assert status["status"] == "error" and "not authenticated" in status["message"]

    arun(with_server(scenario, heartbeat_interval=60))


def test_unknown_endpoint_is_refused_with_404() -> None:
    """Only /stock, /crypto and /fx exist."""

    async def scenario(server: DemoServer) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{server.url}/bonds"):
                pass
        assert info.value.response.status_code == 404

    arun(with_server(scenario))


def test_subscribe_ack_invalid_symbol_and_data() -> None:
    """Valid items are acknowledged, invalid ones reported, and data flows for the valid ones."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws)
            await ws.send(
                json.dumps({"action": "subscribe", "params": "T.BTCUSD,X.BAD,Q.ETHUSD,T.b@d"})
            )
            frame = await recv_until(ws, is_status("success"))
            assert frame == [
                {"ev": "status", "status": "error", "message": "invalid symbol: X.BAD"},
                {"ev": "status", "status": "error", "message": "invalid symbol: T.b@d"},
                {
                    "ev": "status",
                    "status": "success",
                    "message": "subscribed to: T.BTCUSD,Q.ETHUSD",
                },
            ]
            seen: set[tuple[str, str]] = set()
            while seen != {("T", "BTCUSD"), ("Q", "ETHUSD")}:
                data = await recv_until(ws, lambda f: f[0]["ev"] in ("T", "Q"))
                seen |= {(e["ev"], e["sym"]) for e in data}
            await ws.send(json.dumps({"action": "unsubscribe", "params": "Q.ETHUSD"}))
            frame = await recv_until(ws, is_status("success"))
            assert frame[-1]["message"] == "unsubscribed to: Q.ETHUSD"
        assert server.subscribe_requests == ["T.BTCUSD,X.BAD,Q.ETHUSD,T.b@d"]

    arun(with_server(scenario, rate=500))


def test_data_arrives_at_roughly_the_requested_rate_in_batches() -> None:
    """With rate=2000, a 1 s window holds at least 30 % of the events, in multi-event frames."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("stock")) as ws:
            await login(ws)
            await ws.send(json.dumps({"action": "subscribe", "params": "T.*"}))
            await recv_until(ws, is_status("success"))
            await recv_until(ws, lambda f: f[0]["ev"] == "T")
            events = frames = 0
            end = time.monotonic() + 1.0  # a measurement window, not synchronisation
            while time.monotonic() < end:
                frame = await recv_json(ws)
                if frame[0]["ev"] == "T":
                    events += len(frame)
                    frames += 1
                    assert {e["sym"] for e in frame} <= {"AAPL", "MSFT", "NVDA", "AMZN", "SPY"}
            assert events >= 0.3 * 2000
            assert events / frames > 5  # one frame per tick, not per event

    arun(with_server(scenario, rate=2000, heartbeat_interval=60))


def test_heartbeats_arrive_with_rate_zero() -> None:
    """rate=0 sends no data but a heartbeat every heartbeat_interval."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("fx")) as ws:
            await login(ws)
            await ws.send(json.dumps({"action": "subscribe", "params": "Q.EURUSD"}))
            await recv_until(ws, is_status("success"))
            for _ in range(3):
                (beat,) = await recv_json(ws)
                assert beat["ev"] == "heartbeat" and isinstance(beat["t"], int)

    arun(with_server(scenario, rate=0, heartbeat_interval=0.05))


def test_drop_connections_closes_the_client() -> None:
    """drop_connections() closes every client with the given code."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws)
            assert await server.drop_connections(1011) == 1
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1011
        async with connect(server.url_for("crypto")) as ws:
            await server.wait_connections(2, TIMEOUT)
            assert await server.drop_connections(None) == 1  # abort, no closing handshake
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1006

    arun(with_server(scenario, heartbeat_interval=60))


def test_inject_delivers_the_raw_frame() -> None:
    """inject() sends a raw (here malformed) frame to every client."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws)
            assert await server.inject("{not json") == 1
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "{not json"
            await server.inject(b"\x01\x02")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x01\x02"

    arun(with_server(scenario, heartbeat_interval=60))


def test_pause_stops_heartbeats_and_resume_restarts_them() -> None:
    """While paused nothing is sent (not even heartbeats); resume brings them back."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws)
            await recv_until(ws, lambda f: f[0]["ev"] == "heartbeat")
            server.pause()
            # drain what was in flight, then expect silence for several intervals
            with pytest.raises(TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), 0.3)
            server.resume()
            assert await recv_until(ws, lambda f: f[0]["ev"] == "heartbeat")

    arun(with_server(scenario, rate=0, heartbeat_interval=0.05))


def test_set_rate_starts_data() -> None:
    """set_rate() changes the data rate of open connections."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws)
            await ws.send(json.dumps({"action": "subscribe", "params": "T.BTCUSD"}))
            await recv_until(ws, is_status("success"))
            server.set_rate(1000)
            frame = await recv_until(ws, lambda f: f[0]["ev"] == "T")
            assert frame[0]["sym"] == "BTCUSD"

    arun(with_server(scenario, rate=0, heartbeat_interval=60))


def test_demo_session_end_to_end_over_a_socket() -> None:
    """DemoSession driven over a real socket: auth, subscribe ack, records, heartbeats."""

    async def scenario(server: DemoServer) -> tuple[list[dict[str, Any]], list[Any]]:
        params = demo.PROVIDER.resolve({"symbol": "btc-usd,ethusd", "url": server.url}, {})
        session = demo.PROVIDER.session_class(params)
        records: list[dict[str, Any]] = []
        events: list[Any] = []
        async with connect(session.url()) as ws:
            session.connection_made()

            async def pump() -> None:
                async for frame in ws:
                    records.extend(session.receive(frame))
                    events.extend(session.events_received())
                    for out in session.data_to_send():
                        await ws.send(out)
                    if len(records) >= 50 and any(isinstance(e, Heartbeat) for e in events):
                        return

            await asyncio.wait_for(pump(), TIMEOUT)
        return records, events

    records, events = arun(with_server(scenario, rate=500, heartbeat_interval=0.1))
    assert any(isinstance(e, Authenticated) for e in events)
    assert Subscribed(("BTCUSD", "ETHUSD"), "subscribed to: T.BTCUSD,T.ETHUSD") in events
    assert {r["symbol"] for r in records} == {"BTCUSD", "ETHUSD"}
    assert all(r["type"] == "trade" and r["date"] > 1_600_000_000 * 10**9 for r in records)


def test_embedded_serve_factory_uses_rate() -> None:
    """serve(params) starts an open server on 127.0.0.1 with the connection's rate."""

    async def scenario() -> None:
        server = await serve({"rate": 123.0, "symbol": "x", "api_key": "ignored"})
        try:
            assert server.rate == 123.0 and server.api_key is None
            assert server.url.startswith("ws://127.0.0.1:")
        finally:
            await server.close()

    arun(scenario())


def test_sync_handle_controls_the_server_from_another_thread() -> None:
    """start_demo_server() runs on the obbws loop; the handle's methods are plain calls."""
    handle = start_demo_server(rate=0, heartbeat_interval=60)
    logged_in = threading.Event()
    try:

        async def client() -> str | bytes:
            async with connect(handle.url_for("crypto")) as ws:
                await login(ws)
                logged_in.set()
                return await asyncio.wait_for(ws.recv(), TIMEOUT)

        future = runtime.submit(client())
        handle.wait_connections(1, TIMEOUT)
        assert logged_in.wait(TIMEOUT)
        assert handle.inject('["injected"]') == 1
        assert future.result(TIMEOUT) == '["injected"]'
        handle.pause()
        handle.resume()
        handle.set_rate(10)
        assert handle.connections_total == 1 and handle.auth_attempts == 1
    finally:
        handle.close()
    assert handle.connections == 0


def test_command_line_server_prints_url_and_serves(tmp_path: Path) -> None:
    """python -m ...demo_server prints its URL once listening and serves clients."""
    env = {**os.environ, "DEMO_KEY_FOR_TEST": "k"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obbws_jupyter.offline.demo_server",
            "--port",
            "0",
            "--rate",
            "100",
            "--api-key-env",
            "DEMO_KEY_FOR_TEST",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")

        async def scenario() -> None:
            async with connect(f"{url}/crypto") as ws:
                await login(ws, "k")

        arun(scenario())
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


# replay server -------------------------------------------------------------------------------


def make_capture(path: Path, frames: list[str | bytes], gap: float) -> Path:
    now = [0.0]
    with CaptureWriter(
        path, provider="demo", params={"symbol": "btcusd"}, clock=lambda: now[0]
    ) as writer:
        for frame in frames:
            now[0] += gap
            writer.write(frame)
    return path


def test_replay_server_replays_in_order_then_end_marker(tmp_path: Path) -> None:
    """Frames come back in recorded order (text as text, binary as binary), then the marker."""
    frames: list[str | bytes] = [f'[{{"n":{i}}}]' for i in range(50)] + [b"\x00bin"]
    path = make_capture(tmp_path / "c.jsonl", frames, gap=0.001)

    async def scenario() -> list[str | bytes]:
        async with ReplayServer(path, speed=1.0) as server, connect(server.url) as ws:
            got = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(len(frames) + 1)]
            await ws.send("ignored")
            return got

    got = arun(scenario())
    assert got[:-1] == frames
    assert json.loads(got[-1]) == {"obbws_replay": "end", "frames": 51}


def test_replay_server_speed_zero_ignores_recorded_gaps(tmp_path: Path) -> None:
    """speed=0 replays a capture with hour-long gaps at once."""
    frames: list[str | bytes] = [f"[{i}]" for i in range(500)]
    path = make_capture(tmp_path / "c.jsonl", frames, gap=3600.0)

    async def scenario() -> int:
        server = await replay_serve({"path": str(path), "speed": 0.0, "loop": False})
        try:
            async with connect(server.url) as ws:
                count = 0
                while True:
                    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    if frame.startswith('{"obbws_replay"'):
                        return count
                    count += 1
        finally:
            await server.close()

    assert arun(scenario()) == 500


def test_replay_server_loop_starts_over(tmp_path: Path) -> None:
    """loop=True sends the capture again instead of the end marker."""
    path = make_capture(tmp_path / "c.jsonl", ["[1]", "[2]"], gap=0.0)

    async def scenario() -> list[str | bytes]:
        async with (
            ReplayServer(path, speed=0, loop=True) as server,
            connect(server.url, max_queue=None) as ws,
        ):
            return [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(7)]

    assert arun(scenario()) == ["[1]", "[2]"] * 3 + ["[1]"]


def test_replay_session_over_the_replay_server(tmp_path: Path) -> None:
    """A capture recorded from the demo server replays into the same records + StreamEnded."""

    async def record() -> tuple[Path, list[dict[str, Any]]]:
        path = tmp_path / "live.jsonl"
        server = await DemoServer(rate=1000, heartbeat_interval=0.05, seed=5).start()
        params = demo.PROVIDER.resolve({"symbol": "*", "url": server.url}, {})
        session = demo.PROVIDER.session_class(params)
        records: list[dict[str, Any]] = []
        writer = CaptureWriter(
            path, provider="demo", params=params, secret_names=demo.PROVIDER, url=session.url()
        )
        try:
            async with connect(session.url()) as ws:
                session.connection_made()
                async for frame in ws:
                    writer.write(frame)
                    records.extend(session.receive(frame))
                    for out in session.data_to_send():
                        await ws.send(out)
                    if len(records) >= 200:
                        break
        finally:
            writer.close()
            await server.close()
        return path, records

    async def play(path: Path) -> tuple[list[dict[str, Any]], list[Any]]:
        params = replay.PROVIDER.resolve({"path": str(path), "speed": 0}, {})
        server = await replay_serve(params)
        params["url"] = server.url
        session = replay.PROVIDER.session_class(params)
        records: list[dict[str, Any]] = []
        events: list[Any] = []
        try:
            async with connect(session.url()) as ws:
                session.connection_made()
                while not any(isinstance(e, StreamEnded) for e in events):
                    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    records.extend(session.receive(frame))
                    events.extend(session.events_received())
                    assert session.data_to_send() == []
        finally:
            await server.close()
        return records, events

    path, live = arun(record())
    replayed, events = arun(play(path))
    assert replayed == live
    assert events[-1].message.startswith("replay finished after")


def test_fake_base_records_client_frames_and_wakes_waiters() -> None:
    """Every client frame lands in ``received`` and ``wait_for`` wakes on it (no sleeping);
    ``drop_connections(None)`` resets the TCP connection without a close frame."""

    async def scenario(server: DemoServer) -> None:
        async with connect(server.url_for("crypto")) as ws:
            await login(ws)
            await ws.send(json.dumps({"action": "subscribe", "params": "T.BTCUSD"}))
            await server.wait_for(lambda: len(server.received) >= 2, TIMEOUT)
            assert json.loads(server.received[-1]) == {
                "action": "subscribe",
                "params": "T.BTCUSD",
            }
            assert await server.drop_connections(None) == 1
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert info.value.rcvd is None  # no closing handshake: a reset

    arun(with_server(scenario))
