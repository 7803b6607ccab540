"""TiingoSession, sans-I/O: the frames of tests/fixtures/tiingo.jsonl in, exact records, events
and frames to send out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError
from obbws_jupyter.protocol import (
    Authenticated,
    AuthFailed,
    Heartbeat,
    MalformedFrame,
    ProviderFailed,
    ProviderMessage,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
    iso_to_ns,
)
from obbws_providers.tiingo import (
    CRYPTO_FIELDS,
    CRYPTO_TRADE_FIELDS,
    FX_FIELDS,
    IEX_FIELDS,
    IEX_REFERENCE_FIELDS,
    PROVIDER,
    TiingoSession,
    _IsoClock,
)
from tests.provider_fixtures import load_fixture

WIRE = load_fixture("tiingo")
KEY = "<KEY>"  # the fixture's placeholder, so sent frames compare equal to the fixture


def make(**given: Any) -> TiingoSession:
    given.setdefault("symbol", "btcusd,ethusd")
    given.setdefault("api_key", KEY)
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, TiingoSession)
    return session


def sent(session: TiingoSession) -> list[Any]:
    return [json.loads(frame) for frame in session.data_to_send()]


def authorized(**given: Any) -> TiingoSession:
    """A session whose first subscribe was answered with a subscription id and tickers."""
    session = make(**given)
    session.connection_made()
    session.data_to_send()
    session.receive(WIRE["info_subscription_id"].frame)
    session.receive(WIRE["info_tickers_crypto"].frame)
    session.events_received()
    return session


def records_of(name: str, **given: Any) -> list[dict[str, Any]]:
    session = make(**given)
    records = session.receive(WIRE[name].frame)
    assert session.events_received() == []
    return records


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "level", "fields"),
    [
        ({}, 5, CRYPTO_TRADE_FIELDS),
        ({"asset_type": "crypto", "feed": "trade_and_quote"}, 2, CRYPTO_FIELDS),
        ({"asset_type": "stock"}, 5, IEX_FIELDS),
        ({"asset_type": "stock", "feed": "trade_and_quote"}, 0, IEX_FIELDS),
        ({"asset_type": "stock", "threshold_level": 6}, 6, IEX_REFERENCE_FIELDS),
        ({"asset_type": "fx"}, 5, FX_FIELDS),
        ({"asset_type": "fx", "feed": "quote"}, 5, FX_FIELDS),
        ({"asset_type": "fx", "feed": "trade_and_quote"}, 5, FX_FIELDS),
        ({"asset_type": "crypto", "feed": "trade", "threshold_level": "2"}, 2, CRYPTO_FIELDS),
    ],
)
def test_threshold_level_and_record_model_follow_asset_type_and_feed(
    given: dict[str, Any], level: int, fields: tuple[Any, ...]
) -> None:
    """OpenBB's level rule (5 fx or trade, 2 crypto quotes, 0 stock quotes) or the override."""
    session = make(**given)
    assert session.threshold == level
    assert session.fields == fields
    session.connection_made()
    assert sent(session)[0]["eventData"]["thresholdLevel"] == level


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"asset_type": "fx", "feed": "trade"}, "FX only supports quote feed."),
        ({"asset_type": "crypto", "feed": "quote"}, "no quote-only stream"),
        ({"asset_type": "bond"}, "choose one of stock, fx, crypto"),
        ({"feed": "level2"}, "choose one of trade, trade_and_quote, quote"),
        ({"asset_type": "crypto", "threshold_level": 0}, "choose one of 2, 5"),
        ({"asset_type": "fx", "threshold_level": 6}, "choose one of 5"),
        ({"threshold_level": "high"}, "must be int"),
        ({"url": "https://api.tiingo.com"}, "ws:// or wss://"),
    ],
)
def test_bad_parameters_are_refused_with_the_valid_choices(
    given: dict[str, Any], match: str
) -> None:
    """Refused values and combinations raise InvalidParameterError saying what is valid."""
    given = {"symbol": "btcusd", "api_key": "k", **given}
    with pytest.raises(InvalidParameterError, match=match):
        PROVIDER.resolve(given, {})


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ({}, "wss://api.tiingo.com/crypto"),
        ({"asset_type": "stock"}, "wss://api.tiingo.com/iex"),
        ({"asset_type": "fx"}, "wss://api.tiingo.com/fx"),
        ({"asset_type": "fx", "url": "ws://127.0.0.1:9"}, "ws://127.0.0.1:9/fx"),
        ({"asset_type": "stock", "url": "ws://127.0.0.1:9/"}, "ws://127.0.0.1:9/iex"),
        ({"url": "ws://127.0.0.1:9/custom/path"}, "ws://127.0.0.1:9/custom/path"),
    ],
)
def test_url_per_asset_type_and_override(given: dict[str, Any], url: str) -> None:
    """Each asset type has its endpoint; url= replaces the host (a given path is kept)."""
    assert make(**given).url() == url


