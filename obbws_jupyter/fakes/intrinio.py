"""A fake Intrinio real-time equities server: the HTTP token endpoint and the binary websocket
on one port, as Intrinio serves them on one host (``providers/obbws_providers/intrinio.py``
describes the protocol; reference §9.4, §14.4).

- ``GET /auth?api_key=KEY`` (a plain HTTP request, no upgrade): 200 with a text token, or 401
  ``Unauthorized`` for a wrong key (``api_key=None`` accepts any key). Tokens stay valid for
  ``token_ttl`` seconds; :meth:`IntrinioServer.expire_tokens` invalidates them all.
- ``/socket/websocket?vsn=1.0.0&token=T``: a missing, unknown or expired token is refused with
  HTTP 401 at the handshake; the headers ``UseNewEquitiesFormat: v2`` and
  ``Client-Information`` are required (400 otherwise: we cannot serve the legacy format).
  Any other path is 404.
- Client frames: binary join ``J`` + trades-only byte + channel, leave ``L`` + channel;
  ``$FIREHOSE`` joins every symbol of the basket. No acknowledgement, no heartbeat: the real
  server sends neither. An unreadable client frame gets a plain-text warning [built: the real
  server's answer is not documented].
- Data: binary frames of up to ``batch`` items (trades, asks and bids of several symbols per
  frame, like the real feed), at ``rate`` items per second per connection, prices from the
  offline market. ``feed`` picks what the items look like: ``realtime`` (subprovider IEX,
  market center ``V``), ``delayed_sip`` (UTP / CTA_A / CTA_B, many venues, a share of FINRA
  ``D`` dark-pool prints, CTA/UTP condition characters) or ``nasdaq_basic``.

``PROVIDER_NAME``, ``BENCH_CASES`` and :func:`sample_frames` feed the parse benchmark;
``python -m obbws_jupyter.fakes.intrinio --port 0 [--feed delayed_sip]`` serves one from a
shell. Intrinio's official client (``intriniorealtime``, provider ``MANUAL`` with
``ipaddress="127.0.0.1:PORT"``) connects to it and parses what it sends (an integration test).
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import struct
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from obbws_jupyter.fakes._base import (
    TICK_INTERVAL,
    FakeClient,
    FakeServer,
    Frame,
    ServerHandle,
    run_cli,
    start_server,
)
from obbws_jupyter.offline.market import DEFAULT_BASKETS, Market

__all__ = [
    "BENCH_CASES",
    "FEEDS",
    "FIREHOSE_BASKET",
    "PROVIDER_NAME",
    "IntrinioServer",
    "main",
    "sample_frames",
    "start_intrinio_server",
]

AUTH_PATH = "/auth"
SOCKET_PATH = "/socket/websocket"
MAX_ITEMS = 255  # the item count is one byte
# The wire constants are restated here, not imported from the provider: the fake stands for
# Intrinio's server, so a mistake in the session must not be mirrored by the fake.
JOIN, LEAVE = 0x4A, 0x4C  # b"J", b"L"
FIREHOSE = "$FIREHOSE"
#: subprovider codes (Intrinio SDK: NO_SUBPROVIDER 0, CTA_A 1, CTA_B 2, UTP 3, OTC 4,
#: NASDAQ_BASIC 5, IEX 6, CBOE_ONE 7, EQUITIES_EDGE 8)
_SUB = {"CTA_A": 1, "CTA_B": 2, "UTP": 3, "NASDAQ_BASIC": 5, "IEX": 6}
FEEDS = ("realtime", "delayed_sip", "nasdaq_basic")
#: what ``$FIREHOSE`` streams: the offline market's stock basket and a few more tickers
FIREHOSE_BASKET: tuple[str, ...] = (
    *DEFAULT_BASKETS["stock"],
    *("GOOGL", "META", "TSLA", "AMD", "NFLX", "JPM", "BAC", "XOM", "KO", "BRK.B"),
)
_CHANNEL_RE = re.compile(r"^(\$FIREHOSE|[A-Z0-9][A-Z0-9.\-/_^=]{0,19})$")
_TRADE_BODY = struct.Struct("<BHfIQIB")
_QUOTE_BODY = struct.Struct("<BHfIQB")
_NASDAQ_LISTED = frozenset({"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AMD", "NFLX"})
_ARCA_LISTED = frozenset({"SPY"})


class _FeedStyle:
    """What one feed's items look like: subprovider per symbol, market centers, conditions."""

    def __init__(self, feed: str) -> None:
        if feed not in FEEDS:
            raise ValueError(f"feed must be one of {', '.join(FEEDS)}, got {feed!r}")
        self.feed = feed
        if feed == "realtime":
            self.centers = self.quote_centers = "V"
            self.trade_conditions: tuple[bytes, ...] = (b"@", b"@", b"@", b"@  I", b"@F")
            self.quote_conditions: tuple[bytes, ...] = (b"",)
        elif feed == "nasdaq_basic":
            self.centers = "QQQQBXLL"  # L: FINRA/Nasdaq TRF prints (dark in NASDAQ Basic)
            self.quote_centers = "QQQQBX"
            self.trade_conditions = (b"@", b"@", b"@", b"@  I", b"@F", b"@ T")
            self.quote_conditions = (b"R", b"R", b"")
        else:
            self.centers = "DDDQQKZPNVYJXBA"  # a fifth of the prints off-exchange (FINRA ADF)
            self.quote_centers = "QQKZPNVYJXBA"
            self.trade_conditions = (b"@", b"@", b"@", b"@  I", b"@F I", b"@ TI", b"@4", b"@O X")
            self.quote_conditions = (b"R",) * 9 + (b"A",)

    def subprovider(self, symbol: str) -> int:
        if self.feed == "realtime":
            return _SUB["IEX"]
        if self.feed == "nasdaq_basic":
            return _SUB["NASDAQ_BASIC"]
        if symbol in _NASDAQ_LISTED:
            return _SUB["UTP"]
        if symbol in _ARCA_LISTED:
            return _SUB["CTA_B"]
        return _SUB["CTA_A"]


