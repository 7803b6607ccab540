"""The base of every fake provider server: a real websocket server on 127.0.0.1 with the test
controls that make provider trouble reproducible.

A fake server speaks one provider's wire protocol faithfully (its subclass does: paths, auth,
acknowledgements, heartbeats, errors, data frames) and draws realistic prices from the offline
market (:mod:`obbws_jupyter.offline.market`). The base owns what every fake needs:

- lifecycle on any running loop: ``server = await FakeServer(...).start()`` ...
  ``await server.close()`` (or ``async with``); ``port=0`` picks a free port; :attr:`url`;
- a data pump per connection: every ``tick_interval`` it owes ``rate`` events/s to each
  connection that is :meth:`ready` and asks :meth:`make_frames` for them; a heartbeat frame
  every ``heartbeat_interval`` if :meth:`heartbeat` returns one;
- firehose mode (benchmarks, ``firehose=True``): frames of ``events_per_frame`` events,
  generated once per subscription set by :meth:`make_frames` and re-sent as fast as the client
  reads (``rate`` and heartbeats are ignored; timestamps are those of generation);
- test controls: :meth:`drop_connections` (a close code, or ``None`` for a TCP reset),
  :meth:`inject` (raw, possibly malformed frames), :meth:`pause` / :meth:`resume` (open but
  silent: watchdog tests), :meth:`set_rate`, :meth:`wait_connections` and :meth:`wait_for`
  (wait on a condition instead of sleeping);
- counters the tests assert on: ``connections_total``, ``auth_attempts``, ``events_sent``,
  ``frames_sent`` and ``received`` (every frame the clients sent, newest last, bounded);
- :class:`ServerHandle`: the same server driven from sync code (notebooks, tests), running on
  the obbws background loop; :func:`start_server` builds one;
- :func:`run_cli`: ``python -m obbws_jupyter.fakes.<provider> --port 0`` prints the URL and
  serves until Ctrl-C / SIGTERM (benchmarks run servers in their own process).

A subclass overrides the hooks :meth:`process_request` (refuse unknown paths, HTTP endpoints),
:meth:`on_open`, :meth:`on_message`, :meth:`ready`, :meth:`make_frames` and :meth:`heartbeat`,
and keeps its per-connection state in ``client.state``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from obbws_jupyter import runtime
from obbws_jupyter._util import remember_secret, wire_logger
from obbws_jupyter.offline.market import Market

__all__ = [
    "FIREHOSE_EVENTS",
    "FakeClient",
    "FakeServer",
    "ServerHandle",
    "add_firehose_options",
    "now_ms",
    "run_beside",
    "run_cli",
    "start_server",
]

log = logging.getLogger("obbws_jupyter.fakes")
WIRE_LOGGER = "obbws_jupyter.fakes.wire"  # websockets' logger for the fake servers

Frame = str | bytes
S = TypeVar("S", bound="FakeServer")

TICK_INTERVAL = 0.015  # seconds between data batches
RECEIVED_KEPT = 10_000  # client frames kept in FakeServer.received
FIREHOSE_EVENTS = 500  # events per frame in firehose mode, unless told otherwise
FIREHOSE_POOL = 64  # distinct pre-generated frames cycled through in firehose mode
FIREHOSE_BLOB_FRAMES = 32  # frames written per transport write in firehose mode
FIREHOSE_MAX_EVENTS = 100_000


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (what most providers stamp)."""
    return time.time_ns() // 1_000_000


async def run_beside(main: Awaitable[None], *side: Coroutine[Any, Any, None]) -> None:
    """Await ``main`` while the ``side`` coroutines run as tasks, and cancel them when it ends:
    a fake's per-connection timers (pings, heartbeats, age limits) beside its data pump."""
    tasks = [asyncio.create_task(coro) for coro in side]
    try:
        await main
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def check_rate(rate: float) -> float:
    """``rate`` as a finite float >= 0 (events per second), or ValueError."""
    value = float(rate)
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
    return value


