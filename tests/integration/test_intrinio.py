"""The intrinio provider end to end against the fake Intrinio server (HTTP /auth + binary
websocket on 127.0.0.1:0), and Intrinio's official client against the same fake."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter._stream import WIRE_LOGGER, urllib_client
from obbws_jupyter.exceptions import ProviderAuthError
from obbws_jupyter.fakes import ServerHandle
from obbws_jupyter.fakes.intrinio import FIREHOSE_BASKET, start_intrinio_server
from obbws_jupyter.protocol import HttpRequest
from obbws_providers.intrinio import FIELDS
from tests.conftest import TIMEOUT, RecordWaiter, kill_all

pytestmark = pytest.mark.integration

KEY = "intrinio-test-key-4242"


@pytest.fixture
def fake() -> Iterator[ServerHandle]:
    """A fake Intrinio server (delayed SIP look: several venues, dark prints) that checks
    the key."""
    handle = start_intrinio_server(api_key=KEY, rate=400.0, feed="delayed_sip", seed=7)
    yield handle
    kill_all()  # before the server goes, so no client sees a drop
    handle.close()


def connect(fake: ServerHandle, name: str = "intr", **params: Any) -> Any:
    params.setdefault("symbol", "AAPL,SPY")
    return obbws.create_connection(
        provider="intrinio",
        name=name,
        url=fake.url,
        api_key=KEY,
        reconnect_base=0.01,
        **params,
    )


def test_stream_is_stored_with_typed_columns(fake: ServerHandle) -> None:
    """Trades, asks and bids are stored; get_results has the model's columns, a tz-aware date,
    numeric prices and sizes; the token step and the socket carried Intrinio's headers."""
    conn = connect(fake)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(60)
    conn.stop_connection()
    df = conn.get_results()
    assert list(df.columns) == ["id", "received_at", *(f.name for f in FIELDS)]
    assert isinstance(df["date"].dtype, pd.DatetimeTZDtype)
    assert pd.api.types.is_float_dtype(df["price"])
    assert pd.api.types.is_integer_dtype(df["size"])
    assert set(df["symbol"]) <= {"AAPL", "SPY"}
    assert set(df["type"]) <= {"trade", "ask", "bid"} and "trade" in set(df["type"])
    assert set(df["feed"]) <= {"UTP", "CTA_B"}
    trades = df[df["type"] == "trade"]
    assert (trades["volume"] > 0).all() and trades["is_darkpool"].notna().all()
    assert (df["price"] > 0).all()
    assert fake.joins == [("AAPL", False), ("SPY", False)]
    assert fake.auth_headers[0]["Client-Information"] == "IntrinioPythonSDKv5.3.0"
    assert fake.socket_headers[0]["UseNewEquitiesFormat"] == "v2"
    assert fake.tokens_issued == 1


def test_trades_only_joins_with_the_flag_and_gets_only_trades(
    fake: ServerHandle,
) -> None:
    """trades_only=True reaches the server in the join frame; only trades come back."""
    conn = connect(fake, symbol="MSFT", trades_only=True)
    assert RecordWaiter(conn.get_client()).wait(30)
    conn.stop_connection()
    assert fake.joins == [("MSFT", True)]
    assert set(conn.get_results()["type"]) == {"trade"}


def test_firehose_streams_every_symbol(fake: ServerHandle) -> None:
    """symbol="*" joins $FIREHOSE and records arrive for many symbols of the basket."""
    conn = connect(fake, symbol="*")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(200)
    assert fake.joins == [("$FIREHOSE", False)]
    assert conn.status.subscribed_symbols == "$FIREHOSE"
    assert len(waiter.symbols) >= 5 and waiter.symbols <= set(FIREHOSE_BASKET)


def test_subscribe_and_unsubscribe_reach_the_server(fake: ServerHandle) -> None:
    """subscribe joins (MSFT rows follow), unsubscribe leaves (binary frames on the wire)."""
    conn = connect(fake, symbol="AAPL")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(1)
    assert conn.subscribe("msft").subscribed_symbols == "AAPL,MSFT"
    assert waiter.wait_symbol("MSFT")
    assert conn.unsubscribe("aapl").subscribed_symbols == "MSFT"
    fake.wait_for(lambda: fake.server.leaves == ["AAPL"], TIMEOUT)
    assert fake.joins == [("AAPL", False), ("MSFT", False)]
    assert b"LAAPL" in fake.received and b"J\x00MSFT" in fake.received


