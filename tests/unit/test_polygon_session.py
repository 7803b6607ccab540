"""PolygonSession, sans-I/O: the frames of tests/fixtures/polygon.jsonl in, exact records,
events and frames to send out; parameters, URLs and symbol mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from obbws_jupyter._util import mask_secrets, remember_secret
from obbws_jupyter.exceptions import InvalidParameterError, MissingCredentialsError, SymbolError
from obbws_jupyter.protocol import (
    OPENBB_SETTINGS_ENV,
    Authenticated,
    AuthFailed,
    FieldType,
    MalformedFrame,
    ProviderFailed,
    ProviderMessage,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
    get_provider,
)
from obbws_providers.polygon import FEED_MAP, PROVIDER, PolygonSession, _session
from obbws_providers.polygon._channels import ASSET_TYPES, FEEDS, GROUP

FIXTURES = Path(__file__).parent.parent / "fixtures" / "polygon.jsonl"
KEY = "YOUR_API_KEY"  # the key in the fixture's auth frame


def _load_fixtures() -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in FIXTURES.read_text().splitlines() if line.strip()]
    assert "_fixture" in lines[0]  # the header says what the notes mean
    return {line["name"]: line for line in lines[1:]}


FIX = _load_fixtures()


def frame(name: str) -> str:
    return str(FIX[name]["frame"])


def make(**given: Any) -> PolygonSession:
    given.setdefault("symbol", "btcusd")
    given.setdefault("api_key", KEY)
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, PolygonSession)
    return session


def authenticated(**given: Any) -> PolygonSession:
    session = make(**given)
    session.connection_made()
    session.receive(frame("connected"))
    session.receive(frame("auth_success"))
    session.data_to_send()
    session.events_received()
    return session


def keys(session: PolygonSession) -> set[str]:
    return {f.name for f in session.fields}


# -- parameters -------------------------------------------------------------------------------


def test_registered_with_openbb_defaults() -> None:
    """The entry point finds the spec; asset_type crypto and feed aggs_sec by default."""
    assert get_provider("polygon") is PROVIDER
    params = PROVIDER.resolve({"symbol": "btcusd", "api_key": "k"}, {})
    assert (params["asset_type"], params["feed"]) == ("crypto", "aggs_sec")
    assert PROVIDER.secret_params == frozenset({"api_key"})


def test_api_key_from_environment_and_openbb_settings(tmp_path: Path) -> None:
    """POLYGON_API_KEY, then polygon_api_key in OpenBB's user settings file, supply the key."""
    params = PROVIDER.resolve({"symbol": "x"}, {"POLYGON_API_KEY": "env-key"})
    assert params["api_key"] == "env-key"
    settings = tmp_path / "user_settings.json"
    settings.write_text(json.dumps({"credentials": {"polygon_api_key": "file-key"}}))
    params = PROVIDER.resolve({"symbol": "x"}, {OPENBB_SETTINGS_ENV: str(settings)})
    assert params["api_key"] == "file-key"


def test_missing_key_names_all_three_places(tmp_path: Path) -> None:
    """No key anywhere: MissingCredentialsError naming api_key=, the env var and OpenBB's key."""
    empty = {OPENBB_SETTINGS_ENV: str(tmp_path / "none.json")}
    with pytest.raises(MissingCredentialsError) as info:
        PROVIDER.resolve({"symbol": "btcusd"}, empty)
    text = str(info.value)
    assert "api_key=" in text and "POLYGON_API_KEY" in text and "polygon_api_key" in text


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [("asset_type", "bonds", "stock_delayed"), ("feed", "ticks", "aggs_min")],
)
def test_unknown_asset_type_or_feed_lists_the_valid_ones(name: str, value: str, valid: str) -> None:
    """An unknown asset_type/feed is refused, listing the valid values."""
    with pytest.raises(InvalidParameterError, match=valid):
        PROVIDER.resolve({"symbol": "x", "api_key": "k", name: value}, {})


