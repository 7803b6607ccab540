"""IntrinioSession, sans-I/O: the token step, binary join/leave frames and binary items in,
exact records and events out (frames from tests/fixtures/intrinio.jsonl)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from obbws_jupyter.exceptions import InvalidParameterError, MissingCredentialsError, SymbolError
from obbws_jupyter.protocol import (
    OPENBB_SETTINGS_ENV,
    Authenticated,
    AuthFailed,
    Heartbeat,
    HttpResponse,
    MalformedFrame,
    ProviderFailed,
    ProviderMessage,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
)
from obbws_providers.intrinio import FIELDS, PROVIDER, VENUES, IntrinioSession

FIXTURE = Path(__file__).parent.parent / "fixtures" / "intrinio.jsonl"
T = 1_700_000_000_123_456_789


def _load() -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert "_sample" in lines[0]
    return {entry["name"]: entry for entry in lines[1:]}


ENTRIES = _load()


def frame(name: str) -> str | bytes:
    entry = ENTRIES[name]
    return bytes.fromhex(entry["frame"]) if entry.get("binary") else entry["frame"]


def make(**given: Any) -> IntrinioSession:
    given.setdefault("symbol", "aapl")
    given.setdefault("api_key", "k-123")
    session = PROVIDER.session_class(PROVIDER.resolve(given, {}))
    assert isinstance(session, IntrinioSession)
    return session


def opened(**given: Any) -> IntrinioSession:
    """A session whose token step succeeded and whose socket is open."""
    session = make(**given)
    [request] = session.http_requests()
    session.http_response(request, HttpResponse(200, b"tok-1"))
    session.connection_made()
    session.data_to_send()
    session.events_received()
    return session


def trade(**over: Any) -> dict[str, Any]:
    record = {
        "date": T,
        "symbol": "AAPL",
        "type": "trade",
        "exchange": "NASDAQ (Tape C securities)",
        "price": 190.11,
        "size": 100,
        "volume": 1_234_567,
        "conditions": "Regular Sale; Form T; Odd Lot Trade",
        "is_darkpool": False,
        "feed": "UTP",
    }
    record.update(over)
    return record


def quote(**over: Any) -> dict[str, Any]:
    record = {"volume": None, "conditions": None, "is_darkpool": None, **over}
    return record


# -- parameters ----------------------------------------------------------------------------


def test_defaults_and_record_model() -> None:
    """stock / realtime / trades_only=False by default; the record model is OpenBB's
    IntrinioWebSocketData field names."""
    params = PROVIDER.resolve({"symbol": "aapl", "api_key": "k"}, {})
    assert (params["asset_type"], params["feed"], params["trades_only"]) == (
        "stock",
        "realtime",
        False,
    )
    assert [f.name for f in FIELDS] == [
        "date",
        "symbol",
        "type",
        "exchange",
        "price",
        "size",
        "volume",
        "conditions",
        "is_darkpool",
        "feed",
    ]
    assert PROVIDER.secret_params == frozenset({"api_key"})


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"asset_type": "crypto"}, "choose one of stock"),
        ({"feed": "sip"}, "choose one of realtime, delayed_sip, nasdaq_basic"),
        ({"trades_only": "maybe"}, "trades_only"),
        ({"url": "http://127.0.0.1:1"}, "ws:// or wss://"),
        ({"auth_url": "ws://127.0.0.1:1/auth"}, "http:// or https://"),
    ],
)
def test_bad_parameters_refused_before_connecting(given: dict[str, Any], match: str) -> None:
    """Unknown asset types and feeds list the valid ones; bad URLs say what is expected."""
    with pytest.raises(InvalidParameterError, match=match):
        PROVIDER.resolve({"symbol": "aapl", "api_key": "k", **given}, {})


def test_trades_only_given_as_text_is_parsed() -> None:
    """trades_only="true" (OpenBB REST style) is True, "false" is False."""
    assert PROVIDER.resolve({"symbol": "a", "api_key": "k", "trades_only": "true"}, {})[
        "trades_only"
    ]
    assert not PROVIDER.resolve({"symbol": "a", "api_key": "k", "trades_only": "false"}, {})[
        "trades_only"
    ]


def test_api_key_from_environment_then_openbb_settings(tmp_path: Path) -> None:
    """INTRINIO_API_KEY, then intrinio_api_key in OpenBB's user settings; a missing key names
    all three places."""
    settings = tmp_path / "user_settings.json"
    settings.write_text(json.dumps({"credentials": {"intrinio_api_key": "from-openbb"}}))
    env = {OPENBB_SETTINGS_ENV: str(settings)}
    assert PROVIDER.resolve({"symbol": "a"}, {**env, "INTRINIO_API_KEY": "from-env"})[
        "api_key"
    ] == ("from-env")
    assert PROVIDER.resolve({"symbol": "a"}, env)["api_key"] == "from-openbb"
    empty = {OPENBB_SETTINGS_ENV: str(tmp_path / "missing.json")}
    with pytest.raises(MissingCredentialsError) as info:
        PROVIDER.resolve({"symbol": "a"}, empty)
    for place in ("api_key=", "INTRINIO_API_KEY", "intrinio_api_key"):
        assert place in str(info.value)


# -- symbols -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("aapl", "AAPL"),
        (" brk.b ", "BRK.B"),
        ("*", "$FIREHOSE"),
        ("lobby", "$FIREHOSE"),
        ("$firehose", "$FIREHOSE"),
    ],
)
def test_symbol_mapping(given: str, expected: str) -> None:
    """Tickers are upper-cased; *, OpenBB's lobby and $FIREHOSE all mean the firehose."""
    assert make().normalize(given) == [expected]


