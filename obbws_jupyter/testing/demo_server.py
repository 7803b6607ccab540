"""The ``demo`` provider's market server: a real websocket server on 127.0.0.1 speaking the demo
wire protocol (Polygon-style, see ``docs/demo_protocol.md``) with simulated data
(:mod:`obbws_jupyter.testing.market`).

Three ways to use it:

- ``async``: ``server = await DemoServer(rate=500).start()`` ... ``await server.close()``, on
  any running loop (tests, the obbws background loop).
- sync (notebooks, tests): ``handle = start_demo_server(rate=500)`` runs it on the obbws
  background loop; ``handle.drop_connections()``, ``handle.pause()``, ``handle.close()``...
- another process (benchmarks): ``python -m obbws_jupyter.testing.demo_server --port 0
  --rate 50000`` prints its URL once listening and serves until Ctrl-C / SIGTERM.

``serve(params)`` is the embedded-server factory of the demo provider (``ProviderSpec``).

Test controls simulate provider trouble: :meth:`DemoServer.drop_connections` (a provider-side
drop with a close code, or an abort), :meth:`~DemoServer.reset_connections` (a TCP reset),
:meth:`~DemoServer.inject` (raw, possibly malformed frames), :meth:`~DemoServer.pause` /
:meth:`~DemoServer.resume` (a connection that stays open but goes silent; pings are still
answered), :meth:`~DemoServer.freeze` (silent and deaf: not even pings are answered),
:meth:`~DemoServer.stop_listening` / :meth:`~DemoServer.start` (the server goes away and comes
back on the same port), ``close_after_auth`` (every login is closed at once) and
:meth:`~DemoServer.revoke_auth` (the key stops being accepted and current sessions end).
Its websockets logger masks secrets (an auth frame carries the API key).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import struct
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from obbws_jupyter import runtime
from obbws_jupyter._util import remember_secret, wire_logger
from obbws_jupyter.testing.market import ASSET_TYPES, Channel, Market

__all__ = ["DemoServer", "DemoServerHandle", "main", "serve", "start_demo_server"]

log = logging.getLogger("obbws_jupyter.testing.demo_server")
WIRE_LOGGER = "obbws_jupyter.testing.demo_server.websockets"

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9./:-]{0,19}$")
CHANNELS = ("T", "Q")
TICK_INTERVAL = 0.015  # seconds between data batches
MAX_BATCH = 5000  # events per frame (~500 kB); a larger tick is split to stay under 1 MiB
FIREHOSE_BATCH = 500  # events per frame in firehose (benchmark) mode
FIREHOSE_POOL = 64  # distinct pre-generated frames cycled through in firehose mode
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def _status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def _frame(*elements: Mapping[str, Any]) -> str:
    return _DUMPS(list(elements))


class _Client:
    """Per-connection state of the demo server."""

    __slots__ = ("asset_type", "authenticated", "budget", "channels", "conn", "subscriptions")

    def __init__(self, conn: ServerConnection, asset_type: str) -> None:
        self.conn = conn
        self.asset_type = asset_type
        self.authenticated = False
        self.subscriptions: dict[str, None] = {}  # "T.BTCUSD", "Q.*" ... in order
        self.channels: list[Channel] = []
        self.budget = 0.0  # fractional events carried over between ticks


class DemoServer:
    """A demo market on ``ws://host:port/<asset_type>`` (asset_type: stock | crypto | fx).

    ``api_key=None`` accepts any key; otherwise the key is checked in constant time.
    ``rate`` is events per second per connection, spread over its subscriptions (0: no data,
    heartbeats only). ``seed`` makes the simulated prices reproducible (one market per server:
    a reconnecting client continues the same price paths).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        rate: float = 200.0,
        heartbeat_interval: float = 1.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        firehose: bool = False,
    ) -> None:
        self.host = host
        self.firehose = firehose
        self.port = port
        self.api_key = api_key
        self.rate = _check_rate(rate)
        self.heartbeat_interval = heartbeat_interval
        self.tick_interval = tick_interval
        self.market = Market(seed)
        self.close_after_auth = False  # fault: close every session right after its login
        self.auth_revoked = False  # fault: refuse every key from now on
        # counters (read by tests and benchmarks)
        self.connections_total = 0
        self.auth_attempts = 0
        self.subscribe_requests: list[str] = []
        self.unsubscribe_requests: list[str] = []
        self.events_sent = 0
        self.frames_sent = 0
        self._clients: dict[ServerConnection, _Client] = {}
        self._server: Server | None = None
        self._running: asyncio.Event | None = None  # set = output flowing, clear = paused
        self._frozen = False
        self._changed: asyncio.Condition | None = None

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> DemoServer:
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
            max_size=2**16,
            ping_interval=None,
            logger=wire_logger(WIRE_LOGGER),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("demo server listening on %s (rate %s/s)", self.url, self.rate)
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

    async def __aenter__(self) -> DemoServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL, ``ws://host:port`` (append ``/stock``, ``/crypto`` or ``/fx``)."""
        return f"ws://{self.host}:{self.port}"

    def url_for(self, asset_type: str) -> str:
        """URL of one asset type's endpoint."""
        if asset_type not in ASSET_TYPES:
            raise ValueError(f"asset_type must be one of {', '.join(ASSET_TYPES)}")
        return f"{self.url}/{asset_type}"

    # test controls ---------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections currently open."""
        return len(self._clients)

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

    def set_rate(self, rate: float) -> None:
        """Change the events/s of every connection (0: heartbeats only)."""
        self.rate = _check_rate(rate)

    async def drop_connections(self, code: int | None = 1011, reason: str = "demo drop") -> int:
        """Close every open connection with ``code`` (a provider-side drop); ``code=None``
        aborts the TCP connections without a closing handshake. Returns how many."""
        conns = list(self._clients)
        for conn in conns:
            if code is None:
                conn.transport.abort()
        if code is not None:
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

    def freeze(self) -> None:
        """Go silent and deaf: no output and nothing read (so pings go unanswered) while
        connections stay open. :meth:`resume` ends it."""
        self.pause()
        for conn in self._clients:
            with contextlib.suppress(Exception):
                conn.transport.pause_reading()
        self._frozen = True

    async def stop_listening(self) -> None:
        """The server goes away: connections dropped (1001) and the port closed, until
        :meth:`start` listens again on the same port."""
        await self.close()

    def check_key(self, key: object) -> bool:
        """Whether ``key`` is accepted: any key without ``api_key`` (constant-time compare
        otherwise), none once :meth:`revoke_auth` was called."""
        if self.auth_revoked:
            return False
        if self.api_key is None:
            return True
        return isinstance(key, str) and hmac.compare_digest(key.encode(), self.api_key.encode())

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

    async def inject(self, frame: str | bytes) -> int:
        """Send a raw frame to every connected client (even while paused); returns how many."""
        conns = list(self._clients)
        await asyncio.gather(*(conn.send(frame) for conn in conns), return_exceptions=True)
        return len(conns)

    async def wait_connections(self, n: int, timeout: float | None = None) -> None:
        """Wait until ``n`` connections have been accepted in total (TimeoutError after
        ``timeout`` seconds)."""
        assert self._changed is not None, "start() the server first"
        changed = self._changed

        async def _wait() -> None:
            async with changed:
                await changed.wait_for(lambda: self.connections_total >= n)

        await asyncio.wait_for(_wait(), timeout)

    # websocket side --------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        asset_type = request.path.partition("?")[0].strip("/")
        if asset_type in ASSET_TYPES:
            return None
        return conn.respond(
            HTTPStatus.NOT_FOUND, f"unknown endpoint {request.path!r}; use /stock, /crypto or /fx\n"
        )

    async def _handler(self, conn: ServerConnection) -> None:
        assert conn.request is not None and self._changed is not None
        client = _Client(conn, conn.request.path.partition("?")[0].strip("/"))
        self._clients[conn] = client
        self.connections_total += 1
        async with self._changed:
            self._changed.notify_all()
        producer = asyncio.create_task(
            self._firehose(client) if self.firehose else self._produce(client)
        )
        try:
            await self._send(client, _frame(_status("connected", "obbws demo market")))
            async for message in conn:
                await self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            del self._clients[conn]
            async with self._changed:
                self._changed.notify_all()

    async def _send(self, client: _Client, frame: str) -> None:
        running = self._running
        if running is not None and not running.is_set():
            await running.wait()
        await client.conn.send(frame)
        self.frames_sent += 1

    async def _on_message(self, client: _Client, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            action = request["action"]
            params = request.get("params", "")
            if not isinstance(action, str) or not isinstance(params, str):
                raise TypeError("action and params must be strings")
        except (ValueError, TypeError, KeyError, AttributeError):
            await self._reply(
                client,
                _status("error", 'invalid message: expected {"action": ..., "params": "..."}'),
            )
            return
        if action == "auth":
            await self._auth(client, params)
        elif not client.authenticated:
            await self._reply(client, _status("error", "not authenticated: send auth first"))
        elif action in ("subscribe", "unsubscribe"):
            await self._subscription(client, action, params)
        else:
            await self._reply(client, _status("error", f"unknown action: {action[:40]}"))

    async def _reply(self, client: _Client, *elements: Mapping[str, Any]) -> None:
        await self._send(client, _frame(*elements))

    async def _auth(self, client: _Client, key: str) -> None:
        self.auth_attempts += 1
        if client.authenticated:
            await self._reply(client, _status("error", "already authenticated"))
            return
        if not self.check_key(key):
            await self._reply(client, _status("auth_failed", "authentication failed"))
            await client.conn.close(1008, "authentication failed")
            return
        client.authenticated = True
        await self._reply(client, _status("auth_success", "authenticated"))
        if self.close_after_auth:
            await client.conn.close(1000, "demo: closing after login")

    async def _subscription(self, client: _Client, action: str, params: str) -> None:
        (self.subscribe_requests if action == "subscribe" else self.unsubscribe_requests).append(
            params
        )
        valid: list[str] = []
        replies: list[dict[str, str]] = []
        for item in (p.strip() for p in params.split(",")):
            if not item:
                continue
            channel, dot, symbol = item.partition(".")
            if not dot or channel not in CHANNELS or not (symbol == "*" or SYMBOL_RE.match(symbol)):
                replies.append(_status("error", f"invalid symbol: {item[:40]}"))
                continue
            valid.append(f"{channel}.{symbol}")
        for key in valid:
            if action == "subscribe":
                client.subscriptions[key] = None
            else:
                client.subscriptions.pop(key, None)
        if valid:
            self._rebuild_channels(client)
            verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
            replies.append(_status("success", f"{verb}: {','.join(valid)}"))
        if replies:
            await self._reply(client, *replies)

    def _rebuild_channels(self, client: _Client) -> None:
        channels: dict[tuple[str, str], Channel] = {}
        for key in client.subscriptions:
            kind, _, symbol = key.partition(".")
            for ch in self.market.channels(kind, symbol, client.asset_type):
                channels.setdefault((kind, ch[1].symbol), ch)
        client.channels = list(channels.values())

    async def _produce(self, client: _Client) -> None:
        """Data batches every tick and a heartbeat every ``heartbeat_interval``."""
        loop = asyncio.get_running_loop()
        running = self._running
        assert running is not None
        last = loop.time()
        next_heartbeat = last + self.heartbeat_interval
        try:
            while True:
                await asyncio.sleep(self.tick_interval)
                if not running.is_set():
                    await running.wait()
                    last = loop.time()  # nothing owed for the paused time
                    next_heartbeat = last + self.heartbeat_interval
                now = loop.time()
                dt, last = now - last, now
                if client.authenticated and client.channels and self.rate > 0:
                    await self._send_batch(client, dt)
                else:
                    client.budget = 0.0
                if now >= next_heartbeat:
                    await self._send(client, _frame({"ev": "heartbeat", "t": _now_ms()}))
                    next_heartbeat = max(next_heartbeat + self.heartbeat_interval, now)
        except ConnectionClosed:
            pass

    async def _firehose(self, client: _Client) -> None:
        """Benchmark mode: frames of FIREHOSE_BATCH events, pre-generated once per channel set
        and re-sent as fast as the client drains them (timestamps are those of generation)."""
        pool: list[str] = []
        channels: list[Channel] | None = None
        i = 0
        with contextlib.suppress(ConnectionClosed):
            await self._firehose_loop(client, pool, channels, i)

    async def _firehose_loop(
        self, client: _Client, pool: list[str], channels: list[Channel] | None, i: int
    ) -> None:
        while True:
            if not (client.authenticated and client.channels):
                await asyncio.sleep(self.tick_interval)
                continue
            if client.channels is not channels:
                channels = client.channels
                t_ms = _now_ms()
                pool = [
                    _DUMPS(self.market.events(channels, FIREHOSE_BATCH, t_ms, 0.0))
                    for _ in range(FIREHOSE_POOL)
                ]
            await self._send(client, pool[i % len(pool)])
            self.events_sent += FIREHOSE_BATCH
            i += 1
            if i % 16 == 0:
                await asyncio.sleep(0)  # let control messages and heartbeats through

    async def _send_batch(self, client: _Client, dt: float) -> None:
        # a slow client stalls this loop (send waits for the buffer to drain): owe at most 1 s
        client.budget = min(client.budget + self.rate * dt, max(self.rate, 1.0))
        n = int(client.budget)
        if n <= 0:
            return
        client.budget -= n
        t_ms = _now_ms()
        span = dt * 1000.0
        while n > 0:
            size = min(n, MAX_BATCH)
            events = self.market.events(client.channels, size, t_ms - int(span), span)
            await self._send(client, _DUMPS(events))
            self.events_sent += size
            n -= size


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not rate >= 0.0 or rate == float("inf"):
        raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
    return rate


async def serve(params: Mapping[str, Any]) -> DemoServer:
    """Embedded-server factory of the ``demo`` provider: 127.0.0.1, a free port, the
    connection's ``rate``, any API key accepted."""
    rate = params.get("rate")
    return await DemoServer(rate=200.0 if rate is None else rate).start()


# sync facade -------------------------------------------------------------------------------


class DemoServerHandle:
    """A :class:`DemoServer` running on the obbws background loop, driven from sync code."""

    def __init__(self, server: DemoServer, timeout: float = runtime.DEFAULT_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self.server.url

    def url_for(self, asset_type: str) -> str:
        return self.server.url_for(asset_type)

    @property
    def connections(self) -> int:
        return self.server.connections

    @property
    def connections_total(self) -> int:
        return self.server.connections_total

    @property
    def auth_attempts(self) -> int:
        return self.server.auth_attempts

    @property
    def subscribe_requests(self) -> list[str]:
        return list(self.server.subscribe_requests)

    @property
    def events_sent(self) -> int:
        return self.server.events_sent

    def close(self) -> None:
        runtime.run(self.server.close(), self.timeout)

    def drop_connections(self, code: int | None = 1011, reason: str = "demo drop") -> int:
        return runtime.run(self.server.drop_connections(code, reason), self.timeout)

    def inject(self, frame: str | bytes) -> int:
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

    def set_close_after_auth(self, on: bool) -> None:
        self.server.close_after_auth = on

    @property
    def auth_revoked(self) -> bool:
        return self.server.auth_revoked

    def pause(self) -> None:
        runtime.run(_call(self.server.pause), self.timeout)

    def resume(self) -> None:
        runtime.run(_call(self.server.resume), self.timeout)

    def set_rate(self, rate: float) -> None:
        runtime.run(_call(self.server.set_rate, rate), self.timeout)

    def wait_connections(self, n: int, timeout: float | None = None) -> None:
        wait = self.timeout if timeout is None else timeout
        runtime.run(self.server.wait_connections(n, wait), wait + 1.0)

    def __enter__(self) -> DemoServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DemoServerHandle {self.url} connections={self.connections}>"


async def _call(func: Any, *args: Any) -> Any:
    return func(*args)


def start_demo_server(**kwargs: Any) -> DemoServerHandle:
    """Start a :class:`DemoServer` (same keyword arguments) on the obbws background loop."""
    server = DemoServer(**kwargs)
    runtime.run(server.start())
    return DemoServerHandle(server)


# command line ------------------------------------------------------------------------------


async def _serve_forever(args: argparse.Namespace, api_key: str | None) -> None:
    remember_secret(api_key)  # never in this process's logs
    server = DemoServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        rate=args.rate,
        heartbeat_interval=args.heartbeat,
        seed=args.seed,
        firehose=args.firehose,
    )
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


def main(argv: list[str] | None = None) -> None:
    """``python -m obbws_jupyter.testing.demo_server --port P --rate R [--api-key-env VAR]``"""
    parser = argparse.ArgumentParser(
        prog="python -m obbws_jupyter.testing.demo_server",
        description="Serve the obbws demo market until Ctrl-C; prints its base URL.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s per connection")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--firehose",
        action="store_true",
        help="benchmark mode: pre-generated frames as fast as the client reads (ignores --rate)",
    )
    parser.add_argument(
        "--api-key-env", default=None, help="require the key held in this environment variable"
    )
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        parser.error(f"environment variable {args.api_key_env} is empty or not set")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args, api_key))


if __name__ == "__main__":
    main()
