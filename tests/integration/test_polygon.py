"""The Polygon provider end to end against the fake Polygon server on 127.0.0.1 (port 0), and
the fake checked by Polygon's official client (``polygon-api-client``, the oracle)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from polygon import WebSocketClient as OracleClient
from polygon.exceptions import AuthError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter._stream import WIRE_LOGGER
from obbws_jupyter.exceptions import ProviderAuthError, ProviderConnectionError
from obbws_jupyter.fakes import ServerHandle
from obbws_jupyter.fakes.polygon import CHANNELS, PolygonServer, start_polygon_server
from tests.conftest import TIMEOUT, RecordWaiter, kill_all

pytestmark = pytest.mark.integration

KEY = "pk-test-7Hq2Zx"  # the fake server's key
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[ServerHandle]:
    """A fake Polygon server that checks the key and keeps what it sent."""
    handle = start_polygon_server(api_key=KEY, rate=400.0, seed=7, keep_sent=5000)
    yield handle
    kill_all()  # before the server goes, so no client sees a drop
    handle.close()


def polygon(fake: ServerHandle, name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("reconnect_base", 0.05)
    return obbws.create_connection(provider="polygon", name=name, url=fake.url, **kwargs)


# -- the oracle: Polygon's own client parses what the fake sends ------------------------------

ORACLE_SUBSCRIPTIONS = {
    "crypto": ["XT.*", "XQ.*", "XL2.BTC-USD", "XA.*", "XAS.*", "FMV.*"],
    "forex": ["C.*", "CA.*", "CAS.*", "FMV.*"],
    "stocks": ["T.*", "Q.*", "A.*", "AM.*", "FMV.*"],
    "options": [f"{c}.O:SPY251219C00650000" for c in ("T", "Q", "A", "AM", "FMV")],
    "indices": ["A.*", "AM.*", "V.*"],
}

# the oracle's model attribute <- Polygon's wire key, per model class
ORACLE_FIELDS: dict[str, dict[str, str]] = {
    "EquityAgg": {
        "event_type": "ev",
        "symbol": "sym",
        "volume": "v",
        "accumulated_volume": "av",
        "official_open_price": "op",
        "vwap": "vw",
        "open": "o",
        "close": "c",
        "high": "h",
        "low": "l",
        "aggregate_vwap": "a",
        "average_size": "z",
        "start_timestamp": "s",
        "end_timestamp": "e",
    },
    "CurrencyAgg": {
        "event_type": "ev",
        "pair": "pair",
        "open": "o",
        "close": "c",
        "high": "h",
        "low": "l",
        "volume": "v",
        "vwap": "vw",
        "start_timestamp": "s",
        "end_timestamp": "e",
        "avg_trade_size": "z",
    },
    "EquityTrade": {
        "event_type": "ev",
        "symbol": "sym",
        "exchange": "x",
        "id": "i",
        "tape": "z",
        "price": "p",
        "size": "s",
        "conditions": "c",
        "timestamp": "t",
        "sequence_number": "q",
        "trf_id": "trfi",
        "trf_timestamp": "trft",
    },
    "CryptoTrade": {
        "event_type": "ev",
        "pair": "pair",
        "exchange": "x",
        "id": "i",
        "price": "p",
        "size": "s",
        "conditions": "c",
        "timestamp": "t",
        "received_timestamp": "r",
    },
    "EquityQuote": {
        "event_type": "ev",
        "symbol": "sym",
        "bid_exchange_id": "bx",
        "bid_price": "bp",
        "bid_size": "bs",
        "ask_exchange_id": "ax",
        "ask_price": "ap",
        "ask_size": "as",
        "condition": "c",
        "indicators": "i",
        "timestamp": "t",
        "tape": "z",
        "sequence_number": "q",
    },
    "ForexQuote": {
        "event_type": "ev",
        "pair": "p",
        "exchange_id": "x",
        "ask_price": "a",
        "bid_price": "b",
        "timestamp": "t",
    },
    "CryptoQuote": {
        "event_type": "ev",
        "pair": "pair",
        "bid_price": "bp",
        "bid_size": "bs",
        "ask_price": "ap",
        "ask_size": "as",
        "timestamp": "t",
        "exchange_id": "x",
        "received_timestamp": "r",
    },
    "Level2Book": {
        "event_type": "ev",
        "pair": "pair",
        "bid_prices": "b",
        "ask_prices": "a",
        "timestamp": "t",
        "exchange_id": "x",
        "received_timestamp": "r",
    },
    "IndexValue": {"event_type": "ev", "value": "val", "ticker": "T", "timestamp": "t"},
    "FairMarketValue": {"event_type": "ev", "fmv": "fmv", "ticker": "sym", "timestamp": "t"},
}
# integer venue ids, as Polygon sends them (the demo server sent a string)
VENUE_ATTRS = ("exchange", "exchange_id", "bid_exchange_id", "ask_exchange_id")


def run_oracle(url: str, market: str, subscriptions: list[str], api_key: str, want: int) -> list:
    """Run polygon-api-client against ``url`` on its own loop in a thread until it has parsed
    ``want`` messages including every channel subscribed; returns its typed models."""
    models: list[Any] = []
    failure: list[BaseException] = []
    kinds = {s.partition(".")[0] for s in subscriptions}

    async def session() -> None:
        client = OracleClient(
            api_key=api_key,
            feed=url.removeprefix("ws://"),
            market=market,
            secure=False,
            subscriptions=subscriptions,
            max_reconnects=0,
        )

        async def processor(batch: list[Any]) -> None:
            models.extend(batch)
            if len(models) >= want and kinds <= {m.event_type for m in models}:
                await client.close()

        try:
            await asyncio.wait_for(client.connect(processor), 3 * TIMEOUT)
        finally:
            if client.websocket is not None:  # the client leaves it open when it raises
                await client.close()

    def target() -> None:
        try:
            asyncio.run(session())
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="polygon-oracle", daemon=True)
    thread.start()
    thread.join(4 * TIMEOUT)
    assert not thread.is_alive(), "the oracle client did not finish"
    if failure:
        raise failure[0]
    return models


def sent_events(fake: ServerHandle) -> list[dict[str, Any]]:
    """Every data event the fake sent, in order (status elements left out)."""
    events = []
    for text in list(fake.sent):
        events.extend(e for e in json.loads(text) if e["ev"] != "status")
    return events


@pytest.mark.parametrize("market", list(ORACLE_SUBSCRIPTIONS))
def test_official_client_parses_every_event_type(fake: ServerHandle, market: str) -> None:
    """polygon-api-client authenticates, subscribes and parses each event type of the market
    into its typed model, with every value equal to what the fake sent."""
    subscriptions = ORACLE_SUBSCRIPTIONS[market]
    models = run_oracle(fake.url, market, subscriptions, KEY, want=150)
    assert {m.event_type for m in models} == set(CHANNELS[market]) & {
        s.partition(".")[0] for s in subscriptions
    }
    events = sent_events(fake)
    assert len(events) >= len(models) >= 150
    for model, event in zip(models, events, strict=False):
        fields = ORACLE_FIELDS[type(model).__name__]
        assert set(event) <= set(fields.values()), f"the client does not know {event}"
        for attr, key in fields.items():
            assert getattr(model, attr) == event.get(key), (attr, event)
        for attr in VENUE_ATTRS:
            value = getattr(model, attr, None)
            assert value is None or type(value) is int, (attr, event)
    assert fake.auth_attempts == 1


def test_official_client_sees_a_bad_key_refused(fake: ServerHandle) -> None:
    """The fake refuses a wrong key the way the official client expects (AuthError)."""
    with pytest.raises(AuthError, match="authentication failed"):
        run_oracle(fake.url, "crypto", ["XT.*"], "wrong-key", want=1)


# -- create_connection ------------------------------------------------------------------------


def test_create_connection_stores_typed_openbb_columns(fake: ServerHandle) -> None:
    """A crypto trade connection stores rows with OpenBB's Polygon columns and typed values."""
    conn = polygon(fake, "pg", symbol="btcusd,ethusd", asset_type="crypto", feed="trade")
    waiter = RecordWaiter(conn.get_client())
    assert conn.status.is_running
    assert conn.status.subscribed_symbols == "XT.BTC-USD,XT.ETH-USD"
    assert waiter.wait(30)
    df = conn.get_results()
    assert list(df.columns) == [
        "id",
        "received_at",
        "date",
        "symbol",
        "type",
        "exchange",
        "price",
        "size",
        "conditions",
        "provider_received_at",
    ]
    assert str(df["date"].dt.tz) == "America/New_York"
    assert str(df["provider_received_at"].dt.tz) == "America/New_York"
    assert (df["provider_received_at"] >= df["date"]).all()
    assert set(df["symbol"]) <= {"BTC-USD", "ETH-USD"} and set(df["type"]) == {"XT"}
    assert set(df["exchange"]) <= {"Coinbase", "Bitfinex", "Bitstamp", "Binance", "Kraken"}
    assert set(df["conditions"]) <= {"buyside", "sellside"}
    assert pd.api.types.is_float_dtype(df["price"]) and (df["price"] > 0).all()
    assert pd.api.types.is_float_dtype(df["size"])