@pytest.mark.parametrize(
    ("asset_type", "feed", "wording"),
    [
        ("fx", "trade", "FX does not support the trade feed."),
        ("fx", "l2", "FX does not support the l2 feed."),
        ("fx", "value", "FX does not support the value feed."),
        ("stock", "l2", "Asset type, stock, does not support the l2 feed."),
        ("stock_delayed", "value", "Asset type, stock_delayed, does not support the value feed."),
        ("options", "l2", "Asset type, options, does not support the l2 feed."),
        ("options_delayed", "value", "Asset type, options_delayed, does not support the value"),
        ("index", "trade", "Index does not support the trade feed."),
        ("index", "quote", "Index does not support the quote feed."),
        ("index_delayed", "l2", "Index does not support the l2 feed."),
        ("index", "fmv", "Index does not support the fmv feed."),
        ("crypto", "value", "Crypto does not support the value feed."),
    ],
)
def test_refused_feeds_use_openbbs_wording(asset_type: str, feed: str, wording: str) -> None:
    """Combinations OpenBB refuses are refused before connecting, in OpenBB's words."""
    given = {"symbol": "x", "api_key": "k", "asset_type": asset_type, "feed": feed}
    with pytest.raises(InvalidParameterError, match=re.escape(wording)):
        PROVIDER.resolve(given, {})


def test_every_offered_feed_builds_a_session() -> None:
    """Each asset type x offered feed makes a session whose table starts date, symbol, type."""
    count = 0
    for asset_type in ASSET_TYPES:
        for feed in FEEDS:
            if feed not in FEED_MAP[GROUP[asset_type]]:
                continue
            symbol = "SPY251219C00650000" if asset_type.startswith("options") else "ABCUSD"
            session = make(asset_type=asset_type, feed=feed, symbol=symbol)
            assert [f.name for f in session.fields[:3]] == ["date", "symbol", "type"]
            assert session.fields[0].type is FieldType.TIMESTAMP
            count += 1
    assert count == 36  # crypto 6, fx 4, stock 5 x2, options 5 x2, index 3 x2


def test_bad_url_is_refused() -> None:
    """url= must be a ws:// or wss:// URL."""
    with pytest.raises(InvalidParameterError, match="ws://"):
        PROVIDER.resolve({"symbol": "x", "api_key": "k", "url": "http://127.0.0.1:1"}, {})


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asset_type", "feed", "url"),
    [
        ("stock", "trade", "wss://socket.polygon.io/stocks"),
        ("stock_delayed", "aggs_min", "wss://delayed.polygon.io/stocks"),
        ("options", "quote", "wss://socket.polygon.io/options"),
        ("options_delayed", "trade", "wss://delayed.polygon.io/options"),
        ("fx", "quote", "wss://socket.polygon.io/forex"),
        ("crypto", "aggs_sec", "wss://socket.polygon.io/crypto"),
        ("index", "value", "wss://socket.polygon.io/indices"),
        ("index_delayed", "aggs_sec", "wss://delayed.polygon.io/indices"),
        ("stock", "fmv", "wss://business.polygon.io/stocks"),
        ("stock_delayed", "fmv", "wss://delayed-business.polygon.io/stocks"),
        ("crypto", "fmv", "wss://business.polygon.io/crypto"),
    ],
)
def test_url_per_asset_type_and_feed(asset_type: str, feed: str, url: str) -> None:
    """Each asset type has Polygon's cluster URL; FMV goes to the Business cluster."""
    symbol = "SPY251219C00650000" if asset_type.startswith("options") else "ABCUSD"
    assert make(asset_type=asset_type, feed=feed, symbol=symbol).url() == url


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765/forex"),
        ("ws://127.0.0.1:8765/", "ws://127.0.0.1:8765/forex"),
        ("wss://socket.massive.com", "wss://socket.massive.com/forex"),
        ("ws://127.0.0.1:8765/custom", "ws://127.0.0.1:8765/custom"),
    ],
)
def test_url_override_gets_the_market_path(given: str, url: str) -> None:
    """url= without a path gets the market's path; with one it is used as given."""
    assert make(asset_type="fx", feed="quote", symbol="eurusd", url=given).url() == url


