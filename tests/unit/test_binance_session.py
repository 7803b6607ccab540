"""BinanceSession, sans-I/O: recorded frames (tests/fixtures/binance.jsonl) in, exact records,
events and frames to send out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError
from obbws_jupyter.protocol import (
    Authenticated,
    MalformedFrame,
    ProviderFailed,
    ProviderMessage,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
)
from obbws_providers.binance import PROVIDER, BinanceSession, stream_name
from tests.unit._provider_fixtures import load_frames

F = load_frames("binance")
T_NS = 1672515782136 * 1_000_000


def make(**given: Any) -> BinanceSession:
    given.setdefault("symbol", "btcusdt,ethusdt")
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, BinanceSession)
    return session


def connected(**given: Any) -> BinanceSession:
    """A session whose connection is open and whose first SUBSCRIBE was acknowledged."""
    session = make(**given)
    session.connection_made()
    session.data_to_send()
    session.receive(F["subscribe_ack"]["text"])
    session.events_received()
    return session


def sent(session: BinanceSession) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in session.data_to_send()]


def test_connection_made_subscribes_every_symbol_in_one_request() -> None:
    """No login: the open connection is ready, and one SUBSCRIBE carries all streams."""
    session = make()
    session.connection_made()
    assert sent(session) == [F["subscribe"]["frame"]]
    assert session.is_authenticated


def test_subscribe_ack_acknowledges_the_request_symbols() -> None:
    """{"result": null, "id": 1} acknowledges the symbols of request 1."""
    session = make()
    session.connection_made()
    session.data_to_send()
    assert session.receive(F["subscribe_ack"]["text"]) == []
    events = session.events_received()
    assert events[0] == Authenticated("public market data: no key needed")
    assert events[1] == Subscribed(
        ("BTCUSDT", "ETHUSDT"), "SUBSCRIBE BTCUSDT,ETHUSDT acknowledged (id 1)"
    )
    assert session.acknowledged == ("BTCUSDT", "ETHUSDT")


def test_unsubscribe_sends_the_request_and_its_ack_is_unsubscribed() -> None:
    """unsubscribe -> the documented UNSUBSCRIBE frame; its ack -> Unsubscribed."""
    session = connected()
    assert session.unsubscribe("ethusdt") == ["ETHUSDT"]
    assert sent(session) == [F["unsubscribe"]["frame"]]
    session.receive(F["unsubscribe_ack"]["text"])
    assert session.events_received() == [
        Unsubscribed(("ETHUSDT",), "UNSUBSCRIBE ETHUSDT acknowledged (id 2)")
    ]
    assert session.acknowledged == ("BTCUSDT",)


def test_later_subscribe_uses_the_next_id_and_is_refused_by_an_error_reply() -> None:
    """A SUBSCRIBE answered {"error": {...}, "id": N} is a SubscriptionFailed for its symbols."""
    session = connected()
    session.subscribe("solusdt,xrpusdt")
    assert sent(session) == [
        {"method": "SUBSCRIBE", "params": ["solusdt@trade", "xrpusdt@trade"], "id": 2}
    ]
    session.receive(
        json.dumps({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 2})
    )
    assert session.events_received() == [
        SubscriptionFailed(
            ("SOLUSDT", "XRPUSDT"), "Binance error 2: Invalid request: invalid stream"
        )
    ]


def test_error_and_list_replies_without_a_pending_subscribe_are_messages() -> None:
    """The flat documented error form and replies to unknown ids are logged messages."""
    session = connected()
    session.receive(F["error_flat"]["text"])
    session.receive(F["error_reply"]["text"])
    session.receive(F["list_subscriptions_reply"]["text"])
    assert session.events_received() == [
        ProviderMessage(
            "error", "Binance error 2: Invalid request: request ID must be an unsigned integer"
        ),
        ProviderMessage("error", "Binance error 2: Invalid request: invalid stream"),
        ProviderMessage("info", "reply to request 3: {'result': ['btcusdt@aggTrade'], 'id': 3}"),
    ]


TRADE_RECORD = {
    "date": T_NS,
    "symbol": "BNBBTC",
    "type": "trade",
    "exchange": "BINANCE",
    "price": 0.001,
    "size": 100.0,
    "trade_id": 12345,
    "buyer_is_maker": True,
    "taker_side": "sell",
}


@pytest.mark.parametrize("name", ["trade", "trade_raw"])
def test_trade_combined_and_raw_give_the_same_exact_record(name: str) -> None:
    """The combined wrapper and the raw /ws event parse to one record, exactly."""
    session = connected()
    assert session.receive(F[name]["text"]) == [TRADE_RECORD]
    assert session.events_received() == []


def test_binance_us_records_name_their_exchange() -> None:
    """region="us" connects to stream.binance.us and stamps BINANCE.US."""
    session = connected(region="us")
    assert session.url() == "wss://stream.binance.us:9443/stream"
    assert session.receive(F["trade"]["text"]) == [{**TRADE_RECORD, "exchange": "BINANCE.US"}]


def test_agg_trade_record() -> None:
    """aggTrade -> one record with the aggregate and first/last trade ids."""
    session = connected(feed="agg_trade")
    assert session.receive(F["agg_trade"]["text"]) == [
        {
            "date": T_NS,
            "symbol": "BNBBTC",
            "type": "agg_trade",
            "exchange": "BINANCE",
            "price": 0.001,
            "size": 100.0,
            "agg_trade_id": 12345,
            "first_trade_id": 100,
            "last_trade_id": 105,
            "buyer_is_maker": True,
            "taker_side": "sell",
        }
    ]


@pytest.mark.parametrize("name", ["book_ticker", "book_ticker_raw"])
def test_book_ticker_record_is_dated_on_receipt(name: str) -> None:
    """bookTicker has no time: the record's date is the session clock at receipt."""
    session = connected(feed="book_ticker")
    session._clock = lambda: 1_700_000_000_123_456_789
    assert session.receive(F[name]["text"]) == [
        {
            "date": 1_700_000_000_123_456_789,
            "symbol": "BNBUSDT",
            "type": "quote",
            "exchange": "BINANCE",
            "bid": 25.3519,
            "bid_size": 31.21,
            "ask": 25.3652,
            "ask_size": 40.66,
            "update_id": 400900217,
        }
    ]


