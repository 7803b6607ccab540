"""Firehose (benchmark) mode of the fake servers: frames of N events, as fast as read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from obbws_jupyter import runtime
from obbws_jupyter.fakes.polygon import PolygonServer
from obbws_jupyter.fakes.polygon import main as polygon_main
from obbws_jupyter.offline.demo_server import DemoServer
from obbws_jupyter.offline.demo_server import main as demo_main
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration


async def _data_frames(ws: ClientConnection, n: int, event: str) -> list[list[dict[str, Any]]]:
    """The next ``n`` frames holding ``event`` events (status replies are skipped)."""
    frames: list[list[dict[str, Any]]] = []
    while len(frames) < n:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame and frame[0].get("ev") == event:
            frames.append(frame)
    return frames


async def _login(ws: ClientConnection, subscribe: str) -> None:
    await ws.send(json.dumps({"action": "auth", "params": "any"}))
    await ws.send(json.dumps({"action": "subscribe", "params": subscribe}))


@pytest.mark.parametrize("per_frame", [1, 50])
def test_demo_firehose_sends_frames_of_n_events(per_frame: int) -> None:
    """The demo firehose sends frames of exactly events_per_frame events and counts them."""

    async def scenario() -> tuple[list[list[dict[str, Any]]], int]:
        server = DemoServer(firehose=True, events_per_frame=per_frame)
        async with server, connect(f"{server.url}/crypto", close_timeout=0.2) as ws:
            await _login(ws, "T.BTCUSD,T.ETHUSD")
            frames = await _data_frames(ws, 300, "T")  # more than the pool of 64 draws
            return frames, server.events_sent

    frames, sent = runtime.run(scenario(), timeout=3 * TIMEOUT)
    assert {len(f) for f in frames} == {per_frame}
    assert {e["sym"] for f in frames for e in f} <= {"BTCUSD", "ETHUSD"}
    assert sent >= 300 * per_frame


def test_polygon_firehose_sends_batched_polygon_events() -> None:
    """The Polygon fake's firehose sends frames of 50 crypto trades in Polygon's format."""

    async def scenario() -> list[list[dict[str, Any]]]:
        server = PolygonServer(firehose=True, events_per_frame=50)
        async with server, connect(server.url_for("crypto"), close_timeout=0.2) as ws:
            await _login(ws, "XT.*")
            return await _data_frames(ws, 100, "XT")

    frames = runtime.run(scenario(), timeout=3 * TIMEOUT)
    assert {len(f) for f in frames} == {50}
    events = [e for f in frames for e in f]
    assert {e["ev"] for e in events} == {"XT"}
    assert {e["pair"] for e in events} == {"BTC-USD", "ETH-USD", "SOL-USD"}


def test_firehose_waits_for_a_subscription() -> None:
    """No data frame goes out before the client has authenticated and subscribed."""

    async def scenario() -> tuple[list[Any], int]:
        server = DemoServer(firehose=True, events_per_frame=5, tick_interval=0.005)
        async with server, connect(f"{server.url}/crypto", close_timeout=0.2) as ws:
            await ws.send(json.dumps({"action": "auth", "params": "any"}))
            got = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in range(2)]
            with pytest.raises(TimeoutError):  # nothing more comes unsubscribed
                await asyncio.wait_for(ws.recv(), 0.2)
            return got, server.events_sent

    got, sent = runtime.run(scenario(), timeout=3 * TIMEOUT)
    assert [f[0]["status"] for f in got] == ["connected", "auth_success"]
    assert sent == 0


@pytest.mark.parametrize("value", [0, True, 100_001, "5"])
def test_events_per_frame_is_checked(value: Any) -> None:
    """events_per_frame outside 1..100000 (or not an int) is refused at construction."""
    with pytest.raises(ValueError, match="events_per_frame must be an int from 1 to 100000"):
        DemoServer(firehose=True, events_per_frame=value)


@pytest.mark.parametrize("main", [demo_main, polygon_main])
def test_command_line_refuses_a_bad_events_per_frame(
    main: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--events-per-frame 0 stops the command line with a usage error naming the range."""
    with pytest.raises(SystemExit) as exc:
        main(["--firehose", "--events-per-frame", "0"])
    assert exc.value.code == 2
    assert "events_per_frame must be an int from 1 to 100000" in capsys.readouterr().err