# -- symbols ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asset_type", "feed", "symbol", "key"),
    [
        ("crypto", "trade", "btcusd", "XT.BTC-USD"),
        ("crypto", "trade", "BTC-USD", "XT.BTC-USD"),
        ("crypto", "trade", "btc/usd", "XT.BTC-USD"),
        ("crypto", "trade", "X:BTCUSD", "XT.BTC-USD"),
        ("crypto", "trade", "BTCUSDT", "XT.BTC-USDT"),
        ("crypto", "trade", "*", "XT.*"),
        ("crypto", "trade", "XQ.BTCUSD", "XQ.BTC-USD"),
        ("crypto", "quote", "xt.ethusd", "XT.ETH-USD"),
        ("crypto", "aggs_sec", "solusd", "XAS.SOL-USD"),
        ("crypto", "l2", "btcusd", "XL2.BTC-USD"),
        ("crypto", "fmv", "btcusd", "FMV.BTC-USD"),
        ("fx", "quote", "XAUUSD", "C.XAU/USD"),
        ("fx", "quote", "eur-usd", "C.EUR/USD"),
        ("fx", "quote", "C:EURUSD", "C.EUR/USD"),
        ("fx", "aggs_min", "gbpusd", "CA.GBP/USD"),
        ("fx", "quote", "CAS.EURUSD", "CAS.EUR/USD"),
        ("index", "aggs_min", "SPX", "AM.I:SPX"),
        ("index", "aggs_min", "I:NDX", "AM.I:NDX"),
        ("index", "value", "spx", "V.I:SPX"),
        ("index_delayed", "aggs_sec", "spx", "A.I:SPX"),
        ("index", "value", "AS.SPX", "A.I:SPX"),
        ("options", "trade", "SPY251219C00650000", "T.O:SPY251219C00650000"),
        ("options", "trade", "O:SPY251219C00650000", "T.O:SPY251219C00650000"),
        ("options_delayed", "trade", "q.spy251219c00650000", "Q.O:SPY251219C00650000"),
        ("stock", "trade", "aapl", "T.AAPL"),
        ("stock", "trade", "BRK.A", "T.BRK.A"),
        ("stock", "trade", "Q.MSFT", "Q.MSFT"),
        ("stock", "aggs_sec", "msft", "A.MSFT"),
        ("stock_delayed", "aggs_sec", "AS.MSFT", "A.MSFT"),
        ("stock", "trade", "*", "T.*"),
    ],
)
def test_symbol_mapping(asset_type: str, feed: str, symbol: str, key: str) -> None:
    """User symbols become Polygon subscription keys <channel>.<ticker>."""
    session = make(asset_type=asset_type, feed=feed, symbol=symbol)
    assert session.symbols == (key,)


@pytest.mark.parametrize(
    ("asset_type", "feed", "symbol", "message"),
    [
        ("options", "trade", "*", "Options symbols do not support wildcards."),
        ("options", "quote", "T.*", "Options symbols do not support wildcards."),
        ("crypto", "l2", "*", "L2 Crypto does not support the all-symbols wildcard."),
        ("crypto", "trade", "XL2.*", "L2 Crypto does not support the all-symbols wildcard."),
        ("crypto", "trade", "T.BTCUSD", "Invalid feed, T, for asset type, crypto."),
        ("crypto", "trade", "BTC.USD", "Invalid feed, BTC, for asset type, crypto."),
        ("stock", "trade", "XT.BTCUSD", "Invalid feed, XT, for asset type, stock."),
        ("index", "value", "T.SPX", "Invalid feed, T, for asset type, index."),
        ("fx", "quote", "V.EURUSD", "Invalid feed, V, for asset type, fx."),
        ("crypto", "trade", "FMV.BTCUSD", "open a separate connection with feed='fmv'"),
        ("crypto", "fmv", "XT.BTCUSD", "open a separate connection with feed='fmv'"),
        ("options", "trade", "SPY", "invalid options symbol 'O:SPY'"),
        ("fx", "quote", "E", "invalid fx symbol"),
        ("stock", "trade", "AA PL", "invalid stock symbol"),
    ],
)
def test_symbol_refusals(asset_type: str, feed: str, symbol: str, message: str) -> None:
    """Symbols Polygon cannot take are refused before connecting, saying why."""
    with pytest.raises(SymbolError, match=re.escape(message)):
        make(asset_type=asset_type, feed=feed, symbol=symbol)


def test_at_most_1000_option_contracts() -> None:
    """Polygon's limit of 1000 option contracts per connection is checked up front."""
    contracts = [f"SPY2512{19 + i // 1000:02d}C{i:08d}" for i in range(1001)]
    with pytest.raises(SymbolError, match="at most 1000"):
        make(asset_type="options", feed="trade", symbol=",".join(contracts))
    session = authenticated(asset_type="options", feed="trade", symbol=",".join(contracts[:1000]))
    with pytest.raises(SymbolError, match="at most 1000"):
        session.subscribe(contracts[1000])
    assert len(session.symbols) == 1000 and session.data_to_send() == []


# -- the table --------------------------------------------------------------------------------


