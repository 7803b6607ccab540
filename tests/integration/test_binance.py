"""The binance provider end to end against the fake Binance server (127.0.0.1, port 0), and the
fake checked against the official client (binance-connector) as an oracle."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import ProviderConnectionError, SymbolError
from obbws_jupyter.fakes.binance import BinanceServerHandle, start_binance_server
from obbws_jupyter.protocol import get_provider
from tests.conftest import TIMEOUT, RecordWaiter, kill_all

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[BinanceServerHandle]:
    """A fake Binance server with short kline updates and no pings unless a test asks."""
    handle = start_binance_server(rate=400.0, ping_interval=None, kline_update_interval=0.05)
    yield handle
    kill_all()
    handle.close()


def open_binance(fake: BinanceServerHandle, name: str, **params: Any) -> Any:
    params.setdefault("symbol", "btcusdt,ethusdt")
    params.setdefault("url", fake.url)
    return obbws.create_connection(provider="binance", name=name, reconnect_base=0.05, **params)


def requests_with(fake: BinanceServerHandle, stream: str) -> list[list[str]]:
    return [r for r in fake.subscribe_requests if stream in r]


def test_trades_are_stored_with_typed_columns(fake: BinanceServerHandle) -> None:
    """create_connection stores trades; get_results has the trade columns, typed, date tz-aware."""
    conn = open_binance(fake, "bn_trades")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(20) and waiter.wait_symbol("ETHUSDT")
    df = conn.get_results()
    assert list(df.columns) == [
        *("id", "received_at", "date", "symbol", "type", "exchange", "price", "size"),
        *("trade_id", "buyer_is_maker", "taker_side"),
    ]
    assert isinstance(df["date"].dtype, pd.DatetimeTZDtype)
    assert df["price"].dtype == "float64" and df["trade_id"].dtype == "int64"
    assert df["buyer_is_maker"].dtype == "bool"
    assert set(df["symbol"]) == {"BTCUSDT", "ETHUSDT"} and set(df["exchange"]) == {"BINANCE"}
    assert set(df["taker_side"]) <= {"buy", "sell"} and (df["price"] > 0).all()
    assert fake.subscribe_requests[0] == ["btcusdt@trade", "ethusdt@trade"]
    status = conn.status
    assert status.acknowledged_symbols == "BTCUSDT,ETHUSDT" and status.malformed_frames == 0


@pytest.mark.parametrize(
    ("feed", "extra", "columns"),
    [
        ("agg_trade", {}, {"agg_trade_id", "first_trade_id", "last_trade_id"}),
        ("book_ticker", {}, {"bid", "bid_size", "ask", "ask_size", "update_id"}),
        ("kline", {"interval": "1s"}, {"open", "high", "low", "close", "vwap", "closed"}),
    ],
)
def test_every_feed_stores_its_records(
    fake: BinanceServerHandle, feed: str, extra: dict[str, Any], columns: set[str]
) -> None:
    """agg_trade, book_ticker and kline connections store their own record model."""
    conn = open_binance(fake, f"bn_{feed}", feed=feed, **extra)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(6)
    df = conn.get_results()
    assert columns <= set(df.columns) and df["date"].notna().all()
    assert set(df["symbol"]) <= {"BTCUSDT", "ETHUSDT"}
    if feed == "kline":
        assert (df["interval"] == "1s").all() and (df["high"] >= df["low"]).all()


def test_raw_ws_endpoint_is_read_too(fake: BinanceServerHandle) -> None:
    """url=.../ws (raw events, no combined wrapper) stores the same records."""
    conn = open_binance(fake, "bn_raw", url=fake.url + "/ws", symbol="btcusdt")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(10)
    assert set(conn.get_results()["symbol"]) == {"BTCUSDT"}
    assert fake.clients[0].path == "/ws"


def test_subscribe_and_unsubscribe_reach_the_server(fake: BinanceServerHandle) -> None:
    """subscribe/unsubscribe send SUBSCRIBE/UNSUBSCRIBE frames; the new symbol's rows arrive."""
    conn = open_binance(fake, "bn_sub", symbol="btcusdt")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("sol-usdt")
    assert waiter.wait_symbol("SOLUSDT")
    assert fake.subscribe_requests[-1] == ["solusdt@trade"]
    conn.unsubscribe("solusdt")
    fake.wait_for(lambda: fake.unsubscribe_requests == [["solusdt@trade"]], TIMEOUT)
    assert conn.status.subscribed_symbols == "BTCUSDT"
    received = [json.loads(f) for f in fake.received]
    assert [r["method"] for r in received] == ["SUBSCRIBE", "SUBSCRIBE", "UNSUBSCRIBE"]
    assert [r["id"] for r in received] == [1, 2, 3]


