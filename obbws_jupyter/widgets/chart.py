"""Live and static plotly charts of a connection: ``conn.chart(...)`` and ``conn.plot(...)``.

``live_chart`` returns a :class:`LiveChart`, a ``plotly.graph_objects.FigureWidget`` that
follows the stream. Records reach it through the client's record hook into its own
:class:`~obbws_jupyter._chart_buffer.ChartBuffer` (bounded, per symbol); it is first filled
from the newest stored rows, so a chart of a running (or finished) stream starts with history.
One timer thread per chart refreshes the figure every ``sleep_time`` seconds of the
connection, in one ``batch_update`` that re-sends only the series that changed: never one
message per record. A plotly update is four comm messages (two edit ids, the update, its
reset), so a chart sends at most ``4 / sleep_time`` messages per second (16/s at the default
0.25 s), far below the 1000 messages/s Jupyter drops above; :attr:`LiveChart.stats` counts
them and their bytes.

The timer stops, and the hook is detached, when the figure is closed (``fig.close()`` or
``fig.stop()``) or the connection is killed (after drawing what arrived before). A figure
that was shown and has no view left (its output cleared, the cell re-run) costs nothing: it
detaches from the stream and sends nothing until a view comes back, when it starts again from
the stored rows. Each symbol gets its own row (its
own y axis; one shared time axis): prices of different symbols differ by orders of
magnitude. Times are shown on the wall clock of the connection's ``tz``. Figures are
theme-neutral (transparent backgrounds, grey text and grid), so they read in JupyterLab's light
and dark themes alike.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from obbws_jupyter._bars import parse_duration
from obbws_jupyter._chart_buffer import COLUMNS, ChartBuffer
from obbws_jupyter._fieldmap import (
    KINDS,
    NOT_TRADE_TYPES,
    Roles,
    default_kind,
    price_source,
    resolve_roles,
)
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsError
from obbws_jupyter.protocol import Record

if TYPE_CHECKING:
    from obbws_jupyter.client import WebSocketClient

__all__ = ["LiveChart", "live_chart", "static_plot"]

log = logging.getLogger("obbws_jupyter.widgets.chart")

TRACES_PER_ROW = {"line": 1, "band": 3, "candles": 1}
PREFILL_ROWS = 50_000  # newest stored rows a new chart starts from
_COLORS = qualitative.Plotly
_ROW_GAP = 0.06
# Theme-neutral: transparent backgrounds (the notebook's own shows through, light or dark),
# and mid-grey text and grid lines, which read on both JupyterLab Light and Dark.
_TEXT = "#808080"
_AXIS = {
    "gridcolor": "rgba(128,128,128,0.22)",
    "zerolinecolor": "rgba(128,128,128,0.45)",
    "linecolor": "rgba(128,128,128,0.45)",
}
_NEUTRAL: dict[str, Any] = {
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "font": {"color": _TEXT},
    "legend": {"bgcolor": "rgba(0,0,0,0)"},
}


# -- figure pieces shared by the live and the static chart ----------------------------------


def _local_ms(t_ns: np.ndarray, tz: str) -> np.ndarray:
    """UTC ns -> milliseconds of the wall clock in ``tz``: plotly date axes show numbers as
    naive times, so this is how they show the connection's local time."""
    index = pd.DatetimeIndex(t_ns.astype("datetime64[ns]"), tz="UTC").tz_convert(tz)
    return index.tz_localize(None).as_unit("ns").asi8 / 1e6


