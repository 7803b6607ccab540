"""A fake Polygon.io (Massive) websocket server: Polygon's protocol on 127.0.0.1, simulated data.

Faithful to what Polygon's docs, its Python client (``polygon-api-client``, the test oracle:
it connects to this server and parses every event into its typed models) and OpenBB's captures
show (reference §9.2, §14.1; ``tests/fixtures/polygon.jsonl`` marks what is captured,
documented or built):

- paths ``/stocks``, ``/options``, ``/forex``, ``/crypto``, ``/indices`` (the delayed and
  business clusters use the same paths: one fake serves them all); any other path: HTTP 404;
- on open ``[{"ev":"status","status":"connected","message":"Connected Successfully"}]``;
- exactly one ``{"action":"auth","params":KEY}``: ``auth_success`` "authenticated", or
  ``auth_failed`` "authentication failed" and a close (1008); with ``refuse_plan=True`` a good
  key gets ``auth_failed`` "Your plan doesn't include websocket access..." and a close;
- ``{"action":"subscribe"|"unsubscribe","params":"XT.BTC-USD,XQ.*"}``: one reply frame with one
  ``success`` element per item, "subscribed to: XT.BTC-USD" / "unsubscribed to: ..."; ``*``
  is every ticker (here: the market's basket, :data:`BASKETS`);
- data as JSON arrays of events, batched (up to :data:`MAX_BATCH` per frame), with Polygon's
  field names and types: integer exchange ids, ``pair`` for crypto and forex aggregates, ``p``
  for forex quotes, ``sym`` for stocks/options/indices, ``T`` for index values, epoch-ms
  timestamps (FMV: ns, as documented), trade conditions as integer lists, stock quote sizes in
  round lots, per-ticker sequence numbers ``q``;
- no heartbeat event (Polygon has none; websocket pings are answered by the library);
- benchmark mode (``firehose=True``, ``--firehose [--events-per-frame N]``): pre-generated
  frames of N events (default 500) re-sent as fast as the client reads;
- optional: ``max_connections=N`` refuses connection N+1 with the ``max_connections`` status,
  ``auth_timeout=S`` closes a connection that has not sent its key after S seconds with
  ``auth_timeout``.

Built, not documented (marked in the fixtures): replies to a second ``auth``, to an action
before ``auth``, to unknown actions and to items whose channel the market lacks (``error``
statuses). Aggregates are emitted at the configured ``rate`` (each a fresh window around the
current time), not once per window close, so tests and benchmarks get data at once.

Controls are the :class:`~obbws_jupyter.fakes.FakeServer` ones (drop, reset, inject, pause,
rate, wait_for); ``keep_sent=N`` keeps the last N frames sent (``sent``) for oracle tests;
``subscribe_requests`` / ``unsubscribe_requests`` list the params received.
``python -m obbws_jupyter.fakes.polygon --port 0`` serves one from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from obbws_jupyter.fakes._base import (
    FIREHOSE_EVENTS,
    TICK_INTERVAL,
    FakeClient,
    FakeServer,
    Frame,
    ServerHandle,
    add_firehose_options,
    run_cli,
    start_server,
)
from obbws_jupyter.offline.market import Instrument, Market

__all__ = [
    "BASKETS",
    "BENCH_CASES",
    "CHANNELS",
    "MARKETS",
    "PROVIDER_NAME",
    "PolygonFeed",
    "PolygonServer",
    "main",
    "sample_frames",
    "start_polygon_server",
]

MARKETS = ("stocks", "options", "forex", "crypto", "indices")
#: channels each market serves (FMV is the Business cluster's, same path)
CHANNELS: dict[str, tuple[str, ...]] = {
    "stocks": ("T", "Q", "A", "AM", "FMV"),
    "options": ("T", "Q", "A", "AM", "FMV"),
    "forex": ("C", "CA", "CAS", "FMV"),
    "crypto": ("XT", "XQ", "XL2", "XA", "XAS", "FMV"),
    "indices": ("A", "AM", "V"),
}
#: what ``*`` streams per market (Polygon streams every ticker; a fake needs a few)
BASKETS: dict[str, tuple[str, ...]] = {
    "stocks": ("AAPL", "MSFT", "NVDA", "AMZN", "SPY"),
    "options": ("O:SPY251219C00650000", "O:AAPL251219P00200000", "O:TSLA260116C00300000"),
    "forex": ("EUR/USD", "GBP/USD", "USD/JPY"),
    "crypto": ("BTC-USD", "ETH-USD", "SOL-USD"),
    "indices": ("I:SPX", "I:NDX", "I:DJI", "I:VIX"),
}
MAX_BATCH = 1000  # events per frame
CONNECTED = "Connected Successfully"
AUTH_FAILED = "authentication failed"
PLAN_REFUSED = (
    "Your plan doesn't include websocket access. Visit https://polygon.io/pricing to upgrade."
)
MAX_CONNECTIONS = "Maximum number of connections exceeded."
AUTH_TIMEOUT = "No authentication request received."

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_INDEX_LEVELS = {"I:SPX": 5000.0, "I:NDX": 18000.0, "I:DJI": 39000.0, "I:VIX": 15.0}
_WINDOW_MS = {"AM": 60_000, "XA": 60_000, "CA": 60_000}  # the others are per second
# venue ids drawn for events (Polygon's ids; weights roughly like US volume shares)
_STOCK_VENUES = (4,) * 30 + (12,) * 12 + (11, 10, 19) * 8 + (8,) * 7 + (15, 21) * 5 + (7, 2, 3)
_QUOTE_VENUES = tuple(v for v in _STOCK_VENUES if v != 4)  # TRFs report trades, not quotes
_OPTION_VENUES = (302, 313, 300, 308, 312, 316, 322, 323, 325)
_CRYPTO_VENUES = (1, 1, 1, 2, 6, 10, 10, 23)
_FX_VENUE = 48


def _status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def _stable(text: str) -> float:
    """A number in [0, 1) fixed for ``text`` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2.0**64