def test_a_refused_subscription_raises_symbol_error(fake: BinanceServerHandle) -> None:
    """An error reply to SUBSCRIBE makes subscribe() raise SymbolError; the stream goes on."""
    fake.refuse("BADUSDT")
    conn = open_binance(fake, "bn_refused", symbol="btcusdt")
    with pytest.raises(SymbolError, match="Invalid request: invalid stream"):
        conn.subscribe("badusdt")
    assert conn.status.is_running and conn.status.subscribed_symbols == "BTCUSDT"


@pytest.mark.parametrize("code", [1011, None], ids=["close", "reset"])
def test_a_dropped_connection_resumes_with_the_same_subscriptions(
    fake: BinanceServerHandle, code: int | None
) -> None:
    """After a provider close or a TCP reset the stream reconnects and re-subscribes all."""
    conn = open_binance(fake, f"bn_drop_{code}", symbol="btcusdt")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("ethusdt")
    assert waiter.wait_symbol("ETHUSDT")
    fake.drop_connections(code)
    fake.wait_connections(2, TIMEOUT)
    fake.wait_for(lambda: len(fake.subscribe_requests) >= 3, TIMEOUT)
    assert fake.subscribe_requests[-1] == ["btcusdt@trade", "ethusdt@trade"]
    assert waiter.wait_symbol("ETHUSDT") and waiter.wait_symbol("BTCUSDT")
    assert conn.status.reconnects >= 1 and conn.status.is_running


def test_the_connection_age_limit_keeps_the_subscription_set() -> None:
    """Binance closes connections at 24 h (here 0.3 s): each new one re-subscribes everything."""
    fake = start_binance_server(rate=300.0, ping_interval=None, max_connection_age=0.3)
    try:
        conn = open_binance(fake, "bn_age", symbol="btcusdt")
        conn.subscribe("ethusdt")
        fake.wait_connections(3, 2 * TIMEOUT)
        fake.wait_for(lambda: len(requests_with(fake, "ethusdt@trade")) >= 3, TIMEOUT)
        assert fake.subscribe_requests[-1] == ["btcusdt@trade", "ethusdt@trade"]
        waiter = RecordWaiter(conn.get_client())
        assert waiter.wait_symbol("ETHUSDT")
        assert conn.status.subscribed_symbols == "BTCUSDT,ETHUSDT"
    finally:
        kill_all()
        fake.close()


def test_server_pings_are_answered() -> None:
    """The server's ping frames get pongs from the client library (no pong -> disconnect)."""
    fake = start_binance_server(rate=50.0, ping_interval=0.05, ping_timeout=TIMEOUT)
    try:
        open_binance(fake, "bn_ping", symbol="btcusdt")
        fake.wait_for(lambda: fake.pongs_received >= 3, TIMEOUT)
        assert fake.connections_total == 1
    finally:
        kill_all()
        fake.close()


def test_a_server_shutdown_event_reconnects_at_once(fake: BinanceServerHandle) -> None:
    """serverShutdown -> a new connection that subscribes again, without waiting for the close."""
    conn = open_binance(fake, "bn_shutdown", symbol="btcusdt")
    assert fake.announce_shutdown() == 1
    fake.wait_connections(2, TIMEOUT)
    fake.wait_for(lambda: len(fake.subscribe_requests) >= 2, TIMEOUT)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(5)
    assert conn.status.reconnects == 1