def check_events_per_frame(events_per_frame: int) -> int:
    """``events_per_frame`` as an int in 1..FIREHOSE_MAX_EVENTS, or ValueError."""
    if (
        isinstance(events_per_frame, bool)
        or not isinstance(events_per_frame, int)
        or not 1 <= events_per_frame <= FIREHOSE_MAX_EVENTS
    ):
        raise ValueError(
            f"events_per_frame must be an int from 1 to {FIREHOSE_MAX_EVENTS}, "
            f"got {events_per_frame!r}"
        )
    return events_per_frame


class FakeClient:
    """Server-side state of one connection; subclasses keep theirs in ``state``."""

    __slots__ = ("authenticated", "budget", "conn", "path", "query", "state", "subscriptions")

    def __init__(self, conn: ServerConnection, path: str, query: str) -> None:
        self.conn = conn
        self.path = path  # request path without the query string
        self.query = query
        self.authenticated = False
        self.subscriptions: dict[str, None] = {}  # in the order asked
        self.budget = 0.0  # fractional events carried over between ticks
        self.state: dict[str, Any] = {}


class FakeServer:
    """A provider's websocket server on ``ws://host:port`` (see the module docstring).

    ``api_key=None`` accepts any key; otherwise :meth:`check_key` compares in constant time.
    ``rate`` is events per second per ready connection (0: no data). ``seed`` makes the
    simulated prices reproducible; one market per server, so a reconnecting client continues
    the same price paths. ``firehose=True`` (benchmarks) sends frames of ``events_per_frame``
    events as fast as the client reads instead (see the module docstring).
    """

    provider = "fake"  # for logs

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        rate: float = 200.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        heartbeat_interval: float | None = None,
        max_size: int = 2**16,
        firehose: bool = False,
        events_per_frame: int = FIREHOSE_EVENTS,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.rate = check_rate(rate)
        self.tick_interval = tick_interval
        self.heartbeat_interval = heartbeat_interval
        self.max_size = max_size
        self.firehose = bool(firehose)
        self.events_per_frame = check_events_per_frame(events_per_frame)
        self.market = Market(seed)
        self.connections_total = 0
        self.auth_attempts = 0
        self.events_sent = 0
        self.frames_sent = 0
        self.received: deque[Frame] = deque(maxlen=RECEIVED_KEPT)
        self.auth_revoked = False  # fault: refuse every key from now on (revoke_auth)
        self._frozen = False
        self._clients: dict[ServerConnection, FakeClient] = {}
        self._server: Server | None = None
        self._running: asyncio.Event | None = None  # set = output flowing, clear = paused
        self._changed: asyncio.Condition | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self: S) -> S:
        """Listen (port 0 picks a free port; see :attr:`url`) and return ``self``."""
        if self._server is not None:
            return self
        self._running = asyncio.Event()
        self._running.set()
        self._changed = asyncio.Condition()
        self._server = await ws_serve(
            self._handler,
            self.host,
            self.port,
            compression=None,
            process_request=self._process_request,
            max_size=self.max_size,
            ping_interval=None,
            # quiet unless set, keys masked: client auth frames carry API keys
            logger=wire_logger(WIRE_LOGGER),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s fake server listening on %s (rate %s/s)", self.provider, self.url, self.rate)
        return self

    async def close(self) -> None:
        """Close every connection (1001) and stop listening. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._running is not None:
            self._running.set()  # let paused senders finish
        server.close()
        await server.wait_closed()

    async def __aenter__(self: S) -> S:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """``ws://host:port`` (subclasses document the paths they serve)."""
        return f"ws://{self.host}:{self.port}"

    # -- test controls -----------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections currently open."""
        return len(self._clients)

    @property
    def clients(self) -> list[FakeClient]:
        """The open connections' state, oldest first."""
        return list(self._clients.values())

    @property
    def paused(self) -> bool:
        return self._running is not None and not self._running.is_set()

    def pause(self) -> None:
        """Stop all output (data, heartbeats, replies) while keeping connections open."""
        if self._running is not None:
            self._running.clear()

    def resume(self) -> None:
        """Restart output after :meth:`pause` (and reading after :meth:`freeze`)."""
        if self._frozen:
            self._frozen = False
            for conn in self._clients:
                with contextlib.suppress(Exception):
                    conn.transport.resume_reading()
        if self._running is not None:
            self._running.set()

    def freeze(self) -> None:
        """Go silent and deaf: no output and nothing read (so pings go unanswered) while
        connections stay open. :meth:`resume` ends it."""
        self.pause()
        for conn in self._clients:
            with contextlib.suppress(Exception):
                conn.transport.pause_reading()
        self._frozen = True

    def set_rate(self, rate: float) -> None:
        """Change the events/s of every connection (0: no data)."""
        self.rate = check_rate(rate)

    async def drop_connections(self, code: int | None = 1011, reason: str = "fake drop") -> int:
        """Close every open connection with ``code`` (a provider-side drop); ``code=None``
        aborts the TCP connections without a closing handshake (a reset). Returns how many."""
        conns = list(self._clients)
        if code is None:
            for conn in conns:
                conn.transport.abort()
        else:
            await asyncio.gather(
                *(conn.close(code, reason) for conn in conns), return_exceptions=True
            )
        return len(conns)

    async def reset_connections(self) -> int:
        """Abort every open connection with a TCP RST (SO_LINGER 0), as a crashed peer or a
        middlebox does; returns how many."""
        conns = list(self._clients)
        for conn in conns:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.transport.abort()
        return len(conns)

    async def stop_listening(self) -> None:
        """The server goes away: connections dropped (1001) and the port closed, until
        :meth:`start` listens again on the same port."""
        await self.close()

    async def revoke_auth(self) -> int:
        """The key stops being accepted: current sessions are closed (1008, "authentication
        revoked") and every later login fails; returns how many sessions were closed."""
        self.auth_revoked = True
        conns = list(self._clients)
        await asyncio.gather(
            *(conn.close(1008, "authentication revoked") for conn in conns),
            return_exceptions=True,
        )
        return len(conns)

    async def inject(self, frame: Frame) -> int:
        """Send a raw frame to every connected client (even while paused); returns how many."""
        conns = list(self._clients)
        await asyncio.gather(*(conn.send(frame) for conn in conns), return_exceptions=True)
        return len(conns)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate()`` holds; it is checked after every connection change and
        every frame a client sends (TimeoutError after ``timeout`` seconds)."""
        assert self._changed is not None, "start() the server first"
        changed = self._changed

        async def _wait() -> None:
            async with changed:
                await changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)

    async def wait_connections(self, n: int, timeout: float | None = None) -> None:
        """Wait until ``n`` connections have been accepted in total."""
        await self.wait_for(lambda: self.connections_total >= n, timeout)

    # -- hooks for subclasses ----------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake with an HTTP response (unknown path, bad key), or serve a plain
        HTTP endpoint; None accepts the websocket."""
        return None

    async def on_open(self, client: FakeClient) -> None:
        """A websocket is open (send the provider's greeting here)."""

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        """One frame from the client (auth, subscribe, unsubscribe, ...)."""
        raise NotImplementedError

    def ready(self, client: FakeClient) -> bool:
        """Whether data flows to ``client`` now."""
        return client.authenticated and bool(client.subscriptions)

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        """Frames carrying ``n`` events stamped in ``[t_ms, t_ms + span_ms)``."""
        return []

    def heartbeat(self, client: FakeClient) -> Frame | None:
        """The provider's heartbeat frame, or None if it has none."""
        return None

    def check_key(self, key: object) -> bool:
        """Whether ``key`` is accepted (any key when the server has none, in constant time
        otherwise; none once :meth:`revoke_auth` was called)."""
        self.auth_attempts += 1
        if self.auth_revoked:
            return False
        if self.api_key is None:
            return True
        return isinstance(key, str) and hmac.compare_digest(key.encode(), self.api_key.encode())

    async def send(self, client: FakeClient, frame: Frame, events: int = 0) -> None:
        """Send one frame to ``client`` (waits while paused); counts frames and events."""
        running = self._running
        if running is not None and not running.is_set():
            await running.wait()
        await client.conn.send(frame)
        self.frames_sent += 1
        self.events_sent += events

    # -- websocket side ----------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        return self.process_request(conn, request)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def _handler(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        path, _, query = conn.request.path.partition("?")
        client = FakeClient(conn, path, query)
        self._clients[conn] = client
        self.connections_total += 1
        await self._notify()
        pump = asyncio.create_task(self.produce(client))
        try:
            await self.on_open(client)
            async for message in conn:
                self.received.append(message)
                await self.on_message(client, message)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            del self._clients[conn]
            await self._notify()

    async def produce(self, client: FakeClient) -> None:
        """Data every tick and heartbeats (or the firehose); subclasses with another pace
        override it."""
        if self.firehose:
            with contextlib.suppress(ConnectionClosed):
                await self._firehose(client)
            return
        loop = asyncio.get_running_loop()
        running = self._running
        assert running is not None
        last = loop.time()
        interval = self.heartbeat_interval
        next_heartbeat = last + interval if interval else float("inf")
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.tick_interval)
                if not running.is_set():
                    await running.wait()
                    last = loop.time()  # nothing owed for the paused time
                    next_heartbeat = last + interval if interval else float("inf")
                now = loop.time()
                dt, last = now - last, now
                if self.rate > 0 and self.ready(client):
                    await self._send_owed(client, dt)
                else:
                    client.budget = 0.0
                if interval and now >= next_heartbeat:
                    beat = self.heartbeat(client)
                    if beat is not None:
                        await self.send(client, beat)
                    next_heartbeat = max(next_heartbeat + interval, now)

    async def _firehose(self, client: FakeClient) -> None:
        """Frames of ``events_per_frame`` events, drawn once per subscription set (a pool of
        FIREHOSE_POOL draws) and re-sent as fast as the client drains them.

        The pool is serialized once to wire bytes (unmasked text frames, RFC 6455 §5.2; the
        fakes negotiate no compression) and written in blobs of several frames, so that a
        single-event firehose measures the client, not websockets' per-frame send path."""
        running = self._running
        assert running is not None
        conn = client.conn
        blobs: list[tuple[bytes, int, int]] = []  # (wire bytes, frames, events)
        subscribed: tuple[str, ...] | None = None
        i = 0
        while True:
            if not self.ready(client):
                await asyncio.sleep(self.tick_interval)
                continue
            current = tuple(client.subscriptions)
            if current != subscribed:
                subscribed, blobs = current, self._firehose_blobs(client)
            if not running.is_set():
                await running.wait()
            if conn.protocol.state is not State.OPEN:
                return
            blob, frames, events = blobs[i % len(blobs)]
            conn.transport.write(blob)
            self.frames_sent += frames
            self.events_sent += events
            i += 1
            await conn.drain()  # waits while the client's socket buffer is full
            if i % 16 == 0:
                await asyncio.sleep(0)  # let control messages through

    def _firehose_blobs(self, client: FakeClient) -> list[tuple[bytes, int, int]]:
        per_frame = self.events_per_frame
        t_ms = now_ms()
        blobs: list[tuple[bytes, int, int]] = []
        parts: list[bytes] = []
        events = 0
        for _ in range(FIREHOSE_POOL):
            frames = self.make_frames(client, per_frame, t_ms, 0.0)
            events += per_frame  # a subclass may split a large draw in several frames
            for frame in frames:
                opcode = Opcode.TEXT if isinstance(frame, str) else Opcode.BINARY
                data = frame.encode() if isinstance(frame, str) else frame
                parts.append(WsFrame(opcode, data).serialize(mask=False, extensions=[]))
            if len(parts) >= FIREHOSE_BLOB_FRAMES or sum(map(len, parts)) >= 2**16:
                blobs.append((b"".join(parts), len(parts), events))
                parts, events = [], 0
        if parts:
            blobs.append((b"".join(parts), len(parts), events))
        return blobs

    async def _send_owed(self, client: FakeClient, dt: float) -> None:
        # a slow client stalls this loop (send waits for the buffer to drain): owe at most 1 s
        client.budget = min(client.budget + self.rate * dt, max(self.rate, 1.0))
        n = int(client.budget)
        if n <= 0:
            return
        client.budget -= n
        span = dt * 1000.0
        for frame in self.make_frames(client, n, now_ms() - int(span), span):
            await self.send(client, frame)
        self.events_sent += n


