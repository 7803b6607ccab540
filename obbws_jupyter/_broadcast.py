"""The local broadcast server: fans a connection's records out to websocket listeners.

This is the only module that serves listeners (``listen.py`` is the client side). One
:class:`BroadcastServer` runs per broadcasting connection, on the background loop of
:mod:`obbws_jupyter.runtime`. The stream driver calls :meth:`BroadcastServer.publish` on the
loop thread with the records of each received frame; nothing polls.

Wire protocol (DESIGN §7)::

    ws://HOST:PORT/[?auth_token=TOKEN][&replay=N]     (or header "Authorization: Bearer TOKEN")

- each record is one text frame holding one JSON object: ``id``, ``received_at``, then the
  provider's fields in schema order (a missing field is ``null``; NaN/inf are ``null``);
  timestamps are ISO 8601 strings in the connection's time zone with offset and microseconds,
  e.g. ``"2026-11-25T08:12:33.123456-05:00"``;
- a listener gets the records published after it joined; ``?replay=N`` (1..100000) first sends
  the last N stored records (from ``replay_source``), then the live ones, without gap or
  duplicate, ids strictly increasing;
- a missing token is refused with HTTP 401, a wrong one with HTTP 403, more than one token in
  one handshake (several ``auth_token`` values, or a query token and a header) with HTTP 400,
  a browser ``Origin`` other than localhost (and not in ``allowed_origins``) with HTTP 403, a
  bad ``replay`` with HTTP 400: all at the handshake, before any data. After
  ``max_auth_failures`` wrong or missing tokens from one address within
  ``auth_failure_window`` seconds, that address is refused with HTTP 429 until the window
  has passed (token guessing is slow);
- without a token the server binds only to loopback addresses unless ``allow_insecure=True``;
- a record is encoded once for all listeners and written without awaiting (websockets'
  ``broadcast``, see its ``docs/topics/broadcast.rst``: no backpressure, so slow listeners are
  our job). A listener whose transport buffer grows past ``max_buffer`` bytes is dropped with
  close code 1013 "listener too slow" instead of slowing the others or growing memory; when
  all listeners together hold more than ``max_total_buffer`` bytes, the fullest are cut off
  until they fit, so many non-reading listeners cannot add up either;
- replays load and encode in a worker thread, at most ``max_replays`` at a time (more wait,
  up to ``max_waiting_replays``; beyond that HTTP 503), and are written in framed chunks that
  wait for the listener to drain: they neither stall the stream nor pile up in memory;
- ``stop()`` closes listeners with 1001 "server shutting down" and frees the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import http
import inspect
import ipaddress
import logging
import struct
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from obbws_jupyter._util import wire_logger
from obbws_jupyter._validate import check_token
from obbws_jupyter._wire import DEFAULT_PORT, MAX_REPLAY, RecordEncoder, encode_record
from obbws_jupyter.exceptions import BroadcastError, InvalidParameterError, PortInUseError
from obbws_jupyter.protocol import Field
from obbws_jupyter.sinks._base import Batch, Sink, SinkHealth

__all__ = [
    "DEFAULT_PORT",
    "MAX_REPLAY",
    "WIRE_LOGGER",
    "BroadcastServer",
    "BroadcastSink",
    "RecordEncoder",
    "encode_record",
]

log = logging.getLogger("obbws_jupyter.broadcast")
WIRE_LOGGER = "obbws_jupyter.broadcast.websockets"  # websockets' own messages, tokens masked

PORT_FALLBACK_RANGE = 100
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

REPLAY_CHUNK_BYTES = 256 * 1024  # replay frames written per drain
MAX_TRACKED_ADDRESSES = 10_000  # failed-auth bookkeeping is bounded too

CLOSE_TOO_SLOW = 1013  # "try again later"
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011

ReplaySource = Callable[[int, int | None], list[dict[str, Any]]]

# Options we set ourselves (the rest of serve()'s and loop.create_server()'s are allowed).
_OWN_OPTIONS = frozenset({"handler", "host", "port", "process_request", "self"})
_SERVER_DEFAULTS: dict[str, Any] = {
    "compression": None,  # loopback: compression costs ~70 KiB and CPU per listener
    "max_size": 2**16,  # listeners have nothing to say
    "ping_interval": 20,
    "ping_timeout": 60,  # generous: the loop may be starved by heavy work in the kernel
    "close_timeout": 5,
}


# -- the server ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Listener:
    """Server-side state of one listener."""

    connection: ServerConnection
    remote: str
    live: bool = True
    dropped: bool = False
    backlog: list[tuple[int, str]] = field(default_factory=list)
    backlog_bytes: int = 0


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _allowed_option_names() -> frozenset[str]:
    names: set[str] = set()
    for func in (serve, asyncio.AbstractEventLoop.create_server):
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                names.add(param.name)
    return frozenset(names - _OWN_OPTIONS - {"protocol_factory"})


class BroadcastServer:
    """A websocket server that re-broadcasts one connection's records to local listeners.

    Build it anywhere; ``start``/``stop`` and :meth:`publish` run on the background loop::

        server = BroadcastServer(fields=session.fields, auth_token=token, port_fallback=True)
        runtime.run(server.start())
        server.address                    # "ws://127.0.0.1:6666"
        server.publish(records)           # on the loop thread, once per received frame
        runtime.run(server.stop())

    ``port=0`` picks a free port. ``port_fallback=True`` (for a port the user did not choose)
    moves to the next free port, up to +100, with a warning; otherwise a busy port raises
    :class:`PortInUseError`. ``replay_source(n, before_id)`` returns the last ``n`` stored
    records with ``id < before_id`` (all ids when ``None``), oldest first; it runs in a worker
    thread. ``max_buffer`` (bytes) is how far a listener may fall behind before it is dropped.
    Other keyword arguments go to ``websockets.asyncio.server.serve`` (and through it to
    ``loop.create_server``).
    """

    def __init__(
        self,
        *,
        fields: Sequence[Field],
        tz: str = "America/New_York",
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        port_fallback: bool = False,
        auth_token: str | None = None,
        allowed_origins: Sequence[str] = (),
        replay_source: ReplaySource | None = None,
        max_buffer: int = 4 * 2**20,
        max_total_buffer: int = 32 * 2**20,
        max_replays: int = 2,
        max_waiting_replays: int = 8,
        max_auth_failures: int = 10,
        auth_failure_window: float = 60.0,
        allow_insecure: bool = False,
        name: str = "",
        **server_kwargs: Any,
    ) -> None:
        if not isinstance(host, str) or not host.strip():
            raise InvalidParameterError(f"host must be a non-empty string, got {host!r}.")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidParameterError(
                f"port must be an int between 0 and 65535 (0 picks a free port), got {port!r}."
            )
        auth_token = check_token(auth_token)
        for option, value in (
            ("max_buffer", max_buffer),
            ("max_total_buffer", max_total_buffer),
            ("max_replays", max_replays),
            ("max_auth_failures", max_auth_failures),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{option} must be a positive int, got {value!r}.")
        if (
            isinstance(max_waiting_replays, bool)
            or not isinstance(max_waiting_replays, int)
            or max_waiting_replays < 0
        ):
            raise InvalidParameterError(
                f"max_waiting_replays must be an int >= 0, got {max_waiting_replays!r}."
            )
        if not isinstance(auth_failure_window, (int, float)) or not auth_failure_window > 0:
            raise InvalidParameterError(
                f"auth_failure_window must be a number of seconds > 0, got {auth_failure_window!r}."
            )
        if auth_token is None and not allow_insecure and not _is_loopback(host.strip()):
            raise InvalidParameterError(
                f"Broadcasting on {host!r} without an auth_token would let anyone who can reach "
                "this machine read the stream. Create the connection with auth_token=..., use "
                "host='127.0.0.1', or pass allow_insecure=True if that is intended."
            )
        if isinstance(allowed_origins, str):
            allowed_origins = [allowed_origins]
        unknown = sorted(set(server_kwargs) - _allowed_option_names())
        if unknown:
            raise InvalidParameterError(
                f"Unknown broadcast server option(s): {', '.join(unknown)}. "
                "Options go to websockets.asyncio.server.serve (e.g. ping_interval, max_size)."
            )
        self.name = name
        self.host = host.strip()
        self.requested_port = port
        self.port_fallback = port_fallback
        self.allowed_origins = frozenset(o.strip().rstrip("/").lower() for o in allowed_origins)
        self.replay_source = replay_source
        self.max_buffer = max_buffer
        self.max_total_buffer = max_total_buffer
        self.max_replays = max_replays
        self.max_waiting_replays = max_waiting_replays
        self.max_auth_failures = max_auth_failures
        self.auth_failure_window = float(auth_failure_window)
        self.encoder = RecordEncoder(fields, tz)
        self._token = auth_token.encode() if auth_token is not None else None
        self._options = {**_SERVER_DEFAULTS, **server_kwargs}
        self._server: Server | None = None
        self._port: int | None = None
        self._live: dict[ServerConnection, _Listener] = {}
        self._catching_up: dict[ServerConnection, _Listener] = {}
        self._closing: dict[ServerConnection, _Listener] = {}  # dropped, close pending
        self._tasks: set[asyncio.Task[None]] = set()
        self._replays: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._replay_slots: asyncio.Semaphore | None = None
        self._auth_failures: dict[str, deque[float]] = {}
        self.stats: dict[str, int] = {
            "sent": 0,
            "listeners_total": 0,
            "refused": 0,
            "rate_limited": 0,
            "dropped_slow": 0,
            "replayed": 0,
        }

    # -- properties ------------------------------------------------------------------------

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    @property
    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def port(self) -> int | None:
        """The port actually bound while serving, else None."""
        return self._port if self.is_serving else None

    @property
    def address(self) -> str | None:
        """``ws://host:port`` while serving, else None."""
        port = self.port
        return None if port is None else f"ws://{_format_host(self.host)}:{port}"

    @property
    def listeners(self) -> int:
        """Listeners currently connected (live or catching up)."""
        return len(self._live) + len(self._catching_up)

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting for listeners: transport buffers (live and dropped-but-closing
        listeners) plus the backlogs of listeners catching up on a replay."""
        total = sum(listener.backlog_bytes for listener in self._catching_up.values())
        for connection in (*self._live, *self._closing):
            with contextlib.suppress(Exception):
                total += connection.transport.get_write_buffer_size()
        return total

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        state = self.address or "stopped"
        return f"<BroadcastServer{label} {state} listeners={self.listeners}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; raises PortInUseError / BroadcastError. Idempotent."""
        if self._server is not None:
            return
        self._replay_slots = asyncio.Semaphore(self.max_replays)
        first = self.requested_port
        if self.port_fallback and first != 0:
            candidates = list(range(first, min(first + PORT_FALLBACK_RANGE, 65535) + 1))
        else:
            candidates = [first]
        for port in candidates:
            try:
                server = await serve(
                    self._handler,
                    self.host,
                    port,
                    process_request=self._process_request,
                    **{"logger": wire_logger(WIRE_LOGGER), **self._options},
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and port != candidates[-1]:
                    continue
                raise self._bind_error(exc, candidates) from None
            self._server = server
            self._port = server.sockets[0].getsockname()[1] if server.sockets else port
            break
        if self._port != first and first != 0:
            log.warning("Port %d is already in use; broadcasting on %d instead.", first, self._port)
        log.info("%sbroadcasting on %s", self._prefix, self.address)

    def _bind_error(self, exc: OSError, candidates: list[int]) -> BroadcastError:
        where = f"{_format_host(self.host)}:{candidates[0]}"
        if exc.errno == errno.EADDRINUSE:
            if len(candidates) > 1:
                return PortInUseError(
                    errno.EADDRINUSE,
                    f"Ports {candidates[0]}-{candidates[-1]} on {self.host} are all in use; "
                    "pass another port, or port=0 to pick a free one.",
                )
            return PortInUseError(
                errno.EADDRINUSE,
                f"Port {where} is already in use; pass another port, or port=0 to pick a free one.",
            )
        reason = exc.strerror or str(exc)
        return BroadcastError(f"Could not broadcast on {where}: {reason}. Check the host.")

    async def stop(self) -> None:
        """Close every listener (1001 "server shutting down"), close the server, free the port.

        Idempotent. Listeners that do not finish the closing handshake in time are aborted.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close(code=CLOSE_GOING_AWAY, reason="server shutting down")
        timeout = (self._options.get("close_timeout") or 5) + 1
        try:
            await asyncio.wait_for(server.wait_closed(), timeout)
        except TimeoutError:
            for connection in list(server.all_connections):
                connection.transport.abort()
            await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        self._live.clear()
        self._catching_up.clear()
        self._closing.clear()
        log.info("%sstopped broadcasting on port %s", self._prefix, self._port)

    @property
    def _prefix(self) -> str:
        return f"[{self.name}] " if self.name else ""

    # -- handshake -------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        address = _host_of(connection)
        refusal = self._check_request(request, address)
        if refusal is None:
            if _replay_count(request.path):
                self._replays.add(connection)
            return None
        status, text = refusal
        self.stats["refused"] += 1
        log.info(
            "%srefused a listener from %s: HTTP %d %s",
            self._prefix,
            _remote(connection),
            status,
            text,
        )
        return connection.respond(status, text + "\n")

    def _check_request(self, request: Request, address: str) -> tuple[int, str] | None:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            return http.HTTPStatus.FORBIDDEN, "Origin not allowed."
        if self._token is not None:
            refusal = self._check_token(request, address)
            if refusal is not None:
                return refusal
        try:
            replay = _replay_count(request.path)
        except ValueError as exc:
            return http.HTTPStatus.BAD_REQUEST, str(exc)
        if replay and self.replay_source is None:
            return http.HTTPStatus.BAD_REQUEST, "This broadcast keeps no history to replay."
        if replay and len(self._replays) >= self.max_replays + self.max_waiting_replays:
            return http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many replays in progress; retry later."
        return None

    def _check_token(self, request: Request, address: str) -> tuple[int, str] | None:
        """Exactly one token per handshake, compared in constant time; repeated failures
        from one address are refused for a while without looking at the token at all."""
        assert self._token is not None
        if self._rate_limited(address):
            self.stats["rate_limited"] += 1
            return http.HTTPStatus.TOO_MANY_REQUESTS, "Too many failed attempts; retry later."
        given = _tokens(request)
        if len(given) > 1:
            self._auth_failed(address)
            return (
                http.HTTPStatus.BAD_REQUEST,
                "Send exactly one auth token (one ?auth_token= or one Authorization header).",
            )
        if not given or not given[0]:
            self._auth_failed(address)
            return http.HTTPStatus.UNAUTHORIZED, "Missing auth token."
        candidate = given[0].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(candidate, self._token):
            self._auth_failed(address)
            return http.HTTPStatus.FORBIDDEN, "Invalid auth token."
        return None

    def _rate_limited(self, address: str) -> bool:
        recent = self._auth_failures.get(address)
        if not recent:
            return False
        horizon = time.monotonic() - self.auth_failure_window
        while recent and recent[0] < horizon:
            recent.popleft()
        if not recent:
            del self._auth_failures[address]
            return False
        return len(recent) >= self.max_auth_failures

    def _auth_failed(self, address: str) -> None:
        if address not in self._auth_failures and len(self._auth_failures) >= MAX_TRACKED_ADDRESSES:
            self._auth_failures.pop(next(iter(self._auth_failures)))  # forget the oldest
        recent = self._auth_failures.setdefault(address, deque(maxlen=self.max_auth_failures))
        recent.append(time.monotonic())

    def _origin_allowed(self, origin: str) -> bool:
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.allowed_origins or "*" in self.allowed_origins:
            return True
        try:
            hostname = urlsplit(normalized).hostname
        except ValueError:
            return False
        return hostname in LOOPBACK_HOSTS

    # -- listeners -------------------------------------------------------------------------

    async def _handler(self, connection: ServerConnection) -> None:
        replay = _replay_count(connection.request.path if connection.request else "/")
        listener = _Listener(connection, _remote(connection), live=not replay)
        # Registered before any await: every record published from now on reaches it.
        (self._live if listener.live else self._catching_up)[connection] = listener
        self.stats["listeners_total"] += 1
        log.info(
            "%slistener connected from %s%s (%d listening)",
            self._prefix,
            listener.remote,
            f", replay={replay}" if replay else "",
            self.listeners,
        )
        try:
            if replay:
                await self._catch_up(listener, replay)
            async for _ in connection:  # ignore what listeners send; keeps ping/close working
                pass
        except ConnectionClosed:
            pass
        finally:
            self._live.pop(connection, None)
            self._catching_up.pop(connection, None)
            self._closing.pop(connection, None)
            self._replays.discard(connection)
            log.info(
                "%slistener %s disconnected (code %s; %d listening)",
                self._prefix,
                listener.remote,
                connection.close_code,
                self.listeners,
            )

    async def _catch_up(self, listener: _Listener, n: int) -> None:
        """Send the last ``n`` stored records, then the backlog, then go live. At most
        ``max_replays`` run at once; the others wait for a slot (their live records wait in
        their backlog, bounded by ``max_buffer``)."""
        assert self._replay_slots is not None
        async with self._replay_slots:
            if listener.dropped:
                return
            try:
                rows = await self._load(listener, n)
            except Exception as exc:
                log.error("%sreplay for %s failed: %s", self._prefix, listener.remote, exc)
                self._catching_up.pop(listener.connection, None)
                await listener.connection.close(CLOSE_INTERNAL_ERROR, "replay failed")
                return
            self._replays.discard(listener.connection)  # loaded: make room for the next
            if not await self._send_chunks(listener, [p for _, p in rows[-n:]], "replayed"):
                return
        connection = listener.connection
        while listener.backlog and not listener.dropped:
            pending, listener.backlog, listener.backlog_bytes = listener.backlog, [], 0
            if not await self._send_chunks(listener, [p for _, p in pending], "sent"):
                return
        if listener.dropped:
            return
        # No await between the emptiness check above and this switch: no record is lost.
        self._catching_up.pop(connection, None)
        listener.live = True
        self._live[connection] = listener

    async def _load(self, listener: _Listener, n: int) -> list[tuple[int, str]]:
        """Fetch and encode (in a worker thread) the records to replay: the last ``n`` stored
        before the first record the listener's backlog holds."""
        source = self.replay_source
        assert source is not None  # checked in _process_request
        encode = self.encoder.encode
        before = listener.backlog[0][0] if listener.backlog else None
        rows = await asyncio.to_thread(_load_replay, source, encode, n, before)
        rows = self._trim_replay(listener, rows)
        if len(rows) < n and listener.backlog and before != listener.backlog[0][0]:
            # Live records arrived (and may have been stored) while loading: ask again
            # for the records strictly before the first one the backlog holds.
            before = listener.backlog[0][0]
            rows = self._trim_replay(
                listener, await asyncio.to_thread(_load_replay, source, encode, n, before)
            )
        return rows

    async def _send_chunks(self, listener: _Listener, payloads: list[str], counter: str) -> bool:
        """Write ``payloads`` as pre-framed chunks of about REPLAY_CHUNK_BYTES, waiting for
        the listener to drain after each; False if the listener went away."""
        connection = listener.connection
        start = 0
        while start < len(payloads):
            if listener.dropped or connection.protocol.state is not State.OPEN:
                return False
            chunk: list[bytes] = []
            size = 0
            while start < len(payloads) and size < REPLAY_CHUNK_BYTES:
                frame = _text_frame(payloads[start].encode())
                chunk.append(frame)
                size += len(frame)
                start += 1
            if connection.protocol.extensions:  # compression negotiated: let websockets frame
                for frame_payload in payloads[start - len(chunk) : start]:
                    await connection.send(frame_payload)
            else:
                connection.transport.write(b"".join(chunk))
                try:
                    await connection.drain()
                except Exception:
                    return False
            self.stats[counter] += len(chunk)
        return not listener.dropped

    @staticmethod
    def _trim_replay(listener: _Listener, rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
        limit = listener.backlog[0][0] if listener.backlog else None
        out: list[tuple[int, str]] = []
        last: int | None = None
        for ident, payload in rows:
            if limit is not None and ident >= limit:
                continue
            if last is not None and ident <= last:
                continue
            out.append((ident, payload))
            last = ident
        return out

    def publish(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Send ``records`` (one received frame's worth) to every listener.

        Call on the loop thread. Never awaits and never raises because of a listener: each
        record is encoded once, written to every live listener without backpressure, then
        listeners whose write buffer exceeds ``max_buffer`` are dropped (close 1013).
        Listeners still catching up on a replay get the records in their backlog.
        """
        if not records or not self.has_listeners:
            return
        payloads: list[tuple[int, str]] = []
        for record in records:
            try:
                payloads.append((record.get("id", 0), self.encoder.encode(record)))
            except Exception as exc:  # a record we cannot encode is skipped, never fatal
                log.warning("%sskipped a record that cannot be encoded: %s", self._prefix, exc)
        if self._live:
            self._fan_out(payloads)
            self._drop_slow_listeners()
        if self._catching_up:
            size = sum(len(p) for _, p in payloads)
            for listener in list(self._catching_up.values()):
                listener.backlog.extend(payloads)
                listener.backlog_bytes += size
                if listener.backlog_bytes > self.max_buffer:
                    self._drop(listener)
            if not self._live:
                self._enforce_total()

    @property
    def has_listeners(self) -> bool:
        """True while serving someone (live or catching up): else a publish is a no-op."""
        return self._server is not None and bool(self._live or self._catching_up)

    def _fan_out(self, payloads: list[tuple[int, str]]) -> None:
        """Write the frames to every live listener.

        Server frames are not masked, so without extensions the wire bytes of a text frame
        are the same for every listener: they are serialized once per publish (RFC 6455
        §5.2) and written with one ``transport.write`` per listener, instead of websockets
        framing each record again for each listener. The checks are those of websockets'
        ``broadcast()`` (open, no fragmented message in progress); a listener that
        negotiated an extension (compression) gets ``broadcast()`` itself.
        """
        blob = b"".join(_text_frame(payload.encode()) for _, payload in payloads)
        sent = 0
        for connection in self._live:
            if connection.protocol.state is not State.OPEN or connection.send_in_progress:
                continue
            try:
                if connection.protocol.extensions:
                    for _, payload in payloads:
                        broadcast([connection], payload)
                else:
                    connection.transport.write(blob)
                sent += 1
            except Exception as exc:  # a broken listener never breaks the stream
                log.warning("%sbroadcast to a listener failed: %s", self._prefix, exc)
        self.stats["sent"] += len(payloads) * sent

    def _drop_slow_listeners(self) -> None:
        slow = []
        for connection, listener in self._live.items():
            try:
                buffered = connection.transport.get_write_buffer_size()
            except Exception:
                continue
            if buffered > self.max_buffer:
                slow.append(listener)
        for listener in slow:
            self._drop(listener)
        self._enforce_total()

    def _enforce_total(self) -> None:
        """Keep all listeners together under ``max_total_buffer``: first cut off listeners
        already dropped whose close is still queued, then the fullest of the others."""
        total = self.buffered_bytes
        if total <= self.max_total_buffer:
            return
        for connection in list(self._closing):
            self._closing.pop(connection, None)
            connection.transport.abort()
        total = self.buffered_bytes
        candidates: list[tuple[int, _Listener]] = []
        for listener in (*self._live.values(), *self._catching_up.values()):
            size = listener.backlog_bytes
            with contextlib.suppress(Exception):
                size += listener.connection.transport.get_write_buffer_size()
            candidates.append((size, listener))
        candidates.sort(key=lambda item: item[0], reverse=True)
        for size, listener in candidates:
            if total <= self.max_total_buffer or size == 0:
                break
            self._drop(listener, abort=True)
            total -= size

    def _drop(self, listener: _Listener, abort: bool = False) -> None:
        """Stop sending to a listener that fell behind and close it with 1013 (or, when the
        memory budget of all listeners is exceeded, cut the connection at once)."""
        if listener.dropped:
            return
        listener.dropped = True
        listener.backlog.clear()
        listener.backlog_bytes = 0
        self._live.pop(listener.connection, None)
        self._catching_up.pop(listener.connection, None)
        self.stats["dropped_slow"] += 1
        log.warning(
            "%sdropped listener %s: it fell more than %d bytes behind%s",
            self._prefix,
            listener.remote,
            self.max_buffer,
            " (all listeners together over max_total_buffer)" if abort else "",
        )
        if abort:
            listener.connection.transport.abort()
            return
        self._closing[listener.connection] = listener
        task = asyncio.get_running_loop().create_task(
            listener.connection.close(CLOSE_TOO_SLOW, "listener too slow")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class BroadcastSink(Sink):
    """The broadcast server as one of a connection's internal sinks: each frame's
    :class:`~obbws_jupyter.sinks.Batch` goes to :meth:`BroadcastServer.publish` (encoded once
    per record for all listeners). With nobody listening the batch is not even looked at.
    Its lifecycle is the server's (``start_broadcasting`` / ``stop_broadcasting``)."""

    kind = "broadcast"

    def __init__(self, server: BroadcastServer) -> None:
        super().__init__(server.address or "ws://")
        self.server = server

    def write(self, batch: Batch) -> None:
        if self.server.has_listeners:
            self.server.publish(batch.rows())

    def health(self) -> SinkHealth:
        serving = self.server.is_serving
        return SinkHealth(
            url=self.display_url,
            kind=self.kind,
            state="ok" if serving else "closed",
            rows_written=int(self.server.stats.get("sent", 0)),
            rows_dropped=0,
        )


def _text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame (FIN + opcode 0x1, RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def _load_replay(
    source: ReplaySource, encode: Callable[[Mapping[str, Any]], str], n: int, before: int | None
) -> list[tuple[int, str]]:
    """Runs in a worker thread: fetch and encode the records to replay, sorted by id."""
    records = source(n, before)
    rows = [(int(r["id"]), encode(r)) for r in records]
    rows.sort(key=lambda row: row[0])
    return rows


def _tokens(request: Request) -> list[str]:
    """Every token a listener presented: each ``?auth_token=`` value and each
    ``Authorization`` header (a non-Bearer one counts as an empty token)."""
    query = parse_qs(urlsplit(request.path).query, keep_blank_values=True)
    tokens = list(query.get("auth_token", []))
    for value in request.headers.get_all("Authorization"):
        scheme, _, token = value.strip().partition(" ")
        tokens.append(token.strip() if scheme.lower() == "bearer" else "")
    return tokens


def _host_of(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _replay_count(path: str) -> int:
    """``?replay=N`` -> N (0 when absent); ValueError with a short message when invalid."""
    values = parse_qs(urlsplit(path).query, keep_blank_values=True).get("replay")
    if not values:
        return 0
    text = values[-1].strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_REPLAY:
        raise ValueError(f"replay must be an integer between 1 and {MAX_REPLAY}.")
    return int(text)
