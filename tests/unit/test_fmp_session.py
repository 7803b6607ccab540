"""FmpSession, sans-I/O: the frames of tests/fixtures/fmp.jsonl in, exact records, events and
frames to send out."""

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
)
from obbws_providers.fmp import FIELDS, PROVIDER, FmpSession
from tests.provider_fixtures import load_fixture

WIRE = load_fixture("fmp")
KEY = "<KEY>"  # the fixture's placeholder, so sent frames compare equal to the fixture


def make(**given: Any) -> FmpSession:
    given.setdefault("symbol", "btcusd,ethusd")
    given.setdefault("api_key", KEY)
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, FmpSession)
    return session


def sent(session: FmpSession) -> list[Any]:
    return [json.loads(frame) for frame in session.data_to_send()]


def logged_in(**given: Any) -> FmpSession:
    """A session that logged in and had its first subscription acknowledged."""
    session = make(**given)
    session.connection_made()
    session.receive(WIRE["login_ok"].frame)
    session.receive(WIRE["subscribed"].frame)
    session.data_to_send()
    session.events_received()
    return session


def records_of(name: str, **given: Any) -> list[dict[str, Any]]:
    session = make(**given)
    records = session.receive(WIRE[name].frame)
    assert session.events_received() == []
    return records


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ({}, "wss://crypto.financialmodelingprep.com"),
        ({"asset_type": "stock"}, "wss://websockets.financialmodelingprep.com"),
        ({"asset_type": "fx"}, "wss://forex.financialmodelingprep.com"),
        ({"asset_type": "fx", "url": "ws://127.0.0.1:9/fx"}, "ws://127.0.0.1:9/fx"),
    ],
)
def test_url_per_asset_type_and_override(given: dict[str, Any], url: str) -> None:
    """Each asset type has its own host; url= is used as given."""
    session = make(**given)
    assert session.url() == url
    assert session.fields == FIELDS


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"asset_type": "bond"}, "choose one of stock, fx, crypto"),
        ({"url": "http://x"}, "ws:// or wss://"),
        ({"feed": "trade"}, "unknown parameter"),
    ],
)
def test_bad_parameters_are_refused(given: dict[str, Any], match: str) -> None:
    """Unknown values and parameters raise InvalidParameterError naming what is valid."""
    with pytest.raises(InvalidParameterError, match=match):
        PROVIDER.resolve({"symbol": "btcusd", "api_key": "k", **given}, {})


@pytest.mark.parametrize(
    ("asset_type", "given", "wire"),
    [
        ("crypto", "BTC/USD, eth-usd", ("btcusd", "ethusd")),
        ("fx", "EURUSD", ("eurusd",)),
        ("stock", "AAPL,BRK.B,^gspc", ("aapl", "brk.b", "^gspc")),
    ],
)
def test_symbols_are_lower_cased_for_the_wire(
    asset_type: str, given: str, wire: tuple[str, ...]
) -> None:
    """Symbols go out lower-case; pair separators are dropped."""
    session = make(asset_type=asset_type, symbol=given)
    assert session.symbols == wire
    session.connection_made()
    session.data_to_send()
    session.receive(WIRE["login_ok"].frame)
    assert sent(session) == [{"event": "subscribe", "data": {"ticker": list(wire)}}]


@pytest.mark.parametrize("symbol", ["*", "btc usd", "x"])
def test_invalid_symbols_raise_symbol_error(symbol: str) -> None:
    """FMP has no wildcard; malformed tickers are refused before anything is sent."""
    with pytest.raises(SymbolError, match="invalid crypto symbol"):
        make(symbol=symbol)


# -- login, acknowledgements, refusals ------------------------------------------------------------


def test_login_then_subscribe() -> None:
    """The connection opens with the login frame; a login reply authenticates and subscribes."""
    session = make()
    session.connection_made()
    assert sent(session) == [WIRE["login"].value]
    assert session.receive(WIRE["login_ok"].frame) == []
    assert session.events_received() == [Authenticated("fmp: Authenticated")]
    assert sent(session) == [WIRE["subscribe"].value]


def test_subscribe_acknowledgement_names_the_symbols() -> None:
    """The subscribe ack -> Subscribed with the tickers it names."""
    session = make()
    session.connection_made()
    session.receive(WIRE["login_ok"].frame)
    session.events_received()
    session.receive(WIRE["subscribed"].frame)
    assert session.events_received() == [
        Subscribed(("btcusd", "ethusd"), "Subscribed to btcusd,ethusd")
    ]
    assert session.acknowledged == ("btcusd", "ethusd")


def test_ack_without_names_resolves_the_oldest_request() -> None:
    """An ack that names no ticker acknowledges the oldest pending subscribe."""
    session = make()
    session.connection_made()
    session.receive(WIRE["login_ok"].frame)
    session.events_received()
    session.receive(WIRE["subscribed_unnamed"].frame)
    assert session.events_received() == [Subscribed(("btcusd", "ethusd"), "OK")]


def test_unsubscribe_frame_and_acknowledgement() -> None:
    """unsubscribe sends data.ticker; its ack -> Unsubscribed."""
    session = logged_in()
    assert session.unsubscribe("ETHUSD") == ["ethusd"]
    assert sent(session) == [WIRE["unsubscribe"].value]
    session.receive(WIRE["unsubscribed"].frame)
    assert session.events_received() == [Unsubscribed(("ethusd",), "Unsubscribed from ethusd")]
    assert session.acknowledged == ("btcusd",)


