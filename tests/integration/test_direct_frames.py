"""The direct-frames read path (the default) against the recv() path it replaces: the same
records from the same frames, its frame scanner on reads cut anywhere, and the way back to
websockets' own parser for everything but plain data frames."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.streams import StreamReader

from obbws_jupyter import _stream, runtime
from obbws_jupyter._stream import StreamDriver, _DirectConnection
from obbws_jupyter.protocol import Frame, Record
from obbws_providers.polygon import PROVIDER as POLYGON
from tests.conftest import TIMEOUT
from tests.integration.test_stream_read import drive_to_end
from tests.provider_fixtures import load_fixture

pytestmark = pytest.mark.integration

# -- the same records on both paths ------------------------------------------------------------

_SAMPLES = load_fixture("polygon")
# every crypto sample of tests/fixtures/polygon.jsonl a crypto connection reads, bad ones too
_DATA = ("XT", "XT_known_venue", "XQ", "XL2", "XA", "XAS", "bad_elements", "not_json", "not_array")


def _script() -> list[str | bytes]:
    """What the fake sends: a login, then the fixture's frames many times over, a frame of
    1000 trades (a 64-bit length) and one of 10 (a 16-bit length), and a binary frame."""
    login = [_SAMPLES[n].frame for n in ("connected", "auth_success", "subscribed_wildcard")]
    data = [_SAMPLES[n].frame for n in _DATA]
    trade = str(_SAMPLES["XT"].frame)[1:-1]
    big = [f"[{','.join([trade] * 1000)}]", f"[{','.join([trade] * 10)}]"]
    binary = str(_SAMPLES["XQ"].frame).encode()
    return [*login, *data * 200, *big, binary, *data]  # type: ignore[list-item]


async def _run(direct: bool, scan: bool = True) -> tuple[list[Record], int, int, list[bool]]:
    """A polygon crypto driver against a server that plays :func:`_script` and closes:
    (records, messages, malformed frames, whether the scanner was on at each message)."""
    script = _script()

    async def handler(conn: Any) -> None:
        await conn.send(script[0])  # "connected": the session answers with its key
        await asyncio.wait_for(conn.recv(), TIMEOUT)
        for frame in script[1:]:
            await conn.send(frame)
        await conn.close(1000, "done")

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        symbols = "XT.*,XQ.*,XL2.BTC-USD,XA.*,XAS.*"
        given = {"symbol": symbols, "asset_type": "crypto", "feed": "trade"}
        params = POLYGON.resolve({**given, "api_key": "k", "url": f"ws://127.0.0.1:{port}"}, {})
        scanning: list[bool] = []
        hold: list[StreamDriver] = []

        class Noting(POLYGON.session_class):  # type: ignore[name-defined,misc]
            def receive(self, frame: Frame) -> list[Record]:
                ws = hold[0]._ws
                scanning.append(isinstance(ws, _DirectConnection) and ws.scanning)
                return super().receive(frame)  # type: ignore[no-any-return]

        records, driver = await drive_to_end(
            Noting(params), hold, direct_frames=direct, frame_scanner=scan
        )
    return records, driver.messages, driver.malformed, scanning


def test_direct_frames_give_the_records_of_the_recv_path() -> None:
    """Over the Polygon fixture's frames (data, status, bad frames, large and binary ones)
    the direct path, with its scanner and without, gives exactly the records, message and
    malformed counts of the recv() path."""
    plain, messages, malformed, _ = runtime.run(_run(False), timeout=3 * TIMEOUT)
    assert len(plain) > 2000
    assert malformed >= 3 * 200  # the bad samples were read (and counted)
    for scan in (True, False):
        direct, d_messages, d_malformed, scanning = runtime.run(
            _run(True, scan), timeout=3 * TIMEOUT
        )
        assert direct == plain
        assert (d_messages, d_malformed) == (messages, malformed)
        if scan:
            assert sum(scanning) > 0.9 * len(scanning)  # the scanner read nearly every frame
        else:
            assert not any(scanning)


def test_direct_frames_are_the_default_and_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """direct_frames (and its frame scanner) are on by default, off with OBBWS_DIRECT_FRAMES=0
    (OBBWS_FRAME_SCANNER=0) or the keyword, and direct_frames is off (the recv() path)
    whatever was asked when websockets lacks its hooks."""
    params = POLYGON.resolve({"symbol": "XT.*", "api_key": "k", "url": "ws://127.0.0.1:1"}, {})

    def driver(**kwargs: Any) -> StreamDriver:
        session = POLYGON.session_class(params)
        return StreamDriver(session, url=session.url(), on_records=list, **kwargs)

    monkeypatch.delenv(_stream.DIRECT_FRAMES_ENV, raising=False)
    assert _stream.DIRECT_FRAMES_SUPPORTED
    assert driver().direct_frames
    assert not driver(direct_frames=False).direct_frames
    monkeypatch.setenv(_stream.DIRECT_FRAMES_ENV, "0")
    assert not driver().direct_frames
    assert driver(direct_frames=True).direct_frames
    assert driver().frame_scanner
    monkeypatch.setenv(_stream.FRAME_SCANNER_ENV, "off")
    assert not driver().frame_scanner
    assert driver(frame_scanner=True).frame_scanner
    monkeypatch.setattr(_stream, "DIRECT_FRAMES_SUPPORTED", False)
    assert not driver(direct_frames=True).direct_frames
    monkeypatch.setattr(StreamReader, "at_eof", None)
    assert not _stream._direct_frames_supported()


# -- the frame scanner on reads cut anywhere ---------------------------------------------------


def _frame(first: int, payload: bytes) -> bytes:
    """One unmasked server frame: ``first`` byte (FIN, opcode), the length, the payload."""
    n = len(payload)
    if n < 126:
        head = bytes([first, n])
    elif n < 1 << 16:
        head = bytes([first, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + n.to_bytes(8, "big")
    return head + payload


_MEDIUM = b"m" * 300
_LARGE = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length
STREAM = b"".join(
    [
        _frame(0x81, b'{"a":1}'),
        _frame(0x81, _MEDIUM),
        _frame(0x82, _LARGE),
        _frame(0x01, b"frag"),  # a text message in two fragments
        _frame(0x89, b"ping!"),  # a ping between them
        _frame(0x80, b"mented"),
        _frame(0x81, b""),
        _frame(0x8A, b"unsolicited pong"),
        _frame(0x81, "é".encode()),
    ]
)
MESSAGES = [
    (b'{"a":1}', True),
    (_MEDIUM, True),
    (_LARGE, False),
    (b"fragmented", True),
    (b"", True),
    ("é".encode(), True),
]


class _Writes:
    """The client's transport, noting what it writes (to see the pong go out)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@asynccontextmanager
