"""ChartBuffer: rolling windows in time and in points, candles, memory bound, kinds and errors.

The records here are samples built for these tests (a seeded random walk), shaped like the
records a provider session produces: times are int ns UTC.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from obbws_jupyter._bars import parse_duration, parse_window
from obbws_jupyter._chart_buffer import ChartBuffer
from obbws_jupyter.exceptions import InvalidParameterError
from tests.bars import pandas_bars

TRADE_FIELDS = ("date", "symbol", "type", "exchange", "price", "size")
QUOTE_FIELDS = ("date", "symbol", "type", "exchange", "bid", "bid_size", "ask", "ask_size")
BAR_FIELDS = ("date", "symbol", "type", "open", "high", "low", "close", "volume")
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MS = 1_000_000
SECOND = 1_000 * MS
TZ = "America/New_York"


def trades(
    n: int,
    symbols: tuple[str, ...] = ("BTCUSD", "ETHUSD", "SOLUSD"),
    *,
    step_ms: int = 7,
    seed: int = 1,
    late: float = 0.0,
) -> list[dict[str, Any]]:
    """A random walk of ``n`` trades; about ``late`` of them arrive up to 3 s late."""
    rng = random.Random(seed)
    price = {s: 100.0 * (i + 1) for i, s in enumerate(symbols)}
    out = []
    t = T0
    for i in range(n):
        t += rng.choice((0, step_ms * MS, 2 * step_ms * MS))  # equal times happen
        symbol = rng.choice(symbols)
        price[symbol] = round(price[symbol] * (1 + rng.gauss(0, 0.001)), 4)
        date = t - rng.randrange(3 * SECOND) if rng.random() < late else t
        out.append(
            {
                "id": i + 1,
                "received_at": t,
                "date": date,
                "symbol": symbol,
                "type": "trade",
                "exchange": "TEST",
                "price": price[symbol],
                "size": round(rng.uniform(0.01, 2.0), 3),
            }
        )
    return out


def feed(buffer: ChartBuffer, records: list[dict[str, Any]], frame: int = 50) -> None:
    """Hand records to the buffer in frames, as the client's record hook does."""
    for i in range(0, len(records), frame):
        buffer.add(records[i : i + frame])