def test_default_table_is_openbbs_crypto_aggs_model() -> None:
    """crypto/aggs_sec records have OpenBB's crypto aggregate fields."""
    assert [f.name for f in make().fields] == [
        "date",
        "symbol",
        "type",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "avg_size",
    ]


def test_mixed_feeds_widen_the_table() -> None:
    """XQ.BTCUSD,XT.ETHUSD on a quote connection: the union of the quote and trade fields."""
    session = make(feed="quote", symbol="XQ.BTCUSD,XT.ETHUSD")
    assert session.symbols == ("XQ.BTC-USD", "XT.ETH-USD")
    assert [f.name for f in session.fields] == [
        "date",
        "symbol",
        "type",
        "exchange",
        "price",
        "size",
        "bid",
        "bid_size",
        "ask",
        "ask_size",
        "conditions",
        "provider_received_at",
    ]


def test_later_subscription_outside_the_table_is_refused() -> None:
    """A channel whose fields the table lacks cannot join later; one of the same model can."""
    session = authenticated(feed="aggs_sec", symbol="btcusd")
    with pytest.raises(SymbolError, match="lacks exchange, price, size"):
        session.subscribe("XT.ETHUSD")
    assert session.subscribe("XA.ETHUSD") == ["XA.ETH-USD"]
    assert session.data_to_send() == ['{"action":"subscribe","params":"XA.ETH-USD"}']


def test_l2_and_quotes_share_typed_columns() -> None:
    """An XL2 + XQ table keeps bid/ask as floats and the book levels as JSON text."""
    session = make(feed="l2", symbol="btcusd,XQ.ethusd")
    types = {f.name: f.type for f in session.fields}
    assert types["bid"] is FieldType.FLOAT and types["bids"] is FieldType.STRING


# -- the protocol -----------------------------------------------------------------------------


def sent(session: PolygonSession) -> list[str]:
    return [str(f) for f in session.data_to_send()]


def test_auth_goes_out_on_connected() -> None:
    """Nothing is sent before the connected status; then the auth frame of the fixture."""
    session = make(feed="trade", symbol="btcusd,ethusd")
    session.connection_made()
    assert session.data_to_send() == []
    assert session.receive(frame("connected")) == []
    assert sent(session) == [frame("auth")]
    assert session.events_received() == [ProviderMessage("info", "Connected Successfully")]


def test_auth_success_subscribes_every_wanted_symbol() -> None:
    """auth_success -> Authenticated and one subscribe frame with every key."""
    session = make(feed="trade", symbol="btcusd,ethusd")
    session.connection_made()
    session.receive(frame("connected"))
    session.data_to_send()
    session.events_received()
    session.receive(frame("auth_success"))
    assert session.events_received() == [Authenticated("authenticated")]
    assert sent(session) == [frame("subscribe")]


def test_acks_and_unsubscribe() -> None:
    """success statuses become Subscribed/Unsubscribed; unsubscribe sends the fixture frame."""
    session = authenticated(feed="trade", symbol="btcusd,ethusd")
    session.receive(frame("subscribed"))
    assert session.events_received() == [
        Subscribed(("XT.BTC-USD",), "subscribed to: XT.BTC-USD"),
        Subscribed(("XT.ETH-USD",), "subscribed to: XT.ETH-USD"),
    ]
    assert session.acknowledged == ("XT.BTC-USD", "XT.ETH-USD")
    assert session.unsubscribe("eth-usd") == ["XT.ETH-USD"]
    assert sent(session) == [frame("unsubscribe")]
    session.receive(frame("unsubscribed"))
    assert session.events_received() == [
        Unsubscribed(("XT.ETH-USD",), "unsubscribed to: XT.ETH-USD")
    ]
    assert session.acknowledged == ("XT.BTC-USD",)


def test_wildcard_ack() -> None:
    """The wildcard is acknowledged under the same key the session holds."""
    session = authenticated(feed="trade", symbol="*")
    session.receive(frame("subscribed_wildcard"))
    assert session.acknowledged == ("XT.*",)


def test_reconnect_resubscribes_the_current_symbols() -> None:
    """After a new connection, auth_success subscribes the symbols wanted now."""
    session = authenticated(feed="trade", symbol="btcusd")
    session.subscribe("ethusd")
    session.unsubscribe("btcusd")
    session.data_to_send()
    session.connection_made()
    session.receive(frame("connected"))
    session.receive(frame("auth_success"))
    assert sent(session) == [frame("auth"), '{"action":"subscribe","params":"XT.ETH-USD"}']


