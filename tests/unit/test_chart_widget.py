"""LiveChart and the static plot without a browser or a socket: traces, timer, messages, stop.

A demo client is created but never connected; frames are handed to it the way the stream
does (``_on_records``: ids, store, hooks). The records are samples built for these tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from obbws_jupyter.client import WebSocketClient
from obbws_jupyter.protocol import Field, FieldType, Param, ProviderSpec, _lookup
from obbws_jupyter.widgets.chart import live_chart, static_plot
from obbws_providers.demo import DemoSession
from tests.conftest import TIMEOUT

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MS = 1_000_000
TZ = "America/New_York"


def poll(condition: Any, timeout: float = TIMEOUT) -> bool:
    """Poll ``condition()`` (the chart's own timer thread changes the figure) until true."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        pause.wait(0.02)
    return bool(condition())


def trade_frame(start: int, n: int, symbols: tuple[str, ...] = ("BTCUSD", "ETHUSD")) -> list[dict]:
    return [
        {
            "date": T0 + (start + i) * 100 * MS,
            "symbol": symbols[i % len(symbols)],
            "type": "trade",
            "exchange": "DEMO",
            "price": 100.0 + start + i,
            "size": 1.0,
        }
        for i in range(n)
    ]


@pytest.fixture
def client() -> Iterator[WebSocketClient]:
    c = WebSocketClient("demo", symbol="btcusd,ethusd", sleep_time=0.05, tz=TZ)
    yield c
    c.close()


@pytest.fixture
def quote_client() -> Iterator[WebSocketClient]:
    c = WebSocketClient("demo", symbol="eurusd", feed="quote", asset_type="fx", sleep_time=0.05)
    yield c
    c.close()


def test_line_chart_has_a_row_and_a_trace_per_symbol(client: WebSocketClient) -> None:
    """Trades draw one price line per symbol, each on its own y axis, times in the tz."""
    client._on_records(trade_frame(0, 10))
    fig = live_chart(client, window=100)
    try:
        assert isinstance(fig, go.FigureWidget) and fig.stats["kind"] == "line"
        assert [t.name for t in fig.data] == ["BTCUSD", "ETHUSD"]
        assert [t.yaxis for t in fig.data] == ["y", "y2"]
        assert fig.data[0].y.tolist() == [100.0 + i for i in range(0, 10, 2)]
        wall = pd.Timestamp(T0, tz="UTC").tz_convert(TZ).tz_localize(None)
        assert fig.data[0].x[0] == wall.value / 1e6  # wall-clock ms of New York
        assert fig.layout.xaxis.title.text == f"time ({TZ})"
        assert fig.layout.yaxis.title.text == "BTCUSD" and fig.layout.yaxis2.title.text == "ETHUSD"
    finally:
        fig.close()


def test_the_timer_follows_new_records(client: WebSocketClient) -> None:
    """Records arriving after creation reach the traces at the refresh cadence."""
    fig = live_chart(client, window=100)
    try:
        assert len(fig.data) == 0
        client._on_records(trade_frame(0, 4))
        assert poll(lambda: len(fig.data) == 2 and len(fig.data[0].x) == 2)
        client._on_records(trade_frame(4, 4))
        assert poll(lambda: len(fig.data[0].x) == 4)
        assert fig.data[1].y.tolist() == [101.0, 103.0, 105.0, 107.0]
    finally:
        fig.close()


def test_quotes_draw_a_filled_band_with_a_mid_line(quote_client: WebSocketClient) -> None:
    """A quote feed draws bid, ask (filled down to the bid) and mid per symbol."""
    quote_client._on_records(
        [
            {"date": T0 + i * MS, "symbol": "EURUSD", "bid": 1.0 + i, "ask": 1.5 + i}
            for i in range(5)
        ]
    )
    fig = live_chart(quote_client, window=100)
    try:
        assert [t.name for t in fig.data] == ["EURUSD bid", "EURUSD ask", "EURUSD mid"]
        assert fig.data[1].fill == "tonexty"
        assert fig.data[2].y.tolist() == [1.25 + i for i in range(5)]
    finally:
        fig.close()


def test_candles_chart_draws_candlesticks(client: WebSocketClient) -> None:
    """kind='candles' draws a candlestick per symbol from the trades."""
    client._on_records(trade_frame(0, 40))  # 4 s of trades, 100 ms apart
    fig = live_chart(client, kind="candles", interval="1s", window=50)
    try:
        assert [t.type for t in fig.data] == ["candlestick", "candlestick"]
        btc = fig.data[0]
        assert len(btc.x) == 4
        assert btc.open.tolist() == [100.0, 110.0, 120.0, 130.0]
        assert btc.close.tolist() == [108.0, 118.0, 128.0, 138.0]
        assert fig.layout.xaxis.rangeslider.visible is False
    finally:
        fig.close()


def test_refresh_sends_nothing_when_nothing_changed(client: WebSocketClient) -> None:
    """Without new records a refresh sends no message; with them, one plotly update."""
    client._on_records(trade_frame(0, 4))
    fig = live_chart(client, window=100)
    try:
        fig.stop()  # drive refreshes by hand
        before = fig.stats
        assert fig.refresh() is False and fig.stats["messages"] == before["messages"]
        fig._gate(trade_frame(4, 4))  # the record hook, called as the stream would
        assert fig.refresh() is True
        after = fig.stats
        assert after["updates"] == before["updates"] + 1
        assert after["messages"] - before["messages"] == 4  # edit ids, update, reset
    finally:
        fig.close()


def test_updates_keep_the_time_axis_a_date_axis(client: WebSocketClient) -> None:
    """Each data update names xaxis.type=date: plotly.js would re-type the axis as numbers."""
    sent: list[dict[str, Any]] = []
    client._on_records(trade_frame(0, 4))
    fig = live_chart(client, window=100)
    try:
        fig.stop()
        assert fig.layout.xaxis.type == "date"
        fig.observe(lambda change: sent.append(change["new"]), names="_py2js_update")
        fig._gate(trade_frame(4, 4))
        assert fig.refresh()
        updates = [m for m in sent if m]
        assert len(updates) == 1
        assert updates[0]["layout_data"]["xaxis.type"] == "date"
        assert "x" in updates[0]["style_data"]
    finally:
        fig.close()


def test_stop_and_close_detach_the_hook_and_end_the_timer(client: WebSocketClient) -> None:
    """stop() removes the record hook and ends the timer; close() does the same."""
    first = live_chart(client)
    second = live_chart(client)
    assert len(client._record_hooks) == 2
    first.stop()
    second.close()
    assert client._record_hooks == []
    first._thread.join(TIMEOUT)
    second._thread.join(TIMEOUT)
    assert not first._thread.is_alive() and not second._thread.is_alive()
    assert not first.following and second.comm is None


def test_killing_the_connection_draws_the_last_records_then_stops() -> None:
    """After kill the timer draws what arrived before and stops; the figure keeps it."""
    c = WebSocketClient("demo", symbol="btcusd,ethusd", sleep_time=0.05)
    fig = live_chart(c, window=100)
    c._on_records(trade_frame(0, 6))
    c.close()
    fig._thread.join(TIMEOUT)
    assert not fig.following and c._record_hooks == []
    assert len(fig.data[0].x) == 3


def test_history_is_drawn_at_once_without_duplicates(client: WebSocketClient) -> None:
    """A new chart starts from the stored rows; frames held meanwhile are not doubled."""
    client._on_records(trade_frame(0, 20))
    fig = live_chart(client, window=1000)
    try:
        assert len(fig.data[0].x) == 10
        held = trade_frame(20, 2)
        client._on_records(held)
        assert poll(lambda: len(fig.data[0].x) == 11)
        assert np.all(np.diff(fig.data[0].x) > 0)
    finally:
        fig.close()


def test_a_figure_whose_views_are_gone_costs_nothing_until_one_is_back(
    client: WebSocketClient,
) -> None:
    """Shown, then every view gone: detached, nothing sent; a new view starts from the store."""
    fig = live_chart(client, window=100)
    try:
        fig._view_count = 1
        fig._view_count = 0
        assert poll(lambda: fig._paused)  # the timer's next tick
        assert client._record_hooks == []
        sent = fig.stats["messages"]
        client._on_records(trade_frame(0, 4))
        assert fig.buffer.records == 0 and fig.stats["messages"] == sent
        fig._view_count = 1
        assert client._record_hooks == [fig._gate] and fig.buffer.records == 4
        assert poll(lambda: len(fig.data) == 2 and len(fig.data[1].x) == 2)
    finally:
        fig.close()


def test_symbols_and_layout_options(client: WebSocketClient) -> None:
    """symbols= keeps the named ones (normalized like the provider); layout keys win."""
    client._on_records(trade_frame(0, 10))
    fig = live_chart(client, window=100, symbols="eth-usd", height=640, title="mine")
    try:
        assert [t.name for t in fig.data] == ["ETHUSD"]
        assert fig.layout.height == 640 and fig.layout.title.text == "mine"
    finally:
        fig.close()


def test_static_plot_of_stored_results(client: WebSocketClient) -> None:
    """plot() draws the stored rows; candles come from the DuckDB bars."""
    client._on_records(trade_frame(0, 40))
    line = static_plot(client)
    assert not isinstance(line, go.FigureWidget)
    assert [t.name for t in line.data] == ["BTCUSD", "ETHUSD"]
    assert line.data[1].y.tolist() == [100.0 + i for i in range(1, 40, 2)]
    candles = static_plot(client, kind="candles", interval="1s", symbols="btcusd")
    assert [t.type for t in candles.data] == ["candlestick"]
    assert candles.data[0].open.tolist() == [100.0, 110.0, 120.0, 130.0]


class _TradesAndQuotes(DemoSession):
    """A demo-shaped session whose records carry a trade price and bid/ask (Tiingo-like)."""

    provider = "trades_and_quotes_test"

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.fields = tuple(
            Field(name, kind)
            for name, kind in [
                ("date", FieldType.TIMESTAMP),
                ("symbol", FieldType.STRING),
                ("type", FieldType.STRING),
                ("last_price", FieldType.FLOAT),
                ("bid_price", FieldType.FLOAT),
                ("ask_price", FieldType.FLOAT),
            ]
        )


def test_a_trades_and_quotes_feed_is_titled_once_its_kind_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A feed with trade and quote fields starts undecided; its first quotes make a band."""
    _lookup.available_providers()  # the entry points are loaded; the test's one goes after
    spec = ProviderSpec(
        name="trades_and_quotes_test",
        description="test only",
        session_class=_TradesAndQuotes,
        params=(Param("symbol", str), Param("url", str, None)),
    )
    monkeypatch.setitem(_lookup._specs, spec.name, spec)  # registered for this test only
    c = WebSocketClient("trades_and_quotes_test", symbol="eurusd", sleep_time=0.05)
    try:
        fig = live_chart(c, window=100)
        assert fig.stats["kind"] is None and fig.layout.title.text.endswith(": live")
        c._on_records([{"date": T0, "symbol": "EURUSD", "bid_price": 1.0, "ask_price": 1.1}])
        assert poll(lambda: len(fig.data) == 3)
        assert fig.stats["kind"] == "band" and fig.layout.title.text.endswith(": band")
        fig.close()
    finally:
        c.close()


def test_figures_read_on_light_and_dark_themes(client: WebSocketClient) -> None:
    """Live and static figures have transparent backgrounds and grey text and grid lines on
    every axis (also the axis of a symbol that appears later), not plotly's white template."""
    client._on_records(trade_frame(0, 10, symbols=("BTCUSD",)))
    fig = live_chart(client, window=100)
    try:
        client._on_records(trade_frame(10, 10, symbols=("ETHUSD",)))
        assert poll(lambda: len(fig.data) == 2)
        figures = [fig, static_plot(client)]
        for figure in figures:
            layout = figure.layout
            assert layout.paper_bgcolor == layout.plot_bgcolor == "rgba(0,0,0,0)"
            assert layout.font.color == "#808080"
            for axis in (layout.xaxis, layout.yaxis, layout.yaxis2):
                assert axis.gridcolor == "rgba(128,128,128,0.22)"
    finally:
        fig.close()