def _trace_values(kind: str, cols: dict[str, np.ndarray], tz: str) -> list[dict[str, Any]]:
    """The data of one symbol's traces, in trace order (see :func:`_new_traces`)."""
    x = _local_ms(cols["t"], tz)
    if kind == "line":
        return [{"x": x, "y": cols["price"]}]
    if kind == "band":
        bid, ask = cols["bid"], cols["ask"]
        return [{"x": x, "y": bid}, {"x": x, "y": ask}, {"x": x, "y": (bid + ask) / 2}]
    return [{"x": x, **{k: cols[k] for k in ("open", "high", "low", "close")}}]


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _new_traces(kind: str, symbol: str, row: int) -> list[Any]:
    """Empty, styled traces of one symbol on y axis ``row`` (1-based)."""
    color = _COLORS[(row - 1) % len(_COLORS)]
    axis = "y" if row == 1 else f"y{row}"
    common = {"xaxis": "x", "yaxis": axis, "legendgroup": symbol}
    when = "%{x|%H:%M:%S.%L}"
    if kind == "line":
        return [
            go.Scatter(
                name=symbol,
                mode="lines",
                line={"width": 1.5, "color": color},
                hovertemplate=f"{symbol} %{{y}}<br>{when}<extra></extra>",
                **common,
            )
        ]
    if kind == "band":
        side = {"mode": "lines", "line": {"width": 0.8, "color": color}}
        return [
            go.Scatter(
                name=f"{symbol} bid", hovertemplate=f"bid %{{y}}<br>{when}", **side, **common
            ),
            go.Scatter(
                name=f"{symbol} ask",
                fill="tonexty",  # the band: filled down to the bid trace added just before
                fillcolor=_rgba(color, 0.2),
                hovertemplate=f"ask %{{y}}<br>{when}",
                **side,
                **common,
            ),
            go.Scatter(
                name=f"{symbol} mid",
                mode="lines",
                line={"width": 1, "color": color, "dash": "dot"},
                hovertemplate=f"mid %{{y}}<br>{when}",
                **common,
            ),
        ]
    return [go.Candlestick(name=symbol, **common)]


def _rows_layout(symbols: Sequence[str], tz: str) -> dict[str, Any]:
    """One row (y axis) per symbol, top to bottom, sharing the bottom time axis."""
    n = max(1, len(symbols))
    layout: dict[str, Any] = {
        "xaxis": {
            "type": "date",
            "anchor": "y" if n == 1 else f"y{n}",
            "title": {"text": f"time ({tz})"},
            "rangeslider": {"visible": False},
            **_AXIS,
        },
        "height": 320 + 200 * (n - 1),
    }
    for i, symbol in enumerate(symbols):
        bottom = 1 - (i + 1) / n + (_ROW_GAP / 2 if i < n - 1 else 0)
        top = 1 - i / n - (_ROW_GAP / 2 if i > 0 else 0)
        layout["yaxis" if i == 0 else f"yaxis{i + 1}"] = {
            "domain": [round(bottom, 6), round(top, 6)],
            "anchor": "x",
            "title": {"text": symbol},
            **_AXIS,
        }
    return layout


def _layout(title: str, rows: Sequence[str], tz: str, user: dict[str, Any]) -> dict[str, Any]:
    """The whole layout of a chart with ``rows``; the user's keys win."""
    layout = {
        **_NEUTRAL,
        "title": {"text": title},
        "margin": {"l": 70, "r": 20, "t": 50, "b": 50},
        "legend": {
            **_NEUTRAL["legend"],
            "orientation": "h",
            "y": 1.02,
            "yanchor": "bottom",
            "x": 1,
            "xanchor": "right",
        },
        "uirevision": "obbws",  # keep the user's zoom and pan across updates
        **_rows_layout(rows, tz),
    }
    layout.update(user)
    return layout


def _drawn_traces(
    kind: str,
    rows: Sequence[str],
    series: dict[str, dict[str, np.ndarray]],
    tz: str,
    first_row: int = 1,
) -> list[Any]:
    """The traces of ``rows`` (row order, numbered from ``first_row``) holding their series."""
    drawn = []
    for row, symbol in enumerate(rows, first_row):
        traces = _new_traces(kind, symbol, row)
        for trace, values in zip(traces, _trace_values(kind, series[symbol], tz), strict=True):
            trace.update(values)
        drawn.extend(traces)
    return drawn


def _symbol_filter(client: WebSocketClient, symbols: Any) -> list[str] | None:
    """The symbols a chart keeps, as the provider writes them (and as typed, upper-cased)."""
    if symbols is None:
        return None
    wanted = client.normalize_symbols(symbols)
    typed = [
        s.strip().upper() for s in (symbols.split(",") if isinstance(symbols, str) else symbols)
    ]
    return list(dict.fromkeys([*wanted, *typed]))


def _row_order(client: WebSocketClient, wanted: Sequence[str] | None) -> dict[str, int]:
    """Rows follow the symbols as the user named them, else as subscribed (not as arrived)."""
    return {s: i for i, s in enumerate(wanted or client.symbol.split(","))}


def _ordered(symbols: Iterable[str], order: dict[str, int]) -> list[str]:
    return sorted(symbols, key=lambda s: order.get(s, len(order)))


# -- the live chart -------------------------------------------------------------------------