def test_subscribe_before_auth_waits_for_it() -> None:
    """A subscription made before authentication goes out with the others after it."""
    session = make(feed="trade", symbol="btcusd")
    session.connection_made()
    session.subscribe("ethusd")
    assert session.data_to_send() == []
    session.receive(frame("connected"))
    session.receive(frame("auth_success"))
    assert sent(session)[-1] == frame("subscribe")


def test_auth_failed_is_fatal() -> None:
    """auth_failed -> AuthFailed with Polygon's message."""
    session = make()
    session.connection_made()
    session.receive(frame("connected"))
    session.receive(frame("auth_failed"))
    assert session.events_received()[-1] == AuthFailed("authentication failed")
    assert not session.is_authenticated


def test_plan_refusal_is_fatal_and_says_what_to_do() -> None:
    """The plan refusal is AuthFailed naming the cluster and the delayed asset types."""
    session = make(asset_type="stock", feed="trade", symbol="aapl")
    session.connection_made()
    session.receive(frame("plan_refused"))
    (event,) = session.events_received()
    assert isinstance(event, AuthFailed)
    assert "Your plan doesn't include websocket access" in event.message
    assert "wss://socket.polygon.io/stocks" in event.message and "stock_delayed" in event.message


def test_auth_timeout_reconnects_and_max_connections_is_fatal() -> None:
    """auth_timeout: ProviderFailed(retry=True); max_connections: ProviderFailed(retry=False)."""
    session = make()
    session.connection_made()
    session.receive(frame("auth_timeout"))
    session.receive(frame("max_connections"))
    timeout, maxed = session.events_received()
    assert timeout == ProviderFailed(
        "Polygon closed the connection: No authentication request received.", retry=True
    )
    assert isinstance(maxed, ProviderFailed) and not maxed.retry
    assert "one connection per cluster and API key" in maxed.message


def test_error_status_naming_a_subscription_is_a_refusal() -> None:
    """An error naming a wanted key is SubscriptionFailed; another error is logged, not fatal."""
    session = authenticated(feed="trade", symbol="btcusd,ethusd")
    session.receive(frame("error"))
    session.receive(frame("error_other"))
    assert session.events_received() == [
        SubscriptionFailed(("XT.ETH-USD",), "invalid subscription: XT.ETH-USD"),
        ProviderMessage("error", "internal error, please retry"),
    ]
    assert session.is_authenticated


def test_unknown_status_is_informational() -> None:
    """A status Polygon may add later is passed on as information."""
    session = make()
    session.receive('[{"ev":"status","status":"notice","message":"maintenance at 2am"}]')
    assert session.events_received() == [ProviderMessage("info", "maintenance at 2am")]


# -- records ----------------------------------------------------------------------------------

NS = 1_000_000  # ns per ms

