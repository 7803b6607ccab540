"""The ``tiingo`` provider: Tiingo's websocket firehose for IEX stocks, forex and crypto.

What it supports (Tiingo docs "Websockets (Firehose)"; OpenBB reference §9.1, §14.2):

==========  ===============================  ==========================  =====================
asset_type  URL                              feed (default)              threshold levels
==========  ===============================  ==========================  =====================
``stock``   ``wss://api.tiingo.com/iex``     trade (5), trade_and_quote  0, 5, 6 (reference
                                             (0)                         price, see below)
``fx``      ``wss://api.tiingo.com/fx``      quote (5)                   5
``crypto``  ``wss://api.tiingo.com/crypto``  trade (5), trade_and_quote  2, 5
            (default)                        (2)
==========  ===============================  ==========================  =====================

``threshold_level`` overrides the level the feed implies (OpenBB's rule: 5 for fx or trade, 2
for crypto + trade_and_quote, else 0). Since February 2025 IEX requires a market data agreement
for levels 0 and 5; level 6 streams Tiingo's IEX reference price instead (records ``date,
symbol, type="reference", reference_price``).

Symbols: comma-separated, any case; sent lower-case (``btcusd``, ``eurusd``, ``aapl``), shown
upper-case in records as OpenBB does. For fx and crypto ``-`` and ``/`` are dropped
(``BTC-USD`` -> ``btcusd``). ``*`` subscribes to every ticker of the endpoint.

Credentials: ``api_key=``, else ``TIINGO_API_KEY``, else ``tiingo_token`` in OpenBB's user
settings. ``url=`` replaces ``wss://api.tiingo.com`` (the endpoint path is appended unless the
URL has a path), e.g. ``url=fake.url`` for :mod:`obbws_jupyter.fakes.tiingo`.

The protocol::

    client  {"eventName":"subscribe","authorization":"<key>",
             "eventData":{"thresholdLevel":5,"tickers":["btcusd"]}}
    server  {"messageType":"I","response":{"code":200,"message":"Success"},
             "data":{"subscriptionId":2563396}}                              -> authenticated
    server  {"messageType":"I","response":{"code":200,"message":"Success"},
             "data":{"tickers":["btcusd"],"thresholdLevel":"5"}}             -> subscribed
    server  {"messageType":"A","service":"crypto_data",
             "data":["T","btcusd","2024-12-12T21:57:50.164993+00:00","gdax",0.0144,99818.08]}
    server  {"messageType":"H","response":{"code":200,"message":"HeartBeat"}}
    server  {"messageType":"E","response":{"code":401,"message":"Authorization failed"}}

``E`` 401 is a rejected key (fatal credentials error); ``E`` 403 ("Not authorized for
service") means the plan lacks the endpoint (fatal, no reconnect). Records (one per ``A``
event, named as OpenBB's ``TiingoWebSocketData``; ``date`` is Tiingo's event time as int ns UTC):

- crypto trades ``date, symbol, type, exchange, last_price, last_size``; crypto quotes add
  ``bid_size, bid_price, mid_price, ask_price, ask_size``;
- fx quotes ``date, symbol, type, bid_size, bid_price, mid_price, ask_price, ask_size``;
- IEX ``date, symbol, type, bid_size, bid_price, mid_price, ask_price, ask_size, last_price,
  last_size, halted, after_hours, sweep_order, oddlot, nms_rule`` (the array's null values
  stay None).

OpenBB mistakes fixed here:

- the FX array is ``[type, ticker, date, bidSize, bidPrice, midPrice, askSize, askPrice]``:
  OpenBB maps the last two to ask_price/ask_size, swapping them; here ask_size is the 7th and
  ask_price the 8th element, as Tiingo sends them;
- subscription updates go over the same connection with ``eventData.subscriptionId`` (Tiingo
  keys updates by subscription id, not by socket; OpenBB opened a second short-lived connection
  per update and crashed on list input);
- subscriptions survive reconnects (the first subscribe frame of each connection carries every
  wanted ticker);
- ``date`` is the provider's event time (OpenBB v2 put the local receive time there); IEX dates
  use Tiingo's exact epoch-nanosecond field;
- heartbeats count as signs of life (a silent connection is reconnected after 120 s).

Deviations from OpenBB: ``feed`` defaults to ``trade`` for stock/crypto and ``quote`` for fx
(OpenBB's default ``trade`` made ``asset_type="fx"`` fail unless ``feed="trade_and_quote"``,
which is still accepted for fx); ``threshold_level`` may be given; IEX level 6 (reference price)
is supported; the ``timestamp`` field is gone (``date`` is the event time, ``received_at`` our
receipt time).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from obbws_jupyter.protocol import (
    AuthFailed,
    Field,
    FieldType,
    Frame,
    Heartbeat,
    InvalidParameterError,
    Param,
    ProviderFailed,
    ProviderMessage,
    ProviderSession,
    ProviderSpec,
    Record,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
    check_ws_url,
    iso_to_ns,
    json_loads,
)
from obbws_providers._tickers import normalize_ticker

__all__ = [
    "ASSET_TYPES",
    "FEEDS",
    "PROVIDER",
    "THRESHOLD_LEVELS",
    "TiingoSession",
    "fields_for",
    "threshold_for",
]

ASSET_TYPES = ("stock", "fx", "crypto")
FEEDS = ("trade", "trade_and_quote", "quote")
BASE_URL = "wss://api.tiingo.com"
ENDPOINT = {"stock": "iex", "fx": "fx", "crypto": "crypto"}
#: levels Tiingo documents per endpoint (stock 6 = IEX reference price, since 2025)
THRESHOLD_LEVELS: dict[str, tuple[int, ...]] = {"stock": (0, 5, 6), "fx": (5,), "crypto": (2, 5)}
REFERENCE_LEVEL = 6

_UPDATE_TYPE = {"T": "trade", "Q": "quote", "B": "break"}
_STOCK_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{0,19}$")
_STOCK_RULE = "1-20 letters, digits, '.' or '-' (e.g. aapl, brk-b), or * for all"
_ISO_CACHE_MAX = 4096

_DATE = Field("date", FieldType.TIMESTAMP, "Tiingo's event time")
_SYMBOL = Field("symbol", FieldType.STRING, "ticker, upper-case (e.g. BTCUSD, AAPL)")
_TYPE = Field("type", FieldType.STRING, '"trade", "quote" or "break"')
_EXCHANGE = Field("exchange", FieldType.STRING, "venue of a crypto event")
_QUOTE = (
    Field("bid_size", FieldType.FLOAT, "size at the best bid"),
    Field("bid_price", FieldType.FLOAT, "best bid price"),
    Field("mid_price", FieldType.FLOAT, "(bid + ask) / 2"),
    Field("ask_price", FieldType.FLOAT, "best ask price"),
    Field("ask_size", FieldType.FLOAT, "size at the best ask"),
)
_LAST = (
    Field("last_price", FieldType.FLOAT, "price of the last trade"),
    Field("last_size", FieldType.FLOAT, "size of the last trade"),
)
_IEX_FLAGS = (
    Field("halted", FieldType.BOOL, "trading halted"),
    Field("after_hours", FieldType.BOOL, "outside regular trading hours"),
    Field("sweep_order", FieldType.BOOL, "intermarket sweep order"),
    Field("oddlot", FieldType.BOOL, "odd-lot trade"),
    Field("nms_rule", FieldType.BOOL, "NMS Rule 611 exempt trade"),
)

CRYPTO_TRADE_FIELDS = (_DATE, _SYMBOL, _TYPE, _EXCHANGE, *_LAST)
CRYPTO_FIELDS = (_DATE, _SYMBOL, _TYPE, _EXCHANGE, *_QUOTE, *_LAST)
FX_FIELDS = (_DATE, _SYMBOL, _TYPE, *_QUOTE)
IEX_FIELDS = (_DATE, _SYMBOL, _TYPE, *_QUOTE, *_LAST, *_IEX_FLAGS)
IEX_REFERENCE_FIELDS = (
    _DATE,
    _SYMBOL,
    Field("type", FieldType.STRING, '"reference"'),
    Field("reference_price", FieldType.FLOAT, "Tiingo's IEX reference price"),
)


def threshold_for(asset_type: str, feed: str | None, level: int | None = None) -> int:
    """The thresholdLevel to request: ``level`` if given, else OpenBB's rule (5 for fx or
    trade, 2 for crypto + trade_and_quote, 0 for stock + trade_and_quote)."""
    if level is not None:
        return level
    if asset_type == "fx" or feed in (None, "trade"):
        return 5
    return 2 if asset_type == "crypto" else 0


def fields_for(asset_type: str, level: int) -> tuple[Field, ...]:
    """The record model of a connection: the union of what ``level`` delivers there."""
    if asset_type == "fx":
        return FX_FIELDS
    if asset_type == "crypto":
        return CRYPTO_TRADE_FIELDS if level == 5 else CRYPTO_FIELDS
    return IEX_REFERENCE_FIELDS if level == REFERENCE_LEVEL else IEX_FIELDS


# -- data parsers, one per service (a dict picks them: no if-chain per frame) ----------------


def _crypto(data: list[Any], iso: Callable[[str], int]) -> Record:
    # crypto_data T: [type, ticker, date, exchange, lastSize, lastPrice]
    # crypto_data Q: [type, ticker, date, exchange, bidSize, bidPrice, midPrice, askSize, askPrice]
    kind = data[0]
    if kind == "T":
        return {
            "date": iso(data[2]),
            "symbol": data[1].upper(),
            "type": "trade",
            "exchange": data[3],
            "last_price": data[5],
            "last_size": data[4],
        }
    if kind != "Q":
        raise ValueError(f"unknown crypto update type {kind!r}")
    return {
        "date": iso(data[2]),
        "symbol": data[1].upper(),
        "type": "quote",
        "exchange": data[3],
        "bid_size": data[4],
        "bid_price": data[5],
        "mid_price": data[6],
        "ask_price": data[8],
        "ask_size": data[7],
    }


def _fx(data: list[Any], iso: Callable[[str], int]) -> Record:
    # fx: [type, ticker, date, bidSize, bidPrice, midPrice, askSize, askPrice] (OpenBB swaps
    # the last two; Tiingo's own samples put ask size before ask price)
    if data[0] != "Q":
        raise ValueError(f"unknown fx update type {data[0]!r}")
    return {
        "date": iso(data[2]),
        "symbol": data[1].upper(),
        "type": "quote",
        "bid_size": data[3],
        "bid_price": data[4],
        "mid_price": data[5],
        "ask_price": data[7],
        "ask_size": data[6],
    }


def _flag(value: Any) -> bool | None:
    return None if value is None else value == 1


def _iex(data: list[Any], iso: Callable[[str], int]) -> Record:
    # iex: [type, date, epoch_ns, ticker, bidSize, bidPrice, midPrice, askPrice, askSize,
    #       lastPrice, lastSize, halted, afterHours, intermarketSweep, oddlot, nmsRule611]
    if len(data) == 3:  # level 6 reference price: [date, ticker, referencePrice]
        return {
            "date": iso(data[0]),
            "symbol": data[1].upper(),
            "type": "reference",
            "reference_price": data[2],
        }
    kind = _UPDATE_TYPE.get(data[0])
    if kind is None:
        raise ValueError(f"unknown iex update type {data[0]!r}")
    stamp = data[2]
    return {
        "date": stamp if type(stamp) is int else iso(data[1]),
        "symbol": data[3].upper(),
        "type": kind,
        "bid_size": data[4],
        "bid_price": data[5],
        "mid_price": data[6],
        "ask_price": data[7],
        "ask_size": data[8],
        "last_price": data[9],
        "last_size": data[10],
        "halted": _flag(data[11]),
        "after_hours": _flag(data[12]),
        "sweep_order": _flag(data[13]),
        "oddlot": _flag(data[14]),
        "nms_rule": _flag(data[15]),
    }


_SERVICES: dict[str, Callable[[list[Any], Callable[[str], int]], Record]] = {
    "crypto_data": _crypto,
    "fx": _fx,
    "iex": _iex,
}


class _IsoClock:
    """ISO 8601 -> int ns UTC, caching the whole-second part: consecutive events share their
    second, so most calls cost a slice, a dict lookup and an int() of the fraction."""

    __slots__ = ("_seconds",)

    def __init__(self) -> None:
        self._seconds: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        head, rest = text[:19], text[19:]
        frac = ""
        if rest[:1] == ".":
            tail = rest[1:].lstrip("0123456789")
            frac = rest[1 : len(rest) - len(tail)]
            rest = tail
        key = head + rest
        base = self._seconds.get(key)
        if base is None:
            if len(self._seconds) >= _ISO_CACHE_MAX:
                self._seconds.clear()
            base = self._seconds[key] = iso_to_ns(key)
        return base + int((frac + "000000000")[:9]) if frac else base


class TiingoSession(ProviderSession):
    """Tiingo's websocket protocol as a sans-I/O state machine (see the module docstring)."""

    provider = "tiingo"
    text_as_bytes = True  # JSON text frames only: read from bytes, never decoded first
    stale_after = 120.0  # Tiingo sends "H" heartbeats; its interval is not documented

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.asset_type = str(params.get("asset_type") or "crypto").lower()
        self.threshold = threshold_for(
            self.asset_type, params.get("feed"), params.get("threshold_level")
        )
        self.fields = fields_for(self.asset_type, self.threshold)
        self.subscription_id: int | None = None
        self._iso = _IsoClock()
        self._sent: set[str] = set()  # tickers subscribed on the current connection
        self._pending: deque[tuple[str, tuple[str, ...]]] = deque()  # requests awaiting a reply
        self._messages: dict[str, Callable[[dict[str, Any]], list[Record]]] = {
            "A": self._on_data,
            "H": self._on_heartbeat,
            "I": self._on_info,
            "E": self._on_error,
        }
        super().__init__(params)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        given = self.params.get("url")
        if not given:
            return f"{BASE_URL}/{ENDPOINT[self.asset_type]}"
        base = str(given)
        if "/" in base.partition("://")[2].partition("?")[0].strip("/"):
            return base  # the URL names an endpoint path already
        return f"{base.rstrip('/')}/{ENDPOINT[self.asset_type]}"

    def normalize_symbol(self, symbol: str) -> str:
        if symbol.strip() == "*":
            return "*"
        return normalize_ticker("tiingo", self.asset_type, symbol, _STOCK_RE, _STOCK_RULE)

    def connection_made(self) -> None:
        self.subscription_id = None
        self._sent.clear()
        self._pending.clear()
        super().connection_made()

    def auth_frames(self) -> list[Frame]:
        """Tiingo authenticates the first subscribe frame, which carries every wanted ticker."""
        tickers = list(self.symbols)
        self._sent.update(tickers)
        self._pending.append(("subscribe", tuple(tickers)))
        return [
            json.dumps(
                {
                    "eventName": "subscribe",
                    "authorization": self.params["api_key"],
                    "eventData": {"thresholdLevel": self.threshold, "tickers": tickers},
                }
            )
        ]

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        # the first subscribe (auth_frames) already carried the tickers wanted at connect time
        new = [s for s in symbols if s not in self._sent]
        if not new:
            return []
        self._sent.update(new)
        return [self._update("subscribe", new)]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        self._sent.difference_update(symbols)
        return [self._update("unsubscribe", symbols)]

    def parse(self, frame: Frame) -> list[Record]:
        message = json_loads(frame)
        if type(message) is not dict:
            raise ValueError(f"expected a JSON object, got {type(message).__name__}")
        handler = self._messages.get(message.get("messageType", ""))
        if handler is None:  # "U"/"D" (documented, never seen on these endpoints) and others
            self._emit(ProviderMessage("info", f"tiingo: {str(message)[:200]}"))
            return []
        return handler(message)

    # message types ---------------------------------------------------------------------------

    def _on_data(self, message: dict[str, Any]) -> list[Record]:
        parse = _SERVICES.get(message["service"])
        if parse is None:
            raise ValueError(f"unknown service {message['service']!r}")
        return [parse(message["data"], self._iso)]

    def _on_heartbeat(self, message: dict[str, Any]) -> list[Record]:
        self._emit(Heartbeat())
        return []

    def _on_info(self, message: dict[str, Any]) -> list[Record]:
        code, text = _response(message)
        if code != 200:
            return self._on_error(message)
        data = message.get("data") or {}
        if "subscriptionId" in data:
            self.subscription_id = int(data["subscriptionId"])
            if not self.is_authenticated:
                self._authenticated(f"tiingo: {text or 'authorized'}")
        if "tickers" in data:
            self._on_tickers(data["tickers"], text)
        elif "subscriptionId" not in data:
            self._emit(ProviderMessage("info", f"tiingo: {text}"))
        return []

    def _on_tickers(self, tickers: Sequence[str], text: str) -> None:
        """A reply listing the subscription's tickers: resolves the oldest pending request."""
        listed = {str(t).lower() for t in tickers}
        action, asked = self._pending.popleft() if self._pending else ("subscribe", ())
        wanted = set(self.symbols)
        if action == "unsubscribe":
            gone = tuple(s for s in asked if s not in listed)
            if gone:
                self._emit(Unsubscribed(gone, text))
            return
        got = tuple(s for s in self.symbols if s in listed)
        if got:
            self._emit(Subscribed(got, f"subscribed with threshold level {self.threshold}"))
        refused = tuple(s for s in asked if s in wanted and s not in listed and "*" not in listed)
        if refused:
            self._emit(
                SubscriptionFailed(
                    refused,
                    f"Tiingo did not list {', '.join(refused)} in the subscription's tickers",
                )
            )

    def _on_error(self, message: dict[str, Any]) -> list[Record]:
        code, text = _response(message)
        if code == 401:
            self._emit(AuthFailed(f"Tiingo: {text or 'authorization failed'} (HTTP 401)"))
        elif code == 403:
            self._emit(ProviderFailed(_plan_refusal(self.asset_type, text), retry=False))
        elif code >= 500:
            self._emit(ProviderFailed(f"Tiingo error {code}: {text}", retry=True))
        elif not self.is_authenticated:  # the first subscribe itself was refused: no stream
            self._emit(
                ProviderFailed(f"Tiingo refused the subscription: {text} ({code})", retry=False)
            )
        elif self._pending:
            _, asked = self._pending.popleft()
            self._emit(SubscriptionFailed(asked, f"Tiingo error {code}: {text}"))
        else:
            self._emit(ProviderMessage("error", f"Tiingo error {code}: {text}"))
        return []

    # helpers ---------------------------------------------------------------------------------

    def _update(self, event: str, tickers: Sequence[str]) -> str:
        """A subscription update on the same connection, keyed by the subscription id."""
        self._pending.append((event, tuple(tickers)))
        return json.dumps(
            {
                "eventName": event,
                "authorization": self.params["api_key"],
                "eventData": {"subscriptionId": self.subscription_id, "tickers": list(tickers)},
            }
        )