@pytest.mark.parametrize("bad", ["AA PL", "ÄPPLE", "-AAPL", "A" * 21])
def test_invalid_symbols_raise_symbol_error(bad: str) -> None:
    """Spaces, non-ASCII letters, a leading separator or a too long ticker are refused."""
    with pytest.raises(SymbolError, match="invalid symbol"):
        make().normalize(bad)


# -- URLs and the token step ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "host"),
    [
        ("realtime", "realtime-mx.intrinio.com"),
        ("delayed_sip", "realtime-delayed-sip.intrinio.com"),
        ("nasdaq_basic", "realtime-nasdaq-basic.intrinio.com"),
    ],
)
def test_each_feed_has_its_auth_and_socket_host(feed: str, host: str) -> None:
    """Token from https://<host>/auth, socket wss://<host>/socket/websocket?vsn=1.0.0&token=."""
    session = make(feed=feed, api_key="my key/1")
    [request] = session.http_requests()
    assert request.url == f"https://{host}/auth?api_key=my%20key%2F1"
    assert request.headers == {"Client-Information": "IntrinioPythonSDKv5.3.0"}
    assert session.url() == f"wss://{host}/socket/websocket?vsn=1.0.0"
    session.http_response(request, HttpResponse(200, b"tok-abc\n"))
    assert session.url() == f"wss://{host}/socket/websocket?vsn=1.0.0&token=tok-abc"
    assert session.connect_kwargs == {
        "additional_headers": {
            "UseNewEquitiesFormat": "v2",
            "Client-Information": "IntrinioPythonSDKv5.3.0",
        }
    }


def test_url_overrides_point_both_steps_at_a_local_server() -> None:
    """url= replaces the socket base (the path is added when missing) and, without auth_url=,
    also gives the token endpoint; auth_url= replaces it."""
    session = make(url="ws://127.0.0.1:8123")
    assert session.url() == "ws://127.0.0.1:8123/socket/websocket?vsn=1.0.0"
    assert session.http_requests()[0].url == "http://127.0.0.1:8123/auth?api_key=k-123"
    secure = make(url="wss://example.test/socket/websocket?x=1")
    assert secure.url() == "wss://example.test/socket/websocket?x=1&vsn=1.0.0"
    assert secure.http_requests()[0].url == "https://example.test/auth?api_key=k-123"
    explicit = make(url="ws://127.0.0.1:1", auth_url="http://127.0.0.1:2")
    assert explicit.http_requests()[0].url == "http://127.0.0.1:2/auth?api_key=k-123"


def test_every_attempt_forgets_the_previous_token() -> None:
    """http_requests() drops the old token: the URL carries only a freshly fetched one."""
    session = make()
    [request] = session.http_requests()
    session.http_response(request, HttpResponse(200, b"old"))
    session.http_requests()
    assert "token=" not in session.url()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_is_auth_failed_without_the_key(status: int) -> None:
    """401/403 from /auth -> AuthFailed naming the endpoint and status, never the key."""
    session = make(api_key="secret-key-9")
    [request] = session.http_requests()
    session.http_response(request, HttpResponse(status, b"Unauthorized"))
    [event] = session.events_received()
    assert isinstance(event, AuthFailed)
    assert f"HTTP {status}" in event.message
    assert "realtime-mx.intrinio.com/auth" in event.message
    assert "secret-key-9" not in event.message


