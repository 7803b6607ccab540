"""The tiingo provider end to end: create_connection against the fake Tiingo server (port 0)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter._stream import WIRE_LOGGER
from obbws_jupyter.exceptions import ProviderAuthError, ProviderConnectionError
from obbws_jupyter.fakes import ServerHandle, start_server
from obbws_jupyter.fakes.tiingo import TiingoServer
from tests.conftest import TIMEOUT, RecordWaiter, kill_all, wait_until

pytestmark = pytest.mark.integration

KEY = "tiingo-test-key-7f3a"


@pytest.fixture
def tiingo() -> Iterator[ServerHandle]:
    """A fake Tiingo server requiring KEY, with fast heartbeats."""
    handle = start_server(TiingoServer, api_key=KEY, rate=300.0, heartbeat_interval=0.2, seed=7)
    yield handle
    kill_all()  # before the server goes, so no client sees a drop
    handle.close()


def connect(server: ServerHandle, name: str = "ti", **kwargs: Any) -> Any:
    kwargs.setdefault("symbol", "btcusd,ethusd")
    kwargs.setdefault("api_key", KEY)
    return obbws.create_connection(
        provider="tiingo", name=name, url=server.url, reconnect_base=0.05, **kwargs
    )


def frames_received(server: ServerHandle) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    server.wait_for(lambda: out.extend(json.loads(f) for f in server.received) or True)
    return out


def test_crypto_trades_are_stored_with_openbb_columns(tiingo: ServerHandle) -> None:
    """Crypto trades land in typed columns named as OpenBB's TiingoWebSocketData."""
    conn = connect(tiingo)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(30)
    status = conn.status
    assert status.is_running and status.subscribed_symbols == "btcusd,ethusd"
    df = conn.get_results()
    assert list(df.columns) == [
        "id",
        "received_at",
        "date",
        "symbol",
        "type",
        "exchange",
        "last_price",
        "last_size",
    ]
    assert str(df["date"].dt.tz) == "America/New_York"
    assert set(df["symbol"]) <= {"BTCUSD", "ETHUSD"} and set(df["type"]) == {"trade"}
    assert pd.api.types.is_float_dtype(df["last_price"]) and (df["last_price"] > 0).all()
    assert df["exchange"].notna().all()
    assert wait_until(lambda: conn.status.heartbeats >= 2)
    assert conn.status.acknowledged_symbols == "btcusd,ethusd"


def test_fx_quotes_keep_ask_size_apart_from_ask_price(tiingo: ServerHandle) -> None:
    """FX quotes: ask_price is a price next to the bid, ask_size a lot size (OpenBB swapped)."""
    conn = connect(tiingo, "fx", asset_type="fx", symbol="eurusd,gbpusd")
    assert RecordWaiter(conn.get_client()).wait(20)
    df = conn.get_results()
    assert list(df.columns)[2:] == [
        "date",
        "symbol",
        "type",
        "bid_size",
        "bid_price",
        "mid_price",
        "ask_price",
        "ask_size",
    ]
    assert ((df["ask_price"] > df["bid_price"]) & (df["ask_price"] < 2)).all()
    assert (df["ask_size"] >= 100_000).all() and set(df["type"]) == {"quote"}


def test_iex_trades_and_quotes_and_the_reference_level(tiingo: ServerHandle) -> None:
    """Stock streams carry IEX flags as booleans; threshold_level=6 stores reference prices."""
    conn = connect(tiingo, "iex", asset_type="stock", symbol="aapl,msft", feed="trade_and_quote")
    assert RecordWaiter(conn.get_client()).wait(40)
    df = conn.get_results()
    assert set(df["type"]) <= {"trade", "quote", "break"} and "quote" in set(df["type"])
    assert df["halted"].dtype == bool and df["after_hours"].notna().all()
    assert df["date"].dt.tz is not None
    ref = connect(tiingo, "ref", asset_type="stock", symbol="aapl", threshold_level=6)
    assert RecordWaiter(ref.get_client()).wait(5)
    rows = ref.get_results()
    assert list(rows.columns)[2:] == ["date", "symbol", "type", "reference_price"]
    assert set(rows["type"]) == {"reference"} and (rows["reference_price"] > 0).all()


def test_subscribe_and_unsubscribe_update_the_subscription(tiingo: ServerHandle) -> None:
    """Updates go over the same socket keyed by the subscription id, and take effect."""
    conn = connect(tiingo, symbol="btcusd")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(5)
    conn.subscribe("sol-usd")
    assert waiter.wait_symbol("SOLUSD")
    [sub] = tiingo.subscriptions.values()
    updates = [f for f in frames_received(tiingo) if "subscriptionId" in f["eventData"]]
    assert updates == [
        {
            "eventName": "subscribe",
            "authorization": KEY,
            "eventData": {"subscriptionId": sub.id, "tickers": ["solusd"]},
        }
    ]
    assert tiingo.connections_total == 1  # no second, short-lived connection as in OpenBB
    conn.unsubscribe("btcusd")
    tiingo.wait_for(lambda: list(sub.tickers) == ["solusd"])
    assert conn.status.subscribed_symbols == "solusd"


def test_bad_key_raises_and_leaves_nothing_running(tiingo: ServerHandle) -> None:
    """E 401 -> ProviderAuthError from create_connection; no connection, no store thread."""
    with pytest.raises(ProviderAuthError, match="Authorization failed") as info:
        connect(tiingo, "badkey", api_key="wrong-key-123")
    assert "wrong-key-123" not in str(info.value)
    assert obbws.default_registry().names() == []
    assert not any(t.name == "obbws-store-badkey" for t in threading.enumerate())


