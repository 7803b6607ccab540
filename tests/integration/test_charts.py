"""conn.chart / conn.ohlc / conn.plot on live demo streams over loopback sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import plotly.graph_objects as go
import pytest

import obbws_jupyter as obbws
from obbws_jupyter._bars import OHLC_COLUMNS
from obbws_jupyter.exceptions import InvalidParameterError, UnknownConnectionError
from tests.bars import pandas_bars
from tests.conftest import TIMEOUT, RecordWaiter

pytestmark = pytest.mark.integration

SLEEP = 0.25


def assert_same_bars(got: pd.DataFrame, want: pd.DataFrame, volume: bool = True) -> None:
    assert list(got.columns) == list(OHLC_COLUMNS)
    assert len(got) == len(want) > 0
    assert got["symbol"].tolist() == want["symbol"].tolist()
    assert [t.isoformat() for t in got["date"]] == [t.isoformat() for t in want["date"]]
    for column in ("open", "high", "low", "close"):
        pd.testing.assert_series_equal(got[column], want[column], check_names=False)
    if volume:
        pd.testing.assert_series_equal(got["volume"], want["volume"], check_names=False)
    assert got["count"].tolist() == want["count"].tolist()


@pytest.fixture(scope="module")
def stopped_trades() -> Iterator[tuple[obbws.Connection, pd.DataFrame]]:
    """A demo trade stream of a few thousand rows, stopped so that its rows stay fixed."""
    conn = obbws.create_connection(
        provider="demo", name="charts_trades", symbol="btcusd,ethusd", rate=3000, limit=None
    )
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(8000, timeout=3 * TIMEOUT)
    conn.stop_connection()
    yield conn, conn.get_results()
    conn.kill()


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    """The module's stopped stream outlives single tests (overrides the per-test cleanup)."""
    yield


@pytest.mark.parametrize("interval", ["1s", "5s", "1min"])
def test_ohlc_equals_a_pandas_resample_of_the_results(stopped_trades, interval: str) -> None:  # type: ignore[no-untyped-def]
    """ohlc() bars equal pandas' OHLCV of get_results() on the same rows."""
    conn, df = stopped_trades
    want = pandas_bars(df, interval, df["price"], df["size"])
    got = conn.ohlc(interval)
    assert str(got["date"].dt.tz) == "America/New_York"
    assert_same_bars(got, want)


