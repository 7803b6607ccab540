"""Drives one provider session over a real websocket: connect, authenticate, subscribe, read,
reconnect with exponential backoff and jitter, and a watchdog for silent streams.

This is the only module that opens sockets to providers. Everything provider-specific lives in
the sans-I/O session (``obbws_jupyter.protocol``); the driver only moves frames and reacts to the
session's events. All methods run on the background loop (``obbws_jupyter.runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.protocol import State as WsState
from websockets.streams import StreamReader

from obbws_jupyter._util import RateLimitedLog, backoff, clip, mask_secrets, wire_logger
from obbws_jupyter.exceptions import (
    NotRunningError,
    ObbwsTimeoutError,
    ProviderAuthError,
    ProviderConnectionError,
    SymbolError,
)
from obbws_jupyter.models import StreamState
from obbws_jupyter.protocol import (
    Authenticated,
    AuthFailed,
    Event,
    Frame,
    Heartbeat,
    HttpRequest,
    HttpResponse,
    MalformedFrame,
    ProviderFailed,
    ProviderMessage,
    ProviderSession,
    Record,
    SequenceGap,
    StreamEnded,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
)

__all__ = [
    "DEFAULT_CONNECT_KWARGS",
    "DIRECT_FRAMES_ENV",
    "DIRECT_FRAMES_SUPPORTED",
    "FRAME_SCANNER_ENV",
    "WIRE_LOGGER",
    "HttpClient",
    "StreamDriver",
    "backoff",
    "urllib_client",
]

log = logging.getLogger("obbws_jupyter.stream")
#: websockets' own messages about provider sockets (its DEBUG lines show the request line,
#: where a token may travel): tokens masked
WIRE_LOGGER = "obbws_jupyter.stream.websockets"

# Generous keepalive: pings time out when the GIL is starved by heavy pandas work in the
# kernel; the data-staleness watchdog catches truly dead streams.
DEFAULT_CONNECT_KWARGS: Mapping[str, Any] = {
    "open_timeout": 10.0,
    "ping_interval": 20.0,
    "ping_timeout": 60.0,
    "close_timeout": 2.0,
    "max_size": 2**24,
}

HttpClient = Callable[[HttpRequest], Awaitable[HttpResponse]]

#: ``OBBWS_DIRECT_FRAMES=0`` turns the direct-frames read path off for drivers that do not say
#: (see :class:`StreamDriver`); on by default where websockets has the hooks it needs
DIRECT_FRAMES_ENV = "OBBWS_DIRECT_FRAMES"
#: ``OBBWS_FRAME_SCANNER=0`` keeps websockets' parser for every frame on the direct-frames
#: path (see :class:`_DirectConnection`); on by default
FRAME_SCANNER_ENV = "OBBWS_FRAME_SCANNER"
_OFF = ("0", "false", "no", "off")


async def urllib_client(request: HttpRequest) -> HttpResponse:
    """The default HTTP client of the pre-connect steps: the stdlib in a worker thread (the
    loop never blocks). Any status is returned, not raised; network failures raise OSError."""
    return await asyncio.to_thread(_urllib_fetch, request)


def _urllib_fetch(request: HttpRequest) -> HttpResponse:
    http_request = urllib.request.Request(
        request.url, method=request.method, headers=dict(request.headers)
    )
    try:
        with urllib.request.urlopen(http_request, timeout=request.timeout) as response:
            return HttpResponse(response.status, response.read(1 << 20), dict(response.headers))
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpResponse(exc.code, exc.read(1 << 20), dict(exc.headers or {}))


# A connection that lasted this long counts as a success for max_reconnects even if no data
# came (a quiet market); shorter ones without data count as failures.
HEALTHY_AFTER = 30.0
MESSAGE_LIMIT = 500  # characters of a provider message kept in logs and status
MAX_FRAGMENTS = 4096  # fragments of one message on the direct-frames path (websockets' default)


class _Fatal(Exception):
    """Ends the run loop: reconnecting will not help."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Finished(Exception):
    """The provider ended the stream on purpose."""


class _Stale(Exception):
    """The watchdog found the connection silent for too long."""