def test_kline_record_with_vwap() -> None:
    """kline -> the bar (open time as date), vwap = quote volume / volume, closed flag."""
    session = connected(feed="kline", interval="1m")
    assert session.receive(F["kline"]["text"]) == [
        {
            "date": 1672515780000 * 1_000_000,
            "symbol": "BNBBTC",
            "type": "kline",
            "exchange": "BINANCE",
            "interval": "1m",
            "open": 0.001,
            "high": 0.0025,
            "low": 0.0015,
            "close": 0.002,
            "volume": 1000.0,
            "vwap": 0.001,
            "quote_volume": 1.0,
            "trades": 100,
            "closed": False,
        }
    ]


def test_events_of_another_stream_type_are_ignored() -> None:
    """A kline connection keeps only kline events (and a trade one only trades)."""
    kline = connected(feed="kline")
    assert kline.receive(F["trade"]["text"]) == []
    trade = connected()
    assert trade.receive(F["kline"]["text"]) == []
    assert trade.receive(F["book_ticker"]["text"]) == []
    assert kline.events_received() == trade.events_received() == []


@pytest.mark.parametrize("name", ["server_shutdown", "server_shutdown_raw"])
def test_server_shutdown_asks_for_a_reconnect(name: str) -> None:
    """serverShutdown -> ProviderFailed(retry=True): the driver reconnects at once."""
    session = connected()
    assert session.receive(F[name]["text"]) == []
    assert session.events_received() == [
        ProviderFailed("Binance announced a server shutdown; reconnecting", retry=True)
    ]