@pytest.mark.parametrize(
    ("status", "body", "retry"),
    [(500, b"oops", True), (429, b"slow down", True), (200, b"  ", True), (404, b"", False)],
)
def test_other_token_answers_are_provider_failures(status: int, body: bytes, retry: bool) -> None:
    """A 5xx/429 or an empty token may pass (retry); a 404 means a wrong auth_url (fatal)."""
    session = make()
    [request] = session.http_requests()
    session.http_response(request, HttpResponse(status, body))
    [event] = session.events_received()
    assert isinstance(event, ProviderFailed)
    assert event.retry is retry
    assert session.token is None


# -- join / leave --------------------------------------------------------------------------


def test_open_socket_is_authenticated_and_joins_every_symbol() -> None:
    """The socket opens authenticated (the token was the auth): joins go out at once and are
    acknowledged when sent (Intrinio sends no ack)."""
    session = make(symbol="aapl,*")
    session.connection_made()
    assert session.data_to_send() == [frame("join_aapl"), frame("join_firehose")]
    assert session.events_received() == [
        Authenticated("socket opened with a fresh token"),
        Subscribed(("AAPL", "$FIREHOSE"), "joined"),
    ]
    assert session.acknowledged == ("AAPL", "$FIREHOSE")


def test_trades_only_sets_the_join_flag() -> None:
    """trades_only=True joins with the second byte 1."""
    session = make(trades_only=True)
    session.connection_made()
    assert session.data_to_send() == [frame("join_aapl_trades_only")]


def test_subscribe_and_unsubscribe_frames() -> None:
    """A later subscribe joins, an unsubscribe leaves (binary frames), with ack events."""
    session = opened(symbol="msft")
    assert session.subscribe("aapl,*") == ["AAPL", "$FIREHOSE"]
    assert session.data_to_send() == [frame("join_aapl"), frame("join_firehose")]
    assert session.unsubscribe("aapl,lobby") == ["AAPL", "$FIREHOSE"]
    assert session.data_to_send() == [frame("leave_aapl"), frame("leave_firehose")]
    assert session.events_received() == [
        Subscribed(("AAPL", "$FIREHOSE"), "joined"),
        Unsubscribed(("AAPL", "$FIREHOSE"), "left"),
    ]
    assert session.symbols == ("MSFT",)


def test_reconnect_rejoins_every_wanted_symbol() -> None:
    """A new socket re-joins what the user wants now (not what the first socket joined)."""
    session = opened(symbol="aapl")
    session.subscribe("*")
    session.data_to_send()
    session.connection_made()
    assert session.data_to_send() == [frame("join_aapl"), frame("join_firehose")]


# -- binary data ---------------------------------------------------------------------------


def test_one_trade() -> None:
    """A UTP trade: venue name, float32 price at 7 digits, total volume, conditions by name."""
    assert opened().receive(frame("trade_utp")) == [trade()]


def test_one_ask_and_one_bid() -> None:
    """Quotes: type from the item type, raw quote condition, no volume or dark-pool flag."""
    session = opened()
    assert session.receive(frame("ask_iex")) == [
        quote(
            date=T + 1,
            symbol="AAPL",
            type="ask",
            exchange="The Investors Exchange",
            price=190.12,
            size=300,
            feed="IEX",
        )
    ]
    assert session.receive(frame("bid_cta_b")) == [
        quote(
            date=T + 2,
            symbol="SPY",
            type="bid",
            exchange="NYSE Arca",
            price=520.05,
            size=500,
            conditions="R",
            feed="CTA_B",
        )
    ]


def test_batched_items_of_several_symbols() -> None:
    """Every item of a batch in order; a FINRA ADF (D) SIP trade is a dark-pool print."""
    assert opened().receive(frame("batch_mixed")) == [
        trade(
            date=T + 10,
            symbol="MSFT",
            exchange="FINRA ADF",
            price=420.25,
            size=50,
            volume=987_654,
            conditions="Regular Sale; Derivatively Priced",
            is_darkpool=True,
        ),
        quote(
            date=T + 11,
            symbol="MSFT",
            type="ask",
            exchange="NASDAQ (Tape C securities)",
            price=420.27,
            size=200,
            conditions="R",
            feed="UTP",
        ),
        quote(
            date=T + 12,
            symbol="MSFT",
            type="bid",
            exchange="Bats EDGX Exchange",
            price=420.24,
            size=100,
            conditions="R",
            feed="UTP",
        ),
        trade(
            date=T + 13,
            symbol="BRK.B",
            exchange="New York Stock Exchange",
            price=412.5,
            size=10,
            volume=4_321,
            conditions="Regular Sale; Intermarket Sweep",
            feed="CTA_A",
        ),
    ]


