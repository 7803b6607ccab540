"""DemoSession, sans-I/O: raw demo frames in, records/events/frames out (docs/demo_protocol.md)."""

from __future__ import annotations

import json

import pytest

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError
from obbws_jupyter.protocol import (
    Authenticated,
    AuthFailed,
    Heartbeat,
    MalformedFrame,
    ProviderMessage,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
)
from obbws_providers.demo import PROVIDER, QUOTE_FIELDS, TRADE_FIELDS, DemoSession

CONNECTED = '[{"ev":"status","status":"connected","message":"obbws demo market"}]'
AUTH_OK = '[{"ev":"status","status":"auth_success","message":"authenticated"}]'
AUTH_FAILED = '[{"ev":"status","status":"auth_failed","message":"authentication failed"}]'
T_MS = 1_700_000_000_123
T_NS = T_MS * 1_000_000


def make(**given: object) -> DemoSession:
    given.setdefault("symbol", "btcusd")
    given.setdefault("url", "ws://127.0.0.1:9")
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, DemoSession)
    return session


def authenticated(**given: object) -> DemoSession:
    session = make(**given)
    session.connection_made()
    session.receive(CONNECTED)
    session.receive(AUTH_OK)
    session.data_to_send()
    session.events_received()
    return session


def sent(session: DemoSession) -> list[dict[str, str]]:
    return [json.loads(frame) for frame in session.data_to_send()]


def test_connection_made_sends_nothing_until_connected_status() -> None:
    """Like Polygon, the client waits for the server's "connected" status before auth."""
    session = make()
    session.connection_made()
    assert session.data_to_send() == []
    assert session.receive(CONNECTED) == []
    assert sent(session) == [{"action": "auth", "params": "demo"}]
    assert session.events_received() == [ProviderMessage("info", "obbws demo market")]


def test_auth_frame_carries_the_api_key() -> None:
    """The configured api_key goes into the auth frame's params."""
    session = make(api_key="s3cret")
    session.connection_made()
    session.receive(CONNECTED)
    assert sent(session) == [{"action": "auth", "params": "s3cret"}]


def test_api_key_read_from_environment() -> None:
    """OBBWS_DEMO_API_KEY is used when api_key is not given."""
    params = PROVIDER.resolve({"symbol": "btcusd"}, {"OBBWS_DEMO_API_KEY": "from-env"})
    assert params["api_key"] == "from-env"
    assert PROVIDER.secret_params == frozenset({"api_key"})
    assert not PROVIDER.param("api_key").required


def test_auth_success_authenticates_and_subscribes_all_wanted_symbols() -> None:
    """auth_success -> Authenticated event and one subscribe frame with every wanted symbol."""
    session = make(symbol="btcusd,eth-usd")
    session.connection_made()
    session.receive(CONNECTED)
    session.data_to_send()
    session.events_received()
    session.receive(AUTH_OK)
    assert session.is_authenticated
    assert session.events_received() == [Authenticated("authenticated")]
    assert sent(session) == [{"action": "subscribe", "params": "T.BTCUSD,T.ETHUSD"}]


def test_auth_failed_reports_auth_failed() -> None:
    """auth_failed -> AuthFailed event, nothing sent, not authenticated."""
    session = make()
    session.connection_made()
    session.receive(CONNECTED)
    session.data_to_send()
    session.events_received()
    session.receive(AUTH_FAILED)
    assert session.events_received() == [AuthFailed("authentication failed")]
    assert session.data_to_send() == []
    assert not session.is_authenticated


def test_subscribe_ack_emits_subscribed_without_channel_prefix() -> None:
    """A "subscribed to:" status becomes Subscribed(symbols) and marks them acknowledged."""
    session = authenticated(symbol="btcusd,ethusd")
    msg = "subscribed to: T.BTCUSD,T.ETHUSD"
    session.receive(json.dumps([{"ev": "status", "status": "success", "message": msg}]))
    assert session.events_received() == [Subscribed(("BTCUSD", "ETHUSD"), msg)]
    assert session.acknowledged == ("BTCUSD", "ETHUSD")


def test_unsubscribe_sends_frame_and_ack_emits_unsubscribed() -> None:
    """unsubscribe() queues one frame; the "unsubscribed to:" ack emits Unsubscribed."""
    session = authenticated(symbol="btcusd,ethusd")
    assert session.unsubscribe("ETH/USD") == ["ETHUSD"]
    assert sent(session) == [{"action": "unsubscribe", "params": "T.ETHUSD"}]
    msg = "unsubscribed to: T.ETHUSD"
    session.receive(json.dumps([{"ev": "status", "status": "success", "message": msg}]))
    assert session.events_received() == [Unsubscribed(("ETHUSD",), msg)]
    assert session.symbols == ("BTCUSD",)