@pytest.mark.parametrize(
    ("asset_type", "feed", "symbol", "columns", "symbols"),
    [
        ("stock", "quote", "aapl", ["bid_exchange", "tape", "indicators"], {"AAPL"}),
        ("stock_delayed", "aggs_min", "*", ["day_vwap", "avg_size"], {"AAPL", "SPY"}),
        ("options", "trade", "SPY251219C00650000", ["conditions"], {"O:SPY251219C00650000"}),
        ("fx", "quote", "eurusd", ["bid", "ask"], {"EUR/USD"}),
        ("index", "value", "spx", ["value"], {"I:SPX"}),
        ("crypto", "l2", "btcusd", ["bids", "asks", "bid"], {"BTC-USD"}),
        ("stock", "fmv", "*", ["fair_market_value"], {"AAPL"}),
    ],
)
def test_each_market_streams_through_the_fake(
    fake: ServerHandle,
    asset_type: str,
    feed: str,
    symbol: str,
    columns: list[str],
    symbols: set[str],
) -> None:
    """Every market and several feeds stream end to end into their table's columns."""
    conn = polygon(fake, f"pg-{asset_type}-{feed}", symbol=symbol, asset_type=asset_type, feed=feed)
    waiter = RecordWaiter(conn.get_client())
    for expected in symbols:
        assert waiter.wait_symbol(expected)
    df = conn.get_results()
    assert set(columns) <= set(df.columns)
    assert df[columns].notna().all().all()
    assert conn.status.malformed_frames == 0