class StreamDriver:
    """Runs ``session`` against ``url`` until stopped.

    ``on_records`` receives the records of each frame (on the loop thread), ``on_frame`` every raw
    frame (the capture recorder). ``max_reconnects`` consecutive failed attempts end the stream
    with state "failed" and the reason in ``last_error``; ``None`` retries forever. A
    connection that authenticated but ended before any record arrived (and within
    ``HEALTHY_AFTER`` seconds) is a failed attempt too: a provider that closes after every
    login cannot make the stream reconnect forever.

    ``direct_frames`` (``None``: on unless ``OBBWS_DIRECT_FRAMES=0``) reads the socket
    without websockets' message queue: each socket read is split into messages inside
    ``data_received`` (see :class:`_DirectConnection`), each message goes to the session
    at once, and the records of all messages of one read go to ``on_records`` in one call
    (frames that arrive back to back share one ``received_at`` and one hand-over to the
    store). It saves the queue, the ``recv()`` coroutines, websockets' frame parser for
    plain data frames and the per-frame hand-over; the socket's own buffer is the
    backpressure. It relies on websockets hooks below its public API (checked at import:
    :data:`DIRECT_FRAMES_SUPPORTED`); where they are missing, or with ``direct_frames=False``,
    the driver reads with ``recv()``, one ``on_records`` call per frame. ``frame_scanner``
    (``None``: on unless ``OBBWS_FRAME_SCANNER=0``) is the direct path's own split of plain
    data frames; off, websockets' parser reads every frame there too.
    """

    def __init__(
        self,
        session: ProviderSession,
        *,
        url: str,
        on_records: Callable[[list[Record]], None],
        connect_kwargs: Mapping[str, Any] | None = None,
        name: str = "",
        max_reconnects: int | None = 10,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 30.0,
        stale_after: float | None = None,
        ack_timeout: float = 2.0,
        http_client: HttpClient | None = None,
        direct_frames: bool | None = None,
        frame_scanner: bool | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.on_records = on_records
        self.on_frame: Callable[[Frame], None] | None = None
        self.connect_kwargs = {**DEFAULT_CONNECT_KWARGS, **session.connect_kwargs}
        self.connect_kwargs.update(connect_kwargs or {})
        self.name = name
        self.max_reconnects = max_reconnects
        self.reconnect_base = reconnect_base
        self.reconnect_cap = reconnect_cap
        self.stale_after = stale_after if stale_after is not None else session.stale_after
        self.ack_timeout = ack_timeout
        self.http_client: HttpClient = http_client or urllib_client
        if direct_frames is None:
            direct_frames = os.environ.get(DIRECT_FRAMES_ENV, "").strip().lower() not in _OFF
        self.direct_frames = direct_frames and DIRECT_FRAMES_SUPPORTED
        if frame_scanner is None:
            frame_scanner = os.environ.get(FRAME_SCANNER_ENV, "").strip().lower() not in _OFF
        self.frame_scanner = frame_scanner
        self._direct_error: asyncio.Future[BaseException] | None = None
        self._batch: list[Record] | None = None  # the records of the socket read in hand
        self._batch_messages = 0  # self.messages when the last read was handed over
        self._outbox: asyncio.Queue[Frame] | None = None
        self.state: StreamState = StreamState.IDLE
        self.messages = 0
        self.records = 0
        self.malformed = 0
        self.errors = 0
        self.heartbeats = 0
        self.gaps = 0  # sequence numbers the provider skipped (messages missed)
        self.reconnects = 0
        self.connected_ns: int | None = None
        self.last_error: str | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._done: asyncio.Event | None = None
        self._stopping = False
        self._last_frame = 0.0
        self._authed = False
        self._authed_at = 0.0
        self._records_at_auth = 0
        self._acks: dict[str, asyncio.Future[str | None]] = {}
        self._malformed_log = RateLimitedLog()
        self._gap_log = RateLimitedLog()
        self._log_url = mask_secrets(url)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self.state in ("connecting", "running", "reconnecting")

    @property
    def last_message_ns(self) -> int | None:
        """Wall-clock time of the last frame (derived, so the hot path reads one clock)."""
        if not self.messages:
            return None
        return time.time_ns() - int((time.monotonic() - self._last_frame) * 1e9)

    async def start(self, timeout: float = 15.0) -> None:
        """Connect and authenticate; return once the provider accepted the credentials.

        The first connection is not retried: a refused connection, a rejected handshake or
        rejected credentials raise here and nothing keeps running.
        """
        if self.is_running:
            return
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._done = asyncio.Event()
        self._stopping = False
        self.state = StreamState.CONNECTING
        self.last_error = None
        self._task = loop.create_task(self._run(), name=f"obbws-stream-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            await self.stop()
            raise ObbwsTimeoutError(
                f"{self.name}: no authenticated connection to {self._log_url} within "
                f"{timeout:g} s; check the URL and credentials, or pass a larger "
                "connect_timeout."
            ) from None
        except BaseException:
            await self.stop(
                final_state=StreamState.FAILED if self.state == "failed" else StreamState.STOPPED
            )
            raise

    async def stop(self, final_state: StreamState = StreamState.STOPPED) -> None:
        """Close the socket gracefully and end the run loop. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "client stopped"), 2.0)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._ws = None
        for fut in self._acks.values():
            if not fut.done():
                fut.set_result(None)
        self._acks.clear()
        if self.state not in ("failed", "finished"):
            self.state = final_state
        if self._done is not None:
            self._done.set()

    async def wait_done(self, timeout: float | None = None) -> str:
        """Wait until the stream ends (finished, failed or stopped); returns the state."""
        if self._done is not None and self.is_running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), timeout)
        return self.state

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, symbols: str | Sequence[str]) -> list[str]:
        """Subscribe to new symbols; waits briefly for the provider's acknowledgement.
        A provider refusal raises SymbolError and forgets the symbols."""
        if not self.is_running:
            raise NotRunningError("Provider connection is not running.")
        new = self.session.subscribe(symbols)
        waiters = self._expect_acks(new)
        await self._flush()
        refused = await self._await_acks(waiters)
        if refused:
            self.session.unsubscribe(list(refused))
            self.session.data_to_send()  # nothing to undo on the provider side
            raise SymbolError(
                f"The provider refused {', '.join(refused)}: {'; '.join(set(refused.values()))}"
            )
        return new

    async def unsubscribe(self, symbols: str | Sequence[str]) -> list[str]:
        if not self.is_running:
            raise NotRunningError("Provider connection is not running.")
        gone = self.session.unsubscribe(symbols)
        await self._flush()
        return gone

    def _expect_acks(self, symbols: Sequence[str]) -> dict[str, asyncio.Future[str | None]]:
        if not self.session.is_authenticated or self.ack_timeout <= 0:
            return {}
        loop = asyncio.get_running_loop()
        waiters = {s: loop.create_future() for s in symbols}
        self._acks.update(waiters)
        return waiters

    async def _await_acks(self, waiters: dict[str, asyncio.Future[str | None]]) -> dict[str, str]:
        if not waiters:
            return {}
        await asyncio.wait(waiters.values(), timeout=self.ack_timeout)
        refused: dict[str, str] = {}
        for symbol, fut in waiters.items():
            if self._acks.get(symbol) is fut:
                del self._acks[symbol]
            if fut.done() and fut.result() is not None:
                refused[symbol] = str(fut.result())
        return refused

    def _resolve_ack(self, symbols: Sequence[str], error: str | None) -> None:
        for symbol in symbols:
            fut = self._acks.pop(symbol, None)
            if fut is not None and not fut.done():
                fut.set_result(error)

    # -- the run loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._run_loop()
        finally:
            if self._done is not None:
                self._done.set()

    async def _run_loop(self) -> None:
        failures = 0
        while True:
            self._authed = False
            try:
                await self._connect_once()
            except _Fatal as fatal:
                self._fail(fatal.error)
                return
            except _Finished:
                self.state = StreamState.FINISHED
                log.info("%s: %s", self.name, self.last_error or "stream finished")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any drop: reconnect (after the first success)
                if self._stopping:  # our own close ended the read loop
                    return
                # only a connection that proved useful starts the count afresh
                failures = 1 if self._was_useful() else failures + 1
                self.errors += 1
                self.last_error = clip(mask_secrets(f"{type(exc).__name__}: {exc}"), 1000)
                if self._ready is not None and not self._ready.done():
                    self._fail(_connect_error(exc, self._log_url))
                    return
                if self.max_reconnects is not None and failures > self.max_reconnects:
                    self._fail(
                        ProviderConnectionError(
                            f"{self.name}: gave up after {self.max_reconnects} reconnect attempts "
                            f"to {self._log_url}; last error: {self.last_error}. "
                            "Use restart_connection() to try again."
                        )
                    )
                    return
            self.state = StreamState.RECONNECTING
            self.reconnects += 1
            delay = backoff(failures or 1, self.reconnect_base, self.reconnect_cap)
            log.warning(
                "%s: connection to %s lost (%s); reconnecting in %.2f s",
                self.name,
                self._log_url,
                self.last_error or "closed",
                delay,
            )
            await asyncio.sleep(delay)

    def _was_useful(self) -> bool:
        """The connection that just ended authenticated and then delivered records or lived
        long enough; a login that the provider closes at once is not."""
        if not self._authed:
            return False
        return (
            self.records > self._records_at_auth
            or time.monotonic() - self._authed_at >= HEALTHY_AFTER
        )

    def _fail(self, error: BaseException) -> None:
        self.state = StreamState.FAILED
        self.last_error = clip(mask_secrets(str(error)), 1000)
        log.error("%s: %s", self.name, error)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)

    async def _http_steps(self) -> None:
        """The session's HTTP steps (a token exchange) before each connection attempt; the URL
        is asked again afterwards, since it may carry what they returned."""
        requests = self.session.http_requests()
        if not requests:
            return
        for request in requests:
            try:
                response = await self.http_client(request)
            except Exception as exc:
                raise ConnectionError(
                    f"HTTP {request.method} {mask_secrets(request.url)} failed: "
                    f"{mask_secrets(str(exc)) or type(exc).__name__}"
                ) from None
            self.session.http_response(request, response)
            events = self.session.events_received()
            if events:
                self._handle(events)
        self.url = self.session.url()
        self._log_url = mask_secrets(self.url)

    async def _connect_once(self) -> None:
        await self._http_steps()
        options: dict[str, Any] = {"logger": wire_logger(WIRE_LOGGER), **self.connect_kwargs}
        if self.direct_frames:
            options["create_connection"] = _DirectConnection
        try:
            ws = await connect(self.url, **options)
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise _Fatal(
                    ProviderAuthError(
                        f"{self.name}: {self._log_url} refused the credentials "
                        f"(HTTP {exc.response.status_code}); check the API key."
                    )
                ) from None
            raise
        self._ws = ws
        self._last_frame = time.monotonic()
        watchdog = None
        if self.stale_after:
            watchdog = asyncio.get_running_loop().create_task(self._watchdog(ws, self.stale_after))
        try:
            self.session.connection_made()
            await self._flush()
            if isinstance(ws, _DirectConnection):
                await self._read_direct(ws)
            else:
                await self._read(ws)
        finally:
            self._ws = None
            if watchdog is not None:
                watchdog.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

    async def _read(self, ws: ClientConnection) -> None:
        # The hot path, once per frame: no allocation, lock or log line of its own. recv() in
        # a plain loop (``async for`` adds an async generator step per frame); a session that
        # reads JSON from bytes gets a text frame undecoded (orjson reads UTF-8 bytes), except
        # while a capture records frames as they came (text stays text in the file).
        session = self.session
        receive = session.receive
        on_records = self.on_records
        recv = ws.recv
        monotonic = time.monotonic
        as_bytes: bool | None = False if session.text_as_bytes else None
        try:
            while True:
                on_frame = self.on_frame
                frame = await recv(as_bytes if on_frame is None else None)
                self._last_frame = monotonic()
                self.messages += 1
                if on_frame is not None:
                    on_frame(frame)
                records = receive(frame)
                if records:
                    self.records += len(records)
                    on_records(records)
                if session.has_output:
                    await self._session_output(ws)
        except ConnectionClosedOK:
            pass  # the provider closed normally: a drop like any other (below)
        except ConnectionClosed as exc:
            if self._stale_hit:
                raise _Stale(f"no data for {self.stale_after} s") from None
            raise ConnectionError(f"connection closed ({_close_text(exc)})") from None
        if self._stale_hit:
            raise _Stale(f"no data for {self.stale_after} s")
        raise ConnectionError("connection closed by the provider")

    async def _read_direct(self, ws: _DirectConnection) -> None:
        """The direct-frames read path: ``_deliver`` handles each message as websockets
        parses it; this waits for the connection to end, or for ``_deliver`` to fail."""
        loop = asyncio.get_running_loop()
        self._direct_error = failed = loop.create_future()
        self._batch, self._batch_messages = None, self.messages
        outbox: asyncio.Queue[Frame] = asyncio.Queue()
        self._outbox = outbox
        sender = loop.create_task(self._send_outbox(ws, outbox))
        closed = loop.create_task(ws.wait_closed())
        try:
            # held messages go first
            ws.start_delivery(self._deliver, self._delivered, scan=self.frame_scanner)
            await asyncio.wait((failed, closed, sender), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ws.stop_delivery()
            for task in (sender, closed):
                task.cancel()
            self._direct_error = self._outbox = None
        if failed.done():
            raise failed.result()
        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            raise ConnectionError(f"sending failed: {sender.exception()}")
        await ws.wait_closed()
        if self._stale_hit:
            raise _Stale(f"no data for {self.stale_after} s")
        exc = ws.protocol.close_exc
        if isinstance(exc, ConnectionClosedOK):
            raise ConnectionError("connection closed by the provider")
        raise ConnectionError(f"connection closed ({_close_text(exc)})")

    def _deliver(self, data: bytes, text: bool) -> None:
        """One message on the direct-frames path (in ``data_received``): the body of
        :meth:`_read`'s loop, its records kept for :meth:`_delivered`. What would end that
        loop is raised by ``_read_direct``."""
        failed = self._direct_error
        if failed is None or failed.done():
            return  # the read path is ending: the rest of this chunk is dropped
        try:
            on_frame = self.on_frame
            frame: Frame = data
            session = self.session
            if text and (on_frame is not None or not session.text_as_bytes):
                frame = data.decode()
            self.messages += 1
            if on_frame is not None:
                on_frame(frame)
            records = session.receive(frame)
            if records:
                self.records += len(records)
                batch = self._batch
                if batch is None:
                    self._batch = records[:]  # a session may keep the list it returned
                else:
                    batch += records
            if session.has_output:
                events = session.events_received()
                if events:
                    self._handle(events)
                outbox = self._outbox
                for out in session.data_to_send():
                    if outbox is not None:
                        outbox.put_nowait(out)
        except BaseException as exc:  # ends the connection as the recv() path would
            failed.set_result(exc)

    def _delivered(self) -> None:
        """The end of one socket read on the direct-frames path: its records, in one call."""
        if self.messages == self._batch_messages:
            return  # a read of control frames or of part of a message
        self._batch_messages = self.messages
        self._last_frame = time.monotonic()
        records, self._batch = self._batch, None
        if records is None:
            return
        try:
            self.on_records(records)
        except BaseException as exc:  # as an exception of on_records in the recv() loop
            failed = self._direct_error
            if failed is not None and not failed.done():
                failed.set_result(exc)

    async def _send_outbox(self, ws: ClientConnection, outbox: asyncio.Queue[Frame]) -> None:
        """The direct path's frames to send, in order (``_deliver`` cannot await)."""
        while True:
            frame = await outbox.get()
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return  # the close ends the read path; a reconnect sends again

    async def _session_output(self, ws: ClientConnection) -> None:
        """What the last frame made the session report or send (acks, heartbeats, replies)."""
        events = self.session.events_received()
        if events:
            self._handle(events)
        for out in self.session.data_to_send():
            await ws.send(out)

    @property
    def _stale_hit(self) -> bool:
        stale = self.stale_after
        return stale is not None and stale > 0 and time.monotonic() - self._last_frame > stale

    async def _watchdog(self, ws: ClientConnection, stale: float) -> None:
        while True:
            await asyncio.sleep(stale / 4)
            if time.monotonic() - self._last_frame > stale:
                log.warning(
                    "%s: no frame for %.1f s; treating the stream as dead", self.name, stale
                )
                ws.transport.abort()
                return

    async def _flush(self) -> None:
        # Events the session reported while making frames (no frame received yet): a session
        # authenticated by its HTTP step on open, or one whose joins are never acknowledged.
        events = self.session.events_received()
        if events:
            self._handle(events)
        ws = self._ws
        frames = self.session.data_to_send()
        if ws is None:
            return
        try:
            for frame in frames:
                await ws.send(frame)
        except ConnectionClosed:
            # the read loop sees the close and reconnects; the session then sends its
            # subscriptions again, these included
            log.debug("%s: connection closed while sending; resent after reconnecting", self.name)

    # -- session events -----------------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Heartbeat):
                self.heartbeats += 1
            elif isinstance(event, MalformedFrame):
                self.malformed += 1
                if self._malformed_log.allow():
                    log.warning(
                        "%s: skipped a malformed frame (%d so far): %s; frame starts %r",
                        self.name,
                        self.malformed,
                        _shown(event.reason),
                        mask_secrets(event.excerpt[:80]),
                    )
            elif isinstance(event, SequenceGap):
                self.gaps += event.missed
                if self._gap_log.allow():
                    log.warning(
                        "%s: the provider's sequence skipped %d message(s)%s (%d so far)",
                        self.name,
                        event.missed,
                        f" on {event.symbol}" if event.symbol else "",
                        self.gaps,
                    )
            elif isinstance(event, Authenticated):
                self._on_authenticated(event)
            elif isinstance(event, Subscribed):
                log.info("%s: subscribed to %s", self.name, ",".join(event.symbols))
                self._resolve_ack(event.symbols, None)
            elif isinstance(event, Unsubscribed):
                log.info("%s: unsubscribed from %s", self.name, ",".join(event.symbols))
            elif isinstance(event, SubscriptionFailed):
                self.errors += 1
                self.last_error = _shown(event.message)
                log.warning("%s: subscription refused: %s", self.name, self.last_error)
                self._resolve_ack(event.symbols, self.last_error)
            elif isinstance(event, ProviderMessage):
                self._on_message(event)
            elif isinstance(event, AuthFailed):
                raise _Fatal(
                    ProviderAuthError(
                        f"{self.name}: the provider rejected the credentials: "
                        f"{_shown(event.message)}. Check the API key."
                    )
                )
            elif isinstance(event, ProviderFailed):
                self.errors += 1
                self.last_error = _shown(event.message)
                if not event.retry:
                    raise _Fatal(ProviderConnectionError(f"{self.name}: {self.last_error}"))
                raise ConnectionError(self.last_error)
            elif isinstance(event, StreamEnded):
                self.last_error = None
                log.info("%s: %s", self.name, _shown(event.message or "stream ended"))
                raise _Finished(_shown(event.message))

    def _on_authenticated(self, event: Authenticated) -> None:
        self.state = StreamState.RUNNING
        self._authed = True
        self._authed_at = time.monotonic()
        self._records_at_auth = self.records
        self.connected_ns = time.time_ns()
        log.info("%s: connected to %s and authenticated", self.name, self._log_url)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _on_message(self, event: ProviderMessage) -> None:
        text = _shown(event.message)
        if event.level == "error":
            self.errors += 1
            self.last_error = text
            log.error("%s: provider error: %s", self.name, text)
        elif event.level == "warning":
            log.warning("%s: %s", self.name, text)
        else:
            log.info("%s: %s", self.name, text)


def _shown(message: str) -> str:
    """A provider's text as we log and show it: secrets masked, at most MESSAGE_LIMIT
    characters (a provider may send megabytes)."""
    return clip(mask_secrets(message), MESSAGE_LIMIT)


def _close_text(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame"
    return f"code {frame.code}{': ' + frame.reason if frame.reason else ''}"


def _connect_error(exc: BaseException, url: str) -> BaseException:
    if isinstance(exc, InvalidURI):
        return ProviderConnectionError(f"Invalid provider URL {url}: {exc}")
    if isinstance(exc, (OSError, InvalidHandshake, TimeoutError)):
        reason = mask_secrets(str(exc)) or type(exc).__name__
        return ProviderConnectionError(f"Could not connect to {url}: {reason}")
    return ProviderConnectionError(
        f"The connection to {url} failed before authentication: {mask_secrets(str(exc))}"
    )


def _direct_frames_supported() -> bool:
    """websockets has what :class:`_DirectConnection` overrides and reads (17.x has)."""
    try:
        probe = (
            WsState.OPEN,
            StreamReader.at_eof.__code__,
            StreamReader.read_exact.__code__,
            StreamReader().buffer,
        )
    except (AttributeError, TypeError):
        return False
    return bool(probe) and all(
        callable(getattr(ClientConnection, name, None))
        for name in ("process_event", "data_received")
    )


#: websockets offers the hooks the direct-frames path needs (else the driver uses recv())
DIRECT_FRAMES_SUPPORTED = _direct_frames_supported()
_AT_EOF = StreamReader.at_eof.__code__ if DIRECT_FRAMES_SUPPORTED else None
_READ_EXACT = StreamReader.read_exact.__code__ if DIRECT_FRAMES_SUPPORTED else None
_NO_LIMIT = 2**63


def _innermost(gen: Any) -> Any:
    """The generator a chain of ``yield from`` is suspended in (websockets' parser)."""
    while (inner := getattr(gen, "gi_yieldfrom", None)) is not None:
        gen = inner
    return gen


class _DirectConnection(ClientConnection):
    """websockets' client connection that hands each complete data message to a callback as
    it arrives (in ``data_received``), instead of queueing it for ``recv()``, and calls a
    second callback once the socket read is done (the driver hands that read's records over
    in one call).

    Until :meth:`start_delivery`, messages are held (a provider may speak right after the
    handshake, before the session has been told the connection is open). Fragmented messages
    are joined here (websockets' parser caps their size at ``max_size``; their count is capped
    at ``MAX_FRAGMENTS``). Control frames (ping, pong, close) take websockets' own path.

    The frame scanner. Once delivering, and while websockets' parser waits for a new frame
    with nothing buffered (see :meth:`_scan_ready`; a parser in the middle of a frame is
    first given exactly the rest of it, see :meth:`_owed`), each read is split into
    frames here: a whole unfragmented text or binary frame (first byte 0x81 / 0x82: FIN, no
    RSV bit, no extension negotiated) within ``max_size`` goes to the callback without
    websockets' parser (its generators and ``Frame`` objects cost about 1.5 us per frame);
    every other whole frame (control frames, fragments, anything malformed) is fed to
    websockets as it is, so its parser still sees a byte stream cut at frame boundaries and
    does what it always does (answer pings, close, refuse a masked or oversized frame). A
    frame cut by the end of a read waits here for the rest. A close (or a protocol error, or
    stopping the delivery) ends the scanner: what it holds goes to websockets first.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._callback: Callable[[bytes, bool], None] | None = None
        self._read_done: Callable[[], None] | None = None
        self._held: list[tuple[bytes, bool]] = []
        self._parts: list[bytes] = []
        self._parts_text = False
        self._want_scan = False  # scan reads as soon as websockets' parser is between frames
        self._scanning = False
        self._tail = bytearray()  # the start of a frame the last read cut (scanner on)
        self._need = 0  # bytes the tail needs before it holds that whole frame
        self._limit = _NO_LIMIT

    def start_delivery(
        self,
        callback: Callable[[bytes, bool], None],
        read_done: Callable[[], None] | None = None,
        *,
        scan: bool = True,
    ) -> None:
        self._callback = callback
        self._read_done = read_done
        held, self._held = self._held, []
        for data, text in held:
            callback(data, text)
        if read_done is not None:
            read_done()
        protocol = self.protocol
        sizes = [s for s in (protocol.max_message_size, protocol.max_fragment_size) if s]
        self._limit = min(sizes, default=_NO_LIMIT)
        self._want_scan = scan and not protocol.extensions and not protocol.debug
        self._scanning = self._scan_ready()

    def stop_delivery(self) -> None:
        self._callback = self._read_done = None
        self._stop_scanning()

    @property
    def scanning(self) -> bool:
        """The frame scanner splits the reads (see the class docstring)."""
        return self._scanning

    def _scan_ready(self) -> bool:
        """websockets' parser is between frames with nothing buffered: the next byte it is
        given must be the first of a frame (its generator waits in ``StreamReader.at_eof``)."""
        protocol = self.protocol
        if not self._want_scan or protocol.state is not WsState.OPEN or protocol.reader.buffer:
            return False
        return getattr(_innermost(protocol.parser), "gi_code", None) is _AT_EOF

    def _owed(self) -> int:
        """How many more bytes websockets' parser waits for in the middle of a frame (the
        ``n`` of its pending ``StreamReader.read_exact(n)``, less what it holds); 0 if that
        cannot be told."""
        protocol = self.protocol
        if not self._want_scan or protocol.state is not WsState.OPEN:
            return 0
        gen = _innermost(protocol.parser)
        frame = getattr(gen, "gi_frame", None)
        if getattr(gen, "gi_code", None) is not _READ_EXACT or frame is None:
            return 0
        wanted = frame.f_locals.get("n")
        return wanted - len(protocol.reader.buffer) if type(wanted) is int else 0

    def _start_scanning(self, data: bytes) -> None:
        """Until the scanner is on: give websockets what completes the frame it is in the
        middle of (exactly: it then waits between frames), and scan the rest of the read."""
        pos, n = 0, len(data)
        while pos < n:
            if self._scan_ready():
                self._scanning = True
                self._scan(data[pos:])
                return
            owed = self._owed()
            if owed <= 0 or pos + owed >= n:
                break
            super().data_received(data[pos : pos + owed])
            pos += owed
        super().data_received(data[pos:] if pos else data)
        self._scanning = self._scan_ready()

    def _stop_scanning(self) -> None:
        self._want_scan = self._scanning = False
        if self._tail:
            rest = bytes(self._tail)
            self._tail.clear()
            self._to_websockets(rest)

    def _to_websockets(self, data: bytes) -> None:
        if self.protocol.state is WsState.OPEN or self.protocol.state is WsState.CLOSING:
            super().data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._scanning:
            self._scan(data)
        elif self._want_scan:
            self._start_scanning(data)
        else:
            super().data_received(data)
        done = self._read_done
        if done is not None:
            done()

    def _scan(self, chunk: bytes) -> None:
        """Split one read into frames (see the class docstring)."""
        tail = self._tail
        if tail:
            tail += chunk
            if len(tail) < self._need:
                return  # a large frame still arriving
            data = bytes(tail)
            tail.clear()
        else:
            data = chunk
        n = len(data)
        pos = 0
        callback = self._callback
        protocol = self.protocol
        limit = self._limit
        while n - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length < 128:  # 126: 16-bit length, 127: 64-bit length
                start = pos + (4 if length == 126 else 10)
                if start > n:
                    break
                length = int.from_bytes(data[pos + 2 : start], "big")
            else:  # a masked frame from the server: websockets' parser refuses it
                self._hand_over(data[pos:])
                return
            end = start + length
            if length > limit:  # websockets' parser refuses it (close 1009)
                self._hand_over(data[pos:])
                return
            if end > n:
                self._need = end - pos
                tail += memoryview(data)[pos:]
                return
            if (first == 0x81 or first == 0x82) and protocol.current_size is None:
                assert callback is not None
                callback(data[start:end], first == 0x81)
            else:  # control frames, fragments, errors: websockets' own parser
                super().data_received(data[pos:end])
                if not self._scan_ready():
                    self._hand_over(data[end:])
                    return
            pos = end
        if pos < n:
            self._need = 0  # the header itself is cut: try again with the next read
            tail += memoryview(data)[pos:]

    def _hand_over(self, rest: bytes) -> None:
        """The scanner stops for this connection; websockets reads everything from ``rest``."""
        self._want_scan = self._scanning = False
        if rest:
            self._to_websockets(rest)

    def process_event(self, event: Any) -> None:
        if self.response is None or type(event) is not WsFrame:  # the handshake
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not event.fin:
                self._parts = [bytes(event.data)]
                self._parts_text = opcode is Opcode.TEXT
                return
            data = event.data
            self._message(data if type(data) is bytes else bytes(data), opcode is Opcode.TEXT)
        elif opcode is Opcode.CONT:
            self._fragment(event)
        else:
            super().process_event(event)

    def _fragment(self, event: WsFrame) -> None:
        parts = self._parts
        parts.append(bytes(event.data))
        # websockets' parser caps the message's size (max_size); this caps the count of
        # (possibly empty) fragments, as its own message assembler does
        if len(parts) > MAX_FRAGMENTS:
            self._parts = []
            self.transport.abort()
            return
        if event.fin:
            self._parts = []
            self._message(b"".join(parts), self._parts_text)

    def _message(self, data: bytes, text: bool) -> None:
        callback = self._callback
        if callback is None:
            self._held.append((data, text))
        else:
            callback(data, text)
