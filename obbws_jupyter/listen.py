"""Listen to a broadcast (the client side of :mod:`obbws_jupyter._broadcast`).

::

    from obbws_jupyter.listen import listen

    listener = listen("ws://127.0.0.1:6666", auth_token="...")   # in Jupyter: returns at once
    listener.wait(10, timeout=5); list(listener.records)[-3:]
    listener.stop()

    listen("localhost:6666")    # in a terminal/script: prints one JSON line per record until
                                # the server closes, max_records is reached, or Ctrl-C

    async for record in alisten("ws://127.0.0.1:6666"):          # inside async code
        ...

``listen`` blocks when the calling thread has no running asyncio loop (a script, a terminal)
and otherwise runs the client on the background loop of :mod:`obbws_jupyter.runtime`, so a
notebook cell is never blocked and the kernel's loop is never touched (OpenBB's ``listen``
could not run in Jupyter at all). The token travels in an ``Authorization: Bearer`` header,
never in a URL we show; a token already in the URL is masked (``auth_token=********``)
everywhere we print or log it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import json
import logging
import socket
import sys
import threading
import types
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.uri import parse_uri

from obbws_jupyter import runtime
from obbws_jupyter._util import mask_secrets, wire_logger
from obbws_jupyter._validate import check_token
from obbws_jupyter._wire import MAX_REPLAY
from obbws_jupyter.exceptions import (
    BroadcastError,
    InvalidParameterError,
    ObbwsError,
    UnauthorizedError,
)

__all__ = ["MAX_RECORDS_KEPT", "Listener", "alisten", "listen"]

log = logging.getLogger("obbws_jupyter.listen")

MAX_RECORDS_KEPT = 10_000
WIRE_LOGGER = "obbws_jupyter.listen.websockets"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_CLIENT_DEFAULTS: dict[str, Any] = {
    "compression": None,
    "ping_interval": 20,
    "ping_timeout": 60,  # generous: a busy kernel can starve the loop
    # leaving early (max_records, stop()) may find the incoming queue full, so the server's
    # close reply is never read: do not wait websockets' default 10 s for it
    "close_timeout": 1.0,
}


# -- URL and options -------------------------------------------------------------------------


def normalize_url(url: str, replay: int | None = None) -> str:
    """``"localhost:6666"`` / ``"http://h:p"`` -> ``"ws://..."``, plus ``replay=N`` if asked.

    Raises InvalidParameterError for anything that is not a ws:// or wss:// URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameterError(
            f"url must be a broadcast address such as 'ws://127.0.0.1:6666', got {url!r}."
        )
    text = url.strip()
    lowered = text.lower()
    if lowered.startswith("http://"):
        text = "ws://" + text[7:]
    elif lowered.startswith("https://"):
        text = "wss://" + text[8:]
    elif "://" not in text:
        text = "ws://" + text
    if replay is not None:
        if isinstance(replay, bool) or not isinstance(replay, int):
            raise InvalidParameterError(f"replay must be an int, got {replay!r}.")
        if not 1 <= replay <= MAX_REPLAY:
            raise InvalidParameterError(f"replay must be between 1 and {MAX_REPLAY}.")
        parts = urlsplit(text)
        query = "&".join(
            p for p in parts.query.split("&") if p and not p.lower().startswith("replay=")
        )
        query = f"{query}&replay={replay}" if query else f"replay={replay}"
        text = urlunsplit(parts._replace(query=query, path=parts.path or "/"))
    try:
        parse_uri(text)
    except (InvalidURI, ValueError) as exc:
        reason = exc.msg if isinstance(exc, InvalidURI) else str(exc)
        raise InvalidParameterError(
            f"Invalid broadcast URL {mask_secrets(text)!r}: {reason}; "
            "expected ws://HOST:PORT (e.g. ws://127.0.0.1:6666)."
        ) from None
    return text


def _one_token(url: str, auth_token: str | None) -> str:
    """``url`` without its ``auth_token=`` query value when ``auth_token`` is given: the token
    then travels in the header only (a broadcast accepts exactly one token per handshake)."""
    if auth_token is None:
        return url
    parts = urlsplit(url)
    query = "&".join(
        p for p in parts.query.split("&") if p and not p.lower().startswith("auth_token=")
    )
    return urlunsplit(parts._replace(query=query))