@pytest.mark.parametrize("name", ["trade_missing_fields", "not_json", "array", "unknown_object"])
def test_a_bad_frame_is_reported_not_raised(name: str) -> None:
    """A frame that cannot be read becomes one MalformedFrame event and no record."""
    session = connected()
    assert session.receive(F[name]["text"]) == []
    (event,) = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert event.excerpt == F[name]["text"][:200]


def test_reconnect_resubscribes_the_whole_set_in_one_request() -> None:
    """A new connection sends one SUBSCRIBE with every wanted symbol (added ones too)."""
    session = connected()
    session.subscribe("solusdt")
    session.data_to_send()
    session.connection_made()
    assert sent(session) == [
        {
            "method": "SUBSCRIBE",
            "params": ["btcusdt@trade", "ethusdt@trade", "solusdt@trade"],
            "id": 3,
        }
    ]
    assert session.acknowledged == ()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("btcusdt", "BTCUSDT"),
        ("BTC-USDT", "BTCUSDT"),
        ("btc/usdt", "BTCUSDT"),
        ("eth_btc", "ETHBTC"),
    ],
)
def test_symbols_are_upper_case_in_records_and_lower_case_in_streams(
    given: str, expected: str
) -> None:
    """Separators are dropped; the stream name is the lower-case symbol."""
    assert make().normalize([given]) == [expected]
    assert stream_name(expected, "book_ticker") == f"{expected.lower()}@bookTicker"


@pytest.mark.parametrize("bad", ["b", "btc@usdt", "x" * 21, "btc.usdt"])
def test_invalid_symbols_are_refused_before_connecting(bad: str) -> None:
    """A symbol Binance cannot take raises SymbolError naming it."""
    with pytest.raises(SymbolError, match="binance: invalid symbol"):
        make(symbol=bad)


def test_kline_stream_names_carry_the_interval() -> None:
    """feed=kline subscribes <symbol>@kline_<interval>; 1M (a month) keeps its case."""
    session = make(symbol="btcusdt", feed="kline", interval="1M")
    session.connection_made()
    assert sent(session)[0]["params"] == ["btcusdt@kline_1M"]
    assert session.stale_after == 30.0
    assert make().stale_after is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"feed": "depth"}, "choose one of trade, agg_trade, book_ticker, kline"),
        ({"feed": "kline", "interval": "2m"}, "not a Binance kline interval"),
        ({"feed": "trade", "interval": "1m"}, "interval applies to feed='kline' only"),
        ({"region": "eu"}, "choose one of com, us"),
        ({"asset_type": "stock"}, "choose one of crypto"),
        ({"api_key": "k"}, "unknown parameter"),
        ({"url": "http://x"}, "url must start with ws:// or wss://"),
        ({"symbol": ",".join(f"s{i:03d}usdt" for i in range(1025))}, "at most 1024 streams"),
    ],
)
def test_parameters_are_checked_before_anything_starts(given: dict[str, Any], message: str) -> None:
    """Unknown or refused parameters raise InvalidParameterError naming the fix."""
    with pytest.raises(InvalidParameterError, match=message):
        make(**given)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "wss://stream.binance.com:9443/stream"),
        ("ws://127.0.0.1:9", "ws://127.0.0.1:9/stream"),
        ("ws://127.0.0.1:9/", "ws://127.0.0.1:9/stream"),
        ("ws://127.0.0.1:9/ws", "ws://127.0.0.1:9/ws"),
        ("ws://127.0.0.1:9/stream", "ws://127.0.0.1:9/stream"),
    ],
)
def test_url_defaults_to_combined_streams(url: str | None, expected: str) -> None:
    """The default (and a bare url=) is /stream; an explicit /ws path is kept."""
    assert make(url=url).url() == expected
