"""The coinbase provider end to end against the fake Coinbase Exchange feed (127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import ProviderConnectionError, SymbolError
from obbws_jupyter.fakes.coinbase import CoinbaseServerHandle, start_coinbase_server
from tests.conftest import TIMEOUT, RecordWaiter, kill_all

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[CoinbaseServerHandle]:
    """A fake Coinbase feed with fast heartbeats."""
    handle = start_coinbase_server(rate=400.0, heartbeat_interval=0.05)
    yield handle
    kill_all()
    handle.close()


def open_coinbase(fake: CoinbaseServerHandle, name: str, **params: Any) -> Any:
    params.setdefault("symbol", "btc-usd,ETH-USD")
    params.setdefault("url", fake.url)
    return obbws.create_connection(provider="coinbase", name=name, reconnect_base=0.05, **params)


def test_trades_are_stored_with_typed_columns(fake: CoinbaseServerHandle) -> None:
    """create_connection stores matches (the last_match first); typed columns, date tz-aware."""
    conn = open_coinbase(fake, "cb_trades")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(20) and waiter.wait_symbol("ETH-USD")
    df = conn.get_results()
    assert list(df.columns) == [
        *("id", "received_at", "date", "symbol", "type", "exchange", "price", "size"),
        *("taker_side", "trade_id", "sequence"),
    ]
    assert isinstance(df["date"].dtype, pd.DatetimeTZDtype)
    assert df["price"].dtype == "float64" and df["trade_id"].dtype == "int64"
    assert set(df["symbol"]) == {"BTC-USD", "ETH-USD"} and set(df["type"]) == {"trade"}
    for _, rows in df.groupby("symbol"):  # consecutive trade ids: nothing missed
        assert rows["trade_id"].diff().dropna().eq(1).all()
    fake.wait_for(lambda: len(fake.subscribe_requests) == 1, TIMEOUT)
    assert fake.subscribe_requests[0] == {
        "type": "subscribe",
        "product_ids": ["BTC-USD", "ETH-USD"],
        "channels": ["matches", "heartbeat"],
    }
    status = conn.status
    assert status.sequence_gaps == 0 and status.malformed_frames == 0
    assert status.acknowledged_symbols == "BTC-USD,ETH-USD"


def test_heartbeats_are_counted(fake: CoinbaseServerHandle) -> None:
    """The heartbeat channel's messages show in status.heartbeats."""
    conn = open_coinbase(fake, "cb_beats", symbol="btc-usd")
    deadline = time.monotonic() + TIMEOUT
    while conn.status.heartbeats < 3:  # a poll with a timeout: the counter has no event
        assert time.monotonic() < deadline, "no heartbeats counted"
        threading.Event().wait(0.02)


def test_ticker_feed_stores_best_bid_and_ask(fake: CoinbaseServerHandle) -> None:
    """feed=ticker stores the last trade with the best bid/ask."""
    conn = open_coinbase(fake, "cb_ticker", feed="ticker")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(20)
    df = conn.get_results()
    assert {"bid", "bid_size", "ask", "ask_size", "open_24h", "volume_24h"} <= set(df.columns)
    assert (df["bid"] < df["ask"]).all() and set(df["type"]) == {"ticker"}
    assert fake.subscribe_requests[0]["channels"] == ["ticker", "heartbeat"]


def test_subscribe_and_unsubscribe_reach_the_server(fake: CoinbaseServerHandle) -> None:
    """subscribe/unsubscribe send the documented requests; the new product's rows arrive."""
    conn = open_coinbase(fake, "cb_sub", symbol="btc-usd")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("solusd")
    assert waiter.wait_symbol("SOL-USD")
    assert fake.subscribe_requests[-1]["product_ids"] == ["SOL-USD"]
    conn.unsubscribe("SOL-USD")
    fake.wait_for(lambda: len(fake.unsubscribe_requests) == 1, TIMEOUT)
    assert fake.unsubscribe_requests[0] == {
        "type": "unsubscribe",
        "product_ids": ["SOL-USD"],
        "channels": ["matches", "heartbeat"],
    }
    assert conn.status.subscribed_symbols == "BTC-USD"


def test_an_invalid_product_raises_and_the_others_still_subscribe(
    fake: CoinbaseServerHandle,
) -> None:
    """Coinbase rejects the request; subscribe() raises for that product, the rest arrives."""
    conn = open_coinbase(fake, "cb_invalid", symbol="btc-usd")
    waiter = RecordWaiter(conn.get_client())
    with pytest.raises(SymbolError, match="GIBBERISH-USD is not a valid product"):
        conn.subscribe("sol-usd,gibberish-usd")
    assert waiter.wait_symbol("SOL-USD")
    assert conn.status.subscribed_symbols == "BTC-USD,SOL-USD"