def test_invalid_symbol_error_is_subscription_failed_and_other_acks_apply() -> None:
    """An "invalid symbol" error next to a success ack: SubscriptionFailed + Subscribed."""
    session = authenticated()
    frame = json.dumps(
        [
            {"ev": "status", "status": "error", "message": "invalid symbol: T.B@D"},
            {"ev": "status", "status": "success", "message": "subscribed to: T.BTCUSD"},
        ]
    )
    session.receive(frame)
    events = session.events_received()
    assert events == [
        SubscriptionFailed(("B@D",), "invalid symbol: T.B@D"),
        Subscribed(("BTCUSD",), "subscribed to: T.BTCUSD"),
    ]


def test_other_error_status_is_provider_message() -> None:
    """A status error that names no symbol is reported as ProviderMessage("error")."""
    session = authenticated()
    session.receive('[{"ev":"status","status":"error","message":"not authenticated"}]')
    assert session.events_received() == [ProviderMessage("error", "not authenticated")]


def test_trade_frame_parses_into_exact_records() -> None:
    """T events become trade records: date in int ns, fields as documented."""
    session = authenticated(symbol="btcusd,ethusd")
    frame = json.dumps(
        [
            {"ev": "T", "sym": "BTCUSD", "x": "DEMO", "p": 65001.5, "s": 0.0123, "t": T_MS},
            {"ev": "T", "sym": "ETHUSD", "x": "DEMO", "p": 3500.25, "s": 1.5, "t": T_MS + 1},
        ]
    )
    assert session.receive(frame) == [
        {
            "date": T_NS,
            "symbol": "BTCUSD",
            "type": "trade",
            "exchange": "DEMO",
            "price": 65001.5,
            "size": 0.0123,
        },
        {
            "date": T_NS + 1_000_000,
            "symbol": "ETHUSD",
            "type": "trade",
            "exchange": "DEMO",
            "price": 3500.25,
            "size": 1.5,
        },
    ]
    assert [f.name for f in session.fields] == [f.name for f in TRADE_FIELDS]
    assert session.events_received() == []


def test_quote_frame_parses_into_exact_records() -> None:
    """Q events become quote records with bid/ask and their sizes."""
    session = authenticated(symbol="aapl", asset_type="stock", feed="quote")
    frame = json.dumps(
        [
            {
                "ev": "Q",
                "sym": "AAPL",
                "x": "DEMO",
                "bp": 189.99,
                "bs": 300,
                "ap": 190.01,
                "as": 200,
                "t": T_MS,
            }
        ]
    )
    assert session.receive(frame.encode()) == [
        {
            "date": T_NS,
            "symbol": "AAPL",
            "type": "quote",
            "exchange": "DEMO",
            "bid": 189.99,
            "bid_size": 300,
            "ask": 190.01,
            "ask_size": 200,
        }
    ]
    assert session.fields == QUOTE_FIELDS


def test_quote_session_ignores_trade_events_and_unknown_types() -> None:
    """Events of the other feed and unknown ev types are skipped silently."""
    session = authenticated(feed="quote")
    frame = '[{"ev":"T","sym":"BTCUSD","x":"DEMO","p":1.0,"s":1.0,"t":1},{"ev":"XYZ"}]'
    assert session.receive(frame) == []
    assert session.events_received() == []


def test_heartbeat_emits_heartbeat_event() -> None:
    """A heartbeat frame emits Heartbeat and no records."""
    session = authenticated()
    assert session.receive(f'[{{"ev":"heartbeat","t":{T_MS}}}]') == []
    assert session.events_received() == [Heartbeat()]


@pytest.mark.parametrize(
    "frame",
    ["not json", '{"ev":"T"}', "42", b"\xff\xfe", ""],
    ids=["text", "object", "number", "binary", "empty"],
)
def test_malformed_frame_reports_malformed_frame_without_raising(frame: str | bytes) -> None:
    """A frame that is not a JSON array of objects yields MalformedFrame, never an exception."""
    session = authenticated()
    assert session.receive(frame) == []
    events = session.events_received()
    assert len(events) == 1 and isinstance(events[0], MalformedFrame)


def test_bad_elements_are_counted_and_good_ones_kept() -> None:
    """Elements that are not demo events are reported once; valid records still come out."""
    session = authenticated()
    good = {"ev": "T", "sym": "BTCUSD", "x": "DEMO", "p": 1.5, "s": 2.0, "t": T_MS}
    frame = json.dumps([good, 7, {"ev": "T", "sym": "BTCUSD"}, "x"])
    records = session.receive(frame)
    assert [r["price"] for r in records] == [1.5]
    (event,) = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert event.reason.startswith("3 of 4 elements")


def test_subscribe_before_auth_queues_nothing_until_authenticated() -> None:
    """subscribe() while unauthenticated sends nothing; auth_success sends one frame for all."""
    session = make(symbol="btcusd")
    session.connection_made()
    assert session.subscribe("ethusd,solusd") == ["ETHUSD", "SOLUSD"]
    assert session.data_to_send() == []
    session.receive(CONNECTED)
    assert sent(session) == [{"action": "auth", "params": "demo"}]
    session.receive(AUTH_OK)
    assert sent(session) == [{"action": "subscribe", "params": "T.BTCUSD,T.ETHUSD,T.SOLUSD"}]