def test_subscribe_and_unsubscribe_reach_the_server(fake: ServerHandle) -> None:
    """subscribe/unsubscribe send Polygon's actions, are acknowledged, and change the data."""
    conn = polygon(fake, "subs", symbol="btcusd", asset_type="crypto", feed="quote")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_symbol("BTC-USD")
    conn.subscribe("eth-usd")
    assert fake.subscribe_requests == ["XQ.BTC-USD", "XQ.ETH-USD"]
    assert waiter.wait_symbol("ETH-USD")
    conn.unsubscribe("btcusd")
    fake.wait_for(lambda: fake.unsubscribe_requests == ["XQ.BTC-USD"], TIMEOUT)
    assert conn.status.subscribed_symbols == "XQ.ETH-USD"
    assert '{"action":"unsubscribe","params":"XQ.BTC-USD"}' in fake.received


def test_bad_key_raises_and_leaves_nothing_running(fake: ServerHandle) -> None:
    """A rejected key raises ProviderAuthError from create_connection; nothing stays."""
    with pytest.raises(ProviderAuthError, match="authentication failed") as info:
        polygon(fake, "badkey", symbol="btcusd", api_key="wrong-key-123")
    assert "wrong-key-123" not in str(info.value)
    assert obbws.default_registry().names() == []
    assert not any(t.name == "obbws-store-badkey" for t in threading.enumerate())


def test_plan_refusal_raises_a_clear_error() -> None:
    """A key whose plan lacks websocket access fails create_connection with what to do."""
    server = start_polygon_server(refuse_plan=True, rate=0)
    try:
        with pytest.raises(ProviderAuthError, match="plan doesn't include websocket access"):
            obbws.create_connection(
                provider="polygon", name="plan", url=server.url, api_key="k", symbol="aapl"
            )
        assert obbws.default_registry().names() == []
        assert not any(t.name == "obbws-store-plan" for t in threading.enumerate())
    finally:
        server.close()


def test_max_connections_is_fatal_not_a_reconnect_storm() -> None:
    """Polygon's max_connections status ends the attempt with a clear error, once."""
    server = start_polygon_server(max_connections=0, rate=0)
    try:
        with pytest.raises(ProviderConnectionError, match="one connection per cluster"):
            obbws.create_connection(
                provider="polygon", name="maxed", url=server.url, api_key="k", symbol="aapl"
            )
        assert server.connections_total == 1
        assert obbws.default_registry().names() == []
    finally:
        server.close()