def _connect_options(url: str, auth_token: str | None, given: dict[str, Any]) -> dict[str, Any]:
    allowed = _connect_option_names()
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise InvalidParameterError(
            f"Unknown connect option(s): {', '.join(unknown)}. Options go to "
            "websockets.asyncio.client.connect (e.g. open_timeout, max_size)."
        )
    options = {**_CLIENT_DEFAULTS, "logger": wire_logger(WIRE_LOGGER), **given}
    if check_token(auth_token) is not None:
        headers = options.get("additional_headers") or []
        items = list(headers.items()) if hasattr(headers, "items") else list(headers)
        items.append(("Authorization", f"Bearer {auth_token}"))
        options["additional_headers"] = items
    if "proxy" not in given and (urlsplit(url).hostname or "") in _LOOPBACK:
        options["proxy"] = None  # a proxy from the environment must not see local traffic
    return options


def _connect_option_names() -> frozenset[str]:
    names: set[str] = set()
    for func in (connect.__init__, asyncio.AbstractEventLoop.create_connection):
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                names.add(param.name)
    return frozenset(names - {"self", "uri", "protocol_factory", "host", "port"})


# -- errors ----------------------------------------------------------------------------------


def _handshake_error(exc: Exception, shown: str) -> ObbwsError:
    """Translate a failure to open the connection into one of our exceptions."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        if status == 401 or (status == 403 and "origin" not in body.lower()):
            return UnauthorizedError(
                f"The broadcast at {shown} refused the auth token; pass auth_token=... "
                "matching the connection's token."
            )
        detail = f": {body}" if body else ""
        return BroadcastError(
            f"The broadcast at {shown} refused the connection (HTTP {status}{detail})."
        )
    if isinstance(exc, TimeoutError):
        return BroadcastError(f"Timed out connecting to {shown}; is the broadcast running there?")
    if isinstance(exc, socket.gaierror):
        return BroadcastError(f"Cannot resolve the host of {shown}: {exc.strerror or exc}.")
    if isinstance(exc, OSError):
        refused = isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc)
        reason = "connection refused" if refused else (exc.strerror or str(exc))
        return BroadcastError(
            f"Nothing is broadcasting at {shown} ({reason}). Start it with "
            "conn.start_broadcasting(), or check the host and port."
        )
    if isinstance(exc, InvalidHandshake):
        return BroadcastError(f"{shown} did not answer as a websocket broadcast: {exc}.")
    return BroadcastError(f"Could not listen to {shown}: {type(exc).__name__}: {exc}.")


def _closed_error(exc: ConnectionClosedError, shown: str) -> ObbwsError:
    """Translate an abnormal end of the stream."""
    code = exc.rcvd.code if exc.rcvd is not None else None
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    if code == 1013:
        return BroadcastError(
            f"The broadcast at {shown} dropped this listener: {reason or 'listener too slow'}. "
            "Handle records faster (keep callbacks quick)."
        )
    if code == 1008:
        return UnauthorizedError(
            f"The broadcast at {shown} refused the auth token; pass auth_token=... "
            "matching the connection's token."
        )
    if code is None:
        return BroadcastError(f"The connection to {shown} was lost (the broadcast went away).")
    detail = f" {reason}" if reason else ""
    return BroadcastError(f"The broadcast at {shown} closed the stream with code {code}{detail}.")


# -- the stream ------------------------------------------------------------------------------


def _decode(message: str | bytes, shown: str) -> dict[str, Any] | None:
    try:
        value = json.loads(message)
        if isinstance(value, str):  # an OpenBB broadcast double-encodes its records
            value = json.loads(value)
    except ValueError:
        log.warning("skipped a frame from %s that is not JSON: %.80r", shown, message)
        return None
    if not isinstance(value, dict):
        log.warning("skipped a frame from %s that is not a JSON object: %.80r", shown, message)
        return None
    return value


async def _records(
    url: str, shown: str, options: dict[str, Any], on_open: Callable[[], None] | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    try:
        websocket = await connect(url, **options)
    except Exception as exc:
        raise _handshake_error(exc, shown) from None
    try:
        log.info("listening to %s", shown)
        if on_open is not None:
            on_open()
        try:
            async for message in websocket:  # ends quietly on a normal close (1000/1001)
                record = _decode(message, shown)
                if record is not None:
                    yield record
        except ConnectionClosedError as exc:
            raise _closed_error(exc, shown) from None
        except ConnectionClosed:
            pass
        code = websocket.close_code
        log.info("the broadcast at %s closed the stream (code %s)", shown, code)
    finally:
        try:
            await asyncio.wait_for(websocket.close(), 0.5)
        except TimeoutError:  # the close reply is stuck behind unread data: just drop it
            websocket.transport.abort()
        except BaseException:
            websocket.transport.abort()
            raise


# A record source: called with an ``on_open`` callback (or None), returns the async generator
# of record dicts. The broadcast's is below; a streaming engine's (``nats://``, ``redis://``)
# comes from its sink module as ``records(url, *, replay, auth_token, on_open, **options)``.
RecordSource = Callable[[Callable[[], None] | None], AsyncGenerator[dict[str, Any], None]]

# scheme -> module whose ``records`` function reads that engine (imported on first use)
ENGINE_SOURCES = {
    "nats": "obbws_jupyter.sinks.nats",
    "redis": "obbws_jupyter.sinks.redis",
    "rediss": "obbws_jupyter.sinks.redis",
}


def _engine(url: str) -> str | None:
    """The engine scheme of ``url`` (``nats``, ``redis``...) or None for a broadcast address."""
    if not isinstance(url, str) or "://" not in url:
        return None
    scheme = url.strip().split("://", 1)[0].lower()
    return scheme if scheme in ENGINE_SOURCES else None


def _source(
    url: str, auth_token: str | None, replay: int | None, options: dict[str, Any]
) -> RecordSource:
    """Validate the arguments (before anything starts) and return the source of ``url``."""
    scheme = _engine(url)
    if scheme is not None:
        from obbws_jupyter.sinks import import_engine  # the sinks need the package loaded

        module = import_engine(scheme, ENGINE_SOURCES[scheme], f"listening to {scheme}://")
        engine_records = module.records
        checked = module.check_listen_options(url, replay=replay, **options)
        return functools.partial(
            _engine_records, engine_records, url.strip(), replay, auth_token, checked
        )
    target = _one_token(normalize_url(url, replay), auth_token)
    connect_options = _connect_options(target, auth_token, options)
    return functools.partial(_records, target, mask_secrets(target), connect_options)


def _engine_records(
    engine_records: Callable[..., AsyncGenerator[dict[str, Any], None]],
    url: str,
    replay: int | None,
    auth_token: str | None,
    options: dict[str, Any],
    on_open: Callable[[], None] | None,
) -> AsyncGenerator[dict[str, Any], None]:
    return engine_records(url, replay=replay, auth_token=auth_token, on_open=on_open, **options)


def _shown(url: str, auth_token: str | None, replay: int | None) -> str:
    """The address as shown in reprs and logs (secrets masked)."""
    if _engine(url) is not None:
        return mask_secrets(url.strip())
    return _one_token(normalize_url(url, replay), auth_token)


async def alisten(
    url: str, auth_token: str | None = None, *, replay: int | None = None, **connect_kwargs: Any
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield the broadcast's records as dicts, in the caller's own event loop.

    Ends when the server closes the stream; raises UnauthorizedError, BroadcastError or
    InvalidParameterError like :func:`listen`.
    """
    source = _source(url, auth_token, replay, connect_kwargs)
    async with contextlib.aclosing(source(None)) as stream:
        async for record in stream:
            yield record


