"""A fake Tiingo websocket server: ``/iex``, ``/fx`` and ``/crypto`` on 127.0.0.1, speaking
Tiingo's firehose protocol (see :mod:`obbws_providers.tiingo` for the client side).

Behaviour, as Tiingo's documentation and captured frames describe it (frames the docs do not
show are built from the documented schema and marked so in ``tests/fixtures/tiingo.jsonl``):

- every client frame is ``{"eventName": ..., "authorization": <key>, "eventData": {...}}``; a
  wrong key gets ``E`` 401 "Authorization failed" and the socket closes (1008); an endpoint not
  in ``services`` gets ``E`` 403 "Not authorized for service: <endpoint>" and closes;
- the first ``subscribe`` creates a subscription: ``I`` with its ``subscriptionId``, then ``I``
  listing its tickers and ``thresholdLevel`` (a string, as Tiingo sends it);
- updates (``subscribe``/``unsubscribe`` with ``eventData.subscriptionId``) change that
  subscription, whichever connection sends them, and are answered with ``I`` listing the
  subscription's tickers; a second ``subscribe`` without an id adds to the connection's own;
- ``H`` heartbeats every ``heartbeat_interval`` once subscribed; ``A`` data, **one event per
  frame** (Tiingo never batches), in each endpoint's array layout: crypto ``T``/``Q`` (``Q``
  only at thresholdLevel 2), fx ``Q`` (ask size before ask price), iex ``T``/``Q``/rare ``B``
  with epoch nanoseconds and New York offsets, or the 3-element reference price at level 6.

``url`` is ``ws://host:port``; :meth:`TiingoServer.url_for` adds an asset type's path. Use it
from sync code with ``start_server(TiingoServer, api_key=..., rate=...)`` or from a shell with
``python -m obbws_jupyter.fakes.tiingo --port 0``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from obbws_jupyter.fakes._base import FakeClient, FakeServer, Frame, run_cli
from obbws_jupyter.offline.market import Channel, Market
from obbws_jupyter.protocol import get_provider

__all__ = [
    "BENCH_CASES",
    "ENDPOINTS",
    "PROVIDER_NAME",
    "TiingoServer",
    "main",
    "sample_frames",
]

ENDPOINTS = {"iex": "stock", "fx": "fx", "crypto": "crypto"}  # path -> asset class
SERVICE = {"iex": "iex", "fx": "fx", "crypto": "crypto_data"}  # path -> "service" of A frames
LEVELS = {"iex": (0, 5, 6), "fx": (5,), "crypto": (2, 5)}
FIRST_SUBSCRIPTION_ID = 2563396  # as in Tiingo's captured sample
CRYPTO_EXCHANGES = ("gdax", "binance", "kraken", "bitfinex", "bitstamp")
BREAK_EVERY = 500  # one IEX trade in this many is a trade break ("B")

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_HEARTBEAT = _DUMPS({"messageType": "H", "response": {"code": 200, "message": "HeartBeat"}})


def _error(code: int, message: str) -> str:
    return _DUMPS({"messageType": "E", "response": {"code": code, "message": message}})


def _info(data: Mapping[str, Any]) -> str:
    return _DUMPS(
        {"messageType": "I", "response": {"code": 200, "message": "Success"}, "data": data}
    )


def _new_york() -> Any:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("America/New_York")
    except Exception:  # no tz database: UTC offsets are still valid ISO 8601
        return UTC


class _Clock:
    """Event times as Tiingo writes them, with the seconds' text cached: crypto and fx
    ``2024-12-12T21:57:50.164993+00:00`` (UTC, microseconds); iex New York local time with
    nanoseconds and the offset, ``2024-12-12T16:57:50.164993123-05:00``."""

    def __init__(self) -> None:
        self._ny = _new_york()
        self._utc: dict[int, str] = {}
        self._local: dict[int, tuple[str, str]] = {}

    def utc(self, ns: int) -> str:
        sec, frac = divmod(ns, 1_000_000_000)
        head = self._utc.get(sec)
        if head is None:
            self._utc = {} if len(self._utc) > 4096 else self._utc
            head = self._utc[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{head}.{frac // 1000:06d}+00:00"

    def new_york(self, ns: int) -> str:
        sec, frac = divmod(ns, 1_000_000_000)
        cached = self._local.get(sec)
        if cached is None:
            self._local = {} if len(self._local) > 4096 else self._local
            local = datetime.fromtimestamp(sec, tz=self._ny)
            offset = local.utcoffset() or timedelta(0)
            minutes = int(offset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            tz = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
            cached = self._local[sec] = (local.strftime("%Y-%m-%dT%H:%M:%S"), tz)
        return f"{cached[0]}.{frac:09d}{cached[1]}"

    def after_hours(self, ns: int) -> int:
        local = datetime.fromtimestamp(ns // 1_000_000_000, tz=self._ny)
        minute = local.hour * 60 + local.minute
        return 0 if local.weekday() < 5 and 570 <= minute < 960 else 1


class _Subscription:
    """One Tiingo subscription: its id, endpoint, level, tickers and the connection it feeds."""

    __slots__ = ("channels", "endpoint", "id", "level", "owner", "tickers")

    def __init__(self, sub_id: int, endpoint: str, level: int, owner: FakeClient) -> None:
        self.id = sub_id
        self.endpoint = endpoint
        self.level = level
        self.owner = owner
        self.tickers: dict[str, None] = {}
        self.channels: list[Channel] = []


class _Encoder:
    """Market events (demo format) -> Tiingo ``A`` frames for one endpoint and level."""

    def __init__(self, rng: random.Random) -> None:
        self.clock = _Clock()
        self._rng = rng
        self._count = 0
        self._last_ns = 0

    def kinds(self, endpoint: str, level: int) -> tuple[str, ...]:
        if endpoint == "fx" or (endpoint == "iex" and level == 6):
            return ("Q",)
        if endpoint == "crypto" and level == 5:
            return ("T",)
        return ("T", "Q")

    def frames(self, endpoint: str, level: int, events: Sequence[dict[str, Any]]) -> list[str]:
        encode: Callable[[dict[str, Any], int], list[Any]]
        if endpoint == "crypto":
            encode = self._crypto
        elif endpoint == "fx":
            encode = self._fx
        else:
            encode = self._reference if level == 6 else self._iex
        service = SERVICE[endpoint]
        out = []
        for event in events:
            # sub-millisecond digits, as Tiingo's micro/nanosecond stamps have (increasing)
            ns = max(event["t"] * 1_000_000 + self._rng.randrange(1_000_000), self._last_ns + 1)
            self._last_ns = ns
            data = encode(event, ns)
            out.append(_DUMPS({"messageType": "A", "service": service, "data": data}))
        return out

    def _crypto(self, event: dict[str, Any], ns: int) -> list[Any]:
        symbol = event["sym"].lower()
        exchange = CRYPTO_EXCHANGES[self._rng.randrange(len(CRYPTO_EXCHANGES))]
        date = self.clock.utc(ns)
        if event["ev"] == "T":
            return ["T", symbol, date, exchange, event["s"], event["p"]]
        bid, ask = event["bp"], event["ap"]
        mid = round((bid + ask) / 2, 9)
        return ["Q", symbol, date, exchange, event["bs"], bid, mid, event["as"], ask]

    def _fx(self, event: dict[str, Any], ns: int) -> list[Any]:
        bid, ask = event["bp"], event["ap"]
        symbol, date = event["sym"].lower(), self.clock.utc(ns)
        # fx: [type, ticker, date, bidSize, bidPrice, midPrice, askSize, askPrice]
        return ["Q", symbol, date, event["bs"], bid, round((bid + ask) / 2, 7), event["as"], ask]

    def _iex(self, event: dict[str, Any], ns: int) -> list[Any]:
        symbol = event["sym"].lower()
        date = self.clock.new_york(ns)
        after = self.clock.after_hours(ns)
        if event["ev"] == "Q":
            bid, ask = event["bp"], event["ap"]
            mid = round((bid + ask) / 2, 4)
            # quotes carry no last trade and no trade flags
            head = ["Q", date, ns, symbol, event["bs"], bid, mid, ask, event["as"]]
            return [*head, None, None, 0, after, None, None, None]
        self._count += 1
        kind = "B" if self._count % BREAK_EVERY == 0 else "T"
        size = event["s"]
        tail = [event["p"], size, 0, after, 0, 1 if size < 100 else 0, 0]
        return [kind, date, ns, symbol, None, None, None, None, None, *tail]

    def _reference(self, event: dict[str, Any], ns: int) -> list[Any]:
        mid = round((event["bp"] + event["ap"]) / 2, 4)
        return [self.clock.new_york(ns), event["sym"].lower(), mid]


class TiingoServer(FakeServer):
    """Fake Tiingo on ``ws://host:port/{iex,fx,crypto}`` (see the module docstring).

    Takes :class:`FakeServer`'s arguments (host, port, api_key, rate, seed, ...);
    ``api_key=None`` accepts any key. ``services`` lists the endpoints the key is entitled to
    (others get ``E`` 403). ``rate`` is events (= frames) per second per subscribed connection.
    """

    provider = "tiingo"

    def __init__(
        self,
        *,
        heartbeat_interval: float = 30.0,
        services: Sequence[str] = tuple(ENDPOINTS),
        **kwargs: Any,
    ) -> None:
        super().__init__(heartbeat_interval=heartbeat_interval, **kwargs)
        unknown = set(services) - set(ENDPOINTS)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; use {', '.join(ENDPOINTS)}")
        self.services = tuple(services)
        self.subscriptions: dict[int, _Subscription] = {}
        self._ids = itertools.count(FIRST_SUBSCRIPTION_ID)
        self._encoder = _Encoder(random.Random(kwargs.get("seed")))

    def url_for(self, asset_type: str) -> str:
        """URL of an asset type's endpoint (stock -> /iex, fx -> /fx, crypto -> /crypto)."""
        path = {v: k for k, v in ENDPOINTS.items()}.get(asset_type)
        if path is None:
            raise ValueError(f"asset_type must be one of {', '.join(ENDPOINTS.values())}")
        return f"{self.url}/{path}"

    # -- protocol ----------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0].strip("/") in ENDPOINTS:
            return None
        return conn.respond(HTTPStatus.NOT_FOUND, "Not Found; use /iex, /fx or /crypto\n")

    async def on_open(self, client: FakeClient) -> None:
        client.state["endpoint"] = client.path.strip("/")

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        try:
            request = json.loads(message)
            event = request["eventName"]
            data = request.get("eventData") or {}
            if not isinstance(event, str) or not isinstance(data, dict):
                raise TypeError("eventName must be a string and eventData an object")
        except (ValueError, TypeError, KeyError):
            await self.send(client, _error(400, "Invalid message: expected eventName/eventData"))
            return
        if not self.check_key(request.get("authorization")):
            await self._refuse(client, 401, "Authorization failed")
            return
        endpoint = client.state["endpoint"]
        if endpoint not in self.services:
            await self._refuse(client, 403, f"Not authorized for service: {endpoint}")
            return
        client.authenticated = True
        if event not in ("subscribe", "unsubscribe"):
            await self.send(client, _error(400, f"Unknown eventName: {event[:40]}"))
            return
        await self._subscription(client, event, data)

    def ready(self, client: FakeClient) -> bool:
        sub = client.state.get("subscription")
        return sub is not None and sub.owner is client and bool(sub.channels)

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        sub: _Subscription = client.state["subscription"]
        events = self.market.events(sub.channels, n, t_ms, span_ms)
        return list(self._encoder.frames(sub.endpoint, sub.level, events))

    def heartbeat(self, client: FakeClient) -> Frame | None:
        return _HEARTBEAT if "subscription" in client.state else None

    async def _refuse(self, client: FakeClient, code: int, message: str) -> None:
        await self.send(client, _error(code, message))
        await client.conn.close(1008, message)

    async def _subscription(self, client: FakeClient, event: str, data: dict[str, Any]) -> None:
        tickers = data.get("tickers") or []
        if isinstance(tickers, str):
            tickers = [tickers]
        if not isinstance(tickers, list) or not all(isinstance(t, str) for t in tickers):
            await self.send(client, _error(400, "tickers must be a list of strings"))
            return
        sub_id = data.get("subscriptionId")
        if sub_id is not None:
            sub = self.subscriptions.get(sub_id) if isinstance(sub_id, int) else None
            if sub is None:
                await self.send(client, _error(400, f"Invalid subscriptionId: {sub_id}"))
                return
        else:
            sub = client.state.get("subscription")
            if sub is None:
                if event == "unsubscribe":
                    await self.send(client, _error(400, "No subscription to update"))
                    return
                created = await self._create(client, data)
                if created is None:
                    return
                sub = created
        for ticker in (t.strip().lower() for t in tickers):
            if event == "subscribe" and ticker:
                sub.tickers[ticker] = None
            else:
                sub.tickers.pop(ticker, None)
        self._rebuild(sub)
        sub.owner.subscriptions = dict(sub.tickers)
        await self.send(
            client, _info({"tickers": list(sub.tickers), "thresholdLevel": str(sub.level)})
        )

    async def _create(self, client: FakeClient, data: dict[str, Any]) -> _Subscription | None:
        endpoint = client.state["endpoint"]
        try:
            level = int(data.get("thresholdLevel", 5))
        except (TypeError, ValueError):
            level = -1
        if level not in LEVELS[endpoint]:
            allowed = ", ".join(map(str, LEVELS[endpoint]))
            await self.send(
                client, _error(400, f"Invalid thresholdLevel for {endpoint}: use {allowed}")
            )
            return None
        sub = _Subscription(next(self._ids), endpoint, level, client)
        self.subscriptions[sub.id] = sub
        client.state["subscription"] = sub
        await self.send(client, _info({"subscriptionId": sub.id}))
        return sub

    def _rebuild(self, sub: _Subscription) -> None:
        asset_type = ENDPOINTS[sub.endpoint]
        channels: list[Channel] = []
        for kind in self._encoder.kinds(sub.endpoint, sub.level):
            channels += self.market.channels(kind, [t.upper() for t in sub.tickers], asset_type)
        sub.channels = channels

    async def _handler(self, conn: ServerConnection) -> None:
        try:
            await super()._handler(conn)
        finally:  # a subscription lives as long as its connection
            for sub_id, sub in list(self.subscriptions.items()):
                if sub.owner.conn is conn:
                    del self.subscriptions[sub_id]


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "tiingo"
BATCHES = False  # Tiingo sends one event per frame
#: parse-benchmark cases: name -> provider parameters
BENCH_CASES: dict[str, dict[str, Any]] = {
    "crypto trade": {"symbol": "*", "asset_type": "crypto", "feed": "trade"},
    "crypto trade_and_quote": {"symbol": "*", "asset_type": "crypto", "feed": "trade_and_quote"},
    "fx quote": {"symbol": "*", "asset_type": "fx"},
    "stock trade_and_quote": {"symbol": "*", "asset_type": "stock", "feed": "trade_and_quote"},
}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int = 1, seed: int = 42
) -> list[Frame]:
    """``n_events`` data frames exactly as :class:`TiingoServer` sends them for ``params``
    (one event per frame: ``per_frame`` is ignored, Tiingo never batches)."""
    session = _session(params)
    asset_type, level = session.asset_type, session.threshold
    endpoint = {v: k for k, v in ENDPOINTS.items()}[asset_type]
    market = Market(seed)
    encoder = _Encoder(random.Random(seed))
    symbols = [s.strip().upper() for s in str(params.get("symbol", "*")).split(",")]
    channels: list[Channel] = []
    for kind in encoder.kinds(endpoint, level):
        channels += market.channels(kind, symbols, asset_type)
    events = market.events(channels, n_events, 1_700_000_000_000, n_events * 0.5)
    return list(encoder.frames(endpoint, level, events))


def _session(params: Mapping[str, Any]) -> Any:
    """The tiingo session for ``params`` (found by name, as the core finds providers): it
    decides the threshold level, so the samples match what a client would subscribe to."""
    spec = get_provider(PROVIDER_NAME)
    return spec.session_class(spec.resolve({"api_key": "sample", **params}, {}))


def _build(args: argparse.Namespace, api_key: str | None) -> TiingoServer:
    return TiingoServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        rate=args.rate,
        seed=args.seed,
        heartbeat_interval=args.heartbeat,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heartbeat", type=float, default=30.0, help="seconds between H frames")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.fakes.tiingo --port 0 [--rate R] [--api-key-env VAR]``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.fakes.tiingo",
        "Serve a fake Tiingo websocket (/iex, /fx, /crypto) until Ctrl-C; prints its base URL.",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