class _Meter:
    """Counts what a chart sends (comm messages and their approximate bytes) and its updates."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.updates = 0
        self.messages = 0
        self.bytes = 0
        self.max_bytes = 0  # the largest message
        self.cpu_ns = 0  # thread time of the refresh timer

    def count(self, msg: Any, buffers: Sequence[Any] | None) -> None:
        size = len(json.dumps(msg, default=str, separators=(",", ":")))
        size += sum(memoryview(b).nbytes for b in buffers or ())
        with self.lock:
            self.messages += 1
            self.bytes += size
            self.max_bytes = max(self.max_bytes, size)


class _Gate:
    """The record hook: holds frames back while the buffer is filled from the store, then
    passes them on without the rows that the store already gave (by id)."""

    def __init__(self, buffer: ChartBuffer) -> None:
        self.buffer = buffer
        self._lock = threading.Lock()
        self._held: list[list[Record]] | None = []

    def __call__(self, records: list[Record]) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(records)
                return
        self.buffer.add(records)

    def release(self, stored: list[Record]) -> None:
        self.buffer.add(stored)  # frames arriving meanwhile are held
        last = stored[-1]["id"] if stored else -1
        with self._lock:
            for frame in self._held or ():
                self.buffer.add([r for r in frame if r.get("id", last + 1) > last])
            self._held = None


class LiveChart(go.FigureWidget):
    """A ``FigureWidget`` that follows one connection (made by :func:`live_chart`).

    ``stats`` counts updates and comm messages; ``refresh()`` draws now; ``stop()`` ends the
    following (the figure stays as drawn); ``close()`` also closes the widget.
    """

    def __init__(
        self, client: WebSocketClient, buffer: ChartBuffer, user_layout: dict[str, Any]
    ) -> None:
        order = _row_order(client, buffer.wanted)
        gate = _attach(client, buffer)
        try:
            # the first picture goes into the widget's initial state: updates sent before
            # the browser has built the view are not all applied by plotly's front end
            snap = buffer.snapshot()
            rows = _ordered(snap.symbols, order) if snap else []
            title = f"{client.name}: {buffer.kind or 'live'}"
            super().__init__(
                data=_drawn_traces(snap.kind, rows, snap.series, client.tz) if snap else [],
                layout=_layout(title, rows, client.tz, user_layout),
            )
        except BaseException:
            client.remove_record_hook(gate)
            raise
        self._meter = _Meter()
        self._user_keys = frozenset(user_layout)
        self._client = client
        self._buffer = buffer
        self._tz = client.tz
        self._gate = gate
        self._rows: list[str] = rows
        self._order = order  # rows follow the named (or subscribed) symbols, not arrival
        self._titled = buffer.kind is not None or "title" in user_layout
        self._seen = snap.version if snap else -1
        self._refresh_lock = threading.RLock()
        self._stopped = threading.Event()
        self._was_viewed = False
        self._paused = False  # every view gone: detached until one comes back
        self.observe(self._on_views, names="_view_count")
        self._thread = threading.Thread(
            target=self._follow, name=f"obbws-chart-{client.name}", daemon=True
        )
        self._thread.start()

    # -- public ------------------------------------------------------------------------------

    @property
    def buffer(self) -> ChartBuffer:
        return self._buffer

    @property
    def following(self) -> bool:
        """True while the timer refreshes the figure."""
        return not self._stopped.is_set()

    @property
    def stats(self) -> dict[str, Any]:
        """Updates and comm messages sent so far, their rates, the timer's CPU time."""
        m = self._meter
        with m.lock:
            seconds = max(time.monotonic() - m.started, 1e-9)
            return {
                "kind": self._buffer.kind,
                "following": self.following,
                "seconds": seconds,
                "updates": m.updates,
                "messages": m.messages,
                "bytes": m.bytes,
                "max_message_bytes": m.max_bytes,
                "updates_per_s": m.updates / seconds,
                "messages_per_s": m.messages / seconds,
                "bytes_per_s": m.bytes / seconds,
                "cpu_seconds": m.cpu_ns / 1e9,
                "records": self._buffer.records,
                "points": self._buffer.points(),
                "symbols": list(self._rows),
            }

    def refresh(self) -> bool:
        """Draw the series that changed since the last refresh; False when nothing did."""
        with self._refresh_lock:
            snap = self._buffer.snapshot(since=self._seen)
            if snap is None:
                return False
            new = [s for s in snap.symbols if s not in self._rows]
            if new:
                self._add_rows(new, snap.kind, snap.series)
            per = TRACES_PER_ROW[snap.kind]
            with self.batch_update():
                for symbol, cols in snap.series.items():
                    if symbol in new:
                        continue  # drawn with its data by _add_rows
                    row = self._rows.index(symbol)
                    traces = self.data[row * per : (row + 1) * per]
                    for trace, values in zip(
                        traces, _trace_values(snap.kind, cols, self._tz), strict=True
                    ):
                        trace.update(values)
            self._seen = snap.version
            with self._meter.lock:
                self._meter.updates += 1
            return True

    def stop(self) -> None:
        """Stop following the stream and detach from it; the figure keeps what it shows."""
        self._stopped.set()
        with self._refresh_lock:
            self._client.remove_record_hook(self._gate)

    def close(self) -> None:
        self.stop()
        super().close()

    # -- internals ---------------------------------------------------------------------------

    def _add_rows(
        self, symbols: list[str], kind: str, series: dict[str, dict[str, np.ndarray]]
    ) -> None:
        """Rows for symbols seen for the first time: their axes, then their traces."""
        symbols = _ordered(symbols, self._order)
        first_row = len(self._rows) + 1
        self._rows.extend(symbols)
        layout = _rows_layout(self._rows, self._tz)
        if not self._titled:  # the kind of a trades-and-quotes feed is known now
            layout["title"] = {"text": f"{self._client.name}: {kind}"}
            self._titled = True
        self.update_layout({k: v for k, v in layout.items() if k not in self._user_keys})
        self.add_traces(_drawn_traces(kind, symbols, series, self._tz, first_row))

    def _on_views(self, change: dict[str, Any]) -> None:
        if change.get("new"):
            self._was_viewed = True
            self._resume()

    def _pause(self) -> None:
        """No view is left: stop feeding the buffer as well, so the chart costs nothing."""
        with self._refresh_lock:
            if not self._paused:
                self._client.remove_record_hook(self._gate)
                self._paused = True

    def _resume(self) -> None:
        """A view is back: start again from the stored rows, then follow."""
        with self._refresh_lock:
            if not self._paused or self._stopped.is_set() or self._client.closed:
                return
            self._buffer.clear()
            try:
                self._gate = _attach(self._client, self._buffer)
            except ObbwsError as exc:  # killed meanwhile: the timer stops on its next tick
                log.warning("chart of %s: cannot follow again: %s", self._client.name, exc)
                return
            self._seen = -1
            self._paused = False

    def _idle(self) -> bool:
        """Shown once and every view is gone since: drawing would reach nobody."""
        return self._was_viewed and not self._view_count

    def _follow(self) -> None:
        start = time.thread_time_ns()
        try:
            while not self._stopped.wait(self._client.sleep_time) and self._tick():
                self._meter.cpu_ns = time.thread_time_ns() - start
        except Exception:
            log.exception("chart of %s: refreshing failed; stopped", self._client.name)
        finally:
            self._meter.cpu_ns = time.thread_time_ns() - start
            self.stop()

    def _tick(self) -> bool:
        """One timer tick; False when following should end."""
        if self.comm is None:  # closed by ipywidgets (Widget.close_all, ...)
            return False
        closed = self._client.closed  # read first: a last refresh then draws everything
        if self._idle():
            self._pause()
        else:
            self.refresh()
        if closed:
            log.info("chart of %s: the connection was killed; stopped", self._client.name)
        return not closed

    def _send_update_msg(
        self,
        restyle_data: dict[str, Any],
        relayout_data: dict[str, Any],
        trace_indexes: Any = None,
        source_view_id: Any = None,
    ) -> None:
        # plotly.js resets the type of an axis whose data an update replaces (its
        # clearAxisTypes) unless the same update names that type; our x values are epoch
        # milliseconds, which would then be drawn as plain numbers instead of times.
        if "x" in restyle_data:
            relayout_data = {**relayout_data, "xaxis.type": "date"}
        super()._send_update_msg(restyle_data, relayout_data, trace_indexes, source_view_id)

    def _send(self, msg: Any, buffers: Any = None) -> None:
        meter = getattr(self, "_meter", None)
        if meter is not None:
            meter.count(msg, buffers)
        super()._send(msg, buffers)


