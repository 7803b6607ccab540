"""A fake Financial Modeling Prep websocket server (see :mod:`obbws_providers.fmp` for the
client side).

FMP serves each asset type on its own host (``websockets.``, ``forex.``, ``crypto.``
``financialmodelingprep.com``, path ``/``). One fake serves one asset type at ``/``
(``asset_type=``, default crypto); the paths ``/stock``, ``/fx`` and ``/crypto`` pick another
asset type per connection (a convenience of the fake, for tests with several asset types).

Behaviour, per FMP's documentation (frames it does not document are built from the shapes
OpenBB's client handles and marked so in ``tests/fixtures/fmp.jsonl``):

- ``{"event":"login","data":{"apiKey":K}}`` -> ``{"event":"login","status":200,"message":
  "Authenticated"}``; a wrong key gets ``status 401, "Unauthorized"`` and the socket closes;
  ``entitled=False`` answers "You are not authorized ..." (a plan without websockets) and
  closes;
- **one socket per key**: a login with a key that another open connection uses sends that
  older connection ``{"event":"error","status":409,"message":"Connected from another
  location"}`` and closes it, as FMP does;
- ``subscribe``/``unsubscribe`` with ``data.ticker`` (a string or a list) are acknowledged
  ``{"event":"subscribe","status":200,"message":"Subscribed to a,b"}``; malformed tickers get
  ``status 400``; a subscribe before login gets ``status 401``;
- ``{"event":"heartbeat","timestamp":ms}`` every ``heartbeat_interval`` once logged in;
- data, **one event per frame**: ``{"s","t","type","lp","ls"}`` trades, ``{"s","t","type",
  "bp","bs","ap","as"}`` quotes; crypto adds ``"e"`` (exchange) and stamps ``t`` in ms;
  stocks stamp ``t`` in ns, send every price key (``null`` where not applicable, as the docs
  say) and an occasional trade break ``"B"``; fx sends quotes, ``t`` in ms.

Sync use: ``start_server(FmpServer, api_key=..., asset_type="stock")``; shell: ``python -m
obbws_jupyter.fakes.fmp --port 0 --asset-type crypto``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from obbws_jupyter.fakes._base import FakeClient, FakeServer, Frame, now_ms, run_cli
from obbws_jupyter.offline.market import Channel, Market

__all__ = ["ASSET_TYPES", "BENCH_CASES", "PROVIDER_NAME", "FmpServer", "main", "sample_frames"]

ASSET_TYPES = ("stock", "fx", "crypto")
CRYPTO_EXCHANGES = ("binance", "coinbase", "kraken", "bitstamp")
BREAK_EVERY = 500  # one stock trade in this many is a trade break ("B")
TICKER_RE = re.compile(r"^[a-z0-9^][a-z0-9.\-^=]{0,19}$")
ANOTHER_LOCATION = "Connected from another location"

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def _control(event: str, status: int, message: str) -> str:
    return _DUMPS({"event": event, "status": status, "message": message})


class _Encoder:
    """Market events (demo format) -> FMP data frames of one asset type."""

    def __init__(self) -> None:
        self._count = 0  # trades (every BREAK_EVERY-th is a break)
        self._seq = 0  # events (sub-millisecond digits of stock stamps)

    def frames(self, asset_type: str, events: Sequence[dict[str, Any]]) -> list[str]:
        encode = self._stock if asset_type == "stock" else self._pair
        return [_DUMPS(encode(event, asset_type)) for event in events]

    def _pair(self, event: dict[str, Any], asset_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {"s": event["sym"].lower(), "t": event["t"]}
        if asset_type == "crypto":
            self._seq += 1
            out["e"] = CRYPTO_EXCHANGES[self._seq % len(CRYPTO_EXCHANGES)]
        if event["ev"] == "T":
            out.update(type="T", lp=event["p"], ls=event["s"])
        else:
            out.update(type="Q", bp=event["bp"], bs=event["bs"], ap=event["ap"])
            out["as"] = event["as"]
        return out

    def _stock(self, event: dict[str, Any], asset_type: str) -> dict[str, Any]:
        # stocks: ns stamps; every price key present, null where the type has none (FMP docs)
        self._seq += 1
        t_ns = event["t"] * 1_000_000 + (self._seq % 1000) * 1000
        out: dict[str, Any] = {"s": event["sym"].lower(), "t": t_ns, "type": "Q"}
        out.update(ap=None, bp=None, bs=None, lp=None, ls=None)
        out["as"] = None
        if event["ev"] == "T":
            self._count += 1
            out.update(type="B" if self._count % BREAK_EVERY == 0 else "T")
            out.update(lp=event["p"], ls=event["s"])
        else:
            out.update(ap=event["ap"], bp=event["bp"], bs=event["bs"])
            out["as"] = event["as"]
        return out


class FmpServer(FakeServer):
    """Fake FMP websocket for one asset type (see the module docstring).

    Takes :class:`FakeServer`'s arguments (host, port, api_key, rate, seed, ...);
    ``api_key=None`` accepts any key; ``entitled=False`` refuses websocket access after a good
    login. ``rate`` is events (= frames) per second per connection with subscriptions.
    """

    provider = "fmp"

    def __init__(
        self,
        *,
        heartbeat_interval: float = 10.0,
        asset_type: str = "crypto",
        entitled: bool = True,
        **kwargs: Any,
    ) -> None:
        if asset_type not in ASSET_TYPES:
            raise ValueError(f"asset_type must be one of {', '.join(ASSET_TYPES)}")
        super().__init__(heartbeat_interval=heartbeat_interval, **kwargs)
        self.asset_type = asset_type
        self.entitled = entitled
        self.kicked = 0  # connections closed by "Connected from another location"
        self._by_key: dict[str, FakeClient] = {}
        self._encoder = _Encoder()
        self._closing: set[asyncio.Task[None]] = set()

    def url_for(self, asset_type: str) -> str:
        """URL of one asset type's endpoint on this fake (``/stock``, ``/fx``, ``/crypto``)."""
        if asset_type not in ASSET_TYPES:
            raise ValueError(f"asset_type must be one of {', '.join(ASSET_TYPES)}")
        return f"{self.url}/{asset_type}"

    # -- protocol ----------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0].strip("/") in ("", *ASSET_TYPES):
            return None
        return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    async def on_open(self, client: FakeClient) -> None:
        client.state["asset_type"] = client.path.strip("/") or self.asset_type
        client.state["channels"] = []

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        try:
            request = json.loads(message)
            event = request["event"]
            data = request.get("data") or {}
            if not isinstance(event, str) or not isinstance(data, dict):
                raise TypeError("event must be a string and data an object")
        except (ValueError, TypeError, KeyError):
            await self.send(client, _control("error", 400, "Invalid message format"))
            return
        if event == "login":
            await self._login(client, data.get("apiKey"))
        elif event in ("subscribe", "unsubscribe"):
            await self._tickers(client, event, data.get("ticker"))
        else:
            await self.send(client, _control(event[:40], 400, f"Unknown event: {event[:40]}"))

    def ready(self, client: FakeClient) -> bool:
        return client.authenticated and bool(client.state["channels"])

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        events = self.market.events(client.state["channels"], n, t_ms, span_ms)
        return list(self._encoder.frames(client.state["asset_type"], events))

    def heartbeat(self, client: FakeClient) -> Frame | None:
        if not client.authenticated:
            return None
        return _DUMPS({"event": "heartbeat", "timestamp": now_ms()})

    async def _login(self, client: FakeClient, key: Any) -> None:
        if not self.check_key(key):
            await self.send(client, _control("login", 401, "Unauthorized"))
            await client.conn.close(1008, "Unauthorized")
            return
        if not self.entitled:
            text = f"You are not authorized to access the {client.state['asset_type']} websocket"
            await self.send(client, _control("login", 403, text))
            await client.conn.close(1008, "not authorized")
            return
        older = self._by_key.get(str(key))
        if older is not None and older is not client:
            self.kicked += 1
            await self.send(older, _control("error", 409, ANOTHER_LOCATION))
            task = asyncio.get_running_loop().create_task(older.conn.close(1000, ANOTHER_LOCATION))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._by_key[str(key)] = client
        client.state["key"] = str(key)
        client.authenticated = True
        await self.send(client, _control("login", 200, "Authenticated"))

    async def _tickers(self, client: FakeClient, event: str, given: Any) -> None:
        if not client.authenticated:
            await self.send(client, _control(event, 401, "Not logged in: send login first"))
            return
        items = [given] if isinstance(given, str) else given
        if not isinstance(items, list) or not items:
            await self.send(client, _control(event, 400, "data.ticker must be a string or list"))
            return
        tickers = [str(t).strip().lower() for t in items]
        good = [t for t in tickers if TICKER_RE.match(t)]
        bad = [t for t in tickers if not TICKER_RE.match(t)]
        for ticker in good:
            if event == "subscribe":
                client.subscriptions[ticker] = None
            else:
                client.subscriptions.pop(ticker, None)
        if good:
            self._rebuild(client)
            verb = "Subscribed to" if event == "subscribe" else "Unsubscribed from"
            await self.send(client, _control(event, 200, f"{verb} {','.join(good)}"))
        if bad:
            where = "to" if event == "subscribe" else "from"
            text = f"Could not {event} {where}: {','.join(bad)}"
            await self.send(client, _control(event, 400, text))

    def _rebuild(self, client: FakeClient) -> None:
        asset_type = client.state["asset_type"]
        symbols = [t.upper() for t in client.subscriptions]
        channels: list[Channel] = []
        for kind in _kinds(asset_type):
            channels += self.market.channels(kind, symbols, asset_type)
        client.state["channels"] = channels

    async def _handler(self, conn: ServerConnection) -> None:
        try:
            await super()._handler(conn)
        finally:
            for key, client in list(self._by_key.items()):
                if client.conn is conn:
                    del self._by_key[key]