# -- sync facade -----------------------------------------------------------------------------


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


class ServerHandle:
    """A fake server running on the obbws background loop, driven from sync code.

    Controls run on the loop; other attributes (counters, ``url``, ``received``) are read from
    the server as they are."""

    def __init__(self, server: FakeServer, timeout: float = runtime.DEFAULT_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def close(self) -> None:
        runtime.run(self.server.close(), self.timeout)

    def drop_connections(self, code: int | None = 1011, reason: str = "fake drop") -> int:
        return runtime.run(self.server.drop_connections(code, reason), self.timeout)

    def inject(self, frame: Frame) -> int:
        return runtime.run(self.server.inject(frame), self.timeout)

    def reset_connections(self) -> int:
        return runtime.run(self.server.reset_connections(), self.timeout)

    def freeze(self) -> None:
        runtime.run(_call(self.server.freeze), self.timeout)

    def stop_listening(self) -> None:
        runtime.run(self.server.stop_listening(), self.timeout)

    def start(self) -> None:
        """Listen again (on the same port) after :meth:`stop_listening`."""
        runtime.run(self.server.start(), self.timeout)

    def revoke_auth(self) -> int:
        return runtime.run(self.server.revoke_auth(), self.timeout)

    def pause(self) -> None:
        runtime.run(_call(self.server.pause), self.timeout)

    def resume(self) -> None:
        runtime.run(_call(self.server.resume), self.timeout)

    def set_rate(self, rate: float) -> None:
        runtime.run(_call(self.server.set_rate, rate), self.timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        wait = self.timeout if timeout is None else timeout
        runtime.run(self.server.wait_for(predicate, wait), wait + 1.0)

    def wait_connections(self, n: int, timeout: float | None = None) -> None:
        wait = self.timeout if timeout is None else timeout
        runtime.run(self.server.wait_connections(n, wait), wait + 1.0)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self.server).__name__} {self.server.url} connections={self.connections}>"


