"""A fake Binance spot stream server: Binance's "WebSocket Streams" protocol on 127.0.0.1.

Follows https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (samples
in ``tests/fixtures/binance.jsonl``). What it does, and where a behaviour is our own choice
because the documentation does not say ([built]):

- paths ``/ws`` and ``/ws/<stream>/<stream>...`` (raw events) and ``/stream`` and
  ``/stream?streams=<stream>/<stream>...`` (combined: ``{"stream": ..., "data": ...}``);
  other paths get HTTP 404 [built];
- JSON requests ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` /
  ``GET_PROPERTY`` with an ``id`` (a 64-bit integer, an alphanumeric string of at most 36
  characters, or null), answered ``{"result": ..., "id": ...}``; errors as
  ``{"error": {"code": c, "msg": m}, "id": ...}`` with the documented codes and texts (an
  invalid stream name: code 2 "Invalid request: invalid stream", as Binance answers);
- a well-formed stream of a symbol it does not list (``known_symbols``) is acknowledged and
  stays silent, as Binance does; ``refuse(symbol)`` makes it answer an error instead (a test
  control);
- one event per frame: ``trade``, ``aggTrade``, ``bookTicker`` and ``kline_<interval>`` events
  with increasing ids per symbol (kept across connections, so a reconnecting client sees the
  ids go on); klines repeat the open bar every 1 s (``1s``) or 2 s (others) and close it with
  ``"x": true`` (``kline_update_interval`` shortens that for tests);
- limits: more than ``max_messages_per_second`` (5) client messages in a second, or more than
  ``max_streams`` (1024) streams, disconnect the client (close 1008 [built code]); a ping
  frame every ``ping_interval`` (20 s) and a close when no pong came within ``ping_timeout``
  (60 s); a close after ``max_connection_age`` (24 h; close 1000 [built code]); a
  ``serverShutdown`` event on :meth:`announce_shutdown`;
- ``restricted=True``: every handshake is refused with HTTP 451, as binance.com answers from a
  restricted location (reported for cloud hosts in the US).

Pings carry an empty payload, so a client answering with an empty pong (binance-connector does)
matches, as does one echoing the payload (the websockets library). Pongs are not counted against
the message limit here.

``python -m obbws_jupyter.fakes.binance --port 0`` serves one from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
from collections import deque
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

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
    "KNOWN_SYMBOLS",
    "PROVIDER_NAME",
    "BinanceServer",
    "BinanceServerHandle",
    "main",
    "sample_frames",
    "start_binance_server",
]

KNOWN_SYMBOLS = (
    *("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"),
    *("BTCUSDC", "ETHUSDC", "ETHBTC", "BTCUSD", "ETHUSD", "SOLUSD"),
)
INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,  # 30 days [built: real months vary]
}
STREAM_RE = re.compile(
    r"^([a-z0-9]{2,20})@(trade|aggTrade|bookTicker|kline_(" + "|".join(INTERVAL_MS) + r"))$"
)
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
#: binance.com's refusal of a restricted location (HTTP 451), as client libraries report it
RESTRICTED = (
    '{"code": 0, "msg": "Service unavailable from a restricted location according to '
    "'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service "
    'if you believe you received this message in error."}\n'
)
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_QUOTES_AS_USD = ("USDT", "USDC", "FDUSD")
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class _Stream:
    """One subscribed stream: its name, kind (trade/aggTrade/bookTicker/kline) and prices."""

    __slots__ = ("interval", "kind", "name", "symbol", "tape")

    def __init__(
        self, name: str, kind: str, interval: str, symbol: str, tape: _Tape | None
    ) -> None:
        self.name = name
        self.kind = kind
        self.interval = interval
        self.symbol = symbol
        self.tape = tape


class _Tape:
    """Per-symbol state shared by all connections: prices and increasing ids."""

    __slots__ = ("agg_id", "inst", "trade_id", "update_id")

    def __init__(self, inst: Instrument, seed: int) -> None:
        self.inst = inst
        self.trade_id = 100_000_000 + seed % 1_000_000
        self.agg_id = 10_000_000 + seed % 1_000_000
        self.update_id = 400_000_000 + seed % 1_000_000


class _Bar:
    """The open kline of one stream on one connection."""

    __slots__ = (
        *("close", "first", "high", "last", "low", "open"),
        *("quote", "start", "trades", "volume"),
    )

    def __init__(self, start: int, price: float, trade_id: int) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = price
        self.volume = self.quote = 0.0
        self.trades = 0
        self.first = self.last = trade_id


def _error(code: int, msg: str, request_id: Any) -> str:
    return _DUMPS({"error": {"code": code, "msg": msg}, "id": request_id})


def _num(value: float) -> str:
    return f"{value:.8f}"


class BinanceServer(FakeServer):
    """Binance spot streams on ``ws://host:port`` (``/ws`` raw, ``/stream`` combined).

    ``rate`` is trade/aggTrade/bookTicker events per second per connection, spread over its
    streams of known symbols. See the module docstring for the limits and controls.
    """

    provider = "binance"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float = 200.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 60.0,
        max_connection_age: float | None = 24 * 3600.0,
        max_messages_per_second: int = 5,
        max_streams: int = 1024,
        kline_update_interval: float | None = None,
        known_symbols: Sequence[str] = KNOWN_SYMBOLS,
        restricted: bool = False,
    ) -> None:
        super().__init__(host, port, rate=rate, seed=seed, tick_interval=tick_interval)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_connection_age = max_connection_age
        self.max_messages_per_second = max_messages_per_second
        self.max_streams = max_streams
        self.kline_update_interval = kline_update_interval
        self.known_symbols = {s.upper() for s in known_symbols}
        self.restricted = restricted
        self.refused: set[str] = set()
        self.subscribe_requests: list[list[str]] = []
        self.unsubscribe_requests: list[list[str]] = []
        self.pings_sent = 0
        self.pongs_received = 0
        self._tapes: dict[str, _Tape] = {}
        self._rnd = random.Random(seed).random

    # -- controls ----------------------------------------------------------------------------

    def refuse(self, symbol: str) -> None:
        """Answer subscriptions of ``symbol`` with an error (a test control)."""
        self.refused.add(symbol.upper())

    async def announce_shutdown(self) -> int:
        """Send the ``serverShutdown`` event to every client; returns how many."""
        clients = self.clients
        for client in clients:
            event = {"e": "serverShutdown", "E": now_ms()}
            await self.send(client, self._wrap(client, "!serverShutdown", event))
        return len(clients)

    # -- protocol ----------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if self.restricted:  # binance.com seen from a restricted country (the US among them)
            return conn.respond(HTTPStatus.UNAVAILABLE_FOR_LEGAL_REASONS, RESTRICTED)
        path = request.path.partition("?")[0]
        if path in ("/ws", "/stream", "/stream/") or path.startswith("/ws/"):
            return None
        return conn.respond(HTTPStatus.NOT_FOUND, "use /ws, /ws/<stream> or /stream\n")

    async def on_open(self, client: FakeClient) -> None:
        client.authenticated = True  # public streams: nothing to log in to
        client.state.update(
            combined=client.path.startswith("/stream"),
            streams={},
            messages=deque(),
            bars={},
            kline_due={},
        )
        if client.path.startswith("/ws/"):
            names = client.path[len("/ws/") :].split("/")
        else:
            names = parse_qs(client.query).get("streams", [""])[0].split("/")
        for name in names:
            if STREAM_RE.match(name):
                self._add(client, name)

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        if not self._within_limit(client):
            await client.conn.close(1008, "too many messages per second")
            return
        try:
            request = json.loads(message)
        except ValueError:
            await self.send(client, _error(3, "Invalid JSON: expected value at line 1", None))
            return
        if not isinstance(request, dict) or "method" not in request:
            await self.send(client, _error(2, "Invalid request: missing field `method`", None))
            return
        request_id = request.get("id")
        if not _valid_id(request_id):
            msg = "Invalid request: request ID must be an unsigned integer"
            await self.send(client, _error(2, msg, None))
            return
        reply = await self._handle(client, request["method"], request.get("params"), request_id)
        if reply is not None:
            await self.send(client, reply)

    def ready(self, client: FakeClient) -> bool:
        return bool(client.state.get("streams"))

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        streams = client.state["streams"].values()
        live = [s for s in streams if s.kind != "kline" and s.tape is not None]
        frames: list[Frame] = []
        if live:
            k = len(live)
            for i in range(n):
                stream = live[int(self._rnd() * k)] if k > 1 else live[0]
                event = self.event(stream, t_ms + int(i * span_ms / n))
                frames.append(self._wrap(client, stream.name, event))
        frames.extend(self._kline_frames(client, t_ms))
        return frames

    # -- requests ----------------------------------------------------------------------------

    async def _handle(
        self, client: FakeClient, method: Any, params: Any, request_id: Any
    ) -> str | None:
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return await self._subscription(client, method, params, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return _DUMPS({"result": list(client.state["streams"]), "id": request_id})
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return self._property(client, method, params, request_id)
        msg = (
            f"Invalid request: unknown variant {str(method)[:40]}, expected one of "
            + ", ".join(f"`{m}`" for m in METHODS)
            + " at line 1 column 28"
        )
        return _error(2, msg, request_id)

    async def _subscription(
        self, client: FakeClient, method: str, params: Any, request_id: Any
    ) -> str | None:
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _error(2, "Invalid request: invalid stream", request_id)
        (self.subscribe_requests if method == "SUBSCRIBE" else self.unsubscribe_requests).append(
            list(params)
        )
        for name in params:
            match = STREAM_RE.match(name)
            if match is None or match.group(1).upper() in self.refused:
                return _error(2, "Invalid request: invalid stream", request_id)
        streams = client.state["streams"]
        for name in params:
            if method == "SUBSCRIBE":
                self._add(client, name)
            else:
                streams.pop(name, None)
                client.subscriptions.pop(name, None)
        if len(streams) > self.max_streams:
            await client.conn.close(1008, f"more than {self.max_streams} streams")
            return None
        return _DUMPS({"result": None, "id": request_id})

    def _property(self, client: FakeClient, method: str, params: Any, request_id: Any) -> str:
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            return _error(2, "Invalid request: property name must be a string", request_id)
        if params[0] != "combined":
            return _error(0, "Unknown property", request_id)
        if method == "GET_PROPERTY":
            return _DUMPS({"result": client.state["combined"], "id": request_id})
        if len(params) != 2 or not isinstance(params[1], bool):
            return _error(1, "Invalid value type: expected Boolean", request_id)
        client.state["combined"] = params[1]
        return _DUMPS({"result": None, "id": request_id})

    def _within_limit(self, client: FakeClient) -> bool:
        times: deque[float] = client.state["messages"]
        now = asyncio.get_running_loop().time()
        while times and times[0] <= now - 1.0:
            times.popleft()
        times.append(now)
        return len(times) <= self.max_messages_per_second

    def _add(self, client: FakeClient, name: str) -> None:
        stream = self.stream(name)
        client.state["streams"][name] = stream
        client.subscriptions[name] = None

    # -- events ------------------------------------------------------------------------------

    def stream(self, name: str) -> _Stream:
        """The stream ``name`` (``btcusdt@trade``); its tape is None for unknown symbols."""
        match = STREAM_RE.match(name)
        if match is None:
            raise ValueError(f"invalid stream name {name!r}")
        symbol = match.group(1).upper()
        kind, _, interval = match.group(2).partition("_")
        tape = self._tape(symbol) if symbol in self.known_symbols else None
        return _Stream(name, kind, interval, symbol, tape)

    def _tape(self, symbol: str) -> _Tape:
        tape = self._tapes.get(symbol)
        if tape is None:
            base = symbol
            for quote in _QUOTES_AS_USD:  # BTCUSDT trades at BTCUSD's simulated price
                if symbol.endswith(quote) and len(symbol) > len(quote):
                    base = symbol[: -len(quote)] + "USD"
                    break
            inst = self.market.instrument(base, "crypto")
            tape = self._tapes[symbol] = _Tape(inst, sum(map(ord, symbol)) * 7919)
        return tape

    def event(self, stream: _Stream, t_ms: int) -> dict[str, Any]:
        """One trade, aggTrade or bookTicker event of ``stream`` at ``t_ms``."""
        tape = stream.tape
        assert tape is not None, "no events for a symbol the server does not list"
        if stream.kind == "bookTicker":
            quote = tape.inst.quote(t_ms)
            tape.update_id += 1
            return {
                "u": tape.update_id,
                "s": stream.symbol,
                "b": _num(quote["bp"]),
                "B": _num(quote["bs"]),
                "a": _num(quote["ap"]),
                "A": _num(quote["as"]),
            }
        trade = tape.inst.trade(t_ms)
        maker = trade["p"] <= tape.inst.bid if self._rnd() < 0.9 else self._rnd() < 0.5
        if stream.kind == "trade":
            tape.trade_id += 1
            return {
                "e": "trade",
                "E": t_ms + 1,
                "s": stream.symbol,
                "t": tape.trade_id,
                "p": _num(trade["p"]),
                "q": _num(trade["s"]),
                "T": t_ms,
                "m": maker,
                "M": True,
            }
        first = tape.trade_id + 1
        tape.trade_id += 1 + int(self._rnd() * 3)
        tape.agg_id += 1
        return {
            "e": "aggTrade",
            "E": t_ms + 1,
            "s": stream.symbol,
            "a": tape.agg_id,
            "p": _num(trade["p"]),
            "q": _num(trade["s"]),
            "f": first,
            "l": tape.trade_id,
            "T": t_ms,
            "m": maker,
            "M": True,
        }

    def kline_event(self, stream: _Stream, bars: dict[str, _Bar], t_ms: int) -> list[Any]:
        """Kline events of ``stream`` at ``t_ms``: the closed bar first when ``t_ms`` starts a
        new one, then the open bar after a few more trades."""
        tape = stream.tape
        assert tape is not None, "no events for a symbol the server does not list"
        span = INTERVAL_MS[stream.interval]
        start = t_ms - t_ms % span
        events = []
        bar = bars.get(stream.name)
        if bar is not None and bar.start != start:
            events.append(self._kline(stream, bar, t_ms, closed=True))
            bar = None
        if bar is None:
            opening = round(tape.inst.mid, tape.inst.decimals)
            bar = bars[stream.name] = _Bar(start, opening, tape.trade_id + 1)
        for _ in range(1 + int(self._rnd() * 3)):
            trade = tape.inst.trade(t_ms)
            price, size = trade["p"], trade["s"]
            tape.trade_id += 1
            bar.close = price
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.volume += size
            bar.quote += price * size
            bar.trades += 1
            bar.last = tape.trade_id
        events.append(self._kline(stream, bar, t_ms, closed=False))
        return events

    def _kline(self, stream: _Stream, bar: _Bar, t_ms: int, closed: bool) -> dict[str, Any]:
        return {
            "e": "kline",
            "E": t_ms,
            "s": stream.symbol,
            "k": {
                "t": bar.start,
                "T": bar.start + INTERVAL_MS[stream.interval] - 1,
                "s": stream.symbol,
                "i": stream.interval,
                "f": bar.first,
                "L": bar.last,
                "o": _num(bar.open),
                "c": _num(bar.close),
                "h": _num(bar.high),
                "l": _num(bar.low),
                "v": _num(bar.volume),
                "n": bar.trades,
                "x": closed,
                "q": _num(bar.quote),
                "V": _num(bar.volume / 2),
                "Q": _num(bar.quote / 2),
                "B": "0",
            },
        }

    def _kline_frames(self, client: FakeClient, t_ms: int) -> list[Frame]:
        loop_now = asyncio.get_running_loop().time()
        due: dict[str, float] = client.state["kline_due"]
        frames: list[Frame] = []
        for stream in client.state["streams"].values():
            if stream.kind != "kline" or stream.tape is None:
                continue
            if loop_now < due.get(stream.name, 0.0):
                continue
            every = self.kline_update_interval or (1.0 if stream.interval == "1s" else 2.0)
            due[stream.name] = loop_now + every
            for event in self.kline_event(stream, client.state["bars"], t_ms):
                frames.append(self._wrap(client, stream.name, event))
                self.events_sent += 1
        return frames

    def _wrap(self, client: FakeClient, name: str, event: dict[str, Any]) -> str:
        if client.state.get("combined"):
            return _DUMPS({"stream": name, "data": event})
        return _DUMPS(event)

    # -- connection limits -------------------------------------------------------------------

    async def produce(self, client: FakeClient) -> None:
        side = [self._age_limit(client)]
        if self.ping_interval:
            side.append(self._pinger(client, self.ping_interval))
        await run_beside(super().produce(client), *side)

    async def _pinger(self, client: FakeClient, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                if self.paused:
                    continue
                waiter = await client.conn.ping(b"")
                self.pings_sent += 1
                try:
                    await asyncio.wait_for(waiter, self.ping_timeout)
                except TimeoutError:
                    await client.conn.close(1008, "pong timeout")
                    return
                self.pongs_received += 1
                await self._notify()  # wake wait_for() predicates on pongs

    async def _age_limit(self, client: FakeClient) -> None:
        if self.max_connection_age is None:
            return
        await asyncio.sleep(self.max_connection_age)
        await client.conn.close(1000, "connection age limit reached")


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, str) and _ID_RE.match(value) is not None


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "binance"
#: Binance sends one event per frame: the benchmark measures single-event frames only
BATCHES = False
#: parse-benchmark cases: name -> provider parameters
BENCH_CASES: dict[str, dict[str, Any]] = {
    "trade": {"symbol": "btcusdt,ethusdt,solusdt", "feed": "trade"},
    "agg_trade": {"symbol": "btcusdt,ethusdt", "feed": "agg_trade"},
    "book_ticker": {"symbol": "btcusdt,ethusdt", "feed": "book_ticker"},
    "kline 1m": {"symbol": "btcusdt", "feed": "kline", "interval": "1m"},
}
_FEED_STREAMS = {"trade": "trade", "agg_trade": "aggTrade", "book_ticker": "bookTicker"}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int = 1, seed: int = 42
) -> list[Frame]:
    """Combined-stream frames exactly as this server sends them, one event each (Binance
    does not batch; ``per_frame`` is ignored)."""
    server = BinanceServer(seed=seed)
    feed = str(params.get("feed", "trade"))
    suffix = _FEED_STREAMS.get(feed) or f"kline_{params.get('interval') or '1m'}"
    symbols = [s.strip().lower().replace("-", "") for s in str(params["symbol"]).split(",")]
    streams = [server.stream(f"{s}@{suffix}") for s in symbols]
    bars: dict[str, _Bar] = {}
    t_ms = 1_700_000_000_000
    frames: list[Frame] = []
    i = 0
    while len(frames) < n_events:
        stream = streams[i % len(streams)]
        if stream.kind == "kline":
            events = server.kline_event(stream, bars, t_ms + 1000 * i)
        else:
            events = [server.event(stream, t_ms + i)]
        frames.extend(_DUMPS({"stream": stream.name, "data": e}) for e in events)
        i += 1
    return frames[:n_events]


class BinanceServerHandle(ServerHandle):
    """A :class:`BinanceServer` on the obbws background loop, driven from sync code."""

    server: BinanceServer

    def announce_shutdown(self) -> int:
        return runtime.run(self.server.announce_shutdown(), self.timeout)

    def refuse(self, symbol: str) -> None:
        self.server.refuse(symbol)


def start_binance_server(**kwargs: Any) -> BinanceServerHandle:
    """Start a :class:`BinanceServer` (same keyword arguments) on the obbws background loop."""
    return BinanceServerHandle(start_server(BinanceServer, **kwargs).server)


def _build(args: argparse.Namespace, api_key: str | None) -> BinanceServer:
    return BinanceServer(
        host=args.host,
        port=args.port,
        rate=args.rate,
        seed=args.seed,
        ping_interval=args.ping_interval,
        max_connection_age=args.max_age,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ping-interval", type=float, default=20.0, help="seconds")
    parser.add_argument("--max-age", type=float, default=24 * 3600.0, help="seconds")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.fakes.binance --port P --rate R``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.fakes.binance",
        "Serve fake Binance spot streams until Ctrl-C; prints the base URL.",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