def _kinds(asset_type: str) -> tuple[str, ...]:
    return ("Q",) if asset_type == "fx" else ("T", "Q")


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "fmp"
BATCHES = False  # FMP sends one event per frame
#: parse-benchmark cases: name -> provider parameters
BENCH_CASES: dict[str, dict[str, Any]] = {
    "crypto": {"symbol": "btcusd,ethusd,solusd", "asset_type": "crypto"},
    "stock": {"symbol": "aapl,msft,nvda,amzn,spy", "asset_type": "stock"},
    "fx": {"symbol": "eurusd,gbpusd,usdjpy", "asset_type": "fx"},
}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int = 1, seed: int = 42
) -> list[Frame]:
    """``n_events`` data frames exactly as :class:`FmpServer` sends them for ``params`` (one
    event per frame: ``per_frame`` is ignored, FMP never batches)."""
    asset_type = str(params.get("asset_type", "crypto"))
    market = Market(seed)
    symbols = [s.strip().upper() for s in str(params["symbol"]).split(",")]
    channels: list[Channel] = []
    for kind in _kinds(asset_type):
        channels += market.channels(kind, symbols, asset_type)
    events = market.events(channels, n_events, 1_700_000_000_000, n_events * 0.5)
    return list(_Encoder().frames(asset_type, events))


def _build(args: argparse.Namespace, api_key: str | None) -> FmpServer:
    return FmpServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        rate=args.rate,
        seed=args.seed,
        heartbeat_interval=args.heartbeat,
        asset_type=args.asset_type,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heartbeat", type=float, default=10.0, help="seconds")
    parser.add_argument("--asset-type", choices=ASSET_TYPES, default="crypto")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.fakes.fmp --port 0 [--asset-type T] [--api-key-env VAR]``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.fakes.fmp",
        "Serve a fake FMP websocket until Ctrl-C; prints its URL.",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
