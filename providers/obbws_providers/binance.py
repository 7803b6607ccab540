"""The ``binance`` provider: Binance spot market streams, public, no API key.

Wire protocol: Binance "WebSocket Streams" (spot), as documented in
https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (the same text is
``web-socket-streams.md`` of github.com/binance/binance-spot-api-docs). Sample frames:
``tests/fixtures/binance.jsonl``; fake server: :mod:`obbws_jupyter.fakes.binance`.

==============  ===============================================================================
asset types     ``crypto`` (spot)
feeds           ``trade`` (``<symbol>@trade``), ``agg_trade`` (``<symbol>@aggTrade``),
                ``book_ticker`` (``<symbol>@bookTicker``), ``kline`` (``<symbol>@kline_<interval>``,
                ``interval`` one of 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M; default 1m)
URL             ``region="com"`` (default): ``wss://stream.binance.com:9443/stream``;
                ``region="us"``: ``wss://stream.binance.us:9443/stream``; ``url=`` overrides it
                (a bare ``ws://host:port`` gets ``/stream`` appended; ``/ws`` is kept as is)
symbols         ``btcusdt``, ``BTCUSDT``, ``btc-usdt`` or ``BTC/USDT`` -> ``BTCUSDT`` (records and
                status); stream names are lower-case (``btcusdt@trade``)
credentials     none: public market data
==============  ===============================================================================

Records (one per event; ``date`` is int ns UTC):

- ``trade``: ``date`` (trade time ``T``), ``symbol``, ``type="trade"``, ``exchange``,
  ``price``, ``size``, ``trade_id``, ``buyer_is_maker``, ``taker_side`` (``sell`` when the buyer
  was the maker, else ``buy``).
- ``agg_trade``: the same with ``type="agg_trade"``, ``agg_trade_id``, ``first_trade_id``,
  ``last_trade_id`` instead of ``trade_id``.
- ``book_ticker``: ``date``, ``symbol``, ``type="quote"``, ``exchange``, ``bid``, ``bid_size``,
  ``ask``, ``ask_size``, ``update_id``.
- ``kline``: ``date`` (bar open time), ``symbol``, ``type="kline"``, ``exchange``, ``interval``,
  ``open``, ``high``, ``low``, ``close``, ``volume`` (base asset), ``vwap`` (quote volume /
  volume; absent for an empty bar), ``quote_volume``, ``trades``, ``closed`` (``False`` while
  the bar is still forming: Binance repeats the open bar every 1-2 s).

Protocol handled:

- One connection to ``/stream`` (combined streams: every event arrives as
  ``{"stream": ..., "data": ...}``); the parser also reads raw ``/ws`` events (a ``url=``
  ending in ``/ws``), so both documented forms work.
- ``SUBSCRIBE`` / ``UNSUBSCRIBE`` with increasing integer ``id``\\ s; the reply
  ``{"result": null, "id": N}`` acknowledges the symbols of request N; an error reply
  (``{"error": {"code": c, "msg": m}, "id": N}``, or the flat ``{"code": c, "msg": m}`` the
  error table shows) refuses them (``SubscriptionFailed``; ``subscribe()`` raises SymbolError).
  All symbols of one call go in one request: Binance allows 5 incoming messages per second per
  connection (pings, pongs and JSON messages) and disconnects beyond that; a reconnect then
  re-subscribes the whole set in one request.
- The server's ping frames (every 20 s; a pong is due within a minute) are answered by the
  websocket library; ``stale_after`` is None except for ``kline`` (updated every 1-2 s), since
  a quiet symbol may legitimately trade rarely: websocket pings still guard the socket.
- A connection lasts at most 24 h, and a ``serverShutdown`` event announces a shutdown (10
  minutes ahead): the driver reconnects (at once for ``serverShutdown``) and re-subscribes every
  wanted symbol; the subscription set survives.

Deviations and limits (not OpenBB mistakes: OpenBB has no Binance provider; its experimental
``app.py`` lower-cases the symbol and keeps only the kline close):

- ``bookTicker`` events carry no timestamp, so their ``date`` is the local receipt time.
- Binance does not refuse a well-formed but unknown symbol: it acknowledges it and sends
  nothing. Only malformed requests are refused.
- No key parameter: ``api_key=`` is refused as an unknown parameter.
- binance.com refuses the handshake from restricted locations (the US among them, cloud hosts
  included) with HTTP 451: ``create_connection`` raises ProviderConnectionError naming HTTP
  451; ``region="us"`` (binance.us) or the ``coinbase`` provider serve there.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from obbws_jupyter.protocol import (
    Field,
    FieldType,
    Frame,
    InvalidParameterError,
    Param,
    ProviderFailed,
    ProviderMessage,
    ProviderSession,
    ProviderSpec,
    Record,
    Subscribed,
    SubscriptionFailed,
    SymbolError,
    Unsubscribed,
    check_ws_url,
    json_loads,
    split_symbols,
)

__all__ = [
    "FEEDS",
    "INTERVALS",
    "PROVIDER",
    "REGIONS",
    "BinanceSession",
    "stream_name",
]

REGIONS: dict[str, str] = {
    "com": "wss://stream.binance.com:9443",
    "us": "wss://stream.binance.us:9443",
}
EXCHANGES = {"com": "BINANCE", "us": "BINANCE.US"}
#: feed parameter -> the stream name suffix (``<symbol>@<suffix>``) and the event type ``e``
FEEDS: dict[str, tuple[str, str | None]] = {
    "trade": ("trade", "trade"),
    "agg_trade": ("aggTrade", "aggTrade"),
    "book_ticker": ("bookTicker", None),  # bookTicker events have no "e"
    "kline": ("kline", "kline"),
}
#: Binance's kline intervals (case matters: 1m is a minute, 1M a month)
INTERVALS = (
    *("1s", "1m", "3m", "5m", "15m", "30m"),
    *("1h", "2h", "4h", "6h", "8h", "12h"),
    *("1d", "3d", "1w", "1M"),
)
MAX_STREAMS = 1024  # per connection (Binance "WebSocket Limits")

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_SEPARATORS = str.maketrans("", "", "-/_ ")
_loads = json_loads

_COMMON = (
    Field("date", FieldType.TIMESTAMP, "event time (trade time, bar open time, receipt time)"),
    Field("symbol", FieldType.STRING, "symbol, e.g. BTCUSDT"),
    Field("type", FieldType.STRING, "trade, agg_trade, quote or kline"),
    Field("exchange", FieldType.STRING, "BINANCE or BINANCE.US"),
)
_TRADE_SIDE = (
    Field("buyer_is_maker", FieldType.BOOL, "the buyer was the maker (Binance m)"),
    Field("taker_side", FieldType.STRING, "buy or sell: the side of the aggressing order"),
)
TRADE_FIELDS = (
    *_COMMON,
    Field("price", FieldType.FLOAT, "trade price"),
    Field("size", FieldType.FLOAT, "trade quantity (base asset)"),
    Field("trade_id", FieldType.INT, "Binance trade id"),
    *_TRADE_SIDE,
)
AGG_TRADE_FIELDS = (
    *_COMMON,
    Field("price", FieldType.FLOAT, "price"),
    Field("size", FieldType.FLOAT, "quantity of the taker order's fills at that price"),
    Field("agg_trade_id", FieldType.INT, "aggregate trade id"),
    Field("first_trade_id", FieldType.INT, "first trade id aggregated"),
    Field("last_trade_id", FieldType.INT, "last trade id aggregated"),
    *_TRADE_SIDE,
)
QUOTE_FIELDS = (
    *_COMMON,
    Field("bid", FieldType.FLOAT, "best bid price"),
    Field("bid_size", FieldType.FLOAT, "best bid quantity"),
    Field("ask", FieldType.FLOAT, "best ask price"),
    Field("ask_size", FieldType.FLOAT, "best ask quantity"),
    Field("update_id", FieldType.INT, "order book update id"),
)
KLINE_FIELDS = (
    *_COMMON,
    Field("interval", FieldType.STRING, "bar interval, e.g. 1m"),
    Field("open", FieldType.FLOAT, "open price"),
    Field("high", FieldType.FLOAT, "high price"),
    Field("low", FieldType.FLOAT, "low price"),
    Field("close", FieldType.FLOAT, "close (last) price"),
    Field("volume", FieldType.FLOAT, "base asset volume"),
    Field("vwap", FieldType.FLOAT, "quote volume / base volume"),
    Field("quote_volume", FieldType.FLOAT, "quote asset volume"),
    Field("trades", FieldType.INT, "number of trades in the bar"),
    Field("closed", FieldType.BOOL, "the bar is final"),
)
FIELDS = {
    "trade": TRADE_FIELDS,
    "agg_trade": AGG_TRADE_FIELDS,
    "book_ticker": QUOTE_FIELDS,
    "kline": KLINE_FIELDS,
}


def stream_name(symbol: str, feed: str, interval: str | None = None) -> str:
    """``("BTCUSDT", "kline", "1m")`` -> ``"btcusdt@kline_1m"``."""
    suffix = FEEDS[feed][0]
    if feed == "kline":
        suffix = f"kline_{interval or '1m'}"
    return f"{symbol.lower()}@{suffix}"


class BinanceSession(ProviderSession):
    """Protocol state machine of Binance spot streams (see the module docstring)."""

    provider = "binance"
    text_as_bytes = True  # JSON text frames only: read from bytes, never decoded first

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.feed = str(params.get("feed") or "trade")
        self.interval = params.get("interval") or "1m"
        self.region = str(params.get("region") or "com")
        self.exchange = EXCHANGES[self.region]
        self.fields = FIELDS[self.feed]
        # kline updates arrive every 1-2 s; other streams may be quiet for minutes
        self.stale_after = 30.0 if self.feed == "kline" else None
        self._event_type = FEEDS[self.feed][1]
        self._make: Callable[[dict[str, Any]], Record] = getattr(self, f"_{self.feed}")
        self._next_id = 1
        self._pending: dict[int, tuple[str, tuple[str, ...]]] = {}  # request id -> what
        self._clock = time.time_ns  # bookTicker events carry no time
        super().__init__(params)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        base = str(self.params.get("url") or REGIONS[self.region])
        if urlsplit(base).path.strip("/") == "":
            return base.rstrip("/") + "/stream"
        return base

    def normalize_symbol(self, symbol: str) -> str:
        """``btcusdt`` / ``btc-usdt`` / ``BTC/USDT`` -> ``BTCUSDT``."""
        text = symbol.strip().upper().translate(_SEPARATORS)
        if _SYMBOL_RE.match(text):
            return text
        raise SymbolError(
            f"binance: invalid symbol {symbol!r}: use the pair's letters and digits, e.g. "
            "btcusdt or BTC-USDT (2-20 characters; '-', '/' and '_' are removed)."
        )

    def connection_made(self) -> None:
        """Public streams need no login: the connection is ready as soon as it opens, and the
        wanted symbols go out in one SUBSCRIBE."""
        super().connection_made()
        self._pending.clear()
        self._authenticated("public market data: no key needed")

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [self._request("SUBSCRIBE", symbols)]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [self._request("UNSUBSCRIBE", symbols)]

    def parse(self, frame: Frame) -> list[Record]:
        msg = _loads(frame)
        if type(msg) is not dict:
            raise ValueError(f"expected a JSON object, got {type(msg).__name__}")
        data = msg.get("data")
        if data is not None:  # combined stream: {"stream": "btcusdt@trade", "data": {...}}
            if type(data) is not dict:
                raise ValueError("combined stream message whose data is not an object")
            if data.get("e") == self._event_type:  # the hot path: this connection's events
                return [self._make(data)]
            return self._event(data)
        if "e" in msg or "u" in msg:  # raw stream (/ws): the event itself
            return self._event(msg)
        if "id" in msg or "code" in msg or "error" in msg:
            self._reply(msg)
            return []
        raise ValueError("neither a stream event nor a reply to a request")

    # events ----------------------------------------------------------------------------------

    def _event(self, data: dict[str, Any]) -> list[Record]:
        kind = data.get("e")
        if kind == self._event_type:
            return [self._make(data)]
        if kind == "serverShutdown":
            # Binance: "establish a new connection as soon as possible" (10 minutes' notice)
            self._emit(
                ProviderFailed("Binance announced a server shutdown; reconnecting", retry=True)
            )
        # events of streams this connection did not ask for are ignored
        return []

    def _trade(self, d: dict[str, Any]) -> Record:
        # web-socket-streams.md "Trade Streams"; fixture "trade"
        maker = d["m"] is True
        return {
            "date": int(d["T"]) * 1_000_000,
            "symbol": d["s"],
            "type": "trade",
            "exchange": self.exchange,
            "price": float(d["p"]),
            "size": float(d["q"]),
            "trade_id": int(d["t"]),
            "buyer_is_maker": maker,
            "taker_side": "sell" if maker else "buy",
        }

    def _agg_trade(self, d: dict[str, Any]) -> Record:
        # web-socket-streams.md "Aggregate Trade Streams"; fixture "agg_trade"
        maker = d["m"] is True
        return {
            "date": int(d["T"]) * 1_000_000,
            "symbol": d["s"],
            "type": "agg_trade",
            "exchange": self.exchange,
            "price": float(d["p"]),
            "size": float(d["q"]),
            "agg_trade_id": int(d["a"]),
            "first_trade_id": int(d["f"]),
            "last_trade_id": int(d["l"]),
            "buyer_is_maker": maker,
            "taker_side": "sell" if maker else "buy",
        }

    def _book_ticker(self, d: dict[str, Any]) -> Record:
        # web-socket-streams.md "Individual Symbol Book Ticker Streams"; fixture "book_ticker"
        return {
            "date": self._clock(),
            "symbol": d["s"],
            "type": "quote",
            "exchange": self.exchange,
            "bid": float(d["b"]),
            "bid_size": float(d["B"]),
            "ask": float(d["a"]),
            "ask_size": float(d["A"]),
            "update_id": int(d["u"]),
        }

    def _kline(self, d: dict[str, Any]) -> Record:
        # web-socket-streams.md "Kline/Candlestick Streams for UTC"; fixture "kline"
        k = d["k"]
        volume = float(k["v"])
        quote_volume = float(k["q"])
        record: Record = {
            "date": int(k["t"]) * 1_000_000,
            "symbol": k["s"],
            "type": "kline",
            "exchange": self.exchange,
            "interval": k["i"],
            "open": float(k["o"]),
            "high": float(k["h"]),
            "low": float(k["l"]),
            "close": float(k["c"]),
            "volume": volume,
            "quote_volume": quote_volume,
            "trades": int(k["n"]),
            "closed": k["x"] is True,
        }
        if volume > 0.0:
            record["vwap"] = quote_volume / volume
        return record

    # requests and replies --------------------------------------------------------------------

    def _request(self, method: str, symbols: Sequence[str]) -> str:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = (method, tuple(symbols))
        params = [stream_name(s, self.feed, self.interval) for s in symbols]
        return json.dumps({"method": method, "params": params, "id": request_id})

    def _reply(self, msg: dict[str, Any]) -> None:
        request_id = msg.get("id")
        pending = self._pending.pop(request_id, None) if request_id is not None else None
        error = msg.get("error")
        if error is None and "code" in msg:
            error = msg  # the flat form of the documented error table
        if error is not None:
            if type(error) is not dict:
                raise ValueError("error reply whose error is not an object")
            text = f"Binance error {error.get('code')}: {error.get('msg')}"
            if pending is not None and pending[0] == "SUBSCRIBE":
                self._emit(SubscriptionFailed(pending[1], text))
            else:
                self._emit(ProviderMessage("error", text))
            return
        if pending is None:
            self._emit(ProviderMessage("info", f"reply to request {request_id}: {msg}"))
            return
        method, symbols = pending
        message = f"{method} {','.join(symbols)} acknowledged (id {request_id})"
        if method == "SUBSCRIBE":
            self._emit(Subscribed(symbols, message))
        else:
            self._emit(Unsubscribed(symbols, message))


def _check(params: dict[str, Any]) -> None:
    feed = params["feed"]
    interval = params.get("interval")
    if interval is not None and feed != "kline":
        raise InvalidParameterError(
            f"binance: interval applies to feed='kline' only (feed={feed!r}); leave it out "
            "or use feed='kline'."
        )
    if interval is not None and interval not in INTERVALS:
        raise InvalidParameterError(
            f"binance: interval={interval!r} is not a Binance kline interval; choose one of "
            f"{', '.join(INTERVALS)} (case matters: 1m is a minute, 1M a month)."
        )
    symbols = split_symbols(params.get("symbol"))
    if len(symbols) > MAX_STREAMS:
        raise InvalidParameterError(
            f"binance: {len(symbols)} symbols; one connection carries at most {MAX_STREAMS} "
            "streams: split them over several connections."
        )
    check_ws_url("binance", params.get("url"), " (leave it out for the real Binance endpoint)")


PROVIDER = ProviderSpec(
    name="binance",
    description="Binance spot market streams (public, no key): trades, aggregate trades, "
    "best bid/ask, klines; binance.com or binance.us.",
    session_class=BinanceSession,
    params=(
        Param("symbol", str, description="comma-separated pairs, e.g. btcusdt,ethusdt"),
        Param("asset_type", str, "crypto", choices=("crypto",), description="crypto (spot)"),
        Param(
            "feed",
            str,
            "trade",
            choices=tuple(FEEDS),
            description="trade, agg_trade, book_ticker or kline",
        ),
        Param(
            "interval",
            str,
            None,
            description=f"kline interval (feed='kline'): {' '.join(INTERVALS)}; default 1m",
        ),
        Param(
            "region",
            str,
            "com",
            choices=tuple(REGIONS),
            description="com (stream.binance.com) or us (stream.binance.us)",
        ),
        Param("url", str, None, description="websocket URL override (e.g. a fake server)"),
    ),
    docs="docs/providers/binance.md",
    check=_check,
)