@pytest.mark.parametrize(
    ("asset_type", "given", "wire"),
    [
        ("crypto", "BTC-USD, eth/usd,SOLUSD", ("btcusd", "ethusd", "solusd")),
        ("fx", "EUR/USD,usdjpy", ("eurusd", "usdjpy")),
        ("stock", "AAPL,brk-b,BRK.A", ("aapl", "brk-b", "brk.a")),
        ("crypto", "*", ("*",)),
    ],
)
def test_symbols_are_lower_cased_for_the_wire(
    asset_type: str, given: str, wire: tuple[str, ...]
) -> None:
    """Symbols go out lower-case; pair separators are dropped; * means all tickers."""
    session = make(asset_type=asset_type, symbol=given)
    assert session.symbols == wire
    session.connection_made()
    assert sent(session)[0]["eventData"]["tickers"] == list(wire)


@pytest.mark.parametrize(("asset_type", "symbol"), [("crypto", "btc usd"), ("stock", "$aapl")])
def test_invalid_symbols_raise_symbol_error(asset_type: str, symbol: str) -> None:
    """A symbol Tiingo cannot take is refused before anything is sent."""
    with pytest.raises(SymbolError, match="invalid"):
        make(asset_type=asset_type, symbol=symbol)


# -- frames sent, authentication, acknowledgements -----------------------------------------------


def test_first_frame_authenticates_and_subscribes_every_ticker() -> None:
    """The connection opens with one subscribe carrying the key, level and tickers."""
    session = make()
    session.connection_made()
    assert sent(session) == [WIRE["subscribe"].value]


def test_subscription_id_authenticates_without_a_second_subscribe() -> None:
    """I with a subscriptionId -> Authenticated; the tickers are not sent twice."""
    session = make()
    session.connection_made()
    session.data_to_send()
    assert session.receive(WIRE["info_subscription_id"].frame) == []
    assert session.events_received() == [Authenticated("tiingo: Success")]
    assert session.is_authenticated and session.subscription_id == 2563396
    assert session.data_to_send() == []


def test_tickers_reply_acknowledges_the_subscription() -> None:
    """I listing the tickers -> Subscribed with the symbols it names."""
    session = make()
    session.connection_made()
    session.receive(WIRE["info_subscription_id"].frame)
    session.events_received()
    session.receive(WIRE["info_tickers_crypto"].frame)
    assert session.events_received() == [
        Subscribed(("btcusd", "ethusd"), "subscribed with threshold level 5")
    ]
    assert session.acknowledged == ("btcusd", "ethusd")


def test_wildcard_reply_acknowledges_star() -> None:
    """The captured reply listing * acknowledges a * subscription."""
    session = make(asset_type="stock", symbol="*,msft", feed="trade_and_quote")
    session.connection_made()
    session.receive(WIRE["info_subscription_id"].frame)
    session.receive(WIRE["info_tickers"].frame)
    assert session.events_received()[-1] == Subscribed(
        ("*", "msft"), "subscribed with threshold level 0"
    )


def test_updates_use_the_subscription_id_on_the_same_connection() -> None:
    """subscribe/unsubscribe after authorization send updates keyed by the subscription id."""
    session = authorized()
    assert session.subscribe("SOL-USD") == ["solusd"]
    assert sent(session) == [WIRE["update_subscribe"].value]
    assert session.unsubscribe("ethusd") == ["ethusd"]
    assert sent(session) == [WIRE["update_unsubscribe"].value]


def test_update_replies_acknowledge_subscribe_and_unsubscribe() -> None:
    """Replies to updates, in order: Subscribed for the added ticker, Unsubscribed for the
    removed one."""
    session = authorized()
    session.subscribe("solusd")
    session.receive(
        WIRE["info_tickers_after_update"].frame.replace('"btcusd"', '"btcusd","ethusd"')
    )
    assert session.events_received() == [
        Subscribed(("btcusd", "ethusd", "solusd"), "subscribed with threshold level 5")
    ]
    session.unsubscribe("ethusd")
    session.receive(WIRE["info_tickers_after_update"].frame)
    assert session.events_received() == [Unsubscribed(("ethusd",), "Success")]
    assert session.acknowledged == ("btcusd", "solusd")


def test_ticker_missing_from_the_reply_is_a_failed_subscription() -> None:
    """A subscribed ticker that the reply does not list is reported as refused."""
    session = authorized()
    session.subscribe("zzzusd")
    session.receive(WIRE["info_tickers_crypto"].frame)
    events = session.events_received()
    assert isinstance(events[-1], SubscriptionFailed)
    assert events[-1].symbols == ("zzzusd",)


