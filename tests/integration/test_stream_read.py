"""The driver's read loop over a real socket: what a session is given (bytes or text), what a
capture records, and that records and acks flow as before."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import serve

from obbws_jupyter import runtime
from obbws_jupyter._stream import StreamDriver
from obbws_jupyter.offline.demo_server import DemoServer
from obbws_jupyter.protocol import Field, FieldType, Frame, ProviderSession, Record, json_loads
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


async def _stream(
    as_bytes: bool, direct: bool = False
) -> tuple[_Seen, list[Record], list[Frame], list[type]]:
    server = await DemoServer(rate=2000, heartbeat_interval=0.05).start()
    records: list[Record] = []
    captured: list[Frame] = []
    session = _session(server.url, as_bytes=as_bytes)
    driver = StreamDriver(
        session, url=session.url(), on_records=records.extend, direct_frames=direct
    )
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


def test_direct_frames_read_like_recv_and_capture_gets_text() -> None:
    """The direct-frames path gives a JSON session bytes, a capture text, records and acks
    as the recv() path does."""

    async def direct() -> tuple[_Seen, list[Record], list[Frame], list[type]]:
        return await _stream(True, direct=True)

    session, records, captured, before = runtime.run(direct(), timeout=3 * TIMEOUT)
    assert set(before) == {bytes}
    assert captured and all(type(frame) is str for frame in captured)
    assert {r["symbol"] for r in records} == {"BTCUSD", "ETHUSD"}
    assert all(type(r["date"]) is int and type(r["price"]) is float for r in records)
    assert session.acknowledged == ("BTCUSD", "ETHUSD")


class _Scripted(ProviderSession):
    """A JSON session for a scripted server: {"hello"} authenticates, {"n": i} is a record,
    {"ask": x} is answered with {"answer": x}."""

    provider = "scripted"
    fields = (Field("n", FieldType.INT),)
    stale_after = None
    text_as_bytes = True

    def url(self) -> str:
        return str(self.params["url"])

    def subscribe_frames(self, symbols: Any) -> list[Frame]:
        return []

    def parse(self, frame: Frame) -> list[Record]:
        message = json_loads(frame)
        if "hello" in message:
            self._authenticated()
        elif "ask" in message:
            self._send(json.dumps({"answer": message["ask"]}))
        return [{"n": message["n"]}] if "n" in message else []


async def _scripted(direct: bool) -> tuple[list[Record], list[Any], str | None]:
    """A server that speaks at once, fragments a message, asks a question, then closes."""
    heard: list[Any] = []

    async def handler(conn: Any) -> None:
        await conn.send('{"hello": 1}')
        await conn.send('{"n": 1}')
        await conn.send(['{"n"', ": ", "2}"])  # one message in three fragments
        await conn.send('{"ask": "x"}')
        heard.append(json.loads(await asyncio.wait_for(conn.recv(), TIMEOUT)))
        await conn.send(b'{"n": 3}')  # a binary frame
        await conn.close(1000, "done")

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        session = _Scripted({"url": f"ws://127.0.0.1:{port}"})
        records, driver = await drive_to_end(session, direct_frames=direct)
    return records, heard, driver.last_error


async def drive_to_end(
    session: ProviderSession, hold: list[StreamDriver] | None = None, **options: Any
) -> tuple[list[Record], StreamDriver]:
    """Run a driver of ``session`` (no reconnect) until its server ends the stream: the
    records it handed over, and the driver (also put in ``hold`` before it starts)."""
    records: list[Record] = []
    driver = StreamDriver(
        session, url=session.url(), on_records=records.extend, max_reconnects=0, **options
    )
    if hold is not None:
        hold.append(driver)
    await driver.start(timeout=TIMEOUT)
    await driver.wait_done(TIMEOUT)
    await driver.stop()
    return records, driver


@pytest.mark.parametrize("direct", [False, True])
def test_messages_before_start_fragments_replies_and_a_close(direct: bool) -> None:
    """On either read path: a message sent right after the handshake reaches the session
    after it was told the connection is open, fragments are joined, the session's reply goes
    out, a binary frame is read, and a normal close ends the stream as a drop."""
    records, heard, last_error = runtime.run(_scripted(direct), timeout=3 * TIMEOUT)
    assert records == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert heard == [{"answer": "x"}]
    assert last_error is not None and "connection closed by the provider" in last_error
