"""CoinbaseSession, sans-I/O: recorded frames (tests/fixtures/coinbase.jsonl) in, exact records,
events and frames to send out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError
from obbws_jupyter.protocol import (
    Authenticated,
    Heartbeat,
    MalformedFrame,
    ProviderMessage,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
)
from obbws_providers.coinbase import PROVIDER, CoinbaseSession, normalize_product
from tests.unit._provider_fixtures import load_frames

F = load_frames("coinbase")


def make(**given: Any) -> CoinbaseSession:
    given.setdefault("symbol", "btc-usd,ETH-USD")
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, CoinbaseSession)
    return session


def connected(**given: Any) -> CoinbaseSession:
    """A session whose connection is open and whose subscription was acknowledged."""
    session = make(**given)
    session.connection_made()
    session.data_to_send()
    session.receive(F["subscriptions"]["text"])
    session.events_received()
    return session


def sent(session: CoinbaseSession) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in session.data_to_send()]


LAST_MATCH = {
    "date": 1415348366913401000,
    "symbol": "BTC-USD",
    "type": "trade",
    "exchange": "COINBASE",
    "price": 400.21,
    "size": 0.1,
    "taker_side": "sell",
    "trade_id": 9,
    "sequence": 42,
}
MATCH = {
    "date": 1415348367028459000,
    "symbol": "BTC-USD",
    "type": "trade",
    "exchange": "COINBASE",
    "price": 400.23,
    "size": 5.23512,
    "taker_side": "buy",
    "trade_id": 10,
    "sequence": 50,
}


def test_connection_made_subscribes_matches_and_heartbeat_at_once() -> None:
    """No login: the subscribe request (data channel + heartbeat) goes out on connect."""
    session = make()
    session.connection_made()
    assert sent(session) == [F["subscribe"]["frame"]]
    assert session.is_authenticated


def test_subscriptions_reply_acknowledges_the_products() -> None:
    """Products newly listed under the data channel are Subscribed."""
    session = make()
    session.connection_made()
    session.data_to_send()
    assert session.receive(F["subscriptions"]["text"]) == []
    assert session.events_received() == [
        Authenticated("public market data: no key needed"),
        Subscribed(("BTC-USD", "ETH-USD"), "subscribed to matches: BTC-USD,ETH-USD"),
    ]


def test_unsubscribe_request_and_the_reply_that_lists_what_remains() -> None:
    """unsubscribe -> the documented request; products gone from the reply are Unsubscribed."""
    session = connected()
    assert session.unsubscribe("eth-usd") == ["ETH-USD"]
    assert sent(session) == [F["unsubscribe"]["frame"]]
    session.receive(F["subscriptions_after_unsubscribe"]["text"])
    assert session.events_received() == [Unsubscribed(("ETH-USD",), "unsubscribed from matches")]
    assert session.acknowledged == ("BTC-USD",)


def test_last_match_and_match_records_are_exact() -> None:
    """last_match and match become trade records; a match's side is the maker's."""
    session = connected()
    assert session.receive(F["last_match"]["text"]) == [LAST_MATCH]
    assert session.receive(F["match"]["text"]) == [MATCH]
    assert session.events_received() == []


def test_a_trade_id_jump_is_a_gap_of_the_missed_trades() -> None:
    """trade_id 10 then 14: three trades missed on BTC-USD; the record is kept."""
    session = connected()
    session.receive(F["match"]["text"])
    (record,) = session.receive(F["match_after_gap"]["text"])
    assert record["trade_id"] == 14 and record["taker_side"] == "sell"
    assert record["date"] == 1415348367500000000
    assert session.events_received() == [SequenceGap(3, "BTC-USD")]


def test_a_duplicate_or_older_match_is_dropped_not_stored_twice() -> None:
    """The same match again (or an older one) gives no record and no gap."""
    session = connected()
    session.receive(F["match"]["text"])
    assert session.receive(F["match_duplicate"]["text"]) == []
    assert session.receive(F["last_match"]["text"]) == []
    assert session.duplicates == 2
    assert session.events_received() == []


def test_after_a_reconnect_a_known_last_match_is_dropped() -> None:
    """Trade ids survive a reconnect: the last_match a resubscribe brings is not stored again."""
    session = connected()
    session.receive(F["match"]["text"])
    session.connection_made()
    session.data_to_send()
    session.receive(F["subscriptions"]["text"])
    again = dict(F["match"]["frame"], type="last_match")
    assert session.receive(json.dumps(again)) == []


def test_an_unsubscribed_product_starts_afresh() -> None:
    """After Unsubscribed, a product's trade ids are forgotten (no false gap or drop)."""
    session = connected()
    session.receive(F["match"]["text"])
    session.unsubscribe("BTC-USD")
    session.receive(json.dumps({"type": "subscriptions", "channels": []}))
    assert session.receive(F["last_match"]["text"]) == [LAST_MATCH]


TICKER = {
    "date": 1666222102061769000,
    "symbol": "ETH-USD",
    "type": "ticker",
    "exchange": "COINBASE",
    "price": 1285.22,
    "size": 11.4396987,
    "bid": 1285.04,
    "bid_size": 0.46688654,
    "ask": 1285.27,
    "ask_size": 1.5663704,
    "taker_side": "buy",
    "trade_id": 370843401,
    "sequence": 37475248783,
    "open_24h": 1310.79,
    "high_24h": 1313.8,
    "low_24h": 1280.52,
    "volume_24h": 245532.79269678,
}


def test_ticker_record_is_exact_and_a_repeat_is_dropped() -> None:
    """ticker -> last trade plus best bid/ask; a sequence not above the last is dropped."""
    session = connected(feed="ticker")
    assert session.receive(F["ticker"]["text"]) == [TICKER]
    assert session.receive(F["ticker"]["text"]) == []
    assert session.duplicates == 1


