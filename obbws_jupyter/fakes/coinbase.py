"""A fake Coinbase Exchange feed: the public websocket feed's protocol on 127.0.0.1.

Follows https://docs.cdp.coinbase.com/exchange/websocket-feed/overview and ``.../channels``
(samples in ``tests/fixtures/coinbase.jsonl``). What it does, and where a behaviour is our own
choice because the documentation does not say ([built]):

- one endpoint, ``/`` (other paths: HTTP 404 [built]);
- ``subscribe`` / ``unsubscribe`` with top-level ``product_ids`` and ``channels`` given as names
  or as ``{"name": ..., "product_ids": [...]}``; every request is answered with a
  ``subscriptions`` message listing all current channels and products;
- channels ``matches`` (a ``last_match`` per newly subscribed product, then ``match``
  messages), ``ticker`` (the current ticker on subscribing, then one per trade) and
  ``heartbeat`` (one per product every ``heartbeat_interval``, 1 s, with ``sequence`` and
  ``last_trade_id``); other channel names are refused [built: the real feed has more];
- errors as ``{"type": "error", "message": "Failed to subscribe", "reason": "<product> is not
  a valid product"}`` for a product it does not list (``products``); the whole request is then
  rejected, as Coinbase does;
- realistic numbering: per product, ``trade_id`` grows by exactly one per trade, and
  ``sequence`` by 1-12 between messages of these channels (the ids of the order-book messages
  in between); both continue across connections, so a reconnecting client is sent a
  ``last_match`` it has already seen. :meth:`skip_trades` makes the next trades jump (a gap
  test); :meth:`resend_last` sends the last match again (a duplicate test);
- a client that has not subscribed within ``subscribe_timeout`` (5 s) is disconnected (close
  1008 [built code]).

``python -m obbws_jupyter.fakes.coinbase --port 0`` serves one from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from obbws_jupyter import runtime
from obbws_jupyter.fakes._base import (
    TICK_INTERVAL,
    FakeClient,
    FakeServer,
    Frame,
    ServerHandle,
    now_ms,
    run_beside,
    run_cli,
    start_server,
)
from obbws_jupyter.offline.market import Instrument

__all__ = [
    "BATCHES",
    "BENCH_CASES",
    "KNOWN_PRODUCTS",
    "PROVIDER_NAME",
    "CoinbaseServer",
    "CoinbaseServerHandle",
    "main",
    "sample_frames",
    "start_coinbase_server",
]

KNOWN_PRODUCTS = (
    *("BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD", "LTC-USD", "ADA-USD", "XRP-USD"),
    *("ETH-BTC", "BTC-EUR", "ETH-EUR", "BTC-GBP", "BTC-USDT", "USDT-USD", "ETH-PYUSD"),
)
CHANNELS = ("matches", "ticker", "heartbeat")
DATA_CHANNELS = ("matches", "ticker")
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class _Tape:
    """Per-product state shared by all connections: prices, last ids, 24 h statistics."""

    __slots__ = ("high", "inst", "low", "open", "sequence", "trade_id", "volume")

    def __init__(self, inst: Instrument, seed: int) -> None:
        self.inst = inst
        self.trade_id = 50_000_000 + seed % 1_000_000
        self.sequence = 90_000_000_000 + seed % 10_000_000
        self.open = self.high = self.low = inst.mid
        self.volume = 10_000.0


def _iso(t_ms: int, micros: int) -> str:
    """Coinbase's time format: ``2014-11-07T08:19:27.028459Z``."""
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ms // 1000))
    return f"{head}.{(t_ms % 1000) * 1000 + micros:06d}Z"


def _error(message: str, reason: str) -> str:
    return _DUMPS({"type": "error", "message": message, "reason": reason})


