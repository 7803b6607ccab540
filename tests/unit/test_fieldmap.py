"""The field-role table: every provider's record fields map to the chart kind a user expects."""

from __future__ import annotations

import pytest

from obbws_jupyter._fieldmap import (
    NOT_TRADE_TYPES,
    default_kind,
    price_source,
    resolve_roles,
)
from obbws_jupyter.exceptions import InvalidParameterError

# Record field names of each provider, as reference §9 lists them (OpenBB's data models).
FEEDS = {
    "demo trade": ("date", "symbol", "type", "exchange", "price", "size"),
    "demo quote": ("date", "symbol", "type", "exchange", "bid", "bid_size", "ask", "ask_size"),
    "tiingo crypto trade": ("date", "symbol", "type", "exchange", "last_size", "last_price"),
    "tiingo fx": (
        "type",
        "symbol",
        "date",
        "bid_size",
        "bid_price",
        "mid_price",
        "ask_price",
        "ask_size",
    ),
    "tiingo iex": (
        "type",
        "date",
        "symbol",
        "bid_size",
        "bid_price",
        "mid_price",
        "ask_price",
        "ask_size",
        "last_price",
        "last_size",
    ),
    "polygon crypto aggs": (
        "type",
        "symbol",
        "date",
        "open",
        "high",
        "low",
        "close",
        "vwap",
        "volume",
        "avg_size",
    ),
    "polygon fx quote": ("symbol", "date", "exchange", "ask", "bid"),
    "polygon crypto quote": ("symbol", "date", "exchange", "bid", "bid_size", "ask", "ask_size"),
    "polygon stock trade": ("symbol", "date", "exchange", "tape", "price", "size", "conditions"),
    "polygon index value": ("symbol", "date", "value"),
    "fmp": (
        "symbol",
        "date",
        "exchange",
        "type",
        "bid_size",
        "bid_price",
        "ask_size",
        "ask_price",
        "last_price",
        "last_size",
    ),
    "intrinio": ("date", "symbol", "type", "price", "size", "exchange", "volume", "conditions"),
}


@pytest.mark.parametrize(
    ("feed", "kind"),
    [
        ("demo trade", "line"),
        ("demo quote", "band"),
        ("tiingo crypto trade", "line"),
        ("tiingo fx", "band"),
        ("tiingo iex", None),
        ("polygon crypto aggs", "candles"),
        ("polygon fx quote", "band"),
        ("polygon crypto quote", "band"),
        ("polygon stock trade", "line"),
        ("polygon index value", "line"),
        ("fmp", None),
        ("intrinio", "line"),
    ],
)
def test_each_provider_feed_gets_its_chart_kind(feed: str, kind: str | None) -> None:
    """Trades give a line, quotes a band, aggregates candles; trades-and-quotes waits for data."""
    assert default_kind(resolve_roles(FEEDS[feed])) == kind


def test_roles_name_the_provider_fields() -> None:
    """The same role resolves to each provider's own field name."""
    tiingo = resolve_roles(FEEDS["tiingo iex"])
    assert (tiingo.price, tiingo.size, tiingo.bid, tiingo.ask) == (
        "last_price",
        "last_size",
        "bid_price",
        "ask_price",
    )
    demo = resolve_roles(FEEDS["demo quote"])
    assert (demo.price, demo.bid, demo.ask) == (None, "bid", "ask")
    aggs = resolve_roles(FEEDS["polygon crypto aggs"])
    assert aggs.has_ohlc and aggs.volume == "volume" and aggs.price is None


def test_quote_sides_are_not_trades() -> None:
    """Intrinio's bid/ask records carry their quote in ``price``: a trade source skips them."""
    source = price_source(resolve_roles(FEEDS["intrinio"]), None)
    assert (source.mode, source.field, source.size) == ("field", "price", "size")
    assert source.skip_quote_types and {"bid", "ask"} <= NOT_TRADE_TYPES


def test_price_sources() -> None:
    """None takes the trade price (else the bars), 'mid' the bid/ask midpoint, a name that field."""
    assert price_source(resolve_roles(FEEDS["polygon crypto aggs"]), None).mode == "bars"
    assert price_source(resolve_roles(FEEDS["demo quote"]), "mid").mode == "mid"
    named = price_source(resolve_roles(FEEDS["tiingo fx"]), "mid_price")
    assert (named.mode, named.field, named.size) == ("field", "mid_price", None)


def test_a_quote_feed_without_trades_is_told_to_use_mid() -> None:
    """Asking a quote feed for trade prices explains price='mid'."""
    with pytest.raises(InvalidParameterError, match=r"no trade price field.*price='mid'"):
        price_source(resolve_roles(FEEDS["demo quote"]), None)


def test_bad_price_names_list_the_fields() -> None:
    """An unknown price field, or 'mid' without bid/ask, is refused with the feed's fields."""
    with pytest.raises(InvalidParameterError, match=r"not a field of this feed.*last_price"):
        price_source(resolve_roles(FEEDS["tiingo crypto trade"]), "close")
    with pytest.raises(InvalidParameterError, match="needs bid and ask"):
        price_source(resolve_roles(FEEDS["demo trade"]), "mid")


def test_a_feed_with_nothing_to_chart_is_refused() -> None:
    """Fields with no price, quote or bar role raise, naming the table to extend."""
    with pytest.raises(InvalidParameterError, match=r"nothing to chart.*ROLE_FIELDS"):
        default_kind(resolve_roles(("date", "symbol", "fair_value")))