def test_a_ticker_without_book_sizes_leaves_them_out() -> None:
    """The 2018 ticker (no best_bid_size/best_ask_size) gives a record without those keys."""
    session = connected(feed="ticker")
    (record,) = session.receive(F["ticker_2018"]["text"])
    assert "bid_size" not in record and "ask_size" not in record
    assert record["bid"] == 196.71 and record["taker_side"] == "sell"
    assert record["date"] == 1539472232804000000


def test_a_ticker_without_its_last_trade_keeps_what_it_has() -> None:
    """A ticker without time/side/trade_id/last_size: dated on receipt, those keys absent."""
    session = connected(feed="ticker")
    session._clock = lambda: 1_700_000_000_000_000_000
    bare = {k: v for k, v in F["ticker"]["frame"].items()}
    for key in ("time", "side", "trade_id", "last_size"):
        del bare[key]
    (record,) = session.receive(json.dumps(bare))
    expected = {k: v for k, v in TICKER.items() if k not in ("size", "taker_side", "trade_id")}
    assert record == {**expected, "date": 1_700_000_000_000_000_000}


def test_messages_of_the_other_feed_are_ignored() -> None:
    """A trade connection ignores ticker messages and a ticker one ignores matches."""
    assert connected().receive(F["ticker"]["text"]) == []
    assert connected(feed="ticker").receive(F["match"]["text"]) == []


def test_heartbeat_is_a_sign_of_life() -> None:
    """heartbeat -> a Heartbeat event, no record."""
    session = connected()
    assert session.receive(F["heartbeat"]["text"]) == []
    assert session.events_received() == [Heartbeat()]


def test_invalid_product_is_refused_forgotten_and_the_rest_asked_again() -> None:
    """Coinbase rejects the whole request: refuse that product, re-request the others."""
    session = connected()
    session.subscribe("sol-usd,gibberish-usd")
    session.data_to_send()
    session.receive(F["error_invalid_product"]["text"])
    assert session.events_received() == [
        SubscriptionFailed(
            ("GIBBERISH-USD",),
            "Coinbase: Failed to subscribe: GIBBERISH-USD is not a valid product",
        )
    ]
    assert session.symbols == ("BTC-USD", "ETH-USD", "SOL-USD")
    assert sent(session) == [
        {"type": "subscribe", "product_ids": ["SOL-USD"], "channels": ["matches", "heartbeat"]}
    ]


def test_other_errors_and_unknown_types_are_not_records() -> None:
    """Another error is a provider error message; a status message is ignored."""
    session = connected()
    session.receive(F["error_other"]["text"])
    assert session.receive(F["status"]["text"]) == []
    assert session.events_received() == [
        ProviderMessage("error", "Coinbase: Failed to subscribe: foo is not a valid channel")
    ]


@pytest.mark.parametrize(
    "name", ["match_missing_fields", "match_string_trade_id", "not_json", "array"]
)
def test_a_bad_frame_is_reported_not_raised(name: str) -> None:
    """A frame that cannot be read becomes one MalformedFrame event and no record."""
    session = connected()
    assert session.receive(F[name]["text"]) == []
    (event,) = session.events_received()
    assert isinstance(event, MalformedFrame)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2014-11-07T08:19:27.028459Z", 1415348367028459000),
        ("2014-11-07T08:19:27.5Z", 1415348367500000000),
        ("2014-11-07T08:19:27Z", 1415348367000000000),
        ("2014-11-07T08:19:27.028459123Z", 1415348367028459123),
        ("2014-11-07T08:19:27.028+00:00", 1415348367028000000),
    ],
)
def test_times_of_every_precision(text: str, ns: int) -> None:
    """Coinbase times with 0-9 fraction digits (and an explicit offset) -> int ns UTC."""
    assert make()._time(text) == ns


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("BTC-USD", "BTC-USD"),
        ("btc-usd", "BTC-USD"),
        ("btc/usd", "BTC-USD"),
        ("eth_btc", "ETH-BTC"),
        ("btcusd", "BTC-USD"),
        ("btcusdt", "BTC-USDT"),
        ("ethbtc", "ETH-BTC"),
    ],
)
def test_products_map_to_coinbase_ids(given: str, expected: str) -> None:
    """Dashes, slashes and a known quote currency at the end give BTC-USD style ids."""
    assert normalize_product(given) == expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("ethpyusd", "ambiguous \\(ETHPY-USD or ETH-PYUSD\\)"),
        ("btcxyz", "invalid product"),
        ("-usd", "invalid product"),
    ],
)
def test_unclear_products_are_refused_before_connecting(bad: str, message: str) -> None:
    """An ambiguous or malformed product raises SymbolError saying how to write it."""
    with pytest.raises(SymbolError, match=message):
        make(symbol=bad)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"feed": "quote"}, "choose one of trade, ticker"),
        ({"asset_type": "fx"}, "choose one of crypto"),
        ({"api_key": "k"}, "unknown parameter"),
        ({"url": "https://x"}, "url must start with ws:// or wss://"),
    ],
)
def test_parameters_are_checked_before_anything_starts(given: dict[str, Any], message: str) -> None:
    """Unknown or refused parameters raise InvalidParameterError naming the fix."""
    with pytest.raises(InvalidParameterError, match=message):
        make(**given)


def test_default_url_and_ticker_channel() -> None:
    """The real feed by default; feed=ticker subscribes the ticker channel."""
    session = make(feed="ticker")
    assert session.url() == "wss://ws-feed.exchange.coinbase.com"
    session.connection_made()
    assert sent(session)[0]["channels"] == ["ticker", "heartbeat"]