def _print_record(record: dict[str, Any]) -> None:
    """Default callback of a blocking listen(): one JSON line per record on stdout."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class Listener:
    """Handle of a running listen(): records so far, state, and controls.

    ``records`` keeps the latest 10,000 records (a ``collections.deque``); ``count`` counts all
    of them. ``error`` is the exception that ended the listener, or None. ``wait(n, timeout)``
    blocks until ``n`` records arrived (or the listener ended) and says whether they did.
    """

    def __init__(
        self,
        url: str,
        source: RecordSource,
        callback: Callable[[dict[str, Any]], Any] | None,
        max_records: int | None,
    ) -> None:
        self.url = mask_secrets(url)
        self._source = source
        self.callback = callback
        self.max_records = max_records
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDS_KEPT)
        self.count = 0
        self.callback_errors = 0
        self.error: BaseException | None = None
        self.connected = False
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return not self._done.is_set()

    def wait(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` records arrived in total; False on timeout or if it ended."""
        with self._cond:
            self._cond.wait_for(lambda: self.count >= count or self._done.is_set(), timeout)
            return self.count >= count

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the listener has joined the broadcast; False on timeout or failure.

        Only records published after the join are received (unless ``replay`` was asked).
        """
        with self._cond:
            self._cond.wait_for(lambda: self.connected or self._done.is_set(), timeout)
            return self.connected

    def stop(self, timeout: float = 5) -> None:
        """Close the connection and end the listener (waits up to ``timeout`` seconds)."""
        with self._lock:
            self._stopping = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to cancel
                loop.call_soon_threadsafe(task.cancel)
        if loop is not None and _running_loop() is loop:
            return  # called from a callback: cannot wait for ourselves
        self._done.wait(timeout)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        if self.error is not None:
            state = f"failed: {type(self.error).__name__}"
        return f"<Listener {self.url} {state}, {self.count} records>"

    # -- running -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        """On the background loop: start the listening task (background mode)."""
        with self._lock:
            if self._stopping:
                self._finish()
                return
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._main(), name=f"listen {self.url}")
        self._task.add_done_callback(lambda _: self._finish())

    async def _main(self) -> None:
        with self._lock:
            if self._stopping:
                self._finish()
                return
            self._loop = asyncio.get_running_loop()
            self._task = self._task or asyncio.current_task()
        try:
            stream = self._source(self._opened)
            async with contextlib.aclosing(stream) as records:
                async for record in records:
                    self._deliver(record)
                    if self.max_records is not None and self.count >= self.max_records:
                        break
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except ObbwsError as exc:
            self.error = exc
            log.error("listener for %s stopped: %s", self.url, exc)
        except Exception as exc:
            self.error = BroadcastError(f"Listening to {self.url} failed: {exc}")
            log.error("listener for %s failed", self.url, exc_info=True)
        finally:
            self._finish()

    def _opened(self) -> None:
        with self._cond:
            self.connected = True
            self._cond.notify_all()

    def _deliver(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.callback is not None:
            try:
                self.callback(record)
            except Exception:
                self.callback_errors += 1
                if self.callback_errors == 1 or self.callback_errors % 1000 == 0:
                    log.error(
                        "listener callback failed (%d time(s) so far)",
                        self.callback_errors,
                        exc_info=True,
                    )
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def _finish(self) -> None:
        with self._cond:
            self.connected = False
            self._done.set()
            self._cond.notify_all()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def listen(
    url: str,
    auth_token: str | None = None,
    *,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    block: bool | None = None,
    max_records: int | None = None,
    replay: int | None = None,
    **connect_kwargs: Any,
) -> Listener:
    """Listen to a broadcast started with ``start_broadcasting`` (or any obbws broadcast).

    Args:
        url: ``ws://HOST:PORT``; ``localhost:6666``, ``127.0.0.1:6666`` and ``http://...`` work.
            A streaming engine a sink publishes to is read the same way: ``nats://HOST:PORT``
            (JetStream; ``subject=``, see ``docs/scale_out.md``) or ``redis://HOST:PORT/DB``
            (Redis Streams; ``name=`` or ``key=``, see ``docs/sinks.md``).
        auth_token: the connection's token, sent as an ``Authorization: Bearer`` header.
        callback: called with each record (a dict). Default: print one JSON line per record
            to stdout when blocking, nothing in the background (records are kept in
            ``.records``). In the background it runs on the shared loop thread: keep it quick.
            Its exceptions are logged and counted (``.callback_errors``), never fatal.
        block: None blocks only when the calling thread runs no asyncio loop (a script or a
            terminal); in Jupyter (a running loop) it returns the Listener at once.
        max_records: stop after this many records.
        replay: first receive the last N stored records (1..100000).
        connect_kwargs: passed to ``websockets.asyncio.client.connect`` (for an engine URL:
            the engine's options, such as ``subject=`` for NATS).

    Returns the :class:`Listener`. A blocking call returns when the server closes the stream,
    after ``max_records``, or on Ctrl-C; it raises UnauthorizedError (token refused) or
    BroadcastError (nothing broadcasting, dropped as too slow, ...). In the background the
    same exceptions end the listener and are kept in ``.error``.
    """
    if max_records is not None and (
        isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1
    ):
        raise InvalidParameterError(f"max_records must be a positive int, got {max_records!r}.")
    if callback is not None and not callable(callback):
        raise InvalidParameterError("callback must be callable (it receives each record).")
    source = _source(url, auth_token, replay, connect_kwargs)
    shown = _shown(url, auth_token, replay)
    has_loop = _running_loop() is not None
    if block is None:
        block = not has_loop
    if block and has_loop:
        raise InvalidParameterError(
            "listen(block=True) cannot run inside a running event loop (Jupyter); "
            "use block=False (the default there) or `async for record in alisten(...)`."
        )
    if block:
        listener = Listener(shown, source, callback or _print_record, max_records)
        try:
            asyncio.run(listener._main())
        except KeyboardInterrupt:
            log.info("listener for %s interrupted", listener.url)
        if listener.error is not None:
            raise listener.error
        return listener
    listener = Listener(shown, source, callback, max_records)
    runtime.call_soon(listener._spawn)
    return listener


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`listen`.

    The package exports the function ``obbws_jupyter.listen``, but importing this module by
    name (``from obbws_jupyter.listen import listen``, as the README does) makes Python set
    the package's ``listen`` attribute to the module. Calling the module calls the function,
    so ``obbws.listen(url)`` works whichever of the two it is."""

    def __call__(self, *args: Any, **kwargs: Any) -> Listener:
        return listen(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
