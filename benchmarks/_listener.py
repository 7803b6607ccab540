"""Lean broadcast listeners for the latency and fan-out benchmarks (stdlib only).

``python benchmarks/_listener.py ws://127.0.0.1:PORT N`` opens N listeners to a broadcast in
this one process and prints ``READY`` once every handshake is done. It is driven by lines on
stdin: ``reset`` (start a measuring window), ``report`` (print the window's results as one
JSON line), ``stall K`` / ``resume K`` (listener K stops / resumes reading its socket: a
listener that falls behind), ``quit``.

Why not ``listen()`` or a websockets client: at 10k events/s, 100 listeners receive a million
frames per second, which a Python websockets client cannot parse on a 2-core machine; the
listeners would measure themselves. Here a listener does no per-frame Python work: it counts
records in each chunk it reads (``{"id":`` occurrences, in C), and takes every record's
``date`` (which the stamped fake server set to its send time, in ns) with one regex pass,
computing the lag once per distinct date (a provider frame's events share it). It relies on
what the broadcast sends: unmasked text frames of flat JSON objects whose first key is ``id``
and whose values hold no ``}`` (so every chunk is cut after its last ``}`` at a frame
boundary), and no pings (the benchmarks start the broadcast with ``ping_interval=None``).
A close frame (code 1013 for a listener dropped as too slow) is answered and reported.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

RECORD = b'{"id":'
DATE = re.compile(rb'"date":"([^"]+)"')
BIN_NS = 10_000  # latency histogram bins of 10 µs
_stamps: dict[bytes, int] = {}


def stamp_ns(text: bytes) -> int:
    """An ISO 8601 date with offset -> ns since the epoch (cached: frames share dates)."""
    value = _stamps.get(text)
    if value is None:
        if len(_stamps) > 200_000:
            _stamps.clear()
        value = round(datetime.fromisoformat(text.decode()).timestamp() * 1e6) * 1000
        _stamps[text] = value
    return value


class Listener(asyncio.Protocol):
    """One websocket listener that counts records and bins their latency."""

    def __init__(self, index: int, host: str, port: int, path: str) -> None:
        self.index = index
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: "
            f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.buffer = b""
        self.records = 0
        self.histogram: Counter[int] = Counter()
        self.close_code: int | None = None
        self.lost = False
        self.stalled = False  # in this window

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"listener {self.index}: closed early"))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if not self.open:
            data = self._handshake(data)
            if not data:
                return
        buffer = self.buffer + data if self.buffer else data
        cut = buffer.rfind(b"}") + 1
        region, self.buffer = buffer[:cut], buffer[cut:]
        if region:
            self.records += region.count(RECORD)
            histogram = self.histogram
            for date, count in Counter(DATE.findall(region)).items():
                histogram[(now - stamp_ns(date)) // BIN_NS] += count
        if self.buffer[:1] == b"\x88" and len(self.buffer) >= 4 and self.close_code is None:
            self._on_close(self.buffer)

    def _handshake(self, data: bytes) -> bytes:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return b""
        self.buffer = b""
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            self.ready.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
            assert self.transport is not None
            self.transport.close()
            return b""
        self.open = True
        self.ready.set_result(None)
        return rest

    def _on_close(self, frame: bytes) -> None:
        """A close frame from the server: keep its code, answer it (masked, zero key: the
        payload goes as is), and close the socket."""
        self.close_code = int.from_bytes(frame[2:4], "big")
        assert self.transport is not None
        self.transport.write(b"\x88\x82\x00\x00\x00\x00" + frame[2:4])
        self.transport.close()

    def reset(self) -> None:
        self.records = 0
        self.histogram = Counter()
        self.stalled = False

    def report(self) -> dict[str, object]:
        return {
            "index": self.index,
            "records": self.records,
            "close_code": self.close_code,
            "lost": self.lost,
            "stalled": self.stalled,
        }


async def main(url: str, count: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    listeners = [Listener(i, host, port, path) for i in range(count)]
    for listener in listeners:
        await loop.create_connection(lambda listener=listener: listener, host, port)
    await asyncio.gather(*(listener.ready for listener in listeners))
    print("READY", flush=True)
    commands: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, commands), daemon=True).start()
    while True:
        command, _, arg = (await commands.get()).partition(" ")
        if command == "reset":
            for listener in listeners:
                listener.reset()
        elif command == "report":
            print(json.dumps(_report(listeners)), flush=True)
        elif command in ("stall", "resume"):
            listener = listeners[int(arg)]
            assert listener.transport is not None
            if command == "stall":
                listener.stalled = True
                listener.transport.pause_reading()
            else:
                listener.transport.resume_reading()
        elif command in ("quit", ""):
            for listener in listeners:
                if listener.transport is not None:
                    listener.transport.abort()
            return


def _report(listeners: list[Listener]) -> dict[str, object]:
    steady: Counter[int] = Counter()
    stalled: Counter[int] = Counter()
    for listener in listeners:
        (stalled if listener.stalled else steady).update(listener.histogram)
    return {
        "listeners": [listener.report() for listener in listeners],
        "histogram": dict(steady),
        "histogram_stalled": dict(stalled),
        "bin_ns": BIN_NS,
    }


def _read_stdin(loop: asyncio.AbstractEventLoop, commands: asyncio.Queue[str]) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(commands.put_nowait, line.strip())
    loop.call_soon_threadsafe(commands.put_nowait, "quit")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