class CoinbaseServer(FakeServer):
    """The Coinbase Exchange feed on ``ws://host:port/`` (see the module docstring).

    ``rate`` is trades per second per connection, spread over its subscribed products; each
    trade is a ``match`` and/or a ``ticker`` message, as the connection subscribed.
    """

    provider = "coinbase"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 200.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        heartbeat_interval: float | None = 1.0,
        subscribe_timeout: float | None = 5.0,
        products: Sequence[str] = KNOWN_PRODUCTS,
    ) -> None:
        super().__init__(host, port, rate=rate, seed=seed, tick_interval=tick_interval)
        self.product_heartbeat_interval = heartbeat_interval
        self.subscribe_timeout = subscribe_timeout
        self.products = set(products)
        self.subscribe_requests: list[dict[str, Any]] = []
        self.unsubscribe_requests: list[dict[str, Any]] = []
        self._tapes: dict[str, _Tape] = {}
        self._rnd = random.Random(seed).random

    # -- controls ----------------------------------------------------------------------------

    def skip_trades(self, n: int, product: str | None = None) -> None:
        """Make the next trade of ``product`` (all products if None) jump ``n`` trade ids on
        every connection: the client sees a gap of ``n`` missed trades."""
        for client in self.clients:
            for name, cursor in client.state.get("cursors", {}).items():
                if product is None or name == product:
                    cursor[0] += n
                    cursor[1] += 3 * n

    async def resend_last(self, product: str) -> int:
        """Send every client the last match it was sent for ``product`` again (even while
        paused, like :meth:`inject`)."""
        sent = 0
        for client in self.clients:
            frame = client.state.get("last_frames", {}).get(product)
            if frame is not None:
                with contextlib.suppress(ConnectionClosed):
                    await client.conn.send(frame)
                    sent += 1
        return sent

    # -- protocol ----------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] in ("", "/"):
            return None
        return conn.respond(HTTPStatus.NOT_FOUND, "the feed is served at /\n")

    async def on_open(self, client: FakeClient) -> None:
        client.authenticated = True  # the public feed needs no login
        client.state.update(channels={}, cursors={}, last_frames={}, data=[], subscribed_once=False)

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        try:
            request = json.loads(message)
            kind = request["type"]
        except (ValueError, TypeError, KeyError):
            await self.send(client, _error("Failed to parse message", "malformed JSON"))
            return
        if kind not in ("subscribe", "unsubscribe"):
            reason = f"type {str(kind)[:30]!r} is not supported"
            await self.send(client, _error("Failed to subscribe", reason))
            return
        (self.subscribe_requests if kind == "subscribe" else self.unsubscribe_requests).append(
            request
        )
        wanted, problem = self._wanted(request)
        if problem is not None:
            await self.send(client, _error("Failed to subscribe", problem))
            return
        client.state["subscribed_once"] = True
        if kind == "subscribe":
            await self._subscribe(client, wanted)
        else:
            self._unsubscribe(client, wanted)
            await self.send(client, self._subscriptions(client))

    def ready(self, client: FakeClient) -> bool:
        return bool(client.state.get("data"))

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        products: list[str] = client.state["data"]
        channels: dict[str, dict[str, None]] = client.state["channels"]
        matches = channels.get("matches", {})
        tickers = channels.get("ticker", {})
        frames: list[Frame] = []
        k = len(products)
        for i in range(n):
            product = products[int(self._rnd() * k)] if k > 1 else products[0]
            t = t_ms + int(i * span_ms / n)
            match, ticker = self.trade(product, self._cursor(client, product), t)
            if product in matches:
                frame = _DUMPS(match)
                client.state["last_frames"][product] = frame
                frames.append(frame)
            if product in tickers:
                frames.append(_DUMPS(ticker))
        return frames

    # -- subscriptions -----------------------------------------------------------------------

    def _wanted(self, request: dict[str, Any]) -> tuple[dict[str, list[str]], str | None]:
        """channel -> products of a request, or the reason it is refused."""
        top = request.get("product_ids", [])
        channels = request.get("channels")
        if not isinstance(top, list) or not isinstance(channels, list) or not channels:
            return {}, "channels (and product_ids) must be lists"
        wanted: dict[str, list[str]] = {}
        for channel in channels:
            if isinstance(channel, dict):
                name, products = channel.get("name"), channel.get("product_ids", top)
            else:
                name, products = channel, top
            if name not in CHANNELS:
                return {}, f"{str(name)[:30]} is not a valid channel"
            if not isinstance(products, list):
                return {}, "product_ids must be a list"
            for product in products:
                if product not in self.products:
                    return {}, f"{str(product)[:30]} is not a valid product"
            wanted.setdefault(name, []).extend(products)
        return wanted, None

    async def _subscribe(self, client: FakeClient, wanted: dict[str, list[str]]) -> None:
        channels: dict[str, dict[str, None]] = client.state["channels"]
        new: dict[str, list[str]] = {}
        for name, products in wanted.items():
            current = channels.setdefault(name, {})
            for product in products:
                if product not in current:
                    current[product] = None
                    new.setdefault(name, []).append(product)
                    self._cursor(client, product)
                    client.subscriptions[f"{name}:{product}"] = None
        self._rebuild(client)
        await self.send(client, self._subscriptions(client))
        t = now_ms()
        for product in new.get("matches", []):
            frame = _DUMPS(self._last_match(product, self._cursor(client, product), t))
            client.state["last_frames"][product] = frame
            await self.send(client, frame)
        for product in new.get("ticker", []):
            cursor = self._cursor(client, product)
            await self.send(client, _DUMPS(self._ticker(product, cursor, t, None)))

    def _unsubscribe(self, client: FakeClient, wanted: dict[str, list[str]]) -> None:
        channels: dict[str, dict[str, None]] = client.state["channels"]
        for name, products in wanted.items():
            current = channels.get(name, {})
            for product in products or list(current):
                current.pop(product, None)
                client.subscriptions.pop(f"{name}:{product}", None)
            if not current:
                channels.pop(name, None)
        self._rebuild(client)

    def _rebuild(self, client: FakeClient) -> None:
        channels = client.state["channels"]
        data: dict[str, None] = {}
        for name in DATA_CHANNELS:
            data.update(channels.get(name, {}))
        client.state["data"] = list(data)

    def _subscriptions(self, client: FakeClient) -> str:
        channels = client.state["channels"]
        listed = [{"name": name, "product_ids": list(p)} for name, p in channels.items() if p]
        return _DUMPS({"type": "subscriptions", "channels": listed})

    # -- messages ----------------------------------------------------------------------------

    def _tape(self, product: str) -> _Tape:
        tape = self._tapes.get(product)
        if tape is None:
            base = product.replace("-", "")
            if base.endswith(("USDT", "USDC")):
                base = base[:-1]  # BTC-USDT trades at the simulated BTCUSD price
            inst = self.market.instrument(base, "crypto")
            tape = self._tapes[product] = _Tape(inst, sum(map(ord, product)) * 104729)
        return tape

    def _cursor(self, client: FakeClient, product: str) -> list[int]:
        """This connection's [trade_id, sequence] of ``product``: it starts where the product
        is now (the last trade any connection saw), so ids go on across connections."""
        cursors: dict[str, list[int]] = client.state["cursors"]
        cursor = cursors.get(product)
        if cursor is None:
            tape = self._tape(product)
            cursor = cursors[product] = [tape.trade_id, tape.sequence]
        return cursor

    def trade(
        self, product: str, cursor: list[int], t_ms: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The next trade of ``product`` after ``cursor`` (a connection's [trade_id,
        sequence], advanced), as a match and a ticker message."""
        tape = self._tape(product)
        cursor[0] += 1
        cursor[1] += 1 + int(self._rnd() * 12)  # order-book messages in between
        tape.trade_id = max(tape.trade_id, cursor[0])
        tape.sequence = max(tape.sequence, cursor[1])
        trade = tape.inst.trade(t_ms)
        taker_buys = trade["p"] >= tape.inst.ask if self._rnd() < 0.9 else self._rnd() < 0.5
        tape.high = max(tape.high, trade["p"])
        tape.low = min(tape.low, trade["p"])
        tape.volume += trade["s"]
        when = _iso(t_ms, int(self._rnd() * 1000))
        match = self._match("match", product, cursor, trade, taker_buys, when)
        return match, self._ticker(product, cursor, t_ms, (trade, taker_buys, when))

    def _match(
        self,
        kind: str,
        product: str,
        cursor: list[int],
        trade: dict[str, Any],
        taker_buys: bool,
        when: str,
    ) -> dict[str, Any]:
        decimals = self._tape(product).inst.decimals
        return {
            "type": kind,
            "trade_id": cursor[0],
            "maker_order_id": _order_id(self._rnd),
            "taker_order_id": _order_id(self._rnd),
            "side": "sell" if taker_buys else "buy",  # the maker's side
            "size": f"{trade['s']:.8f}",
            "price": f"{trade['p']:.{decimals}f}",
            "product_id": product,
            "sequence": cursor[1],
            "time": when,
        }

    def _last_match(self, product: str, cursor: list[int], t_ms: int) -> dict[str, Any]:
        tape = self._tape(product)
        trade = {"p": tape.inst.ask, "s": 0.01}
        return self._match("last_match", product, cursor, trade, True, _iso(t_ms - 250, 0))

    def _ticker(
        self, product: str, cursor: list[int], t_ms: int, last: tuple[Any, bool, str] | None
    ) -> dict[str, Any]:
        tape = self._tape(product)
        inst = tape.inst
        if last is None:
            trade, taker_buys, when = {"p": inst.ask, "s": 0.01}, True, _iso(t_ms, 0)
        else:
            trade, taker_buys, when = last
        d = inst.decimals
        bid_size, ask_size = 0.001 + 2.0 * self._rnd() ** 3, 0.001 + 2.0 * self._rnd() ** 3
        return {
            "type": "ticker",
            "sequence": cursor[1],
            "product_id": product,
            "price": f"{trade['p']:.{d}f}",
            "open_24h": f"{tape.open:.{d}f}",
            "volume_24h": f"{tape.volume:.8f}",
            "low_24h": f"{tape.low:.{d}f}",
            "high_24h": f"{tape.high:.{d}f}",
            "volume_30d": f"{tape.volume * 30:.8f}",
            "best_bid": f"{inst.bid:.{d}f}",
            "best_bid_size": f"{bid_size:.8f}",
            "best_ask": f"{inst.ask:.{d}f}",
            "best_ask_size": f"{ask_size:.8f}",
            "side": "buy" if taker_buys else "sell",  # the taker's side
            "time": when,
            "trade_id": cursor[0],
            "last_size": f"{trade['s']:.8f}",
        }

    def _heartbeats(self, client: FakeClient) -> list[str]:
        products = client.state["channels"].get("heartbeat", {})
        when = _iso(now_ms(), 0)
        frames = []
        for product in products:
            cursor = self._cursor(client, product)
            beat = {
                "type": "heartbeat",
                "last_trade_id": cursor[0],
                "product_id": product,
                "sequence": cursor[1],
                "time": when,
            }
            frames.append(_DUMPS(beat))
        return frames

    # -- pacing ------------------------------------------------------------------------------

    async def produce(self, client: FakeClient) -> None:
        side = [self._require_subscribe(client)]
        if self.product_heartbeat_interval:
            side.append(self._beat(client, self.product_heartbeat_interval))
        await run_beside(super().produce(client), *side)

    async def _beat(self, client: FakeClient, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                for frame in self._heartbeats(client):
                    await self.send(client, frame)

    async def _require_subscribe(self, client: FakeClient) -> None:
        if self.subscribe_timeout is None:
            return
        await asyncio.sleep(self.subscribe_timeout)
        if not client.state.get("subscribed_once"):
            await client.conn.close(1008, "no subscribe message within 5 s")


def _order_id(rnd: Any) -> str:
    """A UUID-shaped order id (random, version-4 layout)."""
    h = f"{int(rnd() * 2**64):016x}{int(rnd() * 2**64):016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "coinbase"
#: Coinbase sends one message per frame: the benchmark measures single-event frames only
BATCHES = False
#: parse-benchmark cases: name -> provider parameters
BENCH_CASES: dict[str, dict[str, Any]] = {
    "trade (matches)": {"symbol": "BTC-USD,ETH-USD,SOL-USD", "feed": "trade"},
    "ticker": {"symbol": "BTC-USD,ETH-USD", "feed": "ticker"},
}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int = 1, seed: int = 42
) -> list[Frame]:
    """Messages exactly as this server sends them, one per frame (Coinbase does not batch;
    ``per_frame`` is ignored): ``match`` for feed trade, ``ticker`` for feed ticker."""
    server = CoinbaseServer(seed=seed)
    products = [p.strip().upper() for p in str(params["symbol"]).split(",")]
    cursors = {p: [server._tape(p).trade_id, server._tape(p).sequence] for p in products}
    ticker = params.get("feed") == "ticker"
    t_ms = 1_700_000_000_000
    frames: list[Frame] = []
    for i in range(n_events):
        product = products[i % len(products)]
        match, tick = server.trade(product, cursors[product], t_ms + i)
        frames.append(_DUMPS(tick if ticker else match))
    return frames


class CoinbaseServerHandle(ServerHandle):
    """A :class:`CoinbaseServer` on the obbws background loop, driven from sync code."""

    server: CoinbaseServer

    def skip_trades(self, n: int, product: str | None = None) -> None:
        async def _skip() -> None:
            self.server.skip_trades(n, product)

        runtime.run(_skip(), self.timeout)

    def resend_last(self, product: str) -> int:
        return runtime.run(self.server.resend_last(product), self.timeout)


def start_coinbase_server(**kwargs: Any) -> CoinbaseServerHandle:
    """Start a :class:`CoinbaseServer` (same keyword arguments) on the obbws background loop."""
    return CoinbaseServerHandle(start_server(CoinbaseServer, **kwargs).server)


def _build(args: argparse.Namespace, api_key: str | None) -> CoinbaseServer:
    return CoinbaseServer(
        host=args.host,
        port=args.port,
        rate=args.rate,
        seed=args.seed,
        heartbeat_interval=args.heartbeat,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.fakes.coinbase --port P --rate R``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.fakes.coinbase",
        "Serve a fake Coinbase Exchange feed until Ctrl-C; prints its URL.",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