def test_silent_feed_still_connects_and_acknowledges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no data at all, create_connection returns (an open socket is authenticated) and a
    subscription is acknowledged when sent (Intrinio sends no ack)."""
    caplog.set_level(logging.INFO, logger="obbws_jupyter.stream")
    handle = start_intrinio_server(api_key=KEY, rate=0.0)
    try:
        conn = connect(handle, symbol="AAPL", connect_timeout=TIMEOUT)
        assert conn.status.is_running
        assert conn.subscribe("NVDA").subscribed_symbols == "AAPL,NVDA"
        assert "intr: subscribed to NVDA" in caplog.messages
        handle.wait_for(lambda: ("NVDA", False) in handle.server.joins, TIMEOUT)
        assert handle.frames_sent == 0
    finally:
        kill_all()
        handle.close()


def test_bad_key_is_a_credentials_error_and_nothing_runs(fake: ServerHandle) -> None:
    """A key refused by /auth raises ProviderAuthError from create_connection (without the
    key); no socket was opened, no connection registered, no store thread left."""
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ProviderAuthError) as info:
        obbws.create_connection(
            provider="intrinio", name="intr-bad", symbol="AAPL", url=fake.url, api_key="wrong-9"
        )
    assert "wrong-9" not in str(info.value) and "HTTP 401" in str(info.value)
    assert fake.auth_attempts == 1 and fake.tokens_issued == 0
    assert fake.connections_total == 0
    with pytest.raises(obbws.ObbwsError):
        obbws.get_client("intr-bad")
    assert not any(t.name.startswith("obbws-store-intr-bad") for t in threading.enumerate())
    assert {t.name for t in threading.enumerate()} - before <= {"obbws-loop"}


def test_drop_reconnects_with_a_fresh_token_and_the_same_joins(
    fake: ServerHandle,
) -> None:
    """After a provider-side close with every old token expired, the driver fetches a new
    token, reconnects and re-joins what was wanted (including a later subscription)."""
    conn = connect(fake, symbol="AAPL")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(1)
    conn.subscribe("SPY")
    fake.expire_tokens()
    fake.drop_connections(1011)
    fake.wait_connections(2, TIMEOUT)
    fake.wait_for(lambda: len(fake.server.joins) >= 4, TIMEOUT)
    assert fake.joins == [("AAPL", False), ("SPY", False), ("AAPL", False), ("SPY", False)]
    assert fake.tokens_issued == 2 and fake.rejected_sockets == 0
    assert waiter.wait_more(20)
    assert waiter.wait_symbol("SPY")
    assert conn.status.reconnects == 1


def test_tcp_reset_is_resumed(fake: ServerHandle) -> None:
    """A connection reset without a close handshake is resumed with the same joins."""
    conn = connect(fake, symbol="NVDA")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(1)
    fake.drop_connections(None)
    fake.wait_connections(2, TIMEOUT)
    fake.wait_for(lambda: fake.server.joins.count(("NVDA", False)) == 2, TIMEOUT)
    assert waiter.wait_more(20)


def test_key_and_token_never_in_status_repr_or_logs(
    fake: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the API key nor the token shows in the status, the repr or any log line of
    ours at DEBUG (websockets' messages about provider sockets included)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=WIRE_LOGGER)
    conn = connect(fake)
    assert RecordWaiter(conn.get_client()).wait(5)
    fake.drop_connections(1011)
    fake.wait_connections(2, TIMEOUT)
    conn.stop_connection()
    tokens = list(fake.server._tokens)
    assert len(tokens) == 2
    shown = " ".join([str(conn.status.model_dump()), repr(conn), repr(conn.get_client())])
    # the fake stands for Intrinio's server, which sees the key and token by design
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    assert "GET /socket/websocket?vsn=1.0.0&token=********" in ours
    for secret in (KEY, *tokens):
        assert secret not in shown
        assert secret not in ours
    assert "token=********" in str(conn.status.model_dump()["url"])


def test_entitlement_refusal_ends_the_stream_without_retrying(
    fake: ServerHandle,
) -> None:
    """A Phoenix-style "unauthorized" reply for the firehose fails the connection with a
    clear reason and no reconnect storm; a plain text warning before it is only logged."""
    conn = connect(fake, symbol="*")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(1)
    fake.inject("Slow consumer: some messages were dropped")
    fake.inject(
        '{"topic":"iex:lobby","event":"phx_reply",'
        '"payload":{"status":"error","response":{"reason":"unauthorized"}},"ref":"1"}'
    )
    assert conn.get_client().wait_stopped(TIMEOUT) == "failed"
    status = conn.status.model_dump()
    assert "refused the firehose" in status["last_error"]
    assert status["malformed_frames"] == 0
    assert fake.connections_total == 1


def test_malformed_frame_is_counted_and_the_stream_goes_on(fake: ServerHandle) -> None:
    """A truncated binary frame is counted in the status; data keeps flowing."""
    conn = connect(fake, symbol="AAPL")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(1)
    fake.inject(b"\x02\x00\x30\x04AAPL")
    assert waiter.wait_more(20)
    assert conn.status.model_dump()["malformed_frames"] == 1


def test_auth_endpoint_answers_plain_http_requests(fake: ServerHandle) -> None:
    """/auth answers a plain (non-upgrade) GET from the stdlib client: 200 + token, 401 for
    a wrong key; the socket path refuses a request without a token (401) or without the v2
    header (400); other paths are 404."""
    ok = runtime.run(urllib_client(HttpRequest(f"{fake.auth_url}?api_key={KEY}")))
    refused = runtime.run(urllib_client(HttpRequest(f"{fake.auth_url}?api_key=nope")))
    assert ok.status == 200 and len(ok.text) == 48
    assert (refused.status, refused.text) == (401, "Unauthorized")
    base = fake.url.replace("ws://", "http://")
    no_token = runtime.run(urllib_client(HttpRequest(f"{base}/socket/websocket?vsn=1.0.0")))
    assert no_token.status == 401
    headerless = runtime.run(
        urllib_client(HttpRequest(f"{base}/socket/websocket?vsn=1.0.0&token={ok.text}"))
    )
    assert headerless.status == 400 and "UseNewEquitiesFormat" in headerless.text
    assert runtime.run(urllib_client(HttpRequest(f"{base}/other"))).status == 404


# -- Intrinio's official client is the oracle of the fake server ---------------------------


def _sdk_client(port: int, trades_only: bool) -> tuple[Any, list[Any], list[Any], threading.Event]:
    from intriniorealtime.equities_client import IntrinioRealtimeEquitiesClient

    trades: list[Any] = []
    quotes: list[Any] = []
    arrived = threading.Event()

    def on_trade(trade: Any, backlog: int) -> None:
        trades.append(trade)
        if len(trades) >= 20 and (trades_only or len(quotes) >= 20):
            arrived.set()

    def on_quote(quote: Any, backlog: int) -> None:
        quotes.append(quote)

    client = IntrinioRealtimeEquitiesClient(
        {
            "api_key": KEY,
            "provider": "MANUAL",
            "ipaddress": f"127.0.0.1:{port}",
            "tradesonly": trades_only,
            "logger": logging.getLogger("tests.intriniorealtime"),
        },
        on_trade,
        on_quote,
    )
    return client, trades, quotes, arrived


@pytest.mark.parametrize("trades_only", [False, True])
def test_official_client_connects_and_parses_the_fake(
    fake: ServerHandle, trades_only: bool
) -> None:
    """intriniorealtime (provider MANUAL) gets a token from /auth, opens the socket with its
    headers, joins, and parses the fake's batched trades and quotes: plausible symbols,
    prices, sizes, volumes, nanosecond timestamps and subprovider names."""
    client, trades, quotes, arrived = _sdk_client(fake.port, trades_only)
    client.join(["AAPL", "SPY"])
    client.connect()
    try:
        assert arrived.wait(TIMEOUT)
    finally:
        client.disconnect()
    assert sorted(fake.joins) == [("AAPL", trades_only), ("SPY", trades_only)]
    assert fake.socket_headers[0]["Client-Information"].startswith("IntrinioPythonSDK")
    now = time.time_ns()
    for trade in trades:
        assert trade.symbol in ("AAPL", "SPY") and trade.price > 0 and trade.size > 0
        assert trade.total_volume >= trade.size
        assert abs(now - trade.timestamp) < 60 * 10**9
        assert trade.subprovider in ("UTP", "CTA_B")
        assert trade.condition.startswith("@")
    if trades_only:
        assert quotes == []
    else:
        assert {q.type for q in quotes} == {"ask", "bid"}
        assert all(q.price > 0 and q.symbol in ("AAPL", "SPY") for q in quotes)


def test_recorded_stream_replays_to_the_same_records(fake: ServerHandle, tmp_path: Path) -> None:
    """A capture of the binary stream holds neither the key nor a token, and the replay
    provider turns it back into exactly the records stored live."""
    path = tmp_path / "intrinio.jsonl"
    conn = connect(fake, record_file=str(path))
    assert RecordWaiter(conn.get_client()).wait(50)
    conn.stop_connection()
    live = conn.get_results()
    conn.kill()
    text = path.read_text()
    assert KEY not in text and "token=" not in text
    replay = obbws.create_connection(provider="replay", name="intr-replay", path=str(path), speed=0)
    assert replay.get_client().wait_stopped(TIMEOUT) == "finished"
    replayed = replay.get_results()
    columns = [f.name for f in FIELDS]
    pd.testing.assert_frame_equal(
        live[columns].reset_index(drop=True), replayed[columns].reset_index(drop=True)
    )