def test_an_invalid_product_at_start_is_dropped_and_the_rest_streams(
    fake: CoinbaseServerHandle,
) -> None:
    """create_connection with one unknown product: it is refused and forgotten, the others
    stream (Coinbase rejected the whole first request; the rest is asked for again)."""
    conn = open_coinbase(fake, "cb_start_invalid", symbol="btc-usd,foo-usd,eth-usd")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_symbol("ETH-USD") and waiter.wait_symbol("BTC-USD")
    status = conn.status
    assert status.subscribed_symbols == "BTC-USD,ETH-USD"
    assert "FOO-USD is not a valid product" in (status.last_error or "")
    assert [r["product_ids"] for r in fake.subscribe_requests] == [
        ["BTC-USD", "FOO-USD", "ETH-USD"],
        ["BTC-USD", "ETH-USD"],
    ]


def test_missed_trades_are_counted_as_sequence_gaps(fake: CoinbaseServerHandle) -> None:
    """Skipped trade ids show in status.sequence_gaps (per product, missed trades)."""
    conn = open_coinbase(fake, "cb_gap", symbol="btc-usd")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(5)
    fake.skip_trades(7)
    assert waiter.wait_more(5)
    assert conn.status.sequence_gaps == 7


def test_a_duplicate_match_is_not_stored_twice(fake: CoinbaseServerHandle) -> None:
    """The same match sent again is dropped: each trade id is stored once."""
    conn = open_coinbase(fake, "cb_dup", symbol="btc-usd")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(5)
    fake.pause()
    assert fake.resend_last("BTC-USD") == 1
    fake.resume()
    assert waiter.wait_more(5)
    df = conn.get_results()
    assert not df["trade_id"].duplicated().any()
    assert conn.status.malformed_frames == 0 and conn.status.sequence_gaps == 0


@pytest.mark.parametrize("code", [1011, None], ids=["close", "reset"])
def test_a_dropped_connection_resumes_without_duplicates(
    fake: CoinbaseServerHandle, code: int | None
) -> None:
    """After a drop the feed is subscribed again; the repeated last_match is not re-stored."""
    conn = open_coinbase(fake, f"cb_drop_{code}", symbol="btc-usd")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("eth-usd")
    assert waiter.wait_symbol("ETH-USD")
    fake.drop_connections(code)
    fake.wait_connections(2, TIMEOUT)
    fake.wait_for(lambda: len(fake.subscribe_requests) >= 3, TIMEOUT)
    assert fake.subscribe_requests[-1]["product_ids"] == ["BTC-USD", "ETH-USD"]
    assert waiter.wait_symbol("ETH-USD") and waiter.wait_symbol("BTC-USD")
    df = conn.get_results()
    assert not df.duplicated(["symbol", "trade_id"]).any()
    assert conn.status.reconnects >= 1 and conn.status.sequence_gaps == 0


def test_an_unreachable_feed_is_a_clear_connection_error() -> None:
    """No server (a firewall, no internet): ProviderConnectionError, nothing left running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    threads = {t.name for t in threading.enumerate()}
    with pytest.raises(ProviderConnectionError, match="Could not connect"):
        obbws.create_connection(
            provider="coinbase", name="cb_down", symbol="btc-usd", url=f"ws://127.0.0.1:{port}"
        )
    assert obbws.default_registry().names() == []
    assert {t.name for t in threading.enumerate()} - threads <= {"obbws-loop"}


# -- the fake feed's own protocol --------------------------------------------------------------


def test_fake_answers_errors_and_lists_subscriptions(fake: CoinbaseServerHandle) -> None:
    """Invalid products, channels and JSON get error messages; a subscribe is answered with
    the subscriptions, the last_match and the current ticker."""

    async def scenario() -> list[Any]:
        async with connect(fake.url) as ws:
            await ws.send(
                '{"type": "subscribe", "product_ids": ["FOO-USD"], "channels": ["matches"]}'
            )
            await ws.send('{"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["full"]}')
            await ws.send("{not json")
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe",
                        "product_ids": ["BTC-USD"],
                        "channels": ["matches", {"name": "ticker", "product_ids": ["ETH-USD"]}],
                    }
                )
            )
            return [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in range(6)]

    fake.set_rate(0)
    replies = runtime.run(scenario(), timeout=2 * TIMEOUT)
    assert replies[0] == {
        "type": "error",
        "message": "Failed to subscribe",
        "reason": "FOO-USD is not a valid product",
    }
    assert replies[1]["reason"] == "full is not a valid channel"
    assert replies[2]["type"] == "error"
    assert replies[3] == {
        "type": "subscriptions",
        "channels": [
            {"name": "matches", "product_ids": ["BTC-USD"]},
            {"name": "ticker", "product_ids": ["ETH-USD"]},
        ],
    }
    assert replies[4]["type"] == "last_match" and replies[4]["product_id"] == "BTC-USD"
    assert replies[5]["type"] == "ticker" and replies[5]["product_id"] == "ETH-USD"


def test_fake_closes_a_connection_that_never_subscribes() -> None:
    """Like Coinbase, a client that sends no subscribe in time is disconnected."""
    fake = start_coinbase_server(subscribe_timeout=0.1)

    async def idle() -> int | None:
        async with connect(fake.url) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            return ws.close_code

    try:
        assert runtime.run(idle(), timeout=2 * TIMEOUT) == 1008
    finally:
        fake.close()