def _plan_refusal(asset_type: str, text: str) -> str:
    """What a 403 ("Not authorized for service") means, and what to try."""
    hint = ""
    if asset_type == "stock":
        hint = (
            " (IEX thresholdLevel 0 and 5 need an IEX market data agreement since 2025; "
            "threshold_level=6 streams Tiingo's reference price without one)"
        )
    return (
        f"Tiingo refused the {ENDPOINT[asset_type]} endpoint: {text} (403). "
        f"Your Tiingo plan does not include it{hint}."
    )


def _response(message: dict[str, Any]) -> tuple[int, str]:
    response = message.get("response") or {}
    return int(response.get("code", 0)), str(response.get("message", ""))


def _check(params: dict[str, Any]) -> None:
    """Cross-parameter rules, before anything starts."""
    asset_type, feed, level = params["asset_type"], params.get("feed"), params["threshold_level"]
    if asset_type == "fx" and feed == "trade":
        raise InvalidParameterError(
            "tiingo: FX only supports quote feed. Leave feed out (or pass feed='quote') "
            "for asset_type='fx'."
        )
    if asset_type != "fx" and feed == "quote":
        raise InvalidParameterError(
            f"tiingo: the {asset_type} feed has no quote-only stream; choose feed='trade' or "
            "feed='trade_and_quote' (trades with top-of-book quotes)."
        )
    allowed = THRESHOLD_LEVELS[asset_type]
    if level is not None and level not in allowed:
        raise InvalidParameterError(
            f"tiingo: threshold_level={level} is not a {asset_type} level; "
            f"choose one of {', '.join(map(str, allowed))} (or leave it out to follow the feed)."
        )
    check_ws_url("tiingo", params.get("url"), " (leave it out for wss://api.tiingo.com)")


PROVIDER = ProviderSpec(
    name="tiingo",
    description="Tiingo websocket firehose: IEX stocks, forex and crypto (API key required).",
    session_class=TiingoSession,
    params=(
        Param("symbol", str, description="comma-separated tickers, e.g. btcusd,ethusd; * = all"),
        Param(
            "asset_type", str, "crypto", choices=ASSET_TYPES, description="stock (IEX), fx, crypto"
        ),
        Param(
            "feed",
            str,
            None,
            choices=FEEDS,
            description="trade or trade_and_quote (stock, crypto); quote (fx). Default: trade, "
            "or quote for fx",
        ),
        Param(
            "threshold_level",
            int,
            None,
            description="Tiingo thresholdLevel (stock 0/5/6, crypto 2/5, fx 5); default from feed",
        ),
        Param(
            "api_key",
            str,
            secret=True,
            env="TIINGO_API_KEY",
            openbb_setting="tiingo_token",
            description="Tiingo API token",
        ),
        Param("url", str, None, description="websocket base URL (default wss://api.tiingo.com)"),
    ),
    docs="docs/providers/tiingo.md",
    check=_check,
)