def test_refused_subscription_is_reported() -> None:
    """A subscribe answered with status 400 -> SubscriptionFailed for the tickers it names."""
    session = logged_in()
    session._pending.append(("subscribe", ("b@d",)))  # a ticker the session would not send
    session.receive(WIRE["subscribe_refused"].frame)
    assert session.events_received() == [
        SubscriptionFailed(("b@d",), "FMP: Could not subscribe to: b@d")
    ]


def test_unauthorized_login_is_an_auth_failure() -> None:
    """ "Unauthorized" -> AuthFailed (fatal credentials error), with OpenBB's advice."""
    session = make()
    session.connection_made()
    session.receive(WIRE["login_unauthorized"].frame)
    [event] = session.events_received()
    assert isinstance(event, AuthFailed)
    assert event.message.startswith("FMP: Unauthorized. Account not authorized")
    assert not session.is_authenticated and session.data_to_send() != []


def test_plan_without_websockets_is_fatal() -> None:
    """ "you are not authorized" -> ProviderFailed(retry=False) naming the plan."""
    session = make()
    session.connection_made()
    session.receive(WIRE["not_authorized"].frame)
    [event] = session.events_received()
    assert isinstance(event, ProviderFailed) and not event.retry
    assert "plan" in event.message and "crypto websocket" in event.message


def test_connected_from_another_location_is_fatal_and_explained() -> None:
    """ "Connected from another location" -> fatal, explaining the one-socket-per-key rule."""
    session = logged_in()
    session.receive(WIRE["another_location"].frame)
    [event] = session.events_received()
    assert isinstance(event, ProviderFailed) and not event.retry
    assert "one websocket per API key" in event.message
    assert "another program" in event.message


def test_heartbeat_and_other_control_events() -> None:
    """heartbeat -> Heartbeat; any other control event is logged."""
    session = logged_in()
    assert session.receive(WIRE["heartbeat"].frame) == []
    assert session.receive(WIRE["notice"].frame) == []
    assert session.events_received() == [
        Heartbeat(),
        ProviderMessage("info", "fmp notification: Maintenance at 02:00 UTC"),
    ]


def test_later_subscriptions_survive_a_reconnect() -> None:
    """After a reconnect the login is followed by every wanted ticker (OpenBB lost later ones)."""
    session = logged_in()
    session.subscribe("solusd")
    session.unsubscribe("btcusd")
    session.data_to_send()
    session.connection_made()
    assert sent(session) == [WIRE["login"].value]
    session.receive(WIRE["login_ok"].frame)
    assert sent(session) == [{"event": "subscribe", "data": {"ticker": ["ethusd", "solusd"]}}]


# -- data records ---------------------------------------------------------------------------------


def test_crypto_trade_record() -> None:
    """A crypto trade: ms timestamp, exchange, last price and size; symbol upper-case."""
    assert records_of("crypto_trade") == [
        {
            "date": 1734040670164000000,
            "symbol": "BTCUSD",
            "type": "trade",
            "last_price": 99818.08,
            "last_size": 0.01445,
            "exchange": "binance",
        }
    ]


def test_crypto_quote_record() -> None:
    """A crypto quote: bid/ask prices and sizes."""
    assert records_of("crypto_quote") == [
        {
            "date": 1734040670165000000,
            "symbol": "BTCUSD",
            "type": "quote",
            "bid_price": 99818.0,
            "bid_size": 1.2,
            "ask_price": 99818.5,
            "ask_size": 0.8,
            "exchange": "binance",
        }
    ]


def test_stock_records_with_nanosecond_stamps() -> None:
    """Stock trades, quotes and breaks: ns stamps kept; no exchange key when FMP sends none."""
    assert records_of("stock_trade", asset_type="stock") == [
        {
            "date": 1734040670164000123,
            "symbol": "AAPL",
            "type": "trade",
            "last_price": 248.13,
            "last_size": 100,
        }
    ]
    assert records_of("stock_quote", asset_type="stock") == [
        {
            "date": 1734040670164000456,
            "symbol": "AAPL",
            "type": "quote",
            "bid_price": 248.12,
            "bid_size": 2,
            "ask_price": 248.15,
            "ask_size": 3,
        }
    ]
    assert records_of("stock_break", asset_type="stock") == [
        {
            "date": 1734040670164000789,
            "symbol": "AAPL",
            "type": "break",
            "last_price": 248.0,
            "last_size": 10,
        }
    ]


def test_fx_quote_and_iso_dates() -> None:
    """An fx quote; a date given as ISO 8601 is read too."""
    expected = {
        "date": 1734040670164000000,
        "symbol": "EURUSD",
        "type": "quote",
        "bid_price": 1.0501,
        "bid_size": 1000000,
        "ask_price": 1.0502,
        "ask_size": 2000000,
    }
    assert records_of("fx_quote", asset_type="fx") == [expected]
    assert records_of("iso_date", asset_type="fx") == [expected]


@pytest.mark.parametrize("name", ["bad_json", "bad_array", "bad_type", "bad_missing_time"])
def test_bad_frames_are_reported_not_raised(name: str) -> None:
    """A frame the session cannot read becomes a MalformedFrame event; parsing goes on."""
    session = logged_in()
    assert session.receive(WIRE[name].frame) == []
    [event] = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert len(session.receive(WIRE["crypto_trade"].frame)) == 1


def test_first_reply_that_is_no_refusal_means_logged_in() -> None:
    """FMP does not document its login ack: any first non-refusal reply logs in (as OpenBB)."""
    session = make()
    session.connection_made()
    session.data_to_send()
    session.receive(WIRE["heartbeat"].frame)
    assert session.events_received() == [Authenticated("fmp: logged in"), Heartbeat()]
    assert sent(session) == [WIRE["subscribe"].value]
