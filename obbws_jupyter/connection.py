"""The object ``create_connection`` returns: every endpoint as a method, bound to one name.

In Jupyter it renders as a live view of the connection; elsewhere its ``repr`` is a readable
one-line summary. Holding it is optional: the registry keeps the stream alive.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from obbws_jupyter import api
from obbws_jupyter.client import DEFAULT_BROADCAST_PORT, WebSocketClient
from obbws_jupyter.exceptions import ObbwsError
from obbws_jupyter.models import WebSocketConnectionStatus

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from obbws_jupyter.widgets.chart import LiveChart

__all__ = ["Connection"]


class Connection:
    """A named connection: ``conn.get_results()``, ``conn.subscribe("ethusd")``, ``conn.kill()``."""

    def __init__(self, name: str, auth_token: str | None = None) -> None:
        self._name = name
        self._auth_token = auth_token

    @property
    def name(self) -> str:
        return self._name

    # -- the endpoints ------------------------------------------------------------------------

    @property
    def status(self) -> WebSocketConnectionStatus:
        return api.get_client_status(self._name, self._auth_token)[0]

    def get_client_status(self) -> list[WebSocketConnectionStatus]:
        return api.get_client_status(self._name, self._auth_token)

    def get_client(self) -> WebSocketClient:
        return api.get_client(self._name, self._auth_token)

    def get_results(self) -> pd.DataFrame:
        return api.get_results(self._name, self._auth_token)

    def clear_results(self) -> str:
        return api.clear_results(self._name, self._auth_token)

    def subscribe(self, symbol: str | list[str]) -> WebSocketConnectionStatus:
        return api.subscribe(self._name, symbol, self._auth_token)

    def unsubscribe(self, symbol: str | list[str]) -> WebSocketConnectionStatus:
        return api.unsubscribe(self._name, symbol, self._auth_token)

    def stop_connection(self) -> WebSocketConnectionStatus:
        return api.stop_connection(self._name, self._auth_token)

    def restart_connection(self) -> WebSocketConnectionStatus:
        return api.restart_connection(self._name, self._auth_token)

    def start_broadcasting(
        self, host: str = "127.0.0.1", port: int = DEFAULT_BROADCAST_PORT, **server_kwargs: Any
    ) -> WebSocketConnectionStatus:
        return api.start_broadcasting(self._name, self._auth_token, host, port, **server_kwargs)

    def stop_broadcasting(self) -> WebSocketConnectionStatus | str:
        return api.stop_broadcasting(self._name, self._auth_token)

    def kill(self) -> str:
        return api.kill(self._name, self._auth_token)

    # -- beyond OpenBB ------------------------------------------------------------------------

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """One read-only SELECT over the results table (``FROM records`` by default)."""
        return self.get_client().query(sql, params)

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the stored rows to a Parquet or CSV file (readable by other processes)."""
        return self.get_client().export(path, format)

    def record(self, path: str | os.PathLike[str]) -> Path:
        """Record raw provider frames to a capture file for the ``replay`` provider."""
        return self.get_client().record(path)

    def stop_recording(self) -> Path | None:
        return self.get_client().stop_recording()

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
        return (
            f"Connection(name={s['name']!r}, provider={s['provider']!r}, state={s['state']!r}, "
            f"symbols={s['subscribed_symbols']!r}, records={s['records_received']}, "
            f"broadcast={s['broadcast_address']!r}, results_file={s['results_file']!r})"
        )

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