def frame_of(records: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(records)
    df["date"] = pd.to_datetime(df["date"], utc=True).dt.tz_convert(TZ)
    return df


def test_points_window_keeps_the_newest_n_per_symbol() -> None:
    """window=N keeps each symbol's newest N points, in arrival order."""
    records = trades(3000)
    buffer = ChartBuffer(TRADE_FIELDS, window=100, tz=TZ)
    feed(buffer, records)
    snap = buffer.snapshot()
    assert snap is not None and snap.kind == "line"
    assert set(snap.symbols) == {"BTCUSD", "ETHUSD", "SOLUSD"}
    for symbol, cols in snap.series.items():
        mine = [r for r in records if r["symbol"] == symbol][-100:]
        assert cols["price"].tolist() == [r["price"] for r in mine]
        assert cols["t"].tolist() == [r["date"] for r in mine]


def test_time_window_keeps_the_last_value_per_bin_within_the_window() -> None:
    """A duration keeps window/max_points bins (the last value of each) within the window."""
    records = trades(20_000, step_ms=20)  # ~400 s of trades
    buffer = ChartBuffer(TRADE_FIELDS, window="60s", max_points=120, tz=TZ)
    feed(buffer, records)
    snap = buffer.snapshot()
    assert snap is not None
    newest = max(r["date"] for r in records)
    bin_ns = 60 * SECOND // 120
    for symbol, cols in snap.series.items():
        last_per_bin: dict[int, dict[str, Any]] = {}
        for r in records:
            if r["symbol"] == symbol:
                last_per_bin[r["date"] // bin_ns] = r
        expected = [r for r in last_per_bin.values() if r["date"] >= newest - 60 * SECOND]
        assert cols["t"].tolist() == [r["date"] for r in expected]
        assert cols["price"].tolist() == [r["price"] for r in expected]
        assert len(cols["t"]) <= 122


@pytest.mark.parametrize("late", [0.0, 0.05])
def test_candles_match_a_pandas_resample(late: float) -> None:
    """Candles equal pandas' OHLCV of the same trades ordered by (date, id), late ones too."""
    records = trades(6000, late=late, seed=7)
    buffer = ChartBuffer(TRADE_FIELDS, kind="candles", interval="5s", window=1000, tz=TZ)
    feed(buffer, records)
    snap = buffer.snapshot()
    assert snap is not None and snap.kind == "candles"
    df = frame_of(records)
    bars = pandas_bars(df, "5s", df["price"], df["size"])
    for symbol, cols in snap.series.items():
        ref = bars[bars["symbol"] == symbol].set_index("date")
        starts = pd.to_datetime(cols["t"], utc=True).tz_convert(TZ)
        assert list(starts) == list(ref.index)
        for column in ("open", "high", "low", "close"):
            assert cols[column].tolist() == ref[column].tolist(), column
        np.testing.assert_allclose(cols["volume"], ref["volume"].to_numpy())


def test_candles_from_aggregate_bars_rebucket_them() -> None:
    """An aggregate feed's 1 s bars fold into 10 s candles: first open, max, min, last close."""
    rng = random.Random(3)
    bars = []
    for i in range(120):
        o = 100 + rng.random()
        c = 100 + rng.random()
        bars.append(
            {
                "id": i,
                "date": T0 + i * SECOND,
                "symbol": "BTC-USD",
                "type": "XAS",
                "open": o,
                "high": max(o, c) + 0.5,
                "low": min(o, c) - 0.5,
                "close": c,
                "volume": 1.0 + i,
            }
        )
    buffer = ChartBuffer(BAR_FIELDS, interval="10s", window=50, tz=TZ)
    assert buffer.kind == "candles"
    feed(buffer, bars, frame=7)
    snap = buffer.snapshot()
    assert snap is not None
    cols = snap.series["BTC-USD"]
    assert len(cols["t"]) == 12
    for k in range(12):
        group = bars[10 * k : 10 * k + 10]
        assert cols["t"][k] == group[0]["date"]
        assert cols["open"][k] == group[0]["open"] and cols["close"][k] == group[-1]["close"]
        assert cols["high"][k] == max(b["high"] for b in group)
        assert cols["low"][k] == min(b["low"] for b in group)
        assert cols["volume"][k] == sum(b["volume"] for b in group)


def test_candles_align_on_the_wall_clock_of_the_time_zone() -> None:
    """Hour candles start on the hour of the connection's zone (Kolkata is UTC+5:30)."""
    buffer = ChartBuffer(TRADE_FIELDS, kind="candles", interval="1h", window=10, tz="Asia/Kolkata")
    feed(buffer, trades(10, step_ms=1000))
    snap = buffer.snapshot()
    assert snap is not None
    for cols in snap.series.values():
        local = pd.to_datetime(cols["t"], utc=True).tz_convert("Asia/Kolkata")
        assert all(t.minute == 0 and t.second == 0 for t in local)


def test_memory_is_bounded_by_symbols_and_points() -> None:
    """60k trades over 50 symbols (3 min) keep at most max_symbols series of max_points."""
    symbols = tuple(f"S{i}" for i in range(50))
    records = trades(60_000, symbols, step_ms=3)
    buffer = ChartBuffer(TRADE_FIELDS, window="10s", max_points=300, max_symbols=5, tz=TZ)
    feed(buffer, records, frame=500)
    assert len(buffer.symbols) == 5
    assert len(buffer.ignored_symbols) == 45
    assert 5 * 250 < buffer.points() <= 5 * (300 + 2)
    candles = ChartBuffer(TRADE_FIELDS, kind="candles", interval="1s", window="1h", max_points=50)
    feed(candles, records, frame=500)
    assert candles.points() == 8 * 50  # 3 min of 1 s bars: 50 kept for each of 8 symbols


def test_symbols_filter_keeps_only_those() -> None:
    """symbols=[...] keeps those series only, whatever arrives."""
    buffer = ChartBuffer(TRADE_FIELDS, window=10, symbols=["ETHUSD"], tz=TZ)
    feed(buffer, trades(500))
    assert buffer.symbols == ("ETHUSD",)


def test_quotes_make_a_band() -> None:
    """A quote feed keeps (t, bid, ask) per symbol; records missing a side are skipped."""
    quotes = [
        {"date": T0 + i * MS, "symbol": "EURUSD", "bid": 1.1 + i / 1e4, "ask": 1.1002 + i / 1e4}
        for i in range(10)
    ]
    quotes.append({"date": T0 + 11 * MS, "symbol": "EURUSD", "bid": 1.2})
    buffer = ChartBuffer(QUOTE_FIELDS, window=100, tz=TZ)
    assert buffer.kind == "band"
    buffer.add(quotes)
    snap = buffer.snapshot()
    assert snap is not None
    cols = snap.series["EURUSD"]
    assert cols["bid"].tolist() == [q["bid"] for q in quotes[:10]]
    assert cols["ask"].tolist() == [q["ask"] for q in quotes[:10]]


def test_mid_price_line_and_candles_from_quotes() -> None:
    """price='mid' draws a quote feed as a line or candles of (bid + ask) / 2."""
    quotes = [
        {"date": T0 + i * SECOND, "symbol": "X", "bid": 10.0 + i, "ask": 12.0 + i} for i in range(6)
    ]
    line = ChartBuffer(QUOTE_FIELDS, kind="line", price="mid", window=10)
    line.add(quotes)
    candles = ChartBuffer(QUOTE_FIELDS, kind="candles", price="mid", interval="3s", window=10)
    candles.add(quotes)
    line_snap, candle_snap = line.snapshot(), candles.snapshot()
    assert line_snap is not None and candle_snap is not None
    assert line_snap.series["X"]["price"].tolist() == [11.0 + i for i in range(6)]
    assert candle_snap.series["X"]["open"].tolist() == [11.0, 14.0]
    assert candle_snap.series["X"]["close"].tolist() == [13.0, 16.0]


def test_an_ambiguous_feed_decides_from_its_first_data() -> None:
    """Trade-and-quote fields: quotes first make a band, trades first make a line."""
    fields = ("date", "symbol", "type", "last_price", "bid_price", "ask_price")
    quote = {"date": T0, "symbol": "A", "type": "quote", "bid_price": 1.0, "ask_price": 1.1}
    trade = {"date": T0, "symbol": "A", "type": "trade", "last_price": 1.05}
    quotes_first = ChartBuffer(fields)
    assert quotes_first.kind is None and quotes_first.snapshot() is None
    quotes_first.add([quote])
    assert quotes_first.kind == "band"
    trades_first = ChartBuffer(fields)
    trades_first.add([trade, quote])
    assert trades_first.kind == "line"


def test_quote_sides_stay_out_of_a_trade_line() -> None:
    """Intrinio-style bid/ask records (price + type) are not drawn as trades."""
    fields = ("date", "symbol", "type", "price", "size")
    records = [
        {"date": T0 + i, "symbol": "AAPL", "type": kind, "price": float(i), "size": 1.0}
        for i, kind in enumerate(["bid", "trade", "ask", "trade"])
    ]
    buffer = ChartBuffer(fields, window=10)
    buffer.add(records)
    snap = buffer.snapshot()
    assert snap is not None
    assert snap.series["AAPL"]["price"].tolist() == [1.0, 3.0]


def test_snapshot_returns_only_what_changed() -> None:
    """A snapshot since a version holds the series that changed after it, or None."""
    buffer = ChartBuffer(TRADE_FIELDS, window=10)
    buffer.add(trades(50))
    first = buffer.snapshot()
    assert first is not None
    assert buffer.snapshot(since=first.version) is None
    buffer.add([dict(trades(1)[0], symbol="ETHUSD", date=T0 + 10**12)])
    second = buffer.snapshot(since=first.version)
    assert second is not None and list(second.series) == ["ETHUSD"]


def test_late_points_are_dropped_from_a_binned_line() -> None:
    """In a time window, a record older than its symbol's newest bin does not move the line."""
    buffer = ChartBuffer(TRADE_FIELDS, window="10s", max_points=10)
    rows = [dict(date=T0 + i * SECOND, symbol="A", price=float(i)) for i in range(5)]
    buffer.add([*rows, dict(date=T0, symbol="A", price=99.0)])
    snap = buffer.snapshot()
    assert snap is not None
    assert snap.series["A"]["price"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "pie"}, "kind='pie' is invalid: use one of line, band, candles"),
        ({"window": 0}, "window=0 points is out of range"),
        ({"window": 10**6}, "out of range: use 1 to 100000"),
        ({"window": True}, "window=True is invalid"),
        ({"window": "5 parsecs"}, "not a valid duration.*'500ms', '5s'"),
        ({"interval": "0s"}, "interval='0s' is not a valid duration"),
        ({"max_points": 0}, "max_points=0 is invalid"),
        ({"kind": "band"}, "kind='band' needs bid and ask"),
        ({"price": "bid"}, "price='bid' is not a field of this feed"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    """Bad chart arguments raise InvalidParameterError naming what is accepted."""
    with pytest.raises(InvalidParameterError, match=match):
        ChartBuffer(TRADE_FIELDS, **kwargs)


def test_line_on_a_quote_feed_points_to_mid() -> None:
    """kind='line' on quotes explains the band or price='mid'."""
    with pytest.raises(InvalidParameterError, match="price='mid'"):
        ChartBuffer(QUOTE_FIELDS, kind="line")


def test_durations_and_windows_parse() -> None:
    """Durations in text or timedelta form; windows as durations or point counts."""
    assert parse_duration("interval", "500ms") == 500 * MS
    assert parse_duration("interval", "1.5s") == 1500 * MS
    assert parse_duration("interval", "2 mins") == 120 * SECOND
    assert parse_duration("interval", "1m") == 60 * SECOND
    assert parse_duration("interval", "1 hour") == 3600 * SECOND
    assert parse_duration("interval", pd.Timedelta("1D")) == 86_400 * SECOND
    assert parse_window("5min") == (300 * SECOND, None)
    assert parse_window(250) == (None, 250)