RECORD_CASES: list[tuple[str, str, str, str, list[dict[str, Any]]]] = [
    (
        "crypto",
        "trade",
        "btcusd",
        "XT",
        [
            {
                "date": 1610462007425 * NS,
                "symbol": "BTC-USD",
                "type": "XT",
                "exchange": "3",  # not in Polygon's crypto venue list: shown as the number
                "price": 33021.9,
                "size": 0.01616617,
                "conditions": "buyside",
                "provider_received_at": 1610462007576 * NS,
            }
        ],
    ),
    (
        "crypto",
        "trade",
        "ethusd",
        "XT_known_venue",
        [
            {
                "date": 1700000000123 * NS,
                "symbol": "ETH-USD",
                "type": "XT",
                "exchange": "Coinbase",
                "price": 3501.25,
                "size": 0.5,
                "conditions": "sellside",
                "provider_received_at": 1700000000130 * NS,
            },
            {
                "date": 1700000000124 * NS,
                "symbol": "ETH-USD",
                "type": "XT",
                "exchange": "Kraken",
                "price": 3501.3,
                "size": 0.25,
            },
        ],
    ),
    (
        "crypto",
        "quote",
        "btcusd",
        "XQ",
        [
            {
                "date": 1610462411115 * NS,
                "symbol": "BTC-USD",
                "type": "XQ",
                "exchange": "Coinbase",
                "bid": 33052.79,
                "bid_size": 0.48,
                "ask": 33073.19,
                "ask_size": 0.601,
                "provider_received_at": 1610462411128 * NS,
            }
        ],
    ),
    (
        "crypto",
        "l2",
        "btcusd",
        "XL2",
        [
            {
                "date": 1610462411115 * NS,
                "symbol": "BTC-USD",
                "type": "XL2",
                "exchange": "Coinbase",
                "bids": "[[33712.71,0.18635],[33712.7,0.134]]",
                "asks": "[[33718.23,3.5527483],[33718.24,0.1]]",
                "bid": 33712.71,
                "bid_size": 0.18635,
                "ask": 33718.23,
                "ask_size": 3.5527483,
                "provider_received_at": 1610462411128 * NS,
            }
        ],
    ),
    (
        "crypto",
        "aggs_min",
        "bcdusd",
        "XA",
        [
            {
                "date": 1610463300000 * NS,
                "symbol": "BCD-USD",
                "type": "XA",
                "open": 0.772,
                "high": 0.784,
                "low": 0.771,
                "close": 0.784,
                "volume": 951.6112,
                "vwap": 0.7756,
                "avg_size": 73,
            }
        ],
    ),
    (
        "crypto",
        "aggs_sec",
        "btcusd",
        "XAS",
        [
            {
                "date": 1734055442000 * NS,
                "symbol": "BTC-USD",
                "type": "XAS",
                "open": 99445.07,
                "high": 99445.08,
                "low": 99445.07,
                "close": 99445.08,
                "volume": 0.00188791,
                "vwap": 99445.0778,
                "avg_size": 0.0004,
            }
        ],
    ),
    (
        "crypto",
        "fmv",
        "btcusd",
        "FMV_crypto",
        [
            {
                "date": 1610462007425 * NS,
                "symbol": "X:BTC-USD",
                "type": "FMV",
                "fair_market_value": 33021.9,
            }
        ],
    ),
    (
        "fx",
        "quote",
        "usdcnh",
        "C",
        [
            {
                "date": 1536036818784 * NS,
                "symbol": "USD/CNH",
                "type": "C",
                "bid": 6.83363,
                "ask": 6.83366,
                "exchange": "44",
            }
        ],
    ),
    (
        "fx",
        "quote",
        "eurusd",
        "C_banks",
        [
            {
                "date": 1700000000000 * NS,
                "symbol": "EUR/USD",
                "type": "C",
                "bid": 1.08509,
                "ask": 1.08512,
                "exchange": "Currency Banks 1",
            }
        ],
    ),
    (
        "fx",
        "aggs_min",
        "usdeur",
        "CA",
        [
            {
                "date": (1539145740000 + 60_000) * NS,  # no e: the window end from s
                "symbol": "USD/EUR",
                "type": "CA",
                "open": 0.8687,
                "high": 0.86889,
                "low": 0.8686,
                "close": 0.86889,
                "volume": 20,
            }
        ],
    ),
    (
        "fx",
        "aggs_sec",
        "eurusd",
        "CAS",
        [
            {
                "date": 1700000001000 * NS,
                "symbol": "EUR/USD",
                "type": "CAS",
                "open": 1.0851,
                "high": 1.0853,
                "low": 1.085,
                "close": 1.0852,
                "volume": 4,
            }
        ],
    ),
    (
        "fx",
        "fmv",
        "eurusd",
        "FMV_forex",
        [
            {
                "date": 1678220098130 * NS,
                "symbol": "C:EURUSD",
                "type": "FMV",
                "fair_market_value": 1.0631,
            }
        ],
    ),
    (
        "stock",
        "trade",
        "msft",
        "T",
        [
            {
                "date": 1536036818784 * NS,
                "symbol": "MSFT",
                "type": "T",
                "exchange": "FINR",
                "price": 114.125,
                "size": 100,
                "tape": "Tape C: NASDAQ",
                "conditions": "Regular Trade; Form T/Extended Hours",
            }
        ],
    ),
    (
        "stock",
        "trade",
        "amzn",
        "T_batch",
        [
            {
                "date": 1651684192536 * NS,
                "symbol": "AMZN",
                "type": "T",
                "exchange": "XNAS",
                "price": 161.87,
                "size": 1,
                "tape": "Tape C: NASDAQ",
                "conditions": "Intermarket Sweep; Odd Lot Trade; Trade Thru Exempt",
            },
            {
                "date": 1651684192717 * NS,
                "symbol": "AMZN",
                "type": "T",
                "exchange": "FINR",
                "price": 161.87,
                "size": 100,
                "tape": "Tape C: NASDAQ",
            },
        ],
    ),
    (
        "stock_delayed",
        "trade",
        "aapl",
        "T_trf",
        [
            {
                "date": 1700000000500 * NS,
                "symbol": "AAPL",
                "type": "T",
                "exchange": "FINR",
                "price": 190.01,
                "size": 50,
                "tape": "Tape C: NASDAQ",
                "conditions": "Odd Lot Trade",
                "trf_id": 202,
                "trf_timestamp": 1700000000498 * NS,
            }
        ],
    ),
    (
        "stock",
        "quote",
        "msft",
        "Q",
        [
            {
                "date": 1536036818784 * NS,
                "symbol": "MSFT",
                "type": "Q",
                "bid_exchange": "FINR",
                "ask_exchange": "XCBO",
                "bid": 114.125,
                "bid_size": 100,
                "ask": 114.128,
                "ask_size": 160,
                "tape": "Tape C: NASDAQ",
                "condition": "Regular",
                "indicators": "NBBO_BB_BO_SHORT_APPENDAGE",
            }
        ],
    ),
    (
        "stock",
        "aggs_sec",
        "spce",
        "A",
        [
            {
                "date": 1610144869000 * NS,
                "symbol": "SPCE",
                "type": "A",
                "open": 25.39,
                "high": 25.39,
                "low": 25.39,
                "close": 25.39,
                "volume": 200,
                "vwap": 25.3981,
                "day_open": 25.66,
                "day_volume": 8642007,
                "day_vwap": 25.3714,
                "avg_size": 50,
            }
        ],
    ),
    (
        "stock",
        "aggs_min",
        "gte",
        "AM",
        [
            {
                "date": 1610144700000 * NS,
                "symbol": "GTE",
                "type": "AM",
                "open": 0.4488,
                "high": 0.4489,
                "low": 0.4486,
                "close": 0.4486,
                "volume": 4110,
                "vwap": 0.4488,
                "day_open": 0.4372,
                "day_volume": 9470157,
                "day_vwap": 0.4352,
                "avg_size": 685,
            }
        ],
    ),
    (
        "stock",
        "fmv",
        "aapl",
        "FMV_stock",
        [
            {
                "date": 1678220098130 * NS,
                "symbol": "AAPL",
                "type": "FMV",
                "fair_market_value": 189.22,
            }
        ],
    ),
    (
        "options",
        "trade",
        "AMC210827C00037000",
        "T_option",
        [
            {
                "date": 1629820676333 * NS,
                "symbol": "O:AMC210827C00037000",
                "type": "T",
                "exchange": "65",
                "price": 1.54,
                "size": 1,
                "conditions": "Multi Leg Auction",
            }
        ],
    ),
    (
        "options",
        "quote",
        "SPY241220P00720000",
        "Q_option",
        [
            {
                "date": 1644506128351 * NS,
                "symbol": "O:SPY241220P00720000",
                "type": "Q",
                "bid_exchange": "XCBO",
                "ask_exchange": "XCBO",
                "bid": 9.71,
                "bid_size": 17,
                "ask": 9.81,
                "ask_size": 24,
            }
        ],
    ),
    (
        "options_delayed",
        "aggs_min",
        "ONEM220121C00025000",
        "AM_option",
        [
            {
                "date": 1632419700000 * NS,
                "symbol": "O:ONEM220121C00025000",
                "type": "AM",
                "open": 2.05,
                "high": 2.05,
                "low": 2.05,
                "close": 2.05,
                "volume": 2,
                "vwap": 2.05,
                "day_open": 2.2,
                "day_volume": 8,
                "day_vwap": 2.1312,
                "avg_size": 2,
            }
        ],
    ),
    (
        "options",
        "fmv",
        "TSLA210903C00700000",
        "FMV_option",
        [
            {
                "date": 1401715883806000000,  # sent in ns
                "symbol": "O:TSLA210903C00700000",
                "type": "FMV",
                "fair_market_value": 7.2,
            }
        ],
    ),
    (
        "index",
        "aggs_sec",
        "spx",
        "A_index",
        [
            {
                "date": 1678220675805 * NS,
                "symbol": "I:SPX",
                "type": "A",
                "open": 3985.67,
                "high": 3985.67,
                "low": 3985.67,
                "close": 3985.67,
                "day_open": 3985.67,
            }
        ],
    ),
    (
        "index_delayed",
        "aggs_min",
        "ndx",
        "AM_index",
        [
            {
                "date": 1700000100000 * NS,
                "symbol": "I:NDX",
                "type": "AM",
                "open": 12010.25,
                "high": 12015.5,
                "low": 12009.75,
                "close": 12012.0,
                "day_open": 12000.5,
            }
        ],
    ),
    (
        "index",
        "value",
        "spx",
        "V",
        [{"date": 1678220098130 * NS, "symbol": "I:SPX", "type": "V", "value": 3988.5}],
    ),
]