def test_dropped_connection_resumes_with_the_same_subscriptions(fake: ServerHandle) -> None:
    """After a close and after a TCP reset the stream reconnects, re-subscribes every symbol
    (the current ones) and rows keep arriving."""
    conn = polygon(fake, "drop", symbol="btcusd", asset_type="crypto", feed="trade")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("solusd")
    assert waiter.wait_symbol("SOL-USD")
    fake.drop_connections()
    fake.wait_connections(2, TIMEOUT)
    fake.wait_for(lambda: len(fake.subscribe_requests) >= 3, TIMEOUT)
    assert fake.subscribe_requests[-1] == "XT.BTC-USD,XT.SOL-USD"
    assert waiter.wait_more(20)
    fake.drop_connections(None)  # TCP reset, no closing handshake
    fake.wait_connections(3, TIMEOUT)
    fake.wait_for(lambda: len(fake.subscribe_requests) >= 4, TIMEOUT)
    assert fake.subscribe_requests[-1] == "XT.BTC-USD,XT.SOL-USD"
    assert waiter.wait_symbol("SOL-USD") and waiter.wait_symbol("BTC-USD")
    status = conn.status
    assert status.is_running and status.reconnects >= 2
    assert fake.auth_attempts == 3


def test_key_never_shows_in_status_repr_or_logs(
    fake: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """The API key appears in no status, repr or log line, even with websockets' frame log on:
    the auth frame is logged masked."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=WIRE_LOGGER)  # websockets' frames, quiet by default
    conn = polygon(fake, "secret", symbol="btcusd", feed="trade")
    assert RecordWaiter(conn.get_client()).wait(5)
    conn.subscribe("ethusd")
    fake.drop_connections()
    fake.wait_connections(2, TIMEOUT)
    assert f'{{"action":"auth","params":"{KEY}"}}' in fake.received  # it was sent, though
    text = repr(conn) + str(conn.status) + repr(conn.get_client()) + conn._repr_html_()
    assert KEY not in text
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any('"params":"********"' in line for line in ours)  # the auth frame, masked
    assert not any(KEY in line for line in ours)


def test_docs_fake_server_example_runs(tmp_path: Path) -> None:
    """The keyless example of docs/providers/polygon.md runs as written."""
    text = (ROOT / "docs" / "providers" / "polygon.md").read_text(encoding="utf-8")
    section = text.split("## Without a key", 1)[1]
    block = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert block is not None
    script = tmp_path / "polygon_example.py"
    script.write_text(block.group(1))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "BTC-USD" in out.stdout and "Client fake killed." in out.stdout


# -- the fake server's own protocol -----------------------------------------------------------


async def _recv(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def _status_scenario(server: PolygonServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{server.url}/stock"):  # Polygon's path is /stocks
            pass
    assert info.value.response.status_code == 404
    async with connect(server.url_for("crypto")) as ws:
        assert await _recv(ws) == [
            {"ev": "status", "status": "connected", "message": "Connected Successfully"}
        ]
        await ws.send('{"action":"subscribe","params":"XT.BTC-USD"}')
        assert (await _recv(ws))[0]["status"] == "error"  # not authenticated yet
        await ws.send(json.dumps({"action": "auth", "params": KEY}))
        assert (await _recv(ws))[0]["status"] == "auth_success"
        await ws.send(json.dumps({"action": "auth", "params": KEY}))
        assert (await _recv(ws))[0]["message"] == "already authenticated"
        await ws.send('{"action":"subscribe","params":"T.BTC-USD,XT.BTC-USD"}')
        assert await _recv(ws) == [
            {"ev": "status", "status": "error", "message": "invalid subscription: T.BTC-USD"},
            {"ev": "status", "status": "success", "message": "subscribed to: XT.BTC-USD"},
        ]
        data = await _recv(ws)
        assert {e["ev"] for e in data} == {"XT"}  # no heartbeat event, ever
        assert all(type(e["x"]) is int and e["pair"] == "BTC-USD" for e in data)


def test_fake_answers_like_polygon() -> None:
    """The fake refuses unknown paths (404), answers out-of-order actions and unknown
    channels with error statuses, and sends trades with integer venues and pairs."""

    async def scenario() -> None:
        server = await PolygonServer(api_key=KEY, rate=500.0).start()
        try:
            await _status_scenario(server)
        finally:
            await server.close()

    runtime.run(scenario(), 6 * TIMEOUT)


def test_fake_closes_a_connection_that_never_authenticates() -> None:
    """With auth_timeout the fake sends Polygon's auth_timeout status and closes."""

    async def scenario() -> None:
        server = await PolygonServer(auth_timeout=0.1).start()
        try:
            async with connect(server.url_for("stocks")) as ws:
                await _recv(ws)  # connected
                assert await _recv(ws) == [
                    {
                        "ev": "status",
                        "status": "auth_timeout",
                        "message": "No authentication request received.",
                    }
                ]
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
        finally:
            await server.close()

    runtime.run(scenario(), 6 * TIMEOUT)
