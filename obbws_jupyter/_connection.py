"""The object ``create_connection`` returns: every endpoint as a method, bound to one name.

In Jupyter (an IPython kernel) it renders as the live connection widget
(``obbws_jupyter.widgets``); elsewhere its ``repr`` is a readable one-line summary. Holding it is
optional: the registry keeps the stream alive.

A Connection is a handle: a name, its token and the :class:`~obbws_jupyter.Registry` that
holds the client. Its methods call that registry, so this module imports neither the registry
nor the module functions (``Registry.create_connection`` and ``Registry.connection`` make
the handles).
"""

from __future__ import annotations

import html
import math
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from obbws_jupyter import _notices
from obbws_jupyter.client import DEFAULT_BROADCAST_PORT, WebSocketClient
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    NotRunningError,
    ObbwsError,
    ObbwsTimeoutError,
)
from obbws_jupyter.models import WebSocketConnectionStatus
from obbws_jupyter.sinks import Sink, SinkHealth

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from obbws_jupyter._connections import Registry
    from obbws_jupyter.widgets.chart import LiveChart

__all__ = ["Connection"]


class Connection:
    """A named connection: ``conn.get_results()``, ``conn.subscribe("ethusd")``, ``conn.kill()``."""

    def __init__(self, name: str, auth_token: str | None = None, *, registry: Registry) -> None:
        self._name = name
        self._auth_token = auth_token
        self._registry = registry
        _notices.watch(name, registry)  # background failures show in the next cell (IPython)

    @property
    def name(self) -> str:
        return self._name

    @property
    def registry(self) -> Registry:
        """The registry that holds this connection's client."""
        return self._registry

    # -- the endpoints ------------------------------------------------------------------------

    @property
    def status(self) -> WebSocketConnectionStatus:
        return self._registry.get_client_status(self._name, self._auth_token)[0]

    def get_client_status(self) -> list[WebSocketConnectionStatus]:
        return self._registry.get_client_status(self._name, self._auth_token)

    def get_client(self) -> WebSocketClient:
        return self._registry.get_client(self._name, self._auth_token)

    def get_results(self) -> pd.DataFrame:
        return self._registry.get_results(self._name, self._auth_token)

    def clear_results(self) -> str:
        return self._registry.clear_results(self._name, self._auth_token)

    def subscribe(self, symbol: str | list[str]) -> WebSocketConnectionStatus:
        return self._registry.subscribe(self._name, symbol, self._auth_token)

    def unsubscribe(self, symbol: str | list[str]) -> WebSocketConnectionStatus:
        return self._registry.unsubscribe(self._name, symbol, self._auth_token)

    def stop_connection(self) -> WebSocketConnectionStatus:
        return self._registry.stop_connection(self._name, self._auth_token)

    def restart_connection(self) -> WebSocketConnectionStatus:
        return self._registry.restart_connection(self._name, self._auth_token)

    def start_broadcasting(
        self, host: str = "127.0.0.1", port: int = DEFAULT_BROADCAST_PORT, **server_kwargs: Any
    ) -> WebSocketConnectionStatus:
        return self._registry.start_broadcasting(
            self._name, self._auth_token, host, port, **server_kwargs
        )

    def stop_broadcasting(self) -> WebSocketConnectionStatus | str:
        return self._registry.stop_broadcasting(self._name, self._auth_token)

    def kill(self) -> str:
        return self._registry.kill(self._name, self._auth_token)

    # -- beyond OpenBB ------------------------------------------------------------------------

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """One read-only SELECT over the results table (``FROM records`` by default)."""
        return self.get_client().query(sql, params)

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the stored rows to a Parquet or CSV file (readable by other processes)."""
        return self.get_client().export(path, format)

    def capture(self, path: str | os.PathLike[str]) -> Path:
        """Capture every raw provider frame from now on to a file for the ``replay`` provider
        (stored records are :meth:`get_results`; this keeps the frames as they came)."""
        return self.get_client().capture(path)

    def stop_capture(self) -> Path | None:
        """Stop capturing raw frames; returns the capture file (None when not capturing)."""
        return self.get_client().stop_capture()

    def record(self, path: str | os.PathLike[str]) -> Path:
        """Deprecated name of :meth:`capture` ("record" also means a stored row)."""
        _deprecated("record", "capture")
        return self.capture(path)

    def stop_recording(self) -> Path | None:
        """Deprecated name of :meth:`stop_capture`."""
        _deprecated("stop_recording", "stop_capture")
        return self.stop_capture()

    def add_sink(self, sink: str | Sink, **options: Any) -> Sink:
        """Send every record from now on to another destination too: ``nats://host:port``,
        ``redis://host:port/0``, ``parquet:///path/dir`` (see :mod:`obbws_jupyter.sinks`)."""
        return self.get_client().add_sink(sink, **options)

    def remove_sink(self, url: str | Sink) -> int:
        """Close the sink added as ``url`` (that URL, the masked one ``conn.sinks`` shows, or
        the Sink object ``add_sink`` returned); returns how many rows it could not deliver."""
        return self.get_client().remove_sink(url)

    @property
    def sinks(self) -> list[SinkHealth]:
        """Each added sink's health: state, rows written, dropped and pending, lag, error."""
        return self.get_client().sinks

    def wait(self, n_records: int = 1, timeout: float = 30.0) -> int:
        """Block until ``n_records`` more records arrived (counted from this call); returns
        how many arrived. Raises ObbwsTimeoutError after ``timeout`` seconds, and
        NotRunningError when the stream stops first (a finished replay, a stop, a give-up);
        both say how many records were received."""
        if isinstance(n_records, bool) or not isinstance(n_records, int) or n_records < 1:
            raise InvalidParameterError(f"n_records must be an int >= 1, got {n_records!r}.")
        if not isinstance(timeout, (int, float)) or not timeout > 0 or math.isinf(timeout):
            raise InvalidParameterError(
                f"timeout must be a number of seconds > 0, got {timeout!r}."
            )
        client = self.get_client()
        counter = _RecordCounter(client)
        try:
            got = counter.wait(n_records, float(timeout))
        finally:
            counter.close()
        if got >= n_records:
            return got
        status = client.status()
        detail = f"{got} of {n_records} records (state {str(status.state)!r}"
        detail += f", last error: {status.last_error})" if status.last_error else ")"
        if not client.is_running:
            raise NotRunningError(f"{self._name}: the stream stopped after {detail}.")
        raise ObbwsTimeoutError(
            f"{self._name}: received {detail} within {timeout} s; wait longer, or check "
            "conn.status (subscribed symbols, provider rate)."
        )

    # -- the live view ------------------------------------------------------------------------

    def widget(self, **options: Any) -> Any:
        """The live :class:`~obbws_jupyter.widgets.ConnectionWidget` of this connection (one
        per connection, shared by every place that shows it). ``options`` (``rows=``) update it."""
        from obbws_jupyter.widgets import connection_widget

        return connection_widget(self, **options)

    # -- charts -------------------------------------------------------------------------------

    def chart(
        self,
        kind: str | None = None,
        window: Any = "5min",
        interval: Any = "5s",
        symbols: str | list[str] | None = None,
        **options: Any,
    ) -> LiveChart:
        """A live plotly ``FigureWidget`` that follows the stream, one row per symbol.

        ``kind``: "line" (trade prices), "band" (bid/ask band with mid line) or "candles";
        by default chosen from the feed's fields (aggregate feeds: candles). ``window``: a
        duration ("5min", "30s", a Timedelta) or a number of points (bars for candles).
        ``interval``: the candle length ("5s", "1min"). ``symbols``: the symbols to draw (by
        default the first ``max_symbols=8`` seen). Options: ``price`` (None, "mid" or a field
        name), ``max_points`` (points per symbol kept for a time window, default 500), and
        plotly layout keys (``height=500``, ``title=...``). Refreshes every ``sleep_time``.
        """
        from obbws_jupyter.widgets.chart import live_chart

        return live_chart(self.get_client(), kind, window, interval, symbols, **options)

    def ohlc(
        self,
        interval: Any = "1min",
        symbols: str | list[str] | None = None,
        since: Any = None,
        price: str | None = None,
    ) -> pd.DataFrame:
        """OHLCV bars of the stored trades, computed in DuckDB (symbol, date = bar start in
        the connection's tz, open, high, low, close, volume, count). ``price="mid"`` builds
        them from the bid/ask midpoint of a quote feed."""
        return self.get_client().ohlc(interval, symbols=symbols, since=since, price=price)

    def plot(
        self,
        kind: str | None = None,
        symbols: str | list[str] | None = None,
        interval: Any = "1min",
        **options: Any,
    ) -> go.Figure:
        """A static plotly figure of ``get_results()`` (the same kinds as :meth:`chart`;
        candles come from :meth:`ohlc` with ``interval``)."""
        from obbws_jupyter.widgets.chart import static_plot

        return static_plot(self.get_client(), kind, symbols, interval, **options)

    # -- display ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """In a Jupyter kernel: the live widget (the HTML status table stays as the fallback
        for viewers without widgets). Elsewhere None: IPython uses the text repr."""
        if not _in_kernel() or self._summary() is None:
            return None
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data, **{"text/plain": repr(self)})
        return (data, metadata) if metadata else data

    def _summary(self) -> dict[str, Any] | None:
        try:
            status = self.status
        except ObbwsError:
            return None
        return status.model_dump()

    def __repr__(self) -> str:
        s = self._summary()
        if s is None:
            return f"Connection(name={self._name!r}, state='killed')"
        text = (
            f"Connection(name={s['name']!r}, provider={s['provider']!r}, "
            f"state={str(s['state'])!r}, "
            f"symbols={s['subscribed_symbols']!r}, records={s['records_received']}, "
            f"broadcast={s['broadcast_address']!r}, results_file={s['results_file']!r}"
        )
        if s["sinks"]:  # each sink's kind and state: a dead one shows without asking
            sinks = ", ".join(f"{sink['kind']} {sink['state']}" for sink in s["sinks"])
            text = f"{text}, sinks={sinks!r}"
        notes = [text for _, text in _notices.notices(self.get_client())]
        return f"{text}, notice={'; '.join(notes)!r})" if notes else f"{text})"

    def _repr_html_(self) -> str:
        s = self._summary()
        if s is None:
            return f"<b>Connection {html.escape(self._name)}</b>: killed"
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in s.items()
        )
        return f"<table class='obbws-status'>{rows}</table>"


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"Connection.{old}() is deprecated; use {new}() (same behaviour).",
        DeprecationWarning,
        stacklevel=3,
    )


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where a widget has a frontend), not in a terminal."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None) is not None


class _RecordCounter:
    """Counts the records of one client from now on (a record hook fed by the stream), so
    :meth:`Connection.wait` waits on a condition instead of polling the store."""

    def __init__(self, client: WebSocketClient) -> None:
        self.count = 0
        self._cond = threading.Condition()
        self._client = client
        client.add_record_hook(self._hook)

    def _hook(self, records: list[dict[str, Any]]) -> None:
        with self._cond:
            self.count += len(records)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0 or not self._client.is_running:
                    break
                # woken by every frame; the short cap only notices a stream that stopped
                self._cond.wait(min(left, 0.25))
            return self.count

    def close(self) -> None:
        self._client.remove_record_hook(self._hook)
