"""The market simulator behind the demo server: deterministic, realistic, well-formed events."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from obbws_jupyter.offline.market import (
    DEFAULT_BASKETS,
    START_PRICES,
    Market,
    start_price,
)

T0 = 1_700_000_000_000


def generate(seed: int | None, asset_type: str, kind: str, n: int = 3000) -> list[dict]:
    market = Market(seed)
    return market.events(market.channels(kind, "*", asset_type), n, T0, 1000.0)


def test_same_seed_same_events() -> None:
    """Two markets with the same seed produce identical events."""
    assert generate(7, "crypto", "T") == generate(7, "crypto", "T")
    assert generate(7, "stock", "Q") == generate(7, "stock", "Q")


def test_different_seeds_differ() -> None:
    """Different seeds produce different paths."""
    assert generate(1, "crypto", "T") != generate(2, "crypto", "T")


def test_unknown_symbol_start_price_is_stable_across_processes() -> None:
    """Unknown symbols get a start price from a stable hash, not Python's salted hash()."""
    code = (
        "from obbws_jupyter.offline.market import start_price; print(start_price('ZZTOP','stock'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert float(out) == start_price("ZZTOP", "stock")
    assert 10.0 <= start_price("ZZTOP", "stock") <= 500.0
    assert 80.0 <= start_price("EURJPY", "fx") <= 180.0
    assert 0.5 <= start_price("AUDNZD", "fx") <= 2.0


def test_known_start_prices_and_baskets() -> None:
    """Known symbols start at their usual level; * expands to the default basket."""
    assert start_price("BTCUSD", "crypto") == 65000.0
    assert start_price("AAPL", "stock") == START_PRICES["AAPL"]
    market = Market(0)
    for asset_type, basket in DEFAULT_BASKETS.items():
        channels = market.channels("T", "*", asset_type)
        assert tuple(inst.symbol for _, inst in channels) == basket
    assert DEFAULT_BASKETS["crypto"] == ("BTCUSD", "ETHUSD", "SOLUSD")


@pytest.mark.parametrize("asset_type", ["crypto", "stock", "fx"])
def test_quotes_are_positive_with_bid_below_ask(asset_type: str) -> None:
    """Every quote has 0 < bid < ask and positive sizes."""
    for event in generate(3, asset_type, "Q"):
        assert 0 < event["bp"] < event["ap"]
        assert event["bs"] > 0 and event["as"] > 0


@pytest.mark.parametrize("asset_type", ["crypto", "stock", "fx"])
def test_prices_stay_near_start(asset_type: str) -> None:
    """After a few thousand events prices are within a few percent of the start."""
    for event in generate(5, asset_type, "T", 5000):
        start = START_PRICES[event["sym"]]
        assert 0.9 * start < event["p"] < 1.1 * start


def test_spreads_are_realistic() -> None:
    """Spreads: crypto 1-2 bp (+ rounding), stocks 1-3 cents, fx 0.1-0.5 pip."""
    for e in generate(11, "crypto", "Q"):
        mid = (e["bp"] + e["ap"]) / 2
        assert 0.9e-4 <= (e["ap"] - e["bp"]) / mid <= 2.1e-4
    for e in generate(11, "stock", "Q"):
        assert round(e["ap"] - e["bp"], 2) in (0.01, 0.02, 0.03)
    for e in generate(11, "fx", "Q"):
        pip = 0.01 if e["sym"].endswith("JPY") else 0.0001
        assert 0.05 * pip < e["ap"] - e["bp"] < 0.55 * pip


@pytest.mark.parametrize("asset_type", ["crypto", "stock", "fx"])
def test_trades_print_inside_or_at_the_quote(asset_type: str) -> None:
    """Each trade price lies within the instrument's quote at that moment."""
    market = Market(9)
    channels = market.channels("T", "*", asset_type)
    for _ in range(2000):
        (event,) = market.events(channels, 1, T0)
        inst = market.instrument(event["sym"], asset_type)
        assert inst.bid <= event["p"] <= inst.ask


def test_trade_sizes_in_range() -> None:
    """Sizes: crypto small fractional; stocks mostly round lots of 100; fx 100k-5M."""
    crypto = [e["s"] for e in generate(4, "crypto", "T") if e["sym"] == "BTCUSD"]
    assert all(0 < s < 5 for s in crypto)
    assert sum(s < 1 for s in crypto) > 0.9 * len(crypto)
    stock = [e["s"] for e in generate(4, "stock", "T")]
    assert all(isinstance(s, int) and s >= 1 for s in stock)
    round_lots = sum(s % 100 == 0 for s in stock)
    assert 0.6 * len(stock) < round_lots < len(stock)  # mostly round lots, some odd lots
    fx = [e["s"] for e in generate(4, "fx", "T")]
    assert all(100_000 <= s <= 5_000_000 and s % 100_000 == 0 for s in fx)


def test_events_shape_and_timestamps() -> None:
    """Events have the demo wire keys, exchange DEMO, and non-decreasing ms timestamps."""
    market = Market(1)
    channels = market.channels("T", "BTCUSD", "crypto") + market.channels("Q", "*", "fx")
    events = market.events(channels, 500, T0, 15.0)
    assert len(events) == 500
    times = [e["t"] for e in events]
    assert times == sorted(times) and times[0] >= T0 and times[-1] <= T0 + 15
    for e in events:
        keys = {"ev", "sym", "x", "p", "s", "t"} if e["ev"] == "T" else None
        keys = keys or {"ev", "sym", "x", "bp", "bs", "ap", "as", "t"}
        assert set(e) == keys and e["x"] == "DEMO"
    json.dumps(events)  # JSON-serialisable as is


def test_zero_events_and_no_channels() -> None:
    """n=0 or no channels produce an empty list."""
    market = Market(1)
    assert market.events([], 10, T0) == []
    assert market.events(market.channels("T", "*", "crypto"), 0, T0) == []
