"""The ``replay`` provider's server: plays a capture file (:mod:`obbws_jupyter.capture`) to every
client that connects, on 127.0.0.1.

Per connection: the recorded frames in order (text as text, binary as binary) with the recorded
gaps divided by ``speed`` (``0``: as fast as possible, yielding to the loop at least every 100
frames), then the end marker ``{"obbws_replay":"end","frames":N}``; the connection then stays
open, idle, until the client closes it. ``loop=True`` starts over instead of ending. Client
messages are read and ignored.

The capture is read lazily from the file on the loop thread (buffered line reads): fine for
tests and demos; very large captures read on the loop cost a little latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from obbws_jupyter._util import wire_logger
from obbws_jupyter.capture import read_capture, read_header
from obbws_jupyter.exceptions import InvalidParameterError

__all__ = ["ReplayServer", "end_marker", "serve"]

log = logging.getLogger("obbws_jupyter.offline.replay_server")

YIELD_EVERY = 100  # frames between yields to the loop at speed 0


def end_marker(frames: int) -> str:
    """The text frame that ends a replay."""
    return json.dumps({"obbws_replay": "end", "frames": frames}, separators=(",", ":"))


class ReplayServer:
    """Serve one capture file on ``ws://host:port/`` (any path)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        loop: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not speed >= 0.0:
            raise InvalidParameterError(f"replay: speed must be >= 0, got {speed!r}.")
        self.path = Path(path)
        self.header = read_header(self.path)  # fail now on a file that is not a capture
        self.speed = float(speed)
        self.loop = bool(loop)
        self.host = host
        self.port = port
        self.connections_total = 0
        self.frames_sent = 0
        self._server: Server | None = None

    async def start(self) -> ReplayServer:
        if self._server is None:
            self._server = await ws_serve(
                self._handler,
                self.host,
                self.port,
                compression=None,
                ping_interval=None,
                max_size=2**16,
                logger=wire_logger("obbws_jupyter.offline.replay_server.websockets"),
            )
            self.port = self._server.sockets[0].getsockname()[1]
            log.info("replay server for %s listening on %s", self.path, self.url)
        return self

    async def close(self) -> None:
        """Close every connection and stop listening. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def connections(self) -> int:
        return 0 if self._server is None else len(self._server.connections)

    async def _handler(self, conn: ServerConnection) -> None:
        self.connections_total += 1
        drain = asyncio.create_task(_drain(conn))
        try:
            while True:
                sent = await self._play(conn)
                if not self.loop or sent == 0:  # an empty capture cannot loop
                    break
            await conn.send(end_marker(sent))
            await conn.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain

    async def _play(self, conn: ServerConnection) -> int:
        """Send the capture once; returns the number of frames sent."""
        loop = asyncio.get_running_loop()
        speed = self.speed
        _, frames = read_capture(self.path)
        start = loop.time()
        sent = 0
        unslept = 0  # frames sent since the last time this task let the loop run
        with contextlib.closing(frames):
            for t, frame in frames:
                delay = start + t / speed - loop.time() if speed > 0.0 else 0.0
                if delay > 0.0:
                    await asyncio.sleep(delay)
                    unslept = 0
                elif unslept >= YIELD_EVERY:
                    await asyncio.sleep(0)
                    unslept = 0
                await conn.send(frame)
                sent += 1
                unslept += 1
                self.frames_sent += 1
        await asyncio.sleep(0)  # a looping replay of a tiny capture must not starve the loop
        return sent


async def _drain(conn: ServerConnection) -> None:
    """Read and drop client messages (keeps the socket's read side flowing)."""
    with contextlib.suppress(ConnectionClosed):
        async for _ in conn:
            pass


async def serve(params: Mapping[str, Any]) -> ReplayServer:
    """Embedded-server factory of the ``replay`` provider (``path``, ``speed``, ``loop``)."""
    speed = params.get("speed")
    server = ReplayServer(
        params["path"],
        speed=1.0 if speed is None else float(speed),
        loop=bool(params.get("loop")),
    )
    return await server.start()