def start_server(cls: type[FakeServer], **kwargs: Any) -> ServerHandle:
    """Start ``cls(**kwargs)`` on the obbws background loop and return its sync handle."""
    server = cls(**kwargs)
    runtime.run(server.start())
    return ServerHandle(server)


# -- command line ----------------------------------------------------------------------------


def add_firehose_options(parser: argparse.ArgumentParser) -> None:
    """``--firehose`` and ``--events-per-frame N``, for fakes whose ``_build`` passes them on
    (``firehose=args.firehose, events_per_frame=args.events_per_frame``)."""
    parser.add_argument(
        "--firehose",
        action="store_true",
        help="benchmark mode: pre-generated frames as fast as the client reads (ignores --rate)",
    )
    parser.add_argument(
        "--events-per-frame",
        type=_events_per_frame_arg,
        default=FIREHOSE_EVENTS,
        metavar="N",
        help=f"events per frame in firehose mode (default {FIREHOSE_EVENTS})",
    )


def _events_per_frame_arg(text: str) -> int:
    try:
        return check_events_per_frame(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_cli(
    build: Callable[[argparse.Namespace, str | None], FakeServer],
    prog: str,
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """A fake server's ``main()``: common options (--host, --port, --rate, --seed,
    --api-key-env), plus ``extra`` ones; prints the URL once listening, serves until Ctrl-C
    or SIGTERM. The API key is read from an environment variable, never from argv."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s per connection")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--api-key-env", default=None, help="require the key held in this environment variable"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        parser.error(f"environment variable {args.api_key_env} is empty or not set")
    remember_secret(api_key)  # never in this process's logs
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(build(args, api_key)))


async def _serve_forever(server: FakeServer) -> None:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(server.url, flush=True)  # the one line a parent process waits for
    try:
        await stop.wait()
    finally:
        await server.close()