def _attach(client: WebSocketClient, buffer: ChartBuffer) -> _Gate:
    """Feed ``buffer`` from the stream, starting from the newest stored rows."""
    gate = _Gate(buffer)
    client.add_record_hook(gate)
    try:
        client.store.flush()
        gate.release(client.store.last_records(_prefill_rows(buffer)))
    except BaseException:
        client.remove_record_hook(gate)
        raise
    return gate


def _prefill_rows(buffer: ChartBuffer) -> int:
    per_symbol = buffer.window_points or buffer.max_points
    if buffer.kind == "candles" and buffer.window_ns:
        return PREFILL_ROWS
    return min(PREFILL_ROWS, per_symbol * buffer.max_symbols)


def live_chart(
    client: WebSocketClient,
    kind: str | None = None,
    window: Any = "5min",
    interval: Any = "5s",
    symbols: str | Iterable[str] | None = None,
    *,
    price: str | None = None,
    max_points: int = 500,
    max_symbols: int = 8,
    **layout: Any,
) -> LiveChart:
    """A live chart of ``client``'s stream; see :meth:`obbws_jupyter.Connection.chart`."""
    buffer = ChartBuffer(
        [f.name for f in client.fields],
        kind=kind,
        window=window,
        interval=interval,
        price=price,
        symbols=_symbol_filter(client, symbols),
        max_points=max_points,
        max_symbols=max_symbols,
        tz=client.tz,
    )
    return LiveChart(client, buffer, layout)


