"""The fmp provider end to end: create_connection against the fake FMP server (port 0)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter._stream import WIRE_LOGGER
from obbws_jupyter.exceptions import ProviderAuthError, ProviderConnectionError
from obbws_jupyter.fakes import ServerHandle, start_server
from obbws_jupyter.fakes.fmp import FmpServer
from tests.conftest import TIMEOUT, RecordWaiter, kill_all, wait_until

pytestmark = pytest.mark.integration

KEY = "fmp-test-key-c41d"
COLUMNS = [
    "id",
    "received_at",
    "date",
    "symbol",
    "exchange",
    "type",
    "bid_price",
    "bid_size",
    "ask_price",
    "ask_size",
    "last_price",
    "last_size",
]


@pytest.fixture
def fmp() -> Iterator[ServerHandle]:
    """A fake FMP crypto server requiring KEY, with fast heartbeats."""
    handle = start_server(FmpServer, api_key=KEY, rate=300.0, heartbeat_interval=0.2, seed=3)
    yield handle
    kill_all()  # before the server goes, so no client sees a drop
    handle.close()


def connect(url: str, name: str = "fmp", **kwargs: Any) -> Any:
    kwargs.setdefault("symbol", "btcusd,ethusd")
    kwargs.setdefault("api_key", KEY)
    return obbws.create_connection(
        provider="fmp", name=name, url=url, reconnect_base=0.05, **kwargs
    )


def received(server: ServerHandle, frame: dict[str, Any]) -> None:
    """Wait until a client sent ``frame`` (checked on the server's loop)."""
    server.wait_for(lambda: frame in [json.loads(f) for f in server.received])


def test_crypto_events_are_stored_with_openbb_columns(fmp: ServerHandle) -> None:
    """Trades and quotes land in one typed table named as OpenBB's FmpWebSocketData."""
    conn = connect(fmp.url)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(40)
    df = conn.get_results()
    assert list(df.columns) == COLUMNS
    assert str(df["date"].dt.tz) == "America/New_York"
    assert set(df["symbol"]) <= {"BTCUSD", "ETHUSD"} and set(df["type"]) == {"trade", "quote"}
    trades, quotes = df[df["type"] == "trade"], df[df["type"] == "quote"]
    assert (trades["last_price"] > 0).all() and trades["bid_price"].isna().all()
    assert (quotes["ask_price"] > quotes["bid_price"]).all() and quotes["last_size"].isna().all()
    assert pd.api.types.is_float_dtype(df["bid_size"]) and df["exchange"].notna().all()
    status = conn.status
    assert status.subscribed_symbols == "btcusd,ethusd"
    assert status.acknowledged_symbols == "btcusd,ethusd"
    assert wait_until(lambda: conn.status.heartbeats >= 2)


def test_stock_events_have_nanosecond_dates_and_no_exchange(fmp: ServerHandle) -> None:
    """Stocks (ns stamps, null keys, no exchange) store tz-aware dates close to now."""
    conn = connect(fmp.url_for("stock"), "stk", asset_type="stock", symbol="aapl,msft")
    assert RecordWaiter(conn.get_client()).wait(20)
    df = conn.get_results()
    assert set(df["symbol"]) <= {"AAPL", "MSFT"} and df["exchange"].isna().all()
    age = pd.Timestamp.now(tz="UTC") - df["date"].max()
    assert pd.Timedelta(0) <= age < pd.Timedelta(minutes=1)


def test_subscribe_and_unsubscribe_reach_the_server(fmp: ServerHandle) -> None:
    """subscribe/unsubscribe send data.ticker frames that change what the server streams."""
    conn = connect(fmp.url, symbol="btcusd")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("SOL/USD")
    received(fmp, {"event": "subscribe", "data": {"ticker": ["solusd"]}})
    assert waiter.wait_symbol("SOLUSD")
    conn.unsubscribe("btcusd")
    received(fmp, {"event": "unsubscribe", "data": {"ticker": ["btcusd"]}})
    [client] = fmp.clients
    fmp.wait_for(lambda: list(client.subscriptions) == ["solusd"])
    assert conn.status.subscribed_symbols == "solusd"


def test_bad_key_raises_and_leaves_nothing_running(fmp: ServerHandle) -> None:
    """ "Unauthorized" -> ProviderAuthError from create_connection; nothing left running."""
    with pytest.raises(ProviderAuthError, match="Unauthorized") as info:
        connect(fmp.url, "badkey", api_key="wrong-key-456")
    assert "wrong-key-456" not in str(info.value)
    assert obbws.default_registry().names() == []
    assert not any(t.name == "obbws-store-badkey" for t in threading.enumerate())


def test_plan_without_websockets_is_a_fatal_error() -> None:
    """ "You are not authorized" ends create_connection with the reason, no retry."""
    handle = start_server(FmpServer, api_key=KEY, entitled=False)
    try:
        with pytest.raises(ProviderConnectionError, match="plan"):
            connect(handle.url, "noplan")
        assert obbws.default_registry().names() == [] and handle.connections_total == 1
    finally:
        handle.close()


def test_second_login_with_the_same_key_stops_the_first_with_an_explanation(
    fmp: ServerHandle,
) -> None:
    """One socket per key: the older connection fails with the cause and does not reconnect."""
    first = connect(fmp.url, "first")
    assert RecordWaiter(first.get_client()).wait(5)
    second = connect(fmp.url, "second", symbol="solusd")
    assert first.get_client().wait_stopped(TIMEOUT) == "failed"
    status = first.status
    assert not status.is_running and status.reconnects == 0
    assert "Connected from another location" in (status.last_error or "")
    assert "one websocket per API key" in (status.last_error or "")
    assert fmp.kicked == 1 and fmp.connections_total == 2
    assert RecordWaiter(second.get_client()).wait(5) and second.status.is_running


@pytest.mark.parametrize("code", [1011, None], ids=["close", "reset"])
def test_dropped_connection_resumes_with_later_subscriptions(
    fmp: ServerHandle, code: int | None
) -> None:
    """After a close or a TCP reset: login again and re-subscribe every ticker, later ones too."""
    conn = connect(fmp.url, symbol="btcusd")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("solusd")
    assert waiter.wait_symbol("SOLUSD")
    fmp.drop_connections(code)
    fmp.wait_connections(2, TIMEOUT)
    received(fmp, {"event": "subscribe", "data": {"ticker": ["btcusd", "solusd"]}})
    assert waiter.wait_symbol("SOLUSD") and waiter.wait_symbol("BTCUSD")
    assert conn.status.reconnects >= 1 and conn.status.is_running
    assert fmp.kicked == 0  # the dead socket was gone: no "another location" on reconnect


def test_key_never_appears_in_status_repr_or_logs(
    fmp: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """The key is in the login frame, yet never in status, repr or logs (even wire DEBUG)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=WIRE_LOGGER)
    conn = connect(fmp.url)
    assert RecordWaiter(conn.get_client()).wait(5)
    shown = [caplog.text, repr(conn), str(conn.status.model_dump()), repr(conn.get_client())]
    assert '"apiKey":"********"' in caplog.text.replace(" ", "")  # the login was logged
    for text in shown:
        assert KEY not in text


def test_fake_server_runs_from_the_command_line() -> None:
    """python -m obbws_jupyter.fakes.fmp --port 0 prints its URL and serves until stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "obbws_jupyter.fakes.fmp", "--port", "0", "--asset-type", "fx"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")
        conn = connect(url, "cli", asset_type="fx", symbol="eurusd", api_key="any")
        assert RecordWaiter(conn.get_client()).wait(5)
        assert set(conn.get_results()["type"]) == {"quote"}
    finally:
        kill_all()
        proc.terminate()
        proc.wait(TIMEOUT)


# -- the fake server itself, over raw sockets ------------------------------------------------------


async def _recv(ws: Any) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


def test_fake_requires_login_and_takes_a_single_ticker_string(fmp: ServerHandle) -> None:
    """Subscribing before login is refused; data.ticker may be one string (as documented)."""

    async def scenario() -> None:
        async with ws_connect(fmp.url) as ws:
            await ws.send(json.dumps({"event": "subscribe", "data": {"ticker": "btcusd"}}))
            assert (await _recv(ws))["status"] == 401
            await ws.send(json.dumps({"event": "login", "data": {"apiKey": KEY}}))
            assert await _recv(ws) == {"event": "login", "status": 200, "message": "Authenticated"}
            await ws.send(json.dumps({"event": "subscribe", "data": {"ticker": "btcusd"}}))
            assert await _recv(ws) == {
                "event": "subscribe",
                "status": 200,
                "message": "Subscribed to btcusd",
            }
            while "s" not in (message := await _recv(ws)):
                pass
            assert message["s"] == "btcusd" and message["type"] in ("T", "Q")
        with pytest.raises(InvalidStatus):
            await ws_connect(f"{fmp.url}/bonds")

    runtime.run(scenario(), 3 * TIMEOUT)