def test_refused_update_fails_the_symbols_it_asked_for() -> None:
    """E 400 after an update -> SubscriptionFailed for that update's tickers; stream goes on."""
    session = authorized()
    session.subscribe("solusd")
    session.data_to_send()
    session.receive(WIRE["error_400"].frame)
    assert session.events_received() == [
        SubscriptionFailed(("solusd",), "Tiingo error 400: Invalid subscriptionId: 1")
    ]


def test_symbols_added_before_authorization_go_out_as_an_update() -> None:
    """A symbol subscribed while the first reply is pending is sent once authorized."""
    session = make()
    session.connection_made()
    session.data_to_send()
    session.subscribe("solusd")
    assert session.data_to_send() == []
    session.receive(WIRE["info_subscription_id"].frame)
    assert sent(session) == [WIRE["update_subscribe"].value]


def test_reconnect_resubscribes_every_wanted_ticker_in_the_first_frame() -> None:
    """A new connection's first frame carries the later subscriptions too (OpenBB lost them)."""
    session = authorized()
    session.subscribe("solusd")
    session.unsubscribe("ethusd")
    session.data_to_send()
    session.connection_made()
    assert session.subscription_id is None and not session.is_authenticated
    first = sent(session)
    assert first == [
        {
            "eventName": "subscribe",
            "authorization": KEY,
            "eventData": {"thresholdLevel": 5, "tickers": ["btcusd", "solusd"]},
        }
    ]
    session.receive(WIRE["info_subscription_id"].frame)
    assert session.data_to_send() == []


# -- errors, heartbeats, other messages -----------------------------------------------------------


def test_rejected_key_is_an_auth_failure() -> None:
    """E 401 -> AuthFailed (fatal credentials error)."""
    session = make()
    session.connection_made()
    assert session.receive(WIRE["error_401"].frame) == []
    assert session.events_received() == [AuthFailed("Tiingo: Authorization failed (HTTP 401)")]


def test_service_not_in_the_plan_is_fatal() -> None:
    """E 403 "Not authorized for service" -> ProviderFailed(retry=False) naming the plan."""
    session = make()
    session.connection_made()
    session.receive(WIRE["error_403"].frame)
    [event] = session.events_received()
    assert isinstance(event, ProviderFailed) and not event.retry
    assert "Not authorized for service: boats" in event.message and "plan" in event.message


def test_server_error_asks_for_a_reconnect() -> None:
    """E 5xx -> ProviderFailed(retry=True)."""
    session = authorized()
    session.receive(WIRE["error_500"].frame)
    assert session.events_received() == [
        ProviderFailed("Tiingo error 500: Internal server error", retry=True)
    ]


def test_refused_first_subscribe_is_fatal() -> None:
    """An error answering the first subscribe (before any subscription id) ends the stream."""
    session = make()
    session.connection_made()
    session.receive(WIRE["error_400"].frame)
    assert session.events_received() == [
        ProviderFailed("Tiingo refused the subscription: Invalid subscriptionId: 1 (400)", False)
    ]


def test_heartbeat_and_informational_messages() -> None:
    """H -> Heartbeat; other I and U messages are logged, not data."""
    session = authorized()
    assert session.receive(WIRE["heartbeat"].frame) == []
    assert session.receive(WIRE["info_other"].frame) == []
    assert session.receive(WIRE["update_message"].frame) == []
    events = session.events_received()
    assert events[0] == Heartbeat()
    assert events[1] == ProviderMessage("info", "tiingo: Subscription updated")
    assert isinstance(events[2], ProviderMessage) and "'U'" in events[2].message


# -- data records ---------------------------------------------------------------------------------

IEX_EMPTY_QUOTE = dict.fromkeys(("bid_size", "bid_price", "mid_price", "ask_price", "ask_size"))


def test_iex_trade_record() -> None:
    """The captured IEX trade: date from the epoch-ns field, symbol upper-case, flags as bools."""
    assert records_of("iex_trade", asset_type="stock") == [
        {
            "date": 1548873225594808294,
            "symbol": "WES",
            "type": "trade",
            **IEX_EMPTY_QUOTE,
            "last_price": 50.285,
            "last_size": 200,
            "halted": False,
            "after_hours": False,
            "sweep_order": False,
            "oddlot": False,
            "nms_rule": False,
        }
    ]