# -- the static plot ------------------------------------------------------------------------


def static_plot(
    client: WebSocketClient,
    kind: str | None = None,
    symbols: str | Iterable[str] | None = None,
    interval: Any = "1min",
    *,
    price: str | None = None,
    max_symbols: int = 8,
    **layout: Any,
) -> go.Figure:
    """A static figure of the stored results; see :meth:`obbws_jupyter.Connection.plot`."""
    roles = resolve_roles(f.name for f in client.fields)
    if kind is not None and kind not in KINDS:
        raise InvalidParameterError(f"kind={kind!r} is invalid: use one of {', '.join(KINDS)}.")
    wanted = _symbol_filter(client, symbols)
    if (kind or default_kind(roles)) == "candles":
        parse_duration("interval", interval)
        series = _bar_columns(client.ohlc(interval, symbols=symbols, price=price))
        kind = "candles"
    else:
        frame = client.get_results()
        if wanted is not None:
            frame = frame[frame["symbol"].isin(wanted)]
        kind = kind or _kind_of(frame, roles)
        series = _frame_columns(frame, kind, roles, price)
    names = _ordered(list(series), _row_order(client, wanted))[:max_symbols]
    return go.Figure(
        data=_drawn_traces(kind, names, series, client.tz),
        layout=_layout(f"{client.name}: {kind}", names, client.tz, layout),
    )


def _kind_of(frame: pd.DataFrame, roles: Roles) -> str:
    """An ambiguous feed's kind from its rows: a line when trades are there, else a band."""
    kind = default_kind(roles)
    if kind is not None:
        return kind
    return "line" if frame[roles.price or ""].notna().any() else "band"


def _utc_ns(dates: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(dates).tz_convert("UTC").as_unit("ns").asi8


def _frame_columns(
    frame: pd.DataFrame, kind: str, roles: Roles, price: str | None
) -> dict[str, dict[str, np.ndarray]]:
    """Per-symbol line or band columns of stored rows (the live buffer's shapes)."""
    if kind == "band":
        if not roles.has_quotes:
            raise InvalidParameterError(
                f"kind='band' needs bid and ask fields; this feed has {roles.describe()}."
            )
        values = {"bid": frame[roles.bid or ""], "ask": frame[roles.ask or ""]}
    else:
        source = price_source(roles, price, bars=False)
        if source.mode == "mid":
            values = {"price": (frame[roles.bid or ""] + frame[roles.ask or ""]) / 2}
        else:
            values = {"price": frame[source.field or ""]}
            if source.skip_quote_types:
                values["price"] = values["price"].where(~frame["type"].isin(NOT_TRADE_TYPES))
    data = pd.DataFrame({"symbol": frame["symbol"], "t": _utc_ns(frame["date"]), **values})
    data = data.dropna()
    return {
        str(symbol): {c: group[c].to_numpy() for c in COLUMNS[kind]}
        for symbol, group in data.groupby("symbol", sort=False)
    }


def _bar_columns(bars: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    bars = bars.assign(t=_utc_ns(bars["date"]))
    return {
        str(symbol): {c: group[c].to_numpy() for c in COLUMNS["candles"]}
        for symbol, group in bars.groupby("symbol", sort=False)
    }