def test_an_unreachable_endpoint_is_a_clear_connection_error() -> None:
    """No server (a firewall, no internet): ProviderConnectionError, nothing left running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    threads = {t.name for t in threading.enumerate()}
    with pytest.raises(ProviderConnectionError, match="Could not connect"):
        obbws.create_connection(
            provider="binance", name="bn_down", symbol="btcusdt", url=f"ws://127.0.0.1:{port}"
        )
    assert obbws.default_registry().names() == []
    assert {t.name for t in threading.enumerate()} - threads <= {"obbws-loop"}


def test_a_restricted_location_is_a_clear_connection_error() -> None:
    """binance.com refusing the handshake (HTTP 451) fails create_connection, naming it."""
    fake = start_binance_server(restricted=True)
    try:
        with pytest.raises(ProviderConnectionError, match="HTTP 451"):
            open_binance(fake, "bn_451", symbol="btcusdt")
        assert obbws.default_registry().names() == []
    finally:
        fake.close()


# -- the fake server's own protocol ------------------------------------------------------------


async def _exchange(url: str, *frames: str) -> list[Any]:
    """Send frames to a fresh connection; return its replies (one per frame; events between
    them are skipped)."""

    async def reply(ws: Any) -> Any:
        while True:
            message = json.loads(await ws.recv())
            if "id" in message:
                return message

    async with connect(url) as ws:
        out = []
        for frame in frames:
            await ws.send(frame)
            out.append(await asyncio.wait_for(reply(ws), TIMEOUT))
        return out


def test_fake_answers_requests_as_documented(fake: BinanceServerHandle) -> None:
    """Replies and errors of the documented request set, ids echoed (strings too)."""
    replies = runtime.run(
        _exchange(
            fake.url + "/ws",
            '{"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": "abc1"}',
            '{"method": "LIST_SUBSCRIPTIONS", "id": 3}',
            '{"method": "GET_PROPERTY", "params": ["combined"], "id": 2}',
        ),
        timeout=2 * TIMEOUT,
    )
    replies += runtime.run(
        _exchange(
            fake.url + "/stream",
            '{"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5}',
            '{"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 6}',
            '{"method": "SUBSCRIBE", "params": [], "id": -1.5}',
            "{not json",
            '{"method": "PING", "id": 7}',
        ),
        timeout=2 * TIMEOUT,
    )
    assert replies[0] == {"result": None, "id": "abc1"}
    assert replies[1] == {"result": ["btcusdt@aggTrade"], "id": 3}
    assert replies[2] == {"result": False, "id": 2}
    assert replies[3] == {
        "error": {"code": 1, "msg": "Invalid value type: expected Boolean"},
        "id": 5,
    }
    assert replies[4]["error"]["code"] == 2 and replies[4]["id"] == 6
    assert replies[5]["error"]["msg"] == "Invalid request: request ID must be an unsigned integer"
    assert replies[6]["error"]["code"] == 3 and replies[6]["id"] is None
    assert replies[7]["error"]["msg"].startswith("Invalid request: unknown variant PING")


def test_fake_disconnects_beyond_five_messages_per_second(fake: BinanceServerHandle) -> None:
    """A sixth JSON message within a second closes the connection (Binance's limit)."""

    async def burst() -> int | None:
        async with connect(fake.url + "/stream") as ws:
            for i in range(6):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            return ws.close_code

    assert runtime.run(burst(), timeout=2 * TIMEOUT) == 1008


def test_fake_acknowledges_an_unknown_symbol_and_stays_silent(fake: BinanceServerHandle) -> None:
    """Like Binance, a well-formed stream of an unlisted symbol is acked and sends nothing."""
    conn = open_binance(fake, "bn_unknown", symbol="nosuchcoin")
    assert conn.status.acknowledged_symbols == "NOSUCHCOIN"
    assert fake.events_sent == 0


# -- the official client as an oracle ---------------------------------------------------------


@pytest.mark.parametrize("combined", [False, True], ids=["raw", "combined"])
def test_binance_connector_reads_what_the_fake_sends(
    fake: BinanceServerHandle, combined: bool
) -> None:
    """binance-connector's SpotWebsocketStreamClient connects to the fake (/ws and /stream),
    subscribes through its own methods, answers pings, and receives documented messages that
    our session parses into records."""
    from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

    fake.server.ping_interval = 0.05
    messages: list[str] = []
    pings: list[bytes] = []
    got = threading.Condition()

    def on_message(_: Any, text: str) -> None:
        with got:
            messages.append(text)
            got.notify_all()

    client = SpotWebsocketStreamClient(
        stream_url=fake.url,
        on_message=on_message,
        on_ping=lambda _, data: pings.append(data),
        is_combined=combined,
    )
    try:
        client.trade(symbol="btcusdt", id=11)
        client.agg_trade(symbol="ethusdt", id=12)
        client.book_ticker(symbol="btcusdt", id=13)
        client.kline(symbol="ethusdt", interval="1m", id=14)
        kinds = {"trade", "aggTrade", "bookTicker", "kline"}
        with got:
            assert got.wait_for(lambda: kinds <= _kinds(messages) and len(pings) >= 2, TIMEOUT)
    finally:
        client.stop()
        # websocket-client leaves the TCP socket open after the closing handshake: reset it
        # rather than wait for the server's close timeout
        fake.drop_connections(None)
    replies = [json.loads(m) for m in messages if '"id"' in m and '"result"' in m]
    assert replies == [{"result": None, "id": i} for i in (11, 12, 13, 14)]
    fake.wait_for(lambda: fake.pongs_received >= 2, TIMEOUT)
    assert any('"data"' in m for m in messages) is combined
    for feed in ("trade", "agg_trade", "book_ticker"):
        records = _parse_all("binance", {"symbol": "btcusdt", "feed": feed}, messages)
        assert records, f"no {feed} record"
    klines = _parse_all("binance", {"symbol": "x1", "feed": "kline"}, messages)
    assert klines and {r["symbol"] for r in klines} == {"ETHUSDT"}


def _kinds(messages: list[str]) -> set[str]:
    out = set()
    for text in messages:
        msg = json.loads(text)
        data = msg.get("data", msg)
        out.add(data.get("e") or ("bookTicker" if "u" in data else "reply"))
    return out


def _parse_all(provider: str, params: dict[str, Any], frames: list[str]) -> list[dict[str, Any]]:
    """Records our session makes of ``frames`` (none may be malformed)."""
    spec = get_provider(provider)
    session = spec.session_class(spec.resolve(params, {}))
    records = [r for frame in frames for r in session.receive(frame)]
    malformed = [e for e in session.events_received() if type(e).__name__ == "MalformedFrame"]
    assert malformed == []
    return records
