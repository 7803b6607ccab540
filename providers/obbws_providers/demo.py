"""The ``demo`` provider: a simulated market, no API key, no internet.

The wire protocol is modelled on Polygon's (reference §9.2, §14.1) and specified in
``docs/demo_protocol.md``; its server is :mod:`obbws_jupyter.offline.demo_server`, started on
127.0.0.1 by the core unless ``url`` is given. In short, every server frame is a JSON array of
objects::

    server  [{"ev":"status","status":"connected","message":"obbws demo market"}]
    client  {"action":"auth","params":"<key>"}
    server  [{"ev":"status","status":"auth_success","message":"authenticated"}]
    client  {"action":"subscribe","params":"T.BTCUSD,T.ETHUSD"}
    server  [{"ev":"status","status":"success","message":"subscribed to: T.BTCUSD,T.ETHUSD"}]
    server  [{"ev":"T","sym":"BTCUSD","x":"DEMO","p":65001.5,"s":0.0123,"t":1700000000000}, ...]
    server  [{"ev":"heartbeat","t":1700000000000}]

Channels: ``T`` trades (feed ``trade``), ``Q`` quotes (feed ``quote``); ``*`` is the asset
type's default basket.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from obbws_jupyter.protocol import (
    AuthFailed,
    Field,
    FieldType,
    Frame,
    Heartbeat,
    InvalidParameterError,
    MalformedFrame,
    Param,
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
    ms_to_ns,
)

__all__ = ["PROVIDER", "QUOTE_FIELDS", "TRADE_FIELDS", "DemoSession"]

ASSET_TYPES = ("stock", "crypto", "fx")
FEEDS = ("trade", "quote")
CHANNEL = {"trade": "T", "quote": "Q"}

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.:]{0,19}$")
_SEPARATORS = str.maketrans("", "", "-/")
_ENDPOINT_RE = re.compile(r"/(stock|crypto|fx)/?$")

TRADE_FIELDS = (
    Field("date", FieldType.TIMESTAMP, "exchange time of the trade"),
    Field("symbol", FieldType.STRING, "symbol, e.g. BTCUSD"),
    Field("type", FieldType.STRING, '"trade"'),
    Field("exchange", FieldType.STRING, "venue (always DEMO)"),
    Field("price", FieldType.FLOAT, "trade price"),
    Field("size", FieldType.FLOAT, "trade size (shares, coins or units of base currency)"),
)

QUOTE_FIELDS = (
    Field("date", FieldType.TIMESTAMP, "exchange time of the quote"),
    Field("symbol", FieldType.STRING, "symbol, e.g. BTCUSD"),
    Field("type", FieldType.STRING, '"quote"'),
    Field("exchange", FieldType.STRING, "venue (always DEMO)"),
    Field("bid", FieldType.FLOAT, "best bid price"),
    Field("bid_size", FieldType.FLOAT, "size at the bid"),
    Field("ask", FieldType.FLOAT, "best ask price"),
    Field("ask_size", FieldType.FLOAT, "size at the ask"),
)

_SUBSCRIBED = "subscribed to: "
_UNSUBSCRIBED = "unsubscribed to: "
_INVALID = "invalid symbol: "


class DemoSession(ProviderSession):
    """Protocol state machine of the demo market (see the module docstring)."""

    provider = "demo"
    stale_after = 5.0  # the server sends a heartbeat every second
    text_as_bytes = True  # JSON text frames only
    connect_kwargs: ClassVar[Mapping[str, Any]] = {"compression": None}  # our server: none

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.asset_type = str(params.get("asset_type") or "crypto").lower()
        self.feed = str(params.get("feed") or "trade").lower()
        if self.feed not in CHANNEL:
            raise InvalidParameterError(
                f"demo: feed={self.feed!r} is not supported; choose one of {', '.join(FEEDS)}."
            )
        self.channel = CHANNEL[self.feed]
        self.fields = TRADE_FIELDS if self.feed == "trade" else QUOTE_FIELDS
        self._record = _trade if self.feed == "trade" else _quote
        super().__init__(params)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        base = self.params.get("url")
        if not base:
            raise InvalidParameterError(
                "demo: no server URL; create_connection starts the embedded demo server, "
                "or pass url='ws://HOST:PORT' for one started elsewhere."
            )
        base = str(base)
        if _ENDPOINT_RE.search(base.partition("?")[0]):
            return base
        return f"{base.rstrip('/')}/{self.asset_type}"

    def normalize_symbol(self, symbol: str) -> str:
        """``btc-usd`` / ``BTC/USD`` -> ``BTCUSD``; ``*`` is the default basket."""
        text = symbol.strip().upper().translate(_SEPARATORS)
        if text == "*" or _SYMBOL_RE.match(text):
            return text
        raise SymbolError(
            f"demo: invalid symbol {symbol!r}: use 1-20 letters, digits, '.' or ':' starting "
            "with a letter or digit ('-' and '/' are removed, e.g. btc-usd -> BTCUSD), "
            "or '*' for the default basket."
        )

    def auth_frames(self) -> list[Frame]:
        return []  # auth goes out when the server says "connected" (see _on_status)

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [self._action("subscribe", symbols)]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [self._action("unsubscribe", symbols)]

    def parse(self, frame: Frame) -> list[Record]:
        data = json_loads(frame)
        if type(data) is not list:
            raise ValueError(f"expected a JSON array of objects, got {type(data).__name__}")
        wanted = self.channel
        record = self._record
        try:
            # the hot path (once per frame, so inline): a frame of this feed's events only,
            # built in one pass; other elements are left out, and then counted below
            records = [record(item) for item in data if item["ev"] == wanted]
        except (KeyError, TypeError, ValueError):
            return self._parse_each(data, frame)  # bad elements
        if len(records) != len(data):
            return self._parse_each(data, frame)  # status, heartbeats or bad elements
        return records

    def _parse_each(self, data: list[Any], frame: Frame) -> list[Record]:
        """Element by element: events of the feed, status and heartbeats; a bad element is
        counted (one MalformedFrame for the frame) and the others are kept."""
        records: list[Record] = []
        bad = 0
        for item in data:
            try:
                ev = item["ev"]
                if ev == self.channel:
                    records.append(self._record(item))
                elif ev == "heartbeat":
                    self._emit(Heartbeat())
                elif ev == "status":
                    self._on_status(item["status"], str(item.get("message", "")))
                # other event types (the other feed's channel, future additions) are ignored
            except (KeyError, TypeError, ValueError):
                bad += 1
        if bad:
            self._emit(
                MalformedFrame(
                    f"{bad} of {len(data)} elements are not valid demo events",
                    self.excerpt(frame),
                )
            )
        return records

    # helpers ---------------------------------------------------------------------------------

    def _action(self, action: str, symbols: Sequence[str]) -> str:
        params = ",".join(f"{self.channel}.{s}" for s in symbols)
        return json.dumps({"action": action, "params": params})

    def _on_status(self, status: str, message: str) -> None:
        if status == "connected":
            key = self.params.get("api_key") or "demo"
            self._send(json.dumps({"action": "auth", "params": key}))
            self._emit(ProviderMessage("info", message))
        elif status == "auth_success":
            if not self.is_authenticated:
                self._authenticated(message)
        elif status == "auth_failed":
            self._emit(AuthFailed(message or "authentication failed"))
        elif status == "success" and message.startswith(_SUBSCRIBED):
            self._emit(Subscribed(_symbols(message[len(_SUBSCRIBED) :]), message))
        elif status == "success" and message.startswith(_UNSUBSCRIBED):
            self._emit(Unsubscribed(_symbols(message[len(_UNSUBSCRIBED) :]), message))
        elif status == "error" and message.startswith(_INVALID):
            self._emit(SubscriptionFailed(_symbols(message[len(_INVALID) :]), message))
        elif status == "error":
            self._emit(ProviderMessage("error", message))
        else:
            self._emit(ProviderMessage("info", message))


def _trade(item: dict[str, Any]) -> Record:
    """A ``T`` element's record (docs/demo_protocol.md). The date is :func:`_ms_to_ns`
    inlined: one call less per trade."""
    t = item["t"]
    return {
        "date": t * 1_000_000 if type(t) is int and t < _MS_LIMIT else ms_to_ns(t),
        "symbol": item["sym"],
        "type": "trade",
        "exchange": item["x"],
        "price": item["p"],
        "size": item["s"],
    }


def _quote(item: dict[str, Any]) -> Record:
    """A ``Q`` element's record (docs/demo_protocol.md)."""
    return {
        "date": _ms_to_ns(item["t"]),
        "symbol": item["sym"],
        "type": "quote",
        "exchange": item["x"],
        "bid": item["bp"],
        "bid_size": item["bs"],
        "ask": item["ap"],
        "ask_size": item["as"],
    }