class _ItemMaker:
    """Binary items and frames from the offline market (shared by the server and
    :func:`sample_frames`, so the benchmark parses exactly what the server sends)."""

    def __init__(self, market: Market, feed: str, seed: int | None = None) -> None:
        self.market = market
        self.style = _FeedStyle(feed)
        self.rng = random.Random(seed)
        self.volume: dict[str, int] = {}

    def items(
        self, targets: Sequence[tuple[str, bool]], n: int, t_ns: int, span_ns: int
    ) -> list[bytes]:
        """``n`` items over ``targets`` ((symbol, trades_only) pairs), stamped from ``t_ns``
        over ``span_ns``: about one trade for every three quote sides."""
        out: list[bytes] = []
        if not targets or n <= 0:
            return out
        rnd = self.rng.random
        style = self.style
        step = span_ns // n
        for i in range(n):
            symbol, trades_only = targets[int(rnd() * len(targets))]
            inst = self.market.instrument(symbol, "stock")
            stamp = t_ns + i * step + int(rnd() * 1000)
            sub = style.subprovider(symbol)
            raw = symbol.encode("ascii")
            if trades_only or rnd() < 0.25:
                center = ord(style.centers[int(rnd() * len(style.centers))])
                trade = inst.trade(stamp // 1_000_000)
                size = int(trade["s"])
                total = self.volume[symbol] = (self.volume.get(symbol, 0) + size) & 0xFFFFFFFF
                cond = style.trade_conditions[int(rnd() * len(style.trade_conditions))]
                body = _TRADE_BODY.pack(sub, center, trade["p"], size, stamp, total, len(cond))
                kind = 0
            else:
                quote = inst.quote(stamp // 1_000_000)
                center = ord(style.quote_centers[int(rnd() * len(style.quote_centers))])
                kind = 1 if rnd() < 0.5 else 2
                price, size = (
                    (quote["ap"], quote["as"]) if kind == 1 else (quote["bp"], quote["bs"])
                )
                cond = style.quote_conditions[int(rnd() * len(style.quote_conditions))]
                body = _QUOTE_BODY.pack(sub, center, price, int(size), stamp, len(cond))
            length = 3 + len(raw) + len(body) + len(cond)
            out.append(bytes((kind, length, len(raw))) + raw + body + cond)
        return out

    def frames(
        self, targets: Sequence[tuple[str, bool]], n: int, t_ns: int, span_ns: int, batch: int
    ) -> list[bytes]:
        """The items of :meth:`items` packed ``batch`` per frame (count byte first)."""
        items = self.items(targets, n, t_ns, span_ns)
        size = max(1, min(batch, MAX_ITEMS))
        return [
            bytes((len(chunk),)) + b"".join(chunk)
            for chunk in (items[i : i + size] for i in range(0, len(items), size))
        ]


def _targets(client: FakeClient) -> list[tuple[str, bool]]:
    targets: list[tuple[str, bool]] = client.state.setdefault("targets", [])
    return targets


class IntrinioServer(FakeServer):
    """Intrinio's equities server on ``ws://host:port`` (``/auth`` and ``/socket/websocket``).

    ``api_key=None`` accepts any key. ``rate`` is items per second per connection; ``batch``
    the most items per frame (at most 255); ``feed`` the look of the items (see the module
    docstring); ``token_ttl`` how long a token opens sockets.
    """

    provider = "intrinio"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        rate: float = 200.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        feed: str = "realtime",
        batch: int = 100,
        token_ttl: float = 24 * 3600.0,
    ) -> None:
        super().__init__(
            host, port, api_key=api_key, rate=rate, seed=seed, tick_interval=tick_interval
        )
        self.maker = _ItemMaker(self.market, feed, seed)
        self.feed = feed
        self.batch = batch
        self.token_ttl = token_ttl
        self.tokens_issued = 0
        self.auth_headers: list[dict[str, str]] = []  # headers of every /auth request
        self.socket_headers: list[dict[str, str]] = []  # of every accepted socket
        self.rejected_sockets = 0
        self.joins: list[tuple[str, bool]] = []  # (channel, trades_only), every join received
        self.leaves: list[str] = []
        self._tokens: dict[str, float] = {}

    @property
    def auth_url(self) -> str:
        """The token endpoint, ``http://host:port/auth``."""
        return f"http://{self.host}:{self.port}{AUTH_PATH}"

    def expire_tokens(self) -> int:
        """Invalidate every token issued so far (a socket then needs a fresh one). Safe to
        call from any thread (one dict operation)."""
        count = len(self._tokens)
        self._tokens.clear()
        return count

    # -- HTTP side: the token endpoint and the handshake checks ------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        args = urllib.parse.parse_qs(query)
        if path == AUTH_PATH:
            return self._token(conn, request, args)
        if path != SOCKET_PATH:
            return conn.respond(HTTPStatus.NOT_FOUND, f"Not Found: {path[:80]}\n")
        if not self._token_valid((args.get("token") or [""])[0]):
            self.rejected_sockets += 1
            return conn.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        if request.headers.get("UseNewEquitiesFormat") != "v2":
            self.rejected_sockets += 1
            return conn.respond(
                HTTPStatus.BAD_REQUEST, "this server speaks only UseNewEquitiesFormat: v2\n"
            )
        if not request.headers.get("Client-Information"):
            self.rejected_sockets += 1
            return conn.respond(HTTPStatus.BAD_REQUEST, "missing Client-Information header\n")
        self.socket_headers.append(dict(request.headers.raw_items()))
        return None

    def _token(
        self, conn: ServerConnection, request: Request, args: Mapping[str, list[str]]
    ) -> Response:
        self.auth_headers.append(dict(request.headers.raw_items()))
        keys = args.get("api_key")
        if not keys or not self.check_key(keys[0]):
            return conn.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized")
        token = secrets.token_hex(24)
        self._tokens[token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        return conn.respond(HTTPStatus.OK, token)

    def _token_valid(self, token: str) -> bool:
        expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    # -- websocket side ----------------------------------------------------------------------

    async def on_open(self, client: FakeClient) -> None:
        client.authenticated = True  # the token was checked at the handshake
        client.state["trades_only"] = {}

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        if isinstance(message, str):
            if message.strip():  # an empty text frame is an old SDK's keep-alive
                await self.send(client, "expected a binary join (J) or leave (L) frame")
            return
        op = message[0] if message else None
        channel = message[2:] if op == JOIN else message[1:]
        name = channel.decode("ascii", "replace")
        if op not in (JOIN, LEAVE) or not _CHANNEL_RE.match(name):
            await self.send(client, f"unreadable frame {message[:40].hex()}")
            return
        wanted: dict[str, bool] = client.state["trades_only"]
        if op == JOIN:
            trades_only = message[1] == 1
            self.joins.append((name, trades_only))
            client.subscriptions[name] = None
            wanted[name] = trades_only
        else:
            self.leaves.append(name)
            client.subscriptions.pop(name, None)
            wanted.pop(name, None)
        client.state["targets"] = _expand(wanted)

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        frames: list[Frame] = [
            *self.maker.frames(
                _targets(client), n, t_ms * 1_000_000, int(span_ms * 1_000_000), self.batch
            )
        ]
        return frames


def _expand(wanted: Mapping[str, bool]) -> list[tuple[str, bool]]:
    """(symbol, trades_only) for every joined channel; the firehose adds the whole basket
    (a symbol joined on its own keeps its own trades-only flag)."""
    targets: dict[str, bool] = {}
    if FIREHOSE in wanted:
        targets = dict.fromkeys(FIREHOSE_BASKET, wanted[FIREHOSE])
    for channel, trades_only in wanted.items():
        if channel != FIREHOSE:
            targets[channel] = trades_only
    return list(targets.items())


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "intrinio"
#: parse-benchmark cases: name -> provider parameters
BENCH_CASES: dict[str, dict[str, Any]] = {
    "firehose sip": {"symbol": "*", "feed": "delayed_sip"},
    "trades_only realtime": {"symbol": "AAPL,MSFT,NVDA", "trades_only": True},
}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int, seed: int = 42
) -> list[Frame]:
    """Data frames exactly as :class:`IntrinioServer` sends them for ``params`` (symbols,
    ``feed``, ``trades_only``): ``n_events`` items, ``per_frame`` per frame."""
    feed = str(params.get("feed") or "realtime")
    maker = _ItemMaker(Market(seed), feed, seed)
    trades_only = bool(params.get("trades_only"))
    wanted = {
        FIREHOSE if s.strip() == "*" else s.strip().upper(): trades_only
        for s in str(params.get("symbol", "*")).split(",")
    }
    targets = _expand(wanted)
    t_ns = 1_700_000_000_000_000_000
    frames: list[Frame] = []
    for i in range(max(1, n_events // per_frame)):
        frames.extend(maker.frames(targets, per_frame, t_ns + i * 1_000_000, 1_000_000, per_frame))
    return frames


def start_intrinio_server(**kwargs: Any) -> ServerHandle:
    """Start an :class:`IntrinioServer` (same keyword arguments) on the obbws background loop;
    its controls and counters (``expire_tokens``, ``joins``, ``auth_url``...) are reached
    through the handle."""
    return start_server(IntrinioServer, **kwargs)


def _build(args: argparse.Namespace, api_key: str | None) -> IntrinioServer:
    return IntrinioServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        rate=args.rate,
        seed=args.seed,
        feed=args.feed,
        batch=args.batch,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feed", choices=FEEDS, default="realtime")
    parser.add_argument("--batch", type=int, default=100, help="most items per frame (<=255)")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.fakes.intrinio --port P [--feed F] [--api-key-env VAR]``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.fakes.intrinio",
        "Serve a fake Intrinio equities feed (/auth + /socket/websocket) until Ctrl-C.",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