def test_ohlc_filters_by_symbol_and_start(stopped_trades) -> None:  # type: ignore[no-untyped-def]
    """symbols= and since= select the rows the bars are built from."""
    conn, df = stopped_trades
    middle = df["date"].iloc[len(df) // 2].floor("s")
    naive = middle.tz_localize(None).isoformat()  # read in the connection's tz
    got = conn.ohlc("1s", symbols="eth-usd", since=naive)
    part = df[(df["symbol"] == "ETHUSD") & (df["date"] >= middle)]
    assert_same_bars(got, pandas_bars(part, "1s", part["price"], part["size"]))
    recent = conn.ohlc("1s", since="10min")
    assert len(recent) == len(conn.ohlc("1s"))


def test_ohlc_errors_name_the_fix(stopped_trades) -> None:  # type: ignore[no-untyped-def]
    """A bad interval lists the accepted forms; a bad since says what it takes."""
    conn, _ = stopped_trades
    with pytest.raises(InvalidParameterError, match=r"interval='1 fortnight'.*'5s', '30sec'"):
        conn.ohlc("1 fortnight")
    with pytest.raises(InvalidParameterError, match="since='yesterday-ish' is neither"):
        conn.ohlc("1s", since="yesterday-ish")
    with pytest.raises(InvalidParameterError, match="price='mid' needs bid and ask"):
        conn.ohlc("1s", price="mid")


def test_static_plot_follows_the_feed(stopped_trades) -> None:  # type: ignore[no-untyped-def]
    """plot() draws a line per symbol of every stored trade; candles match ohlc()."""
    conn, df = stopped_trades
    fig = conn.plot()
    assert isinstance(fig, go.Figure) and [t.name for t in fig.data] == ["BTCUSD", "ETHUSD"]
    assert len(fig.data[0].y) == int((df["symbol"] == "BTCUSD").sum())
    candles = conn.plot(kind="candles", interval="5s")
    bars = conn.ohlc("5s")
    assert candles.data[1].close.tolist() == bars[bars["symbol"] == "ETHUSD"]["close"].tolist()


def test_quote_bars_from_the_mid_price() -> None:
    """A quote feed has no trade bars (the error offers price='mid'); mid bars match pandas."""
    conn = obbws.create_connection(
        provider="demo",
        name="charts_quotes",
        symbol="eurusd",
        asset_type="fx",
        feed="quote",
        rate=2000,
        limit=None,
    )
    try:
        assert RecordWaiter(conn.get_client()).wait(3000, timeout=3 * TIMEOUT)
        conn.stop_connection()
        with pytest.raises(InvalidParameterError, match="pass price='mid'"):
            conn.ohlc("1s")
        df = conn.get_results()
        want = pandas_bars(df, "1s", (df["bid"] + df["ask"]) / 2, None)
        assert_same_bars(conn.ohlc("1s", price="mid"), want, volume=False)
        band = conn.chart(window=50)
        assert [t.name for t in band.data] == ["EURUSD bid", "EURUSD ask", "EURUSD mid"]
        assert band.data[0].y.tolist() == df["bid"].tail(50).tolist()
        band.close()
    finally:
        conn.kill()


def test_a_20k_events_per_second_feed_is_drawn_at_the_refresh_cadence() -> None:
    """At 20,000 events/s two live charts update at most 1/sleep_time times per second, in
    messages under 64 KB, and end holding exactly the newest points and the DuckDB bars."""
    conn = obbws.create_connection(
        provider="demo",
        name="charts_fast",
        symbol="btcusd,ethusd,solusd",
        rate=20_000,
        limit=None,
        sleep_time=SLEEP,
    )
    try:
        waiter = RecordWaiter(conn.get_client())
        line = conn.chart(window=500)
        candles = conn.chart(kind="candles", interval="1s", window="5min")
        assert waiter.wait(60_000, timeout=6 * TIMEOUT)  # about 3 s at 20k/s
        conn.stop_connection()
        for fig in (line, candles):
            fig.refresh()  # whatever arrived since the last tick
            stats = fig.stats
            assert stats["updates"] <= stats["seconds"] / SLEEP + 2, stats
            # a plotly update is 4 comm messages; adding the 3 rows costs a few more once
            assert stats["messages"] <= 4 * stats["updates"] + 12, stats
            assert stats["max_message_bytes"] < 64 * 1024, stats
        df = conn.get_results()
        assert [t.name for t in line.data] == ["BTCUSD", "ETHUSD", "SOLUSD"]
        for trace in line.data:
            assert trace.y.tolist() == df[df["symbol"] == trace.name]["price"].tail(500).tolist()
        bars = conn.ohlc("1s")
        for trace in candles.data:
            mine = bars[bars["symbol"] == trace.name]
            assert len(trace.x) == len(mine) > 1
            assert trace.open.tolist() == mine["open"].tolist()
            assert trace.close.tolist() == mine["close"].tolist()
            assert trace.high.tolist() == mine["high"].tolist()
            assert trace.low.tolist() == mine["low"].tolist()
        line.close()
        candles.close()
    finally:
        conn.kill()


def test_chart_of_a_killed_connection_is_refused() -> None:
    """conn.chart() on a killed connection raises the registry's error, nothing starts."""
    conn = obbws.create_connection(provider="demo", name="charts_gone", symbol="btcusd")
    conn.kill()
    with pytest.raises(UnknownConnectionError):
        conn.chart()