def test_subscribe_while_authenticated_sends_only_new_symbols() -> None:
    """subscribe() after auth sends one frame with the symbols not already wanted."""
    session = authenticated(symbol="btcusd")
    assert session.subscribe(["BTCUSD", "sol-usd"]) == ["SOLUSD"]
    assert sent(session) == [{"action": "subscribe", "params": "T.SOLUSD"}]


def test_reconnect_replays_subscriptions_after_auth() -> None:
    """connection_made again + connected + auth_success re-subscribes every wanted symbol."""
    session = authenticated(symbol="btcusd")
    session.subscribe("ethusd")
    session.data_to_send()
    session.receive('[{"ev":"status","status":"success","message":"subscribed to: T.ETHUSD"}]')
    assert session.acknowledged == ("ETHUSD",)
    session.connection_made()
    assert not session.is_authenticated and session.acknowledged == ()
    assert session.data_to_send() == []
    session.receive(CONNECTED)
    assert sent(session) == [{"action": "auth", "params": "demo"}]
    session.receive(AUTH_OK)
    assert sent(session) == [{"action": "subscribe", "params": "T.BTCUSD,T.ETHUSD"}]


def test_duplicate_auth_success_does_not_resubscribe() -> None:
    """A second auth_success on the same connection sends no second subscribe."""
    session = authenticated()
    session.receive(AUTH_OK)
    assert session.data_to_send() == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("btcusd", "BTCUSD"),
        (" btc-usd ", "BTCUSD"),
        ("eur/usd", "EURUSD"),
        ("brk.b", "BRK.B"),
        ("*", "*"),
        ("x:btcusd", "X:BTCUSD"),
    ],
)
def test_normalize_symbol(given: str, expected: str) -> None:
    """Symbols are stripped, upper-cased and lose - and / separators; * stays."""
    assert make().normalize_symbol(given) == expected


@pytest.mark.parametrize("bad", ["btc usd", "$BTC", "-", ".btc", "A" * 21, "btc*"])
def test_invalid_symbol_raises_symbol_error_naming_symbol_and_rule(bad: str) -> None:
    """An invalid symbol raises SymbolError quoting the symbol and the rule."""
    session = make()
    with pytest.raises(SymbolError) as info:
        session.subscribe(bad)
    assert repr(bad) in str(info.value)
    assert "letters, digits" in str(info.value)


def test_invalid_symbol_at_construction_raises_symbol_error() -> None:
    """A bad symbol in the parameters fails when the session is built."""
    with pytest.raises(SymbolError):
        make(symbol="btcusd,bad symbol")


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"symbol": "x", "asset_type": "bonds"}, ["asset_type", "stock, crypto, fx"]),
        ({"symbol": "x", "feed": "aggs"}, ["feed", "trade, quote"]),
        ({"symbol": "x", "rate": -1}, ["rate", ">= 0"]),
        ({"symbol": "x", "rate": "fast"}, ["rate", "float"]),
        ({"symbol": "x", "url": "http://x"}, ["ws://"]),
        ({}, ["symbol", "required"]),
        ({"symbol": "x", "colour": "red"}, ["unknown parameter", "colour"]),
    ],
)
def test_resolve_rejects_bad_parameters(given: dict[str, object], words: list[str]) -> None:
    """spec.resolve raises InvalidParameterError saying what is wrong."""
    with pytest.raises(InvalidParameterError) as info:
        PROVIDER.resolve(given, {})
    for word in words:
        assert word in str(info.value)


def test_resolve_fills_defaults() -> None:
    """Defaults: crypto, trade, 200 events/s, no url, no key."""
    assert PROVIDER.resolve({"symbol": "btcusd"}, {}) == {
        "symbol": "btcusd",
        "asset_type": "crypto",
        "feed": "trade",
        "api_key": None,
        "rate": 200.0,
        "url": None,
    }
    assert PROVIDER.embedded_server == "obbws_jupyter.offline.demo_server:serve"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:9", "ws://127.0.0.1:9/crypto"),
        ("ws://127.0.0.1:9/", "ws://127.0.0.1:9/crypto"),
        ("ws://127.0.0.1:9/fx", "ws://127.0.0.1:9/fx"),
    ],
)
def test_url_appends_asset_type_endpoint(url: str, expected: str) -> None:
    """url() is the base URL plus /<asset_type>, unless an endpoint is already there."""
    assert make(url=url).url() == expected


def test_url_without_server_raises() -> None:
    """Without a url (no embedded server started) url() explains what is missing."""
    session = PROVIDER.session_class(PROVIDER.resolve({"symbol": "x"}, {}))
    with pytest.raises(InvalidParameterError, match="embedded demo server"):
        session.url()


def test_quote_feed_subscribes_on_q_channel_and_stale_after() -> None:
    """feed=quote uses the Q channel; the watchdog window is 5 s."""
    session = authenticated(symbol="*", feed="quote", asset_type="fx")
    session.subscribe("gbpusd")
    assert sent(session) == [{"action": "subscribe", "params": "Q.GBPUSD"}]
    assert session.stale_after == 5.0
    assert session.url().endswith("/fx")