async def _quiet_connection(**kwargs: Any) -> AsyncIterator[tuple[_DirectConnection, _Writes]]:
    """A direct connection to a server that sends nothing (the test feeds the reads)."""

    async def handler(conn: Any) -> None:
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await connect(
            f"ws://127.0.0.1:{port}",
            create_connection=_DirectConnection,
            compression=None,
            close_timeout=0.5,
            **kwargs,
        )
        assert isinstance(ws, _DirectConnection)
        writes = _Writes(ws.transport)
        ws.transport = writes  # type: ignore[assignment]
        try:
            yield ws, writes
        finally:
            ws.transport = writes._transport
            await ws.close()


def _cuts(data: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(how)
    points = sorted(rng.sample(range(1, len(data)), 40))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


async def _feed(reads: list[bytes], **kwargs: Any) -> tuple[list[tuple[bytes, bool]], int, Any]:
    async with _quiet_connection(**kwargs) as (ws, writes):
        got: list[tuple[bytes, bool]] = []
        done: list[int] = []
        ws.start_delivery(lambda data, text: got.append((data, text)), lambda: done.append(1))
        assert ws.scanning
        for read in reads:
            ws.data_received(read)
        assert len(done) == 1 + len(reads)  # once for the held messages, then once per read
        pongs = [w for w in writes.written if w[0] == 0x8A]
        return got, len(pongs), (ws.scanning, ws.protocol.state.name)


@pytest.mark.parametrize("how", ["whole", "bytes", "cut-1", "cut-2", "cut-3"])
def test_the_scanner_splits_reads_cut_anywhere(how: str) -> None:
    """Frames of every length encoding, fragments with a ping between them and pongs give
    the same messages however the reads cut them; the ping is answered and the scanner stays
    on (websockets' parser is back between frames after each control frame)."""
    got, pongs, (scanning, state) = runtime.run(_feed(_cuts(STREAM, how)), timeout=TIMEOUT)
    assert got == MESSAGES
    assert pongs == 1
    assert scanning and state == "OPEN"


def _random_stream(rng: random.Random) -> tuple[bytes, list[tuple[bytes, bool]]]:
    """300 random messages (samples built for this test): whole frames of every length
    encoding, and fragmented ones with pings and pongs between their fragments."""
    parts: list[bytes] = []
    messages: list[tuple[bytes, bool]] = []
    for _ in range(300):
        size = rng.choice([0, 1, 125, 126, 127, 300, 65_535, 65_536, 70_000, rng.randrange(2000)])
        payload = rng.randbytes(size)
        text = rng.random() < 0.5
        if rng.random() < 0.8:
            parts.append(_frame(0x81 if text else 0x82, payload))
        else:
            cuts = sorted(rng.sample(range(size + 1), 2)) if size else [0, 0]
            pieces = [payload[: cuts[0]], payload[cuts[0] : cuts[1]], payload[cuts[1] :]]
            parts.append(_frame(0x01 if text else 0x02, pieces[0]))
            parts.append(_frame(0x89, b"p"))  # control frames may come between fragments
            parts.append(_frame(0x00, pieces[1]))
            parts.append(_frame(0x8A, b"q"))
            parts.append(_frame(0x80, pieces[2]))
        messages.append((payload, text))
    return b"".join(parts), messages


@pytest.mark.parametrize("seed", range(4))
def test_random_messages_cut_at_random_reads_arrive_whole_and_in_order(seed: int) -> None:
    """Random messages, the delivery started at a random byte (websockets holding part of a
    frame then) and the rest cut at random: every message arrives once, whole, in order, and
    the scanner is on by the end."""
    rng = random.Random(seed)
    data, expected = _random_stream(rng)
    start = rng.randrange(1, 5000)
    points = sorted(rng.sample(range(start + 1, len(data)), 300))
    reads = [data[a:b] for a, b in zip([start, *points], [*points, len(data)], strict=True)]

    async def feed() -> tuple[list[tuple[bytes, bool]], bool]:
        async with _quiet_connection(max_size=2**20) as (ws, _):
            got: list[tuple[bytes, bool]] = []
            ws.data_received(data[:start])  # before the delivery starts: held
            ws.start_delivery(lambda payload, text: got.append((payload, text)))
            for read in reads:
                ws.data_received(read)
            return got, ws.scanning

    got, scanning = runtime.run(feed(), timeout=3 * TIMEOUT)
    assert len(got) == len(expected)
    assert got == expected
    assert scanning


def test_a_close_frame_ends_the_scanner_and_what_follows_is_dropped() -> None:
    """After the server's close frame the scanner is off, websockets closes the connection
    normally and a data frame read after the close is not delivered."""
    close = _frame(0x88, (1000).to_bytes(2, "big") + b"bye")
    reads = [_frame(0x81, b"1") + close + _frame(0x81, b"2")]
    got, _, (scanning, state) = runtime.run(_feed(reads), timeout=TIMEOUT)
    assert got == [(b"1", True)]
    assert not scanning and state in ("CLOSING", "CLOSED")


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (bytes([0x81, 0x83]) + b"mask" + b"abc", 1002),  # servers must not mask
        (_frame(0x81, b"x" * 200), 1009),  # beyond max_size (below)
    ],
)
def test_frames_websockets_refuses_are_refused_as_before(bad: bytes, code: int) -> None:
    """A masked frame or one beyond max_size goes to websockets' parser, which fails the
    connection with its usual close code; nothing of it is delivered."""

    async def feed() -> tuple[list[tuple[bytes, bool]], int | None, bool]:
        async with _quiet_connection(max_size=100) as (ws, _):
            got: list[tuple[bytes, bool]] = []
            ws.start_delivery(lambda data, text: got.append((data, text)))
            ws.data_received(_frame(0x81, b"ok") + bad[:5])
            ws.data_received(bad[5:] + _frame(0x81, b"after"))
            sent = ws.protocol.close_sent
            return got, sent.code if sent else None, ws.scanning

    got, sent_code, scanning = runtime.run(feed(), timeout=TIMEOUT)
    assert got == [(b"ok", True)]
    assert sent_code == code
    assert not scanning


def test_the_scanner_waits_for_websockets_to_be_between_frames() -> None:
    """Started while websockets' parser holds part of a frame, the scanner stays off until
    that frame is complete, then takes over; nothing is lost or doubled."""

    async def feed() -> tuple[list[tuple[bytes, bool]], list[bool]]:
        async with _quiet_connection() as (ws, _):
            got: list[tuple[bytes, bool]] = []
            first = _frame(0x81, b"split")
            ws.data_received(first[:4])  # websockets buffers it (delivery not started)
            ws.start_delivery(lambda data, text: got.append((data, text)))
            states = [ws.scanning]
            ws.data_received(first[4:] + _frame(0x81, b"next")[:3])
            states.append(ws.scanning)
            ws.data_received(_frame(0x81, b"next")[3:])
            ws.data_received(_frame(0x81, b"last"))
            states.append(ws.scanning)
            return got, states

    got, states = runtime.run(feed(), timeout=TIMEOUT)
    assert got == [(b"split", True), (b"next", True), (b"last", True)]
    assert states[0] is False and states[-1] is True