class _Ticker:
    """One ticker of one market: its simulated instrument and Polygon's per-ticker counters."""

    __slots__ = (
        "day_notional",
        "day_open",
        "day_volume",
        "inst",
        "market",
        "seq",
        "tape",
        "ticker",
    )

    def __init__(self, market: str, ticker: str, inst: Instrument) -> None:
        self.market = market
        self.ticker = ticker
        self.inst = inst
        self.seq = int(_stable(ticker) * 1e7)  # q: increasing per ticker
        self.tape = 1 + int(_stable("tape:" + ticker) * 3)  # 1 NYSE, 2 Arca/American, 3 Nasdaq
        self.day_open = 0.0
        self.day_volume = 0.0
        self.day_notional = 0.0


Pair = tuple[str, _Ticker]  # (channel, ticker)


class PolygonFeed:
    """Polygon-format events drawn from an offline :class:`Market` (deterministic with
    ``seed``): the generator behind :class:`PolygonServer` and :func:`sample_frames`."""

    def __init__(self, market: Market, seed: int | None = None) -> None:
        self.market = market
        self._rng = random.Random(seed)
        self._tickers: dict[tuple[str, str], _Ticker] = {}
        self._trade_id = 1000
        self._builders: dict[tuple[str, str], Callable[[_Ticker, int, str], dict[str, Any]]] = {}
        for market_name, channels in CHANNELS.items():
            for channel in channels:
                self._builders[market_name, channel] = self._builder(market_name, channel)

    def ticker(self, market: str, ticker: str) -> _Ticker:
        """The state of ``ticker`` in ``market`` (created on first use)."""
        key = (market, ticker)
        state = self._tickers.get(key)
        if state is None:
            state = _Ticker(market, ticker, self._instrument(market, ticker))
            self._tickers[key] = state
        return state

    def pairs(self, market: str, keys: Sequence[str]) -> list[Pair]:
        """``["XT.BTC-USD", "XQ.*"]`` -> (channel, ticker) pairs, ``*`` expanded, deduplicated."""
        out: dict[tuple[str, str], Pair] = {}
        for key in keys:
            channel, _, symbol = key.partition(".")
            for ticker in BASKETS[market] if symbol == "*" else (symbol,):
                out.setdefault((channel, ticker), (channel, self.ticker(market, ticker)))
        return list(out.values())

    def events(self, pairs: Sequence[Pair], n: int, t_ms: int, span_ms: float = 0.0) -> list[dict]:
        """``n`` events spread at random over ``pairs``, stamped from ``t_ms`` over ``span_ms``."""
        k = len(pairs)
        if n <= 0 or k == 0:
            return []
        rnd = self._rng.random
        builders = self._builders
        step = span_ms / n
        out = []
        for i in range(n):
            channel, state = pairs[int(rnd() * k)] if k > 1 else pairs[0]
            out.append(builders[state.market, channel](state, t_ms + int(i * step), channel))
        return out

    # -- instruments ---------------------------------------------------------------------------

    def _instrument(self, market: str, ticker: str) -> Instrument:
        if market == "crypto":
            return self.market.instrument(ticker.replace("-", ""), "crypto")
        if market == "forex":
            return self.market.instrument(ticker.replace("/", ""), "fx")
        inst = self.market.instrument(ticker, "stock")
        if market == "indices":
            inst.mid = _INDEX_LEVELS.get(ticker, 100.0 + 4900.0 * _stable(ticker))
        elif market == "options":
            inst.mid = round(0.5 + 30.0 * _stable(ticker), 2)
        return inst

    # -- event builders ------------------------------------------------------------------------

    def _builder(self, market: str, channel: str) -> Callable[[_Ticker, int, str], dict[str, Any]]:
        if channel == "FMV":
            return self._fmv
        if channel in ("A", "AM"):
            return self._index_aggs if market == "indices" else self._equity_aggs
        return {
            "T": self._option_trade if market == "options" else self._stock_trade,
            "Q": self._option_quote if market == "options" else self._stock_quote,
            "V": self._index_value,
            "XT": self._crypto_trade,
            "XQ": self._crypto_quote,
            "XL2": self._crypto_l2,
            "XA": self._currency_aggs,
            "XAS": self._currency_aggs,
            "C": self._fx_quote,
            "CA": self._currency_aggs,
            "CAS": self._currency_aggs,
        }[channel]

    def _next_seq(self, state: _Ticker) -> int:
        state.seq += 1 + int(self._rng.random() * 3)  # increasing, not consecutive (as Polygon)
        return state.seq

    def _crypto_trade(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        inst = state.inst
        trade = inst.trade(t)
        self._trade_id += 1
        return {
            "ev": "XT",
            "pair": state.ticker,
            "p": trade["p"],
            "t": t,
            "s": trade["s"],
            "c": [2 if trade["p"] >= inst.mid else 1],  # buyside / sellside
            "i": self._trade_id,
            "x": self._rng.choice(_CRYPTO_VENUES),
            "r": t + 5 + int(self._rng.random() * 120),
        }

    def _crypto_quote(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        quote = state.inst.quote(t)
        return {
            "ev": "XQ",
            "pair": state.ticker,
            "bp": quote["bp"],
            "bs": quote["bs"],
            "ap": quote["ap"],
            "as": quote["as"],
            "t": t,
            "x": self._rng.choice(_CRYPTO_VENUES),
            "r": t + 5 + int(self._rng.random() * 120),
        }

    def _crypto_l2(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        inst = state.inst
        quote = inst.quote(t)
        tick, digits = inst.tick, inst.decimals
        depth = 5 + int(self._rng.random() * 6)
        bids = [
            [round(quote["bp"] - i * i * tick, digits), quote["bs"] * (1 + i)] for i in range(depth)
        ]
        asks = [
            [round(quote["ap"] + i * i * tick, digits), quote["as"] * (1 + i)] for i in range(depth)
        ]
        return {
            "ev": "XL2",
            "pair": state.ticker,
            "t": t,
            "r": t + 5 + int(self._rng.random() * 120),
            "x": self._rng.choice(_CRYPTO_VENUES),
            "b": bids,
            "a": asks,
        }

    def _bar(self, state: _Ticker, t: int, ev: str) -> tuple[list[float], float, float, int, int]:
        """Three trades of the window: prices, volume, vwap, window start and end (ms)."""
        inst = state.inst
        prices: list[float] = []
        volume = notional = 0.0
        for _ in range(3):
            trade = inst.trade(t)
            prices.append(trade["p"])
            volume += trade["s"]
            notional += trade["p"] * trade["s"]
        window = _WINDOW_MS.get(ev, 1_000)
        start = t - t % window
        vwap = round(notional / volume, inst.decimals + 2) if volume else prices[-1]
        return prices, volume, vwap, start, start + window

    def _currency_aggs(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        prices, volume, vwap, start, end = self._bar(state, t, ev)
        event: dict[str, Any] = {"ev": ev, "pair": state.ticker}
        if ev in ("XA", "XAS"):  # crypto: volume in coins, vwap and average size
            event.update(v=round(volume, 8), vw=vwap, z=round(volume / 3, 8))
        else:  # forex: volume is the number of ticks
            event["v"] = len(prices)
        event.update(o=prices[0], c=prices[-1], h=max(prices), l=min(prices), s=start, e=end)
        return event

    def _equity_aggs(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        prices, volume, vwap, start, end = self._bar(state, t, ev)
        if state.market == "options":
            volume = float(max(1, int(volume) // 100))  # contracts
        if not state.day_open:
            state.day_open = prices[0]
        state.day_volume += volume
        state.day_notional += vwap * volume
        return {
            "ev": ev,
            "sym": state.ticker,
            "v": int(volume),
            "av": int(state.day_volume),
            "op": state.day_open,
            "vw": vwap,
            "o": prices[0],
            "c": prices[-1],
            "h": max(prices),
            "l": min(prices),
            "a": round(state.day_notional / state.day_volume, 4),
            "z": max(1, int(volume) // 3),
            "s": start,
            "e": end,
        }

    def _index_aggs(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        prices, _, _, start, end = self._bar(state, t, ev)
        if not state.day_open:
            state.day_open = prices[0]
        return {
            "ev": ev,
            "sym": state.ticker,
            "op": state.day_open,
            "o": prices[0],
            "c": prices[-1],
            "h": max(prices),
            "l": min(prices),
            "s": start,
            "e": end,
        }

    def _index_value(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        inst = state.inst
        inst.quote(t)  # one step of the walk
        return {"ev": "V", "val": round(inst.mid, 2), "T": state.ticker, "t": t}

    def _stock_trade(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        trade = state.inst.trade(t)
        size = int(trade["s"])
        venue = self._rng.choice(_STOCK_VENUES)
        self._trade_id += 1
        event: dict[str, Any] = {
            "ev": "T",
            "sym": state.ticker,
            "x": venue,
            "i": str(self._trade_id),
            "z": state.tape,
            "p": trade["p"],
            "s": size,
        }
        conditions = self._stock_conditions(size)
        if conditions:  # Polygon leaves c out of a regular trade
            event["c"] = conditions
        event["t"] = t
        event["q"] = self._next_seq(state)
        if venue == 4:  # reported to a FINRA TRF
            event["trfi"] = 201 + int(self._rng.random() * 3)
            event["trft"] = t - int(self._rng.random() * 5)
        return event

    def _stock_conditions(self, size: int) -> list[int]:
        r = self._rng.random()
        conditions = [14, 41] if r < 0.15 else [12] if r < 0.2 else []  # ISO / extended hours
        if size < 100:
            conditions.append(37)  # odd lot
        return conditions

    def _stock_quote(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        quote = state.inst.quote(t)
        return {
            "ev": "Q",
            "sym": state.ticker,
            "bx": self._rng.choice(_QUOTE_VENUES),
            "bp": quote["bp"],
            "bs": max(1, int(quote["bs"]) // 100),  # round lots
            "ax": self._rng.choice(_QUOTE_VENUES),
            "ap": quote["ap"],
            "as": max(1, int(quote["as"]) // 100),
            "c": 0 if self._rng.random() < 0.95 else 1,
            "i": [604],
            "t": t,
            "q": self._next_seq(state),
            "z": state.tape,
        }

    def _option_trade(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        trade = state.inst.trade(t)
        return {
            "ev": "T",
            "sym": state.ticker,
            "x": self._rng.choice(_OPTION_VENUES),
            "p": trade["p"],
            "s": max(1, int(trade["s"]) // 100),
            "c": [209] if self._rng.random() < 0.8 else [219],
            "t": t,
            "q": self._next_seq(state),
        }

    def _option_quote(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        quote = state.inst.quote(t)
        return {
            "ev": "Q",
            "sym": state.ticker,
            "bx": self._rng.choice(_OPTION_VENUES),
            "ax": self._rng.choice(_OPTION_VENUES),
            "bp": quote["bp"],
            "ap": quote["ap"],
            "bs": max(1, int(quote["bs"]) // 100),
            "as": max(1, int(quote["as"]) // 100),
            "t": t,
            "q": self._next_seq(state),
        }

    def _fx_quote(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        quote = state.inst.quote(t)
        return {
            "ev": "C",
            "p": state.ticker,
            "x": _FX_VENUE,
            "a": quote["ap"],
            "b": quote["bp"],
            "t": t,
        }

    def _fmv(self, state: _Ticker, t: int, ev: str) -> dict[str, Any]:
        inst = state.inst
        inst.quote(t)
        # Polygon's samples name crypto and forex FMV tickers as its REST API does
        symbol = state.ticker
        if state.market == "crypto":
            symbol = f"X:{symbol}"
        elif state.market == "forex":
            symbol = f"C:{symbol.replace('/', '')}"
        return {
            "ev": "FMV",
            "fmv": round(inst.mid, inst.decimals),
            "sym": symbol,
            "t": t * 1_000_000,  # documented as nanoseconds
        }


class PolygonServer(FakeServer):
    """A Polygon websocket cluster on ``ws://host:port/<market>`` (see the module docstring).

    ``api_key=None`` accepts any key; ``rate`` is events/s per connection spread over its
    subscriptions; ``seed`` makes the data reproducible."""

    provider = "polygon"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        rate: float = 200.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        *,
        refuse_plan: bool = False,
        max_connections: int | None = None,
        auth_timeout: float | None = None,
        keep_sent: int = 0,
        firehose: bool = False,
        events_per_frame: int = FIREHOSE_EVENTS,
    ) -> None:
        super().__init__(
            host,
            port,
            api_key=api_key,
            rate=rate,
            seed=seed,
            tick_interval=tick_interval,
            firehose=firehose,
            events_per_frame=events_per_frame,
        )
        self.feed = PolygonFeed(self.market, seed)
        self.refuse_plan = refuse_plan
        self.max_connections = max_connections
        self.auth_timeout = auth_timeout
        self.sent: deque[Frame] = deque(maxlen=keep_sent)
        self.subscribe_requests: list[str] = []
        self.unsubscribe_requests: list[str] = []

    def url_for(self, market: str) -> str:
        """URL of one market's endpoint (``stocks``, ``options``, ``forex``, ``crypto``,
        ``indices``)."""
        if market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}")
        return f"{self.url}/{market}"

    # -- protocol ----------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0].strip("/") in MARKETS:
            return None
        return conn.respond(HTTPStatus.NOT_FOUND, "404 page not found\n")

    async def on_open(self, client: FakeClient) -> None:
        client.state["market"] = client.path.strip("/")
        client.state["pairs"] = []
        if self.max_connections is not None and self.connections > self.max_connections:
            await self._reply(client, _status("max_connections", MAX_CONNECTIONS))
            await client.conn.close(1008, "max connections")
            return
        await self._reply(client, _status("connected", CONNECTED))

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        try:
            request = json.loads(message)
            action, params = request["action"], request.get("params", "")
            if not isinstance(action, str) or not isinstance(params, str):
                raise TypeError("action and params must be strings")
        except (ValueError, TypeError, KeyError):
            await self._reply(client, _status("error", "invalid message"))
            return
        if action == "auth":
            await self._auth(client, params)
        elif not client.authenticated:
            await self._reply(client, _status("error", "not authorized"))
        elif action in ("subscribe", "unsubscribe"):
            await self._subscription(client, action, params)
        else:
            await self._reply(client, _status("error", f"unknown action: {action[:40]}"))

    def ready(self, client: FakeClient) -> bool:
        return client.authenticated and bool(client.state["pairs"])

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        pairs = client.state["pairs"]
        frames: list[Frame] = []
        done = 0
        while done < n:
            size = min(n - done, MAX_BATCH)
            start = t_ms + int(span_ms * done / n)
            frames.append(_DUMPS(self.feed.events(pairs, size, start, span_ms * size / n)))
            done += size
        return frames

    async def send(self, client: FakeClient, frame: Frame, events: int = 0) -> None:
        await super().send(client, frame, events)
        if self.sent.maxlen:
            self.sent.append(frame)

    async def produce(self, client: FakeClient) -> None:
        if self.auth_timeout is None:
            await super().produce(client)
            return
        deadline = asyncio.create_task(self._auth_deadline(client, self.auth_timeout))
        try:
            await super().produce(client)
        finally:
            deadline.cancel()

    async def _auth_deadline(self, client: FakeClient, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not client.authenticated:
            with contextlib.suppress(ConnectionClosed):
                await self._reply(client, _status("auth_timeout", AUTH_TIMEOUT))
                await client.conn.close(1008, "auth timeout")

    async def _reply(self, client: FakeClient, *elements: Mapping[str, Any]) -> None:
        await self.send(client, _DUMPS(list(elements)))

    async def _auth(self, client: FakeClient, key: str) -> None:
        if client.authenticated:
            await self._reply(client, _status("error", "already authenticated"))
            return
        if not self.check_key(key):
            await self._reply(client, _status("auth_failed", AUTH_FAILED))
            await client.conn.close(1008, AUTH_FAILED)
        elif self.refuse_plan:
            await self._reply(client, _status("auth_failed", PLAN_REFUSED))
            await client.conn.close(1008, "not entitled")
        else:
            client.authenticated = True
            await self._reply(client, _status("auth_success", "authenticated"))

    async def _subscription(self, client: FakeClient, action: str, params: str) -> None:
        requests = self.subscribe_requests if action == "subscribe" else self.unsubscribe_requests
        requests.append(params)
        channels = CHANNELS[client.state["market"]]
        verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
        replies: list[dict[str, str]] = []
        for item in (p.strip() for p in params.split(",")):
            channel, dot, symbol = item.partition(".")
            if not (dot and symbol and channel in channels):
                replies.append(_status("error", f"invalid subscription: {item[:60]}"))
                continue
            if action == "subscribe":
                client.subscriptions[item] = None
            else:
                client.subscriptions.pop(item, None)
            replies.append(_status("success", f"{verb}: {item}"))
        client.state["pairs"] = self.feed.pairs(client.state["market"], list(client.subscriptions))
        if replies:
            await self._reply(client, *replies)


def start_polygon_server(**kwargs: Any) -> ServerHandle:
    """Start a :class:`PolygonServer` (same keyword arguments) on the obbws background loop;
    the handle forwards ``url_for``, ``sent``, ``subscribe_requests``... to the server."""
    return start_server(PolygonServer, **kwargs)


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "polygon"
#: parse-benchmark cases: name -> provider parameters (symbols name their channel)
BENCH_CASES: dict[str, dict[str, Any]] = {
    "crypto trade": {"symbol": "XT.*", "asset_type": "crypto", "feed": "trade"},
    "crypto aggs_sec": {"symbol": "XAS.*", "asset_type": "crypto", "feed": "aggs_sec"},
    "fx quote": {"symbol": "C.*", "asset_type": "fx", "feed": "quote"},
    "stock trade": {"symbol": "T.*", "asset_type": "stock", "feed": "trade"},
    "stock quote": {"symbol": "Q.*", "asset_type": "stock", "feed": "quote"},
}
_MARKET_OF = {
    "stock": "stocks",
    "options": "options",
    "fx": "forex",
    "crypto": "crypto",
    "index": "indices",
}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int, seed: int = 42
) -> list[Frame]:
    """Data frames exactly as this server sends them for ``params`` (whose ``symbol`` items are
    ``<channel>.<ticker>``), ``per_frame`` events per frame."""
    market = _MARKET_OF[str(params["asset_type"]).removesuffix("_delayed")]
    feed = PolygonFeed(Market(seed), seed)
    pairs = feed.pairs(market, str(params["symbol"]).split(","))
    t_ms = 1_700_000_000_000
    return [
        _DUMPS(feed.events(pairs, per_frame, t_ms + i, 1.0))
        for i in range(max(1, n_events // per_frame))
    ]


def _build(args: argparse.Namespace, api_key: str | None) -> PolygonServer:
    return PolygonServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        rate=args.rate,
        seed=args.seed,
        refuse_plan=args.refuse_plan,
        max_connections=args.max_connections,
        firehose=args.firehose,
        events_per_frame=args.events_per_frame,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--refuse-plan", action="store_true", help="answer a good key with the plan refusal"
    )
    parser.add_argument("--max-connections", type=int, default=None)
    add_firehose_options(parser)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.fakes.polygon --port P --rate R [--api-key-env VAR]``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.fakes.polygon",
        "Serve a fake Polygon websocket cluster until Ctrl-C; prints its base URL "
        "(paths /stocks, /options, /forex, /crypto, /indices).",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