def test_dark_pool_rules_follow_the_subprovider() -> None:
    """NASDAQ Basic: L is dark, Q lit. A blank market center has no exchange and is dark only
    for SIP subproviders (never for IEX)."""
    session = opened()
    nasdaq = session.receive(frame("darkpool_nasdaq_basic"))
    assert [(r["exchange"], r["is_darkpool"], r["feed"]) for r in nasdaq] == [
        ("Long-term Stock Exchange", True, "NASDAQ_BASIC"),
        ("NASDAQ (Tape C securities)", False, "NASDAQ_BASIC"),
    ]
    blank = session.receive(frame("blank_centers"))
    assert [(r["exchange"], r["is_darkpool"], r["feed"], r["conditions"]) for r in blank] == [
        (None, False, "IEX", None),
        (None, True, "CTA_A", None),
    ]


def test_placeholder_items_are_discarded() -> None:
    """Market center "!" and price 0 are dropped (as OpenBB does); the rest of the batch stays."""
    session = opened()
    assert session.receive(frame("discarded")) == [
        quote(
            date=T + 42,
            symbol="AAPL",
            type="bid",
            exchange="NASDAQ (Tape C securities)",
            price=189.99,
            size=100,
            feed="UTP",
        )
    ]
    assert session.events_received() == []


def test_unknown_item_type_is_skipped_with_one_warning() -> None:
    """An item of an unknown type is skipped by its length, reported once per session."""
    session = opened()
    records = session.receive(frame("unknown_type"))
    assert [(r["type"], r["price"]) for r in records] == [("ask", 190.2)]
    session.receive(frame("unknown_type"))
    assert session.events_received() == [
        ProviderMessage("warning", "skipping items of unknown type 9 (not 0/1/2)")
    ]


def test_unknown_subprovider_and_cboe_one_conditions() -> None:
    """An unknown subprovider code is named by its number; CBOE One conditions (a number of bit
    flags) are kept as they are."""
    session = opened()
    [unknown] = session.receive(frame("unknown_subprovider"))
    assert unknown["feed"] == "SUBPROVIDER_12"
    [cboe] = session.receive(frame("cboe_one"))
    assert (cboe["feed"], cboe["conditions"], cboe["exchange"]) == ("CBOE_ONE", "16", "Cboe")


@pytest.mark.parametrize(
    ("name", "kept", "reason"),
    [
        ("truncated", 1, "item 2 of 2 unreadable"),
        ("count_too_high", 2, "item 3 of 3 unreadable"),
        ("empty_frame", 0, "empty binary frame"),
    ],
)
def test_broken_frames_are_reported_not_raised(name: str, kept: int, reason: str) -> None:
    """A broken item ends its frame with one MalformedFrame event; earlier items are kept."""
    session = opened()
    records = session.receive(frame(name))
    assert len(records) == kept
    [event] = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert reason in event.reason


def test_empty_batch_is_quietly_empty() -> None:
    """A frame of zero items yields nothing and reports nothing."""
    session = opened()
    assert session.receive(frame("empty_batch")) == []
    assert session.events_received() == []


def test_item_length_field_is_what_moves_to_the_next_item() -> None:
    """Bytes a newer server appends inside an item (its length covers them) are skipped."""
    raw = bytearray(bytes.fromhex(ENTRIES["trade_utp"]["frame"]))
    raw[2] += 3  # item length: 3 more bytes than the layout we know
    raw += b"\x01\x02\x03"
    two = bytes([2]) + bytes(raw[1:]) + bytes(raw[1:])
    assert opened().receive(two) == [trade(), trade()]


# -- text control messages -----------------------------------------------------------------