@pytest.mark.parametrize(
    ("asset_type", "feed", "symbol", "name", "expected"),
    RECORD_CASES,
    ids=[case[3] for case in RECORD_CASES],
)
def test_every_event_type_gives_its_exact_record(
    asset_type: str, feed: str, symbol: str, name: str, expected: list[dict[str, Any]]
) -> None:
    """Each fixture event becomes exactly its OpenBB-named record, with columns of the table."""
    session = authenticated(asset_type=asset_type, feed=feed, symbol=symbol)
    records = session.receive(frame(name))
    assert records == expected
    assert session.events_received() == []
    for record in records:
        assert set(record) <= keys(session)
        assert type(record["date"]) is int


def test_stdlib_json_gives_the_same_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson the stdlib decoder gives identical records (the fallback path)."""
    monkeypatch.setattr(_session, "_loads", json.loads)
    for asset_type, feed, symbol, name, expected in RECORD_CASES:
        session = authenticated(asset_type=asset_type, feed=feed, symbol=symbol)
        assert session.receive(frame(name)) == expected, name


def test_mixed_frame_status_and_events_of_two_feeds() -> None:
    """One frame with an ack, a quote and a trade: both records, in order, and the ack."""
    session = authenticated(feed="quote", symbol="XQ.ETHUSD,XT.BTCUSD")
    records = session.receive(frame("mixed"))
    assert records == [
        {
            "date": 1700000000001 * NS,
            "symbol": "ETH-USD",
            "type": "XQ",
            "exchange": "Bitfinex",
            "bid": 3500.1,
            "bid_size": 1.5,
            "ask": 3500.2,
            "ask_size": 2.0,
            "provider_received_at": 1700000000009 * NS,
        },
        {
            "date": 1700000000002 * NS,
            "symbol": "BTC-USD",
            "type": "XT",
            "exchange": "Binance",
            "price": 65000.5,
            "size": 0.001,
            "conditions": "buyside",
            "provider_received_at": 1700000000010 * NS,
        },
    ]
    assert session.events_received() == [Subscribed(("XQ.ETH-USD",), "subscribed to: XQ.ETH-USD")]


def test_events_outside_the_table_are_ignored() -> None:
    """A quote-only connection ignores trade events instead of storing half rows."""
    session = authenticated(feed="quote", symbol="ethusd")
    records = session.receive(frame("mixed"))
    assert [r["type"] for r in records] == ["XQ"]


def test_bad_elements_are_reported_good_ones_kept() -> None:
    """Bad elements are counted in one MalformedFrame; the good element still gives a record."""
    session = authenticated(feed="trade", symbol="btcusd")
    records = session.receive(frame("bad_elements"))
    assert records == [
        {
            "date": 1700000000002 * NS,
            "symbol": "BTC-USD",
            "type": "XT",
            "exchange": "Bitstamp",
            "price": 65000.5,
            "size": 0.001,
        }
    ]
    (event,) = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert event.reason == "3 of 4 elements are not valid Polygon events"


@pytest.mark.parametrize("bad", [frame("not_json"), frame("not_array"), b"\x00\x01binary"])
def test_unreadable_frame_is_reported_not_raised(bad: str | bytes) -> None:
    """A frame that is not a JSON array is one MalformedFrame event, never an exception."""
    session = authenticated()
    assert session.receive(bad) == []
    (event,) = session.events_received()
    assert isinstance(event, MalformedFrame)


def test_every_fixture_frame_is_marked() -> None:
    """Each fixture line says whether it was captured, documented or built."""
    for name, line in FIX.items():
        assert line["dir"] in ("in", "out"), name
        assert line["note"].startswith(("[cap]", "[doc]", "[built]")), name


def test_remembered_secret_is_masked_in_logged_text() -> None:
    """A provider's key remembered as secret is hidden where logs are masked (auth frames)."""
    remember_secret("pk-unit-secret-99")
    assert mask_secrets('{"action":"auth","params":"pk-unit-secret-99"}') == (
        '{"action":"auth","params":"********"}'
    )
    remember_secret("ab")  # too short to hide without mangling ordinary text
    assert mask_secrets("abc") == "abc"
