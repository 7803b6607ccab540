"""``WebSocketClient``: one provider stream + its DuckDB store + an optional broadcast server.

Usable on its own in a plain script (no Jupyter, no registry)::

    from obbws_jupyter.client import WebSocketClient

    client = WebSocketClient("demo", symbol="btcusd,ethusd")
    client.connect()
    ...
    print(client.get_results().tail())
    client.close()

Everything that touches sockets runs on the background loop (``obbws_jupyter.runtime``); the
methods here are synchronous, return promptly and raise on timeout instead of hanging.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import importlib
import itertools
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from obbws_jupyter import _bars, runtime
from obbws_jupyter._broadcast import BroadcastServer, BroadcastSink
from obbws_jupyter._options import ClientOptions, parse_connect_kwargs, split_options
from obbws_jupyter._registry import get_provider
from obbws_jupyter._store import ResultsStore, StoreSink
from obbws_jupyter._stream import StreamDriver
from obbws_jupyter._util import DefaultPort, mask_secrets, ns_to_datetime, remember_secret
from obbws_jupyter._validate import (
    check_name,
    check_path,
    check_port,
    check_token,
)
from obbws_jupyter._wire import DEFAULT_PORT
from obbws_jupyter.capture import CaptureWriter
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    NotBroadcastingError,
    NotRunningError,
    ObbwsTimeoutError,
    SymbolError,
    WrongThreadError,
)
from obbws_jupyter.models import SinkStatus, StreamState, WebSocketConnectionStatus
from obbws_jupyter.protocol import ProviderSession, ProviderSpec, Record
from obbws_jupyter.sinks import Batch, Sink, SinkContext, SinkHealth, close_sinks, sink_from_url

__all__ = ["DEFAULT_BROADCAST_PORT", "ClientOptions", "WebSocketClient", "parse_connect_kwargs"]

log = logging.getLogger("obbws_jupyter.client")

DEFAULT_BROADCAST_PORT = DefaultPort(DEFAULT_PORT)
_names = itertools.count(1)
_live: weakref.WeakSet[WebSocketClient] = weakref.WeakSet()


class WebSocketClient:
    """One provider stream, stored in DuckDB and optionally re-broadcast.

    Arguments are validated before anything starts; nothing connects until :meth:`connect`.
    ``auth_token`` protects the broadcast (and, through the registry, every endpoint).
    Provider parameters (``symbol``, ``asset_type``, ``feed``, ``api_key``, ...) go in
    ``**kwargs`` (``obbws providers`` lists them), beside the client's own options
    (:class:`~obbws_jupyter.ClientOptions`: ``tz``, ``limit``, ``max_reconnects``, ...), which
    can also come as one ``options=ClientOptions(...)``. A provider parameter whose name is
    also an option's goes in ``provider_params={...}``.
    """

    def __init__(
        self,
        provider: str,
        name: str | None = None,
        *,
        auth_token: str | None = None,
        options: ClientOptions | None = None,
        provider_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.spec: ProviderSpec = get_provider(provider)
        self.provider = self.spec.name
        self.name = check_name(name) if name is not None else f"{self.provider}-{next(_names)}"
        auth_token = check_token(auth_token)
        declared = [p.name for p in self.spec.params]
        opts, given = split_options(kwargs, options, provider_params, declared)
        self.options = opts
        params = self.spec.resolve(given, os.environ)
        for secret in self.spec.secret_params:  # masked in logs, e.g. in an auth frame
            remember_secret(params.get(secret))
        session = self.spec.session_class(params)
        if not session.symbols:
            raise SymbolError(
                f"{self.provider}: no symbol given; pass symbol='btcusd' (comma-separated for "
                "several, '*' where the provider supports all symbols)."
            )
        self._session: ProviderSession = session
        self._fields = tuple(session.fields)  # the schema of every Batch
        self._params = params
        self.limit = opts.limit
        self.tz = opts.tz
        self.sleep_time = opts.sleep_time
        self.connect_timeout = opts.connect_timeout
        self._driver_options: dict[str, Any] = {
            "max_reconnects": opts.max_reconnects,
            "reconnect_base": opts.reconnect_base,
            "reconnect_cap": opts.reconnect_cap,
            "stale_after": opts.stale_timeout,
            "connect_kwargs": parse_connect_kwargs(opts.connect_kwargs),
            "http_client": opts.http_client,
        }
        record_file = opts.record_file
        if record_file is not None:
            self._check_record_target(record_file)
        self._auth_token = auth_token
        self.save_results = opts.save_results
        self._store = ResultsStore(
            session.fields,
            results_file=opts.results_file,
            table_name=opts.table_name,
            limit=self.limit,
            tz=self.tz,
            save_results=self.save_results,
            flush_interval=opts.flush_interval,
            # rows waiting beyond the newest `limit` would be cut by the cap anyway: bound
            # the writer's backlog (and memory) by the limit when there is one
            max_pending=max(4 * self.limit, 200_000) if self.limit else 2_000_000,
            name=self.name,
        )
        self.table_name = self._store.table_name
        self._next_id = self._store.next_id
        self._driver: StreamDriver | None = None
        self._server: Any = None  # embedded provider server (demo / replay)
        self._broadcast: BroadcastServer | None = None
        self._capture: CaptureWriter | None = None
        self._record_hooks: list[Callable[[list[Record]], None]] = []
        self._hook_sink = _HookSink(self._record_hooks, self.name)
        self._store_sink = StoreSink(self._store)  # always first: see _on_records
        self._store_put_frame = self._store.put_frame
        self._sinks: dict[str, Sink] = {}  # the user's sinks, by URL
        self._sink_list: tuple[Sink, ...] = ()  # the user's sinks, in order (swapped)
        self._chain: tuple[Sink, ...] = ()  # every sink after the store (see _rewire)
        self._frame_sinks: tuple[Sink, ...] = ()  # the chain, when it takes frames (_rewire)
        self.sink_rows_undelivered = 0  # rows the sinks still held when close() closed them
        self._lock = threading.RLock()
        self._closed = False
        self._pending_record_file = record_file
        self._last_store_error: str | None = None
        _live.add(self)

    # -- properties --------------------------------------------------------------------------

    @property
    def symbol(self) -> str:
        """Subscribed symbols, comma-separated (OpenBB's shape)."""
        return ",".join(self._session.symbols)

    @property
    def provider_params(self) -> dict[str, Any]:
        """The resolved provider parameters, secrets (API keys) left out: for display."""
        secret = self.spec.secret_params
        return {k: v for k, v in self._params.items() if k not in secret and k != "url"}

    @property
    def fields(self) -> tuple[Any, ...]:
        return self._session.fields

    @property
    def is_running(self) -> bool:
        return self._driver is not None and self._driver.is_running

    @property
    def state(self) -> str:
        """The stream's state ("idle", "connecting", "running", "reconnecting", "stopped",
        "failed", "finished"), or "closed" after :meth:`close`: cheap, for live views."""
        if self._closed:
            return "closed"
        driver = self._driver
        return driver.state if driver is not None else "idle"

    @property
    def is_broadcasting(self) -> bool:
        return self._broadcast is not None and self._broadcast.is_serving

    @property
    def broadcast_address(self) -> str | None:
        return self._broadcast.address if self.is_broadcasting and self._broadcast else None

    @property
    def results_file(self) -> str:
        return str(self._store.path)

    @property
    def auth_required(self) -> bool:
        return self._auth_token is not None

    @property
    def store(self) -> ResultsStore:
        return self._store

    def check_token(self, token: str | None) -> bool:
        """Constant-time check of ``token`` against this client's auth_token (a token that is
        not text, or not encodable, is simply wrong)."""
        if self._auth_token is None:
            return True
        if not isinstance(token, str):
            return False
        given = token.encode("utf-8", "surrogatepass")
        return hmac.compare_digest(given, self._auth_token.encode())

    # -- provider stream ---------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, authenticate and subscribe; returns once the provider accepted the
        credentials. Raises ProviderAuthError / ProviderConnectionError / ObbwsTimeoutError."""
        with self._serialized():
            if self.is_running:
                log.info("%s: provider connection already running.", self.name)
                return
            runtime.run(self._aconnect(), timeout=self.connect_timeout + 15)

    async def _aconnect(self) -> None:
        try:
            if self._params.get("url") is None and self.spec.embedded_server:
                if self._server is None:
                    self._server = await _start_embedded(self.spec, self._params)
                self._session.params["url"] = self._server.url
            url = self._session.url()
            driver = StreamDriver(
                self._session,
                url=url,
                on_records=self._on_records,
                name=self.name,
                **self._driver_options,
            )
            if self._pending_record_file is not None:
                self._start_capture(self._pending_record_file, url)
                self._pending_record_file = None
            if self._capture is not None:
                driver.on_frame = self._capture.write
            self._driver = driver
            await driver.start(timeout=self.connect_timeout)
        except BaseException:
            if self._driver is not None:
                await self._driver.stop()
            raise

    def disconnect(self) -> None:
        """Stop the provider stream (the broadcast server and the stored rows stay)."""
        with self._serialized():
            if not self.is_running:
                log.info("%s: provider connection is not running.", self.name)
            driver = self._driver
            if driver is not None:
                runtime.run(driver.stop())
                log.info("%s: disconnected from the provider.", self.name)

    def wait_stopped(self, timeout: float | None = None) -> str:
        """Block until the stream ends by itself (a replay finished, or reconnecting gave up)
        or ``timeout`` passes; returns the stream's state ("finished", "failed", "running"...)."""
        driver = self._driver
        if driver is None:
            return "idle"
        wait = None if timeout is None else timeout + 5
        return runtime.run(driver.wait_done(timeout), timeout=wait)

    def subscribe(self, symbol: str | Iterable[str]) -> list[str]:
        """Subscribe to more symbols; returns the ones that were new."""
        with self._serialized():
            driver = self._require_running()
            wanted = self._session.normalize(symbol)
            if not wanted:
                raise SymbolError("subscribe() needs at least one symbol.")
            new = [s for s in wanted if s not in self._session.symbols]
            if not new:
                raise SymbolError(f"Client {self.name} already subscribed to {','.join(wanted)}.")
            return runtime.run(driver.subscribe(new))

    def unsubscribe(self, symbol: str | Iterable[str]) -> list[str]:
        """Unsubscribe from symbols; returns the ones that were subscribed."""
        with self._serialized():
            driver = self._require_running()
            wanted = self._session.normalize(symbol)
            gone = [s for s in wanted if s in self._session.symbols]
            if not gone:
                raise SymbolError(
                    f"Client {self.name} not subscribed to {','.join(wanted) or symbol!r}."
                )
            return runtime.run(driver.unsubscribe(gone))

    def _require_running(self) -> StreamDriver:
        driver = self._driver
        if driver is None or not driver.is_running:
            raise NotRunningError(
                f"Provider connection of {self.name} is not running; use restart_connection()."
            )
        return driver

    def _on_records(self, records: list[Record]) -> None:
        # On the loop thread, once per socket read (the direct-frames path hands over the
        # records of all frames that arrived in one read together; the recv() path one
        # frame's): the store first (StoreSink.write, inline: the dicts, first id and time,
        # O(1)), then one Batch for the other sinks in order (broadcast, record hooks, user
        # sinks). What the store would reject must reach
        # none of them, so with any of them it is sorted out first (0.4 us per record);
        # without them the writer rejects it by itself, and no Batch object is built.
        if not records:
            return
        sinks = self._chain
        first_id = self._next_id
        if not sinks:
            self._next_id = first_id + len(records)
            self._store_put_frame(records, first_id, time.time_ns())
            return
        if self._frame_sinks:  # every sink takes the frame as the store does: O(1) too
            self._next_id = first_id + len(records)
            now = time.time_ns()
            self._store_put_frame(records, first_id, now)
            for sink in self._frame_sinks:
                try:
                    sink.write_frame(records, first_id, now)
                except Exception:  # a sink never breaks the stream
                    log.exception("%s: sink %s failed to take a frame", self.name, sink.display_url)
            return
        records = self._store.accept(records)
        if not records:
            return
        now = time.time_ns()
        # The sinks after the store read dicts (the broadcast, the hooks): writing the ids in
        # here, in one tight loop, is cheaper than their rows() doing it.
        next_id = first_id
        for record in records:
            record["id"] = next_id
            record["received_at"] = now
            next_id += 1
        self._next_id = next_id
        self._store_put_frame(records, first_id, now)  # the store sink's write, inline
        batch = Batch.stamped(records, self._fields, first_id, now, written=True)
        for sink in sinks:
            try:
                sink.write(batch)
            except Exception:  # a sink never breaks the stream
                log.exception("%s: sink %s failed to take a batch", self.name, sink.display_url)

    def _rewire(self) -> None:
        """Rebuild the ordered tuple of sinks that follow the store (swapped, not mutated:
        ``_on_records`` reads it on the loop thread without a lock)."""
        chain: list[Sink] = []
        if self._broadcast is not None:
            chain.append(BroadcastSink(self._broadcast))
        if self._record_hooks:
            chain.append(self._hook_sink)
        self._sink_list = tuple(self._sinks.values())
        chain.extend(self._sink_list)
        # sinks that check and stamp frames themselves (Sink.takes_frames): when all do, the
        # loop thread skips the per-record check and stamping a Batch needs
        self._frame_sinks = tuple(chain) if all(s.takes_frames for s in chain) else ()
        self._chain = tuple(chain)

    def add_record_hook(self, hook: Callable[[list[Record]], None]) -> None:
        """Call ``hook(records)`` on the loop thread with the records of every socket read
        (one frame's, or those of several frames that arrived together; keep it cheap)."""
        self._record_hooks.append(hook)
        self._rewire()

    def remove_record_hook(self, hook: Callable[[list[Record]], None]) -> None:
        if hook in self._record_hooks:
            self._record_hooks.remove(hook)
            self._rewire()

    # -- sinks -------------------------------------------------------------------------------

    def add_sink(self, sink: str | Sink, **options: Any) -> Sink:
        """Send every record from now on to ``sink`` too: a URL (``nats://host:port``,
        ``redis://host:port/0``, ``parquet:///path/dir``; options go to the sink) or a
        :class:`~obbws_jupyter.sinks.Sink`. It is opened now (a destination that cannot be
        used raises here); a slow or failing sink never slows the stream."""
        with self._serialized():
            built = sink_from_url(sink, **options) if isinstance(sink, str) else sink
            if not isinstance(built, Sink):
                raise InvalidParameterError(
                    f"add_sink() takes a sink URL or an obbws_jupyter.sinks.Sink, got {sink!r}."
                )
            if built.url in self._sinks:
                raise InvalidParameterError(
                    f"{self.name} already has the sink {built.display_url}; remove_sink() it "
                    "first to change its options."
                )
            built.open(self._sink_context())
            self._sinks[built.url] = built
            self._rewire()
            log.info("%s: sink %s added", self.name, built.display_url)
            return built

    def remove_sink(self, url: str | Sink) -> int:
        """Stop sending to the sink added as ``url`` (the URL given, the masked one that
        ``sinks`` shows, or the Sink object) and close it (delivering what it can); returns
        how many rows it could not deliver."""
        with self._serialized():
            sink = self._sinks.pop(self._sink_key(url), None)
            if sink is None:
                known = ", ".join(s.display_url for s in self._sinks.values()) or "none"
                raise InvalidParameterError(
                    f"{self.name} has no sink {mask_secrets(str(url))!r} (sinks: {known})."
                )
            self._rewire()
            lost = sink.close()
            log.info("%s: sink %s removed", self.name, sink.display_url)
            return lost

    def _sink_key(self, url: str | Sink) -> Any:
        """The key of the sink ``url`` names: a Sink object, its URL, or its masked URL when
        one sink alone shows it (``sinks`` shows only masked URLs)."""
        if isinstance(url, Sink):
            return url.url
        if url in self._sinks:
            return url
        shown = [key for key, sink in self._sinks.items() if sink.display_url == url]
        return shown[0] if len(shown) == 1 else url

    @property
    def sinks(self) -> list[SinkHealth]:
        """The health of each added sink, in the order they were added (the store, the
        broadcast and the record hooks are internal sinks, not listed)."""
        return [sink.health() for sink in self._sink_list]

    def _sink_context(self) -> SinkContext:
        return SinkContext(
            name=self.name,
            provider=self.provider,
            fields=tuple(self._session.fields),
            tz=self.tz,
            limit=self.limit,
        )

    # -- recording ---------------------------------------------------------------------------

    def capture(self, path: str | os.PathLike[str]) -> Path:
        """Write every raw provider frame from now on to a capture file for the replay provider."""
        with self._serialized():
            return self._record(path)

    def record(self, path: str | os.PathLike[str]) -> Path:
        """Deprecated name of :meth:`capture` ("record" also means a stored row)."""
        _deprecated("record", "capture")
        return self.capture(path)

    def _record(self, path: str | os.PathLike[str]) -> Path:
        if self._capture is not None:
            raise InvalidParameterError(
                f"{self.name} is already capturing to {self._capture.path}; stop_capture() first."
            )
        self._check_record_target(path)
        url = self._driver.url if self._driver else ""
        writer = self._start_capture(path, url)
        if self._driver is not None:
            self._driver.on_frame = writer.write
        return Path(writer.path)

    def _check_record_target(self, path: str | os.PathLike[str]) -> None:
        if self.provider == "replay":
            raise InvalidParameterError(
                "A replay connection cannot be recorded: its capture file already is the recording."
            )
        target = check_path("record_file", path)
        if target.exists():
            raise InvalidParameterError(
                f"record file {os.fspath(path)!r} already exists; choose a new file name."
            )
        if not target.parent.is_dir():
            raise InvalidParameterError(
                f"record file {os.fspath(path)!r}: folder {str(target.parent)!r} does not exist."
            )

    def _start_capture(self, path: str | os.PathLike[str], url: str) -> CaptureWriter:
        params = dict(self._params, symbol=self.symbol)
        writer = CaptureWriter(
            path,
            provider=self.provider,
            params=params,
            secret_names=self.spec.secret_params,
            url=mask_secrets(url),
        )
        self._capture = writer
        return writer

    def stop_capture(self) -> Path | None:
        """Stop capturing raw frames; returns the capture file (None when not capturing)."""
        with self._serialized(check_open=False):
            return self._stop_recording()

    def stop_recording(self) -> Path | None:
        """Deprecated name of :meth:`stop_capture`."""
        _deprecated("stop_recording", "stop_capture")
        return self.stop_capture()

    def _stop_recording(self) -> Path | None:
        capture, self._capture = self._capture, None
        if capture is None:
            return None
        if self._driver is not None:
            self._driver.on_frame = None
        runtime.run(_noop())  # the loop has finished any write in flight
        capture.close()
        return Path(capture.path)

    # -- broadcast ---------------------------------------------------------------------------

    def start_broadcasting(
        self, host: str = "127.0.0.1", port: int = DEFAULT_BROADCAST_PORT, **server_kwargs: Any
    ) -> str:
        """Serve the records on ``ws://host:port``; returns the address. A busy default port
        moves to the next free one (with a warning); a busy explicit port is an error."""
        if not isinstance(host, str) or not host:
            raise InvalidParameterError(f"host must be a host name or address, got {host!r}.")
        port = check_port(port)
        with self._serialized():
            if self._broadcast is not None and self._broadcast.is_serving:
                log.info("%s: broadcast already running on %s", self.name, self._broadcast.address)
                return self._broadcast.address or ""
            server = BroadcastServer(
                fields=self._session.fields,
                tz=self.tz,
                host=host,
                port=int(port),
                port_fallback=isinstance(port, DefaultPort),
                auth_token=self._auth_token,
                replay_source=self._replay_source,
                name=self.name,
                **server_kwargs,
            )
            runtime.run(server.start())
            self._broadcast = server
            self._rewire()
            log.info("%s: stream results from %s", self.name, server.address)
            return server.address or ""

    def stop_broadcasting(self) -> None:
        with self._serialized():
            server, self._broadcast = self._broadcast, None
            self._rewire()
            if server is None or not server.is_serving:
                raise NotBroadcastingError(f"Client {self.name} not broadcasting.")
            runtime.run(server.stop())  # the server logs "stopped broadcasting on port N"

    def _replay_source(self, n: int, before_id: int | None) -> list[Record]:
        self._store.flush()
        return self._store.last_records(n, before_id)

    # -- results -----------------------------------------------------------------------------

    def get_results(self, last: int | None = None) -> pd.DataFrame:
        """Stored records, oldest first, as a typed DataFrame (dates tz-aware in ``tz``).
        While the store cannot write (status ``store_state == "retrying"``), the rows
        committed so far are returned after a short wait, with a warning in the log."""
        self._check_open()
        self._flush_for_read()
        return self._store.read(last)

    def _flush_for_read(self) -> None:
        retrying = self._store.stats["state"] == "retrying"
        try:
            self._store.flush(timeout=1.0 if retrying else 10.0)
        except ObbwsTimeoutError as exc:
            if self._store.stats["state"] != "retrying":
                raise
            log.warning("%s: reading the committed rows only: %s", self.name, exc)

    @property
    def results(self) -> pd.DataFrame:
        return self.get_results()

    def clear_results(self) -> int:
        """Delete every stored row (ids keep growing); returns how many were deleted."""
        self._check_open()
        count = self._store.clear()
        log.info("%s: %d results cleared from table %s", self.name, count, self.table_name)
        return count

    def query(
        self, sql: str, params: Iterable[Any] | None = None, timeout: float | None = 60.0
    ) -> pd.DataFrame:
        """Run one read-only SELECT over the results table (named ``table_name``), cancelled
        after ``timeout`` seconds or by Ctrl-C / a kernel interrupt. The files of each Parquet
        sink are there too, as a view (``parquet``, ``parquet_2``, ...: see ``query_views``)."""
        self._check_open()
        self._flush_for_read()
        values = list(params) if params is not None else None
        return self._store.query(sql, values, timeout=timeout, parquet_views=self.query_views)

    @property
    def query_views(self) -> dict[str, str]:
        """The views ``query()`` adds for the sinks that keep files (name -> directory), in
        the order the sinks were added; a name already taken gets ``_2``, ``_3``..."""
        views: dict[str, str] = {}
        for sink in self._sink_list:
            wanted = sink.query_view()
            if wanted is None:
                continue
            name, directory = wanted
            unique, n = name, 1
            while unique in views or unique.lower() == self.table_name.lower():
                n += 1
                unique = f"{name}_{n}"
            views[unique] = directory
        return views

    def ohlc(
        self,
        interval: Any = "1min",
        symbols: str | Iterable[str] | None = None,
        since: Any = None,
        price: str | None = None,
    ) -> pd.DataFrame:
        """OHLCV bars of the stored records, computed in DuckDB: columns symbol, date (bar
        start, tz-aware in ``tz``), open, high, low, close, volume, count. ``interval`` is
        "5s", "1min", "1h", "1d"... ; ``since`` a timestamp or a duration back from now;
        ``price`` None (the trade price), "mid" (bid/ask midpoint) or a field name."""
        self._check_open()
        return _bars.ohlc(self, interval, symbols=symbols, since=since, price=price)

    def normalize_symbols(self, symbol: str | Iterable[str]) -> list[str]:
        """Symbols as this provider writes them (``btc-usd`` -> ``BTCUSD``), without
        subscribing; SymbolError for invalid ones."""
        return self._session.normalize(symbol)

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the stored rows to Parquet or CSV (by suffix, or ``format``)."""
        self._check_open()
        return self._store.export(path, format)

    # -- status / teardown -------------------------------------------------------------------

    def status(self) -> WebSocketConnectionStatus:
        driver = self._driver
        broadcast = self._broadcast if self.is_broadcasting else None
        pid = os.getpid()
        stats = self._store.stats if not self._store.closed else {"state": "closed"}
        store_state = str(stats.get("state", "ok"))
        store_error = stats.get("last_error")
        driver_error = driver.last_error if driver else None
        # a store that cannot write is the more urgent news
        last_error = store_error if store_state == "retrying" else driver_error or store_error
        return WebSocketConnectionStatus(
            name=self.name,
            auth_required=self.auth_required,
            subscribed_symbols=self.symbol,
            is_running=self.is_running,
            provider_pid=pid if self.is_running else None,
            is_broadcasting=broadcast is not None,
            broadcast_address=broadcast.address if broadcast else None,
            broadcast_pid=pid if broadcast else None,
            results_file=self.results_file,
            table_name=self.table_name,
            save_results=self.save_results,
            provider=self.provider,
            state=StreamState.CLOSED
            if self._closed
            else (driver.state if driver else StreamState.IDLE),
            url=mask_secrets(driver.url) if driver else None,
            acknowledged_symbols=",".join(self._session.acknowledged),
            messages_received=driver.messages if driver else 0,
            records_received=self._next_id - self._store.next_id,
            records_stored=int(stats.get("rows_written", 0)),
            rows_in_table=_int_or_none(stats.get("rows_in_table")),
            malformed_frames=driver.malformed if driver else 0,
            heartbeats=driver.heartbeats if driver else 0,
            sequence_gaps=driver.gaps if driver else 0,
            errors=(driver.errors if driver else 0) + int(stats.get("errors", 0)),
            reconnects=driver.reconnects if driver else 0,
            last_message_at=ns_to_datetime(_last_message_ns(driver)),
            connected_at=ns_to_datetime(driver.connected_ns) if driver else None,
            last_error=last_error,
            listeners=broadcast.listeners if broadcast else 0,
            dropped_records=int(stats.get("dropped", 0)),
            recording_file=str(self._capture.path) if self._capture else None,
            limit=self.limit,
            store_state=store_state,
            rejected_records=int(stats.get("rejected", 0)),
            sinks=[SinkStatus(**health.as_dict()) for health in self.sinks],
        )

    def close(self) -> int:
        """Stop everything, and delete the results file unless it is kept (``save_results``
        or a file that existed before). Returns how many received rows could not be written
        (lost: also said in a RuntimeWarning and the log); 0 normally. Idempotent; also run at
        interpreter exit. Called on the loop thread (from a record hook or a ``listen()``
        callback) it hands the teardown to a helper thread and returns 0 at once."""
        if runtime.in_loop_thread():
            # waiting here for the loop would deadlock it: tear down from another thread
            threading.Thread(
                target=self.close, name=f"obbws-close-{self.name}", daemon=True
            ).start()
            return 0
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            try:
                runtime.run(self._aclose(), timeout=15)
            except Exception as exc:  # go on: the store and its rows matter most
                log.error("%s: stopping the stream and broadcast failed: %s", self.name, exc)
            finally:
                lost = self._release()
        if lost:
            warnings.warn(
                f"{self.name}: {lost} received rows could not be written to "
                f"{self._store.path} and are lost (last error: {self._last_store_error}).",
                RuntimeWarning,
                stacklevel=2,
            )
        return lost

    def _release(self) -> int:
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        sinks = list(self._sinks.values())
        self._sinks.clear()
        self._sink_list = self._chain = self._frame_sinks = ()
        self.sink_rows_undelivered = close_sinks(sinks, owner=self.name)
        self._last_store_error = self._store.stats["last_error"]
        lost = self._store.close()
        if self.save_results:
            log.info("%s: results saved to %s", self.name, self._store.path)
        _live.discard(self)
        return lost

    async def _aclose(self) -> None:
        if self._driver is not None:
            await self._driver.stop()
        if self._broadcast is not None:
            await self._broadcast.stop()
            self._broadcast = None
            self._rewire()
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.contextmanager
    def _serialized(self, check_open: bool = True) -> Iterator[None]:
        """One state-changing call at a time (a kill racing a start_broadcasting must not
        leave a server behind); never on the loop thread, where waiting would deadlock."""
        if runtime.in_loop_thread():
            raise WrongThreadError(
                f"{self.name}: this call waits for the obbws loop, so it cannot run on it "
                "(inside a record hook or a listen() callback); call it from another thread."
            )
        with self._lock:
            if check_open:
                self._check_open()
            yield

    def _check_open(self) -> None:
        if self._closed:
            raise NotRunningError(f"Client {self.name} was closed (killed); create a new one.")

    def __repr__(self) -> str:
        return (
            f"WebSocketClient(name={self.name!r}, provider={self.provider!r}, "
            f"symbol={self.symbol!r}, is_running={self.is_running}, "
            f"is_broadcasting={self.is_broadcasting}, "
            f"broadcast_address={self.broadcast_address!r}, results_file={self.results_file!r}, "
            f"table_name={self.table_name!r}, save_results={self.save_results}, "
            f"auth_required={self.auth_required})"
        )


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old}() is deprecated; use {new}() (same behaviour).", DeprecationWarning, stacklevel=3
    )


class _HookSink(Sink):
    """The record hooks as one internal sink: each hook gets the frame's records as dicts
    (``id`` and ``received_at`` included), on the loop thread, in the order added. A hook
    that raises is logged and the others still run. ``hooks`` is the client's own list."""

    kind = "hooks"

    def __init__(self, hooks: list[Callable[[list[Record]], None]], name: str) -> None:
        super().__init__("hooks://")
        self.hooks = hooks
        self.name = name

    def write(self, batch: Batch) -> None:
        records = batch.rows()
        for hook in self.hooks:
            try:
                hook(records)
            except Exception:
                log.exception("%s: a record hook failed", self.name)

    def health(self) -> SinkHealth:
        return SinkHealth(url=self.url, kind=self.kind, state="ok")


def _last_message_ns(driver: StreamDriver | None) -> int | None:
    if driver is None or not driver.messages:
        return None
    return driver.last_message_ns


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


async def _noop() -> None:
    return None


async def _start_embedded(spec: ProviderSpec, params: Mapping[str, Any]) -> Any:
    module_name, _, func_name = (spec.embedded_server or "").partition(":")
    factory = getattr(importlib.import_module(module_name), func_name)
    return await factory(dict(params))


def _close_all_clients() -> None:
    for client in list(_live):
        try:
            client.close()
        except Exception:  # at exit: clean up what can be cleaned up
            log.debug("closing %s at exit failed", client.name, exc_info=True)


atexit.register(_close_all_clients)