def test_phoenix_replies() -> None:
    """ok -> info; a heartbeat reply -> Heartbeat; an error for a wanted symbol ->
    SubscriptionFailed, for another topic -> an error message; phx_error / phx_close logged."""
    session = opened(symbol="aapl,zzzz")
    for name in ("phx_reply_ok", "phx_heartbeat_reply", "phx_reply_invalid_symbol"):
        assert session.receive(frame(name)) == []
    other = opened(symbol="aapl")
    other.receive(frame("phx_reply_invalid_symbol"))
    other.receive(frame("phx_error"))
    other.receive(frame("phx_close"))
    assert session.events_received() == [
        ProviderMessage("info", "iex:securities:AAPL: ok"),
        Heartbeat(),
        SubscriptionFailed(("ZZZZ",), "ZZZZ: invalid symbol"),
    ]
    assert other.events_received() == [
        ProviderMessage("error", "iex:securities:ZZZZ: invalid symbol"),
        ProviderMessage("error", "channel iex:securities:AAPL failed on the server"),
        ProviderMessage("warning", "the server closed channel iex:securities:AAPL"),
    ]


def test_entitlement_refusal_is_fatal_and_says_why() -> None:
    """An "unauthorized" reply for the firehose is a fatal failure naming the entitlement."""
    session = opened(symbol="*")
    session.receive(frame("phx_reply_unauthorized_firehose"))
    [event] = session.events_received()
    assert isinstance(event, ProviderFailed)
    assert not event.retry
    assert "refused the firehose: unauthorized" in event.message
    assert "firehose entitlement" in event.message


def test_plain_text_is_a_warning_and_empty_text_nothing() -> None:
    """Plain text frames are warnings (as Intrinio's C# SDK logs them); empty ones are
    keep-alives; neither is a malformed frame."""
    session = opened()
    assert session.receive(frame("text_warning")) == []
    assert session.receive(frame("text_keepalive")) == []
    assert session.events_received() == [
        ProviderMessage("warning", "Slow consumer: some messages were dropped")
    ]


# -- the official SDK as the oracle of the layout -------------------------------------------


def _sdk_items(handler: Any, data: bytes) -> list[Any]:
    items = []
    start = 1
    for _ in range(data[0]):
        kind, length = data[start], data[start + 1]
        if kind == 0:
            items.append(handler.parse_trade(data, start))
        elif kind in (1, 2):
            items.append(handler.parse_quote(data, start))
        start += length
    return items


def test_records_agree_with_intrinios_sdk_parser() -> None:
    """Every data fixture parsed by Intrinio's own SDK (intriniorealtime) gives the same
    symbol, type, price (float32), size, timestamp, subprovider, market center, volume and
    condition as our records (our extra rules aside: discarded items, blank centers)."""
    from intriniorealtime.equities_client import EquitiesQuoteHandler

    handler = EquitiesQuoteHandler(None, False)  # a Thread object, never started
    names = [
        "trade_utp",
        "ask_iex",
        "bid_cta_b",
        "batch_mixed",
        "darkpool_nasdaq_basic",
        "cboe_one",
    ]
    session = opened()
    for name in names:
        data = frame(name)
        assert isinstance(data, bytes)
        ours = session.receive(data)
        theirs = _sdk_items(handler, data)
        assert len(ours) == len(theirs), name
        for record, item in zip(ours, theirs, strict=True):
            is_trade = not hasattr(item, "type")
            assert record["symbol"] == item.symbol
            assert record["type"] == ("trade" if is_trade else item.type)
            assert record["price"] == float(f"{item.price:.7g}")
            assert struct.pack("<f", record["price"]) == struct.pack("<f", item.price)
            assert (record["size"], record["date"], record["feed"]) == (
                item.size,
                item.timestamp,
                item.subprovider,
            )
            assert record["exchange"] == VENUES.get(item.market_center, item.market_center)
            if is_trade:
                assert record["volume"] == item.total_volume
                assert record["is_darkpool"] == item.is_darkpool()
            else:
                assert record["conditions"] == (item.condition or None)


def test_price_rounding_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounded prices are cached, the cache is emptied when full, and every price stays right
    across hits, misses and clears."""
    from obbws_providers import intrinio

    monkeypatch.setattr(intrinio, "_PRICE_CACHE_MAX", 2)
    session = opened()
    prices = [10.01, 10.02, 10.03, 10.01, 10.04, 10.02]
    for price in prices:
        body = struct.pack("<BHfIQIB", 3, ord("Q"), price, 1, T, 1, 0)
        data = bytes([1, 0, 3 + 1 + len(body), 1]) + b"A" + body
        [record] = session.receive(data)
        assert record["price"] == price
        assert len(session._prices) <= 2
