"""The driver's read loop over a real socket: what a session is given (bytes or text), what a
capture records, and that records and acks flow as before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from obbws_jupyter import runtime
from obbws_jupyter.offline.demo_server import DemoServer
from obbws_jupyter.protocol import Frame, Record
from obbws_jupyter.stream import StreamDriver
from obbws_providers import demo
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration


class _Seen(demo.DemoSession):
    """The demo session, noting the Python type of every frame it is given."""

    kinds: list[type]

    def receive(self, frame: Frame) -> list[Record]:
        self.kinds.append(type(frame))
        return super().receive(frame)


def _session(url: str, *, as_bytes: bool) -> _Seen:
    params = demo.PROVIDER.resolve({"symbol": "btcusd,ethusd", "url": url}, {})
    session = _Seen(params)
    session.kinds = []
    session.text_as_bytes = as_bytes  # type: ignore[misc]
    return session


async def _until(predicate: Any) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), TIMEOUT)


async def _stream(as_bytes: bool) -> tuple[_Seen, list[Record], list[Frame], list[type]]:
    server = await DemoServer(rate=2000, heartbeat_interval=0.05).start()
    records: list[Record] = []
    captured: list[Frame] = []
    session = _session(server.url, as_bytes=as_bytes)
    driver = StreamDriver(session, url=session.url(), on_records=records.extend)
    try:
        await driver.start(timeout=TIMEOUT)
        await _until(lambda: len(records) >= 20 and driver.heartbeats >= 2)
        before = list(session.kinds)
        driver.on_frame = captured.append  # a capture starts mid-stream
        await _until(lambda: len(captured) >= 10)
        return session, records, captured, before
    finally:
        await driver.stop()
        await server.close()


def test_a_json_session_reads_text_frames_as_bytes_and_a_capture_gets_text() -> None:
    """With text_as_bytes the session is given undecoded bytes, records and heartbeats come as
    before; once a capture listens, frames are text again, for the file and the session."""
    session, records, captured, before = runtime.run(_stream(True), timeout=3 * TIMEOUT)
    assert set(before) == {bytes}
    assert all(type(frame) is str for frame in captured)
    assert session.kinds[-1] is str
    assert {r["symbol"] for r in records} == {"BTCUSD", "ETHUSD"}
    assert all(type(r["date"]) is int and type(r["price"]) is float for r in records)
    assert session.acknowledged == ("BTCUSD", "ETHUSD")


def test_a_session_without_text_as_bytes_reads_text_frames_as_str() -> None:
    """A session that tells text from binary by type gets every text frame as str."""
    session, records, _, before = runtime.run(_stream(False), timeout=3 * TIMEOUT)
    assert set(session.kinds) == {str}
    assert before and records