def test_endpoint_outside_the_plan_is_a_fatal_error() -> None:
    """E 403 "Not authorized for service" ends create_connection with the reason, no retry."""
    handle = start_server(TiingoServer, api_key=KEY, services=("crypto",))
    try:
        with pytest.raises(ProviderConnectionError, match="Not authorized for service: fx"):
            connect(handle, "noplan", asset_type="fx", symbol="eurusd")
        assert obbws.default_registry().names() == [] and handle.connections_total == 1
    finally:
        handle.close()


@pytest.mark.parametrize("code", [1011, None], ids=["close", "reset"])
def test_dropped_connection_resumes_with_the_same_subscriptions(
    tiingo: ServerHandle, code: int | None
) -> None:
    """After a close or a TCP reset the stream reconnects and re-subscribes every ticker."""
    conn = connect(tiingo, symbol="btcusd")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("solusd")
    assert waiter.wait_symbol("SOLUSD")
    tiingo.drop_connections(code)
    tiingo.wait_connections(2, TIMEOUT)
    first = {
        "eventName": "subscribe",
        "authorization": KEY,
        "eventData": {"thresholdLevel": 5, "tickers": ["btcusd", "solusd"]},
    }
    tiingo.wait_for(lambda: first in [json.loads(f) for f in tiingo.received])
    assert waiter.wait_symbol("SOLUSD") and waiter.wait_symbol("BTCUSD")
    assert conn.status.reconnects >= 1 and conn.status.is_running


def test_key_never_appears_in_status_repr_or_logs(
    tiingo: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """The key is in every frame sent, yet never in status, repr or logs (even wire DEBUG)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=WIRE_LOGGER)
    conn = connect(tiingo, symbol="btcusd")
    waiter = RecordWaiter(conn.get_client())
    conn.subscribe("ethusd")
    assert waiter.wait_symbol("ETHUSD")
    shown = [caplog.text, repr(conn), str(conn.status.model_dump()), repr(conn.get_client())]
    assert '"authorization":"********"' in caplog.text.replace(" ", "")  # frames were logged
    for text in shown:
        assert KEY not in text


def test_fake_server_runs_from_the_command_line() -> None:
    """python -m obbws_jupyter.fakes.tiingo --port 0 prints its URL and serves until stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "obbws_jupyter.fakes.tiingo", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ws://127.0.0.1:")
        conn = obbws.create_connection(
            provider="tiingo", name="cli", url=line, api_key="any", symbol="btcusd"
        )
        assert RecordWaiter(conn.get_client()).wait(5)
    finally:
        kill_all()
        proc.terminate()
        proc.wait(TIMEOUT)


def test_recorded_stream_replays_into_the_same_rows_without_the_key(
    tiingo: ServerHandle, tmp_path: Path
) -> None:
    """A tiingo capture holds no key and the replay provider parses it with TiingoSession."""
    capture = tmp_path / "tiingo.jsonl"
    conn = connect(tiingo, "rec", symbol="btcusd", record_file=str(capture), limit=None)
    assert RecordWaiter(conn.get_client()).wait(30)
    conn.stop_connection()
    assert conn.stop_capture() == capture
    recorded = conn.get_results()
    assert KEY not in capture.read_text()
    replay = obbws.create_connection(
        provider="replay", name="rep", path=str(capture), speed=0, limit=None
    )
    assert replay.get_client().wait_stopped(TIMEOUT) == "finished"
    replayed = replay.get_results()
    assert list(replayed.columns) == list(recorded.columns)
    columns = ["date", "symbol", "exchange", "last_price", "last_size"]
    pd.testing.assert_frame_equal(
        replayed[columns].reset_index(drop=True), recorded[columns].reset_index(drop=True)
    )


# -- the fake server itself, over raw sockets ------------------------------------------------------


async def _recv(ws: Any) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def _until_data(ws: Any, ticker: str) -> None:
    while True:
        message = await _recv(ws)
        if message["messageType"] == "A" and message["data"][1] == ticker:
            return


def test_fake_applies_an_update_sent_from_another_connection(tiingo: ServerHandle) -> None:
    """As Tiingo keys updates by subscription id, OpenBB's second connection works too."""

    def request(data: dict[str, Any]) -> str:
        return json.dumps({"eventName": "subscribe", "authorization": KEY, "eventData": data})

    async def scenario() -> None:
        async with ws_connect(f"{tiingo.url}/crypto") as ws1:
            await ws1.send(request({"thresholdLevel": 5, "tickers": ["btcusd"]}))
            sub_id = (await _recv(ws1))["data"]["subscriptionId"]
            assert (await _recv(ws1))["data"] == {"tickers": ["btcusd"], "thresholdLevel": "5"}
            async with ws_connect(f"{tiingo.url}/crypto") as ws2:
                await ws2.send(request({"subscriptionId": sub_id, "tickers": ["ethusd"]}))
                assert (await _recv(ws2))["data"]["tickers"] == ["btcusd", "ethusd"]
            await asyncio.wait_for(_until_data(ws1, "ethusd"), TIMEOUT)

    runtime.run(scenario(), 3 * TIMEOUT)


def test_fake_refuses_a_bad_key_and_unknown_paths(tiingo: ServerHandle) -> None:
    """A wrong key gets E 401 then a close; an unknown path is refused at the handshake."""

    async def scenario() -> None:
        async with ws_connect(f"{tiingo.url}/iex") as ws:
            await ws.send(json.dumps({"eventName": "subscribe", "authorization": "nope"}))
            assert await _recv(ws) == {
                "messageType": "E",
                "response": {"code": 401, "message": "Authorization failed"},
            }
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        with pytest.raises(InvalidStatus):
            await ws_connect(f"{tiingo.url}/boats")

    runtime.run(scenario(), 3 * TIMEOUT)