def _ms_to_ns(value: Any) -> int:
    """:func:`ms_to_ns` inlined for the demo's epoch milliseconds (an int below 10**14; any
    other value takes the general path, so both give the same)."""
    if type(value) is int and value < _MS_LIMIT:
        return value * 1_000_000
    return ms_to_ns(value)


_MS_LIMIT = 100_000_000_000_000  # epoch ms below this are ms for ms_to_ns too


def _symbols(text: str) -> tuple[str, ...]:
    """``"T.BTCUSD,T.ETHUSD"`` -> ``("BTCUSD", "ETHUSD")`` (channel prefixes removed)."""
    return tuple(item.partition(".")[2] or item for item in text.split(",") if item)


def _check(params: dict[str, Any]) -> None:
    rate = params.get("rate")
    if rate is not None and not (rate >= 0.0 and math.isfinite(rate)):
        raise InvalidParameterError(
            f"demo: rate must be a finite number of events per second >= 0, got {rate!r}."
        )
    check_ws_url("demo", params.get("url"), " (leave it out to use the embedded demo server)")


PROVIDER = ProviderSpec(
    name="demo",
    description="Simulated market on a local websocket server: no API key, no internet.",
    session_class=DemoSession,
    params=(
        Param("symbol", str, description="comma-separated symbols, e.g. btcusd,ethusd; * = all"),
        Param("asset_type", str, "crypto", choices=ASSET_TYPES, description="stock, crypto, fx"),
        Param("feed", str, "trade", choices=FEEDS, description="trade or quote"),
        Param(
            "api_key",
            str,
            None,
            secret=True,
            env="OBBWS_DEMO_API_KEY",
            description="any key (checked only by a server started with one)",
        ),
        Param("rate", float, 200.0, description="events per second of the embedded server"),
        Param("url", str, None, description="ws://HOST:PORT of a running demo server"),
    ),
    embedded_server="obbws_jupyter.offline.demo_server:serve",
    docs="docs/demo_protocol.md",
    check=_check,
)