def test_iex_quote_record() -> None:
    """An IEX quote: askPrice comes before askSize in the IEX array."""
    assert records_of("iex_quote", asset_type="stock") == [
        {
            "date": 1548873225383129126,
            "symbol": "AAPL",
            "type": "quote",
            "bid_size": 100,
            "bid_price": 165.11,
            "mid_price": 165.12,
            "ask_price": 165.13,
            "ask_size": 300,
            "last_price": None,
            "last_size": None,
            "halted": False,
            "after_hours": False,
            "sweep_order": None,
            "oddlot": None,
            "nms_rule": None,
        }
    ]


def test_iex_break_and_iso_date_fallback() -> None:
    """B is a trade break; without the epoch field the ISO date (with its offset) is used."""
    [brk] = records_of("iex_break", asset_type="stock")
    assert brk["type"] == "break" and brk["date"] == 1548882301000000001
    assert brk["after_hours"] is True and brk["oddlot"] is True
    [trade] = records_of("iex_no_epoch", asset_type="stock")
    assert trade["date"] == 1548873225594808294
    assert (trade["halted"], trade["sweep_order"], trade["nms_rule"]) == (True, True, True)


def test_iex_reference_price_record() -> None:
    """thresholdLevel 6 sends [date, ticker, price]: a reference record."""
    assert records_of("iex_reference", asset_type="stock", threshold_level=6) == [
        {
            "date": 1741014900123456789,
            "symbol": "AAPL",
            "type": "reference",
            "reference_price": 238.42,
        }
    ]


def test_crypto_trade_record() -> None:
    """A crypto trade: the columns OpenBB names (date, symbol, type, exchange, last_*)."""
    assert records_of("crypto_trade") == [
        {
            "date": 1734040670164993000,
            "symbol": "BTCUSD",
            "type": "trade",
            "exchange": "gdax",
            "last_price": 99818.08814355676,
            "last_size": 0.01445296,
        }
    ]


def test_crypto_quote_record() -> None:
    """A crypto quote: [.., bidSize, bidPrice, midPrice, askSize, askPrice]."""
    assert records_of("crypto_quote", feed="trade_and_quote") == [
        {
            "date": 1734040670200000000,
            "symbol": "ETHUSD",
            "type": "quote",
            "exchange": "binance",
            "bid_size": 12.5,
            "bid_price": 3890.1,
            "mid_price": 3890.15,
            "ask_price": 3890.2,
            "ask_size": 7.25,
        }
    ]


def test_fx_quote_puts_ask_size_before_ask_price() -> None:
    """The FX array's 7th element is the ask size, the 8th the ask price (OpenBB swapped them)."""
    assert records_of("fx_quote", asset_type="fx") == [
        {
            "date": 1562341755157000000,
            "symbol": "EURNOK",
            "type": "quote",
            "bid_size": 5000000.0,
            "bid_price": 9.6764,
            "mid_price": 9.678135,
            "ask_price": 9.67987,
            "ask_size": 2000000.0,
        }
    ]


def test_records_only_use_the_connection_fields() -> None:
    """Every record's keys are columns of its connection's record model."""
    cases = {
        "crypto_trade": {},
        "crypto_quote": {"feed": "trade_and_quote"},
        "fx_quote": {"asset_type": "fx"},
        "iex_trade": {"asset_type": "stock"},
        "iex_quote": {"asset_type": "stock", "feed": "trade_and_quote"},
        "iex_reference": {"asset_type": "stock", "threshold_level": 6},
    }
    for name, given in cases.items():
        session = make(**given)
        names = {f.name for f in session.fields}
        [record] = session.receive(WIRE[name].frame)
        assert set(record) <= names, name
        assert isinstance(record["date"], int)


@pytest.mark.parametrize(
    "name", ["bad_json", "bad_array", "bad_service", "bad_crypto_type", "bad_short_array"]
)
def test_bad_frames_are_reported_not_raised(name: str) -> None:
    """A frame the session cannot read becomes a MalformedFrame event; parsing goes on."""
    session = authorized()
    assert session.receive(WIRE[name].frame) == []
    [event] = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert len(session.receive(WIRE["crypto_trade"].frame)) == 1


@pytest.mark.parametrize(
    "text",
    [
        "2024-12-12T21:57:50.164993+00:00",
        "2024-12-12T21:57:50.164993123+00:00",
        "2019-01-30T13:33:45.594808294-05:00",
        "2024-12-12T21:57:50+00:00",
        "2024-12-12T21:57:50.5Z",
        "2024-03-10T01:59:59.999-05:00",
    ],
)
def test_cached_iso_clock_matches_the_kit(text: str) -> None:
    """The per-second cache gives the kit's iso_to_ns value, called once or twice."""
    clock = _IsoClock()
    assert clock(text) == iso_to_ns(text)
    assert clock(text) == iso_to_ns(text)
