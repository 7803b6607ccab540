"""The ``coinbase`` provider: the Coinbase Exchange public websocket feed, no API key.

Wire protocol: "Exchange WebSocket Overview" and "Exchange WebSocket Channels" of
https://docs.cdp.coinbase.com/exchange/websocket-feed/overview and ``.../channels``. Sample
frames: ``tests/fixtures/coinbase.jsonl``; fake server: :mod:`obbws_jupyter.fakes.coinbase`.

==============  ===============================================================================
asset types     ``crypto``
feeds           ``trade`` -> channel ``matches`` (``match`` messages, and one ``last_match`` per
                product right after subscribing); ``ticker`` -> channel ``ticker`` (last trade
                with the best bid/ask, sent on every match; cascading matches are batched)
URL             ``wss://ws-feed.exchange.coinbase.com``; ``url=`` overrides it
symbols         product ids ``BTC-USD``; ``btc-usd``, ``BTC/USD``, ``btc_usd`` map to it, and so
                does ``btcusd`` when exactly one known quote currency ends it (``ethpyusd``
                could be ETH-PYUSD or ETHPY-USD: refused, write the dash)
credentials     none: public market data
==============  ===============================================================================

Records (one per message; ``date`` is int ns UTC from the message's ``time``):

- ``trade``: ``date``, ``symbol``, ``type="trade"`` (``last_match`` too), ``exchange``,
  ``price``, ``size``, ``taker_side``, ``trade_id``, ``sequence``.
- ``ticker``: ``date``, ``symbol``, ``type="ticker"``, ``exchange``, ``price`` and ``size``
  (the last trade), ``bid``, ``bid_size``, ``ask``, ``ask_size`` (best bid/ask),
  ``taker_side``, ``trade_id``, ``sequence``, ``open_24h``, ``high_24h``, ``low_24h``,
  ``volume_24h``. A ticker without its last trade's details (the one sent on subscribing can
  be) leaves ``size``/``taker_side``/``trade_id`` out and is dated on receipt; one without
  book sizes (before 2022) leaves ``bid_size``/``ask_size`` out.

Protocol handled:

- ``subscribe`` / ``unsubscribe`` with ``product_ids`` and ``channels`` (the data channel and
  ``heartbeat``), sent at once on connect (Coinbase disconnects a client that has not
  subscribed within 5 s). The ``subscriptions`` reply lists everything subscribed: products
  newly in it are acknowledged (``Subscribed``), products gone from it ``Unsubscribed``.
- ``error`` messages: ``"<product> is not a valid product"`` refuses that product
  (``SubscriptionFailed``; ``subscribe()`` raises SymbolError) and forgets it; since Coinbase
  rejects the whole request, the other products of that request are asked for again. Other
  errors are logged as provider errors.
- ``heartbeat`` (one per product per second, with ``sequence`` and ``last_trade_id``): a sign
  of life; ``stale_after`` is 10 s.
- Missed messages (Coinbase: "the websocket servers receive market data in a manner that can
  result in dropped messages"): per product, a ``trade_id`` more than one above the last one
  seen is a gap of that many missed trades (``SequenceGap(missed, product)``, counted in
  ``status.sequence_gaps``); a trade id (``trade``) or sequence (``ticker``) not above the last
  one seen is a duplicate or late message and is **dropped, not stored twice**, so the
  ``last_match`` a reconnect brings is stored only if it is new, and trades missed while
  reconnecting show up as a gap. An unsubscribed product's history is forgotten.

Deviations (Coinbase is beyond OpenBB, which has no Coinbase provider):

- Gaps are counted from ``trade_id``, not ``sequence``: the ``sequence`` of ``matches``,
  ``ticker`` and ``heartbeat`` messages numbers the product's whole order-book feed (the
  ``full`` channel), so it skips between consecutive matches on these channels by design;
  counting its jumps would report thousands of false gaps a minute. ``ticker`` messages batch
  cascading matches (their ``trade_id`` skips legitimately), so no gap is counted there.
- ``side`` means the maker's side on ``match`` messages and the taker's on ``ticker``
  messages; both are stored as ``taker_side`` (buy or sell) so the column means one thing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from obbws_jupyter.protocol import (
    Field,
    FieldType,
    Frame,
    Heartbeat,
    Param,
    ProviderMessage,
    ProviderSession,
    ProviderSpec,
    Record,
    SequenceGap,
    Subscribed,
    SubscriptionFailed,
    SymbolError,
    Unsubscribed,
    check_ws_url,
    iso_to_ns,
    json_loads,
)

__all__ = ["CHANNELS", "PROVIDER", "QUOTE_CURRENCIES", "CoinbaseSession"]

URL = "wss://ws-feed.exchange.coinbase.com"
EXCHANGE = "COINBASE"
#: feed parameter -> Coinbase channel
CHANNELS = {"trade": "matches", "ticker": "ticker"}
#: quote currencies used to split a symbol written without a dash (btcusd -> BTC-USD)
QUOTE_CURRENCIES = ("USD", "USDC", "USDT", "EUR", "GBP", "BTC", "ETH", "DAI", "EURC", "PYUSD")

_PRODUCT_RE = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{2,12}$")
_SEPARATORS = str.maketrans({"/": "-", "_": "-", " ": ""})
_NOT_VALID = " is not a valid product"
_TAKER_OF_MAKER = {"buy": "sell", "sell": "buy"}
_TAKER = {"buy": "buy", "sell": "sell"}
_loads = json_loads

_COMMON = (
    Field("date", FieldType.TIMESTAMP, "time of the trade (Coinbase time)"),
    Field("symbol", FieldType.STRING, "product id, e.g. BTC-USD"),
    Field("type", FieldType.STRING, "trade or ticker"),
    Field("exchange", FieldType.STRING, "COINBASE"),
    Field("price", FieldType.FLOAT, "trade price"),
    Field("size", FieldType.FLOAT, "trade size (base currency)"),
)
_IDS = (
    Field("taker_side", FieldType.STRING, "buy or sell: the side of the aggressing order"),
    Field("trade_id", FieldType.INT, "Coinbase trade id (consecutive per product)"),
    Field("sequence", FieldType.INT, "the product's feed sequence number"),
)
TRADE_FIELDS = (*_COMMON, *_IDS)
TICKER_FIELDS = (
    *_COMMON,
    Field("bid", FieldType.FLOAT, "best bid price"),
    Field("bid_size", FieldType.FLOAT, "best bid size"),
    Field("ask", FieldType.FLOAT, "best ask price"),
    Field("ask_size", FieldType.FLOAT, "best ask size"),
    *_IDS,
    Field("open_24h", FieldType.FLOAT, "price 24 h ago"),
    Field("high_24h", FieldType.FLOAT, "24 h high"),
    Field("low_24h", FieldType.FLOAT, "24 h low"),
    Field("volume_24h", FieldType.FLOAT, "24 h volume (base currency)"),
)


def normalize_product(symbol: str) -> str:
    """``btc-usd`` / ``BTC/USD`` / ``btcusd`` -> ``BTC-USD`` (SymbolError when unclear)."""
    text = symbol.strip().upper().translate(_SEPARATORS)
    if "-" not in text:
        splits = [
            f"{text[: -len(q)]}-{q}"
            for q in QUOTE_CURRENCIES
            if text.endswith(q) and len(text) > len(q)
        ]
        if len(splits) > 1:
            raise SymbolError(
                f"coinbase: {symbol!r} is ambiguous ({' or '.join(splits)}); "
                "write the product id with its dash, e.g. BTC-USD."
            )
        if splits:
            text = splits[0]
    if _PRODUCT_RE.match(text):
        return text
    raise SymbolError(
        f"coinbase: invalid product {symbol!r}: use a product id such as BTC-USD or ETH-BTC "
        f"(a symbol without a dash must end with one of {', '.join(QUOTE_CURRENCIES)})."
    )


class CoinbaseSession(ProviderSession):
    """Protocol state machine of the Coinbase Exchange feed (see the module docstring)."""

    provider = "coinbase"
    text_as_bytes = True  # JSON text frames only: read from bytes, never decoded first
    stale_after = 10.0  # heartbeats come every second per product

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.feed = str(params.get("feed") or "trade")
        self.channel = CHANNELS[self.feed]
        self.fields = TRADE_FIELDS if self.feed == "trade" else TICKER_FIELDS
        self.duplicates = 0  # messages dropped as duplicate or late
        self._last_trade: dict[str, int] = {}  # product -> last trade id (matches)
        self._last_sequence: dict[str, int] = {}  # product -> last sequence (ticker)
        self._pending: dict[str, None] = {}  # products asked for, not yet acknowledged
        self._listed: dict[str, None] = {}  # products the last subscriptions reply listed
        self._clock_head = ""  # one-entry cache: "YYYY-MM-DDTHH:MM:SS" -> epoch seconds
        self._clock_seconds = 0
        self._clock = time.time_ns  # for a ticker without a time
        # one parse function per message type; data types of the other feed are ignored
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Record]]] = {
            "heartbeat": self._heartbeat,
            "subscriptions": self._subscriptions,
            "error": self._error,
        }
        if self.feed == "trade":
            self._handlers["match"] = self._handlers["last_match"] = self._match
        else:
            self._handlers["ticker"] = self._ticker
        super().__init__(params)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        return str(self.params.get("url") or URL)

    def normalize_symbol(self, symbol: str) -> str:
        return normalize_product(symbol)

    def connection_made(self) -> None:
        """The feed is public: subscribe at once (Coinbase closes a connection that has not
        subscribed within 5 s)."""
        super().connection_made()
        self._pending.clear()
        self._listed.clear()
        self._authenticated("public market data: no key needed")

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        for symbol in symbols:
            self._pending[symbol] = None
        return [self._request("subscribe", symbols)]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        for symbol in symbols:
            self._pending.pop(symbol, None)
        return [self._request("unsubscribe", symbols)]

    def parse(self, frame: Frame) -> list[Record]:
        msg = _loads(frame)
        handler = self._handlers.get(msg["type"])
        if handler is None:
            return []  # Coinbase: "clients are expected to ignore messages they do not support"
        return handler(msg)

    # data ------------------------------------------------------------------------------------

    def _match(self, m: dict[str, Any]) -> list[Record]:
        # channels.md "Match" (matches channel), and last_match; fixture "match", "last_match"
        product = m["product_id"]
        trade_id = m["trade_id"]
        if type(trade_id) is not int:
            raise ValueError(f"trade_id must be an integer, got {trade_id!r}")
        last = self._last_trade.get(product)
        if last is not None:
            if trade_id <= last:
                self.duplicates += 1
                return []
            if trade_id != last + 1:
                self._emit(SequenceGap(trade_id - last - 1, product))
        self._last_trade[product] = trade_id
        return [
            {
                "date": self._time(m["time"]),
                "symbol": product,
                "type": "trade",
                "exchange": EXCHANGE,
                "price": float(m["price"]),
                "size": float(m["size"]),
                "taker_side": _TAKER_OF_MAKER[m["side"]],  # match side = the maker's side
                "trade_id": trade_id,
                "sequence": int(m["sequence"]),
            }
        ]

    def _ticker(self, t: dict[str, Any]) -> list[Record]:
        # channels.md "Ticker Channel"; fixture "ticker"
        product = t["product_id"]
        sequence = int(t["sequence"])
        last = self._last_sequence.get(product)
        if last is not None and sequence <= last:
            self.duplicates += 1
            return []
        self._last_sequence[product] = sequence
        record: Record = {
            "symbol": product,
            "type": "ticker",
            "exchange": EXCHANGE,
            "price": float(t["price"]),
            "bid": float(t["best_bid"]),
            "ask": float(t["best_ask"]),
            "sequence": sequence,
            "open_24h": float(t["open_24h"]),
            "high_24h": float(t["high_24h"]),
            "low_24h": float(t["low_24h"]),
            "volume_24h": float(t["volume_24h"]),
        }
        # the first ticker after subscribing may come without its last trade's details, and
        # tickers before 2022 without the book sizes: what is absent stays absent
        when = t.get("time")
        record["date"] = self._time(when) if when is not None else self._clock()
        value = t.get("last_size")
        if value is not None:
            record["size"] = float(value)
        value = t.get("side")
        if value is not None:
            record["taker_side"] = _TAKER[value]  # ticker side = the taker's side
        value = t.get("trade_id")
        if value is not None:
            record["trade_id"] = int(value)
        value = t.get("best_bid_size")
        if value is not None:
            record["bid_size"] = float(value)
        value = t.get("best_ask_size")
        if value is not None:
            record["ask_size"] = float(value)
        return [record]

    def _time(self, text: str) -> int:
        """Coinbase time ``2014-11-07T08:19:27.028459Z`` -> int ns UTC. Consecutive messages
        share their second, so the date part is parsed once per second."""
        head = text[:19]
        if len(text) > 20 and text[19] == "." and text[-1] == "Z":
            if head != self._clock_head:
                stamp = datetime.fromisoformat(head).replace(tzinfo=UTC)
                self._clock_seconds = int(stamp.timestamp())
                self._clock_head = head
            digits = text[20:-1]
            if len(digits) <= 9 and digits.isdigit():
                return self._clock_seconds * 1_000_000_000 + int(digits.ljust(9, "0"))
        return iso_to_ns(text)

    # control messages ------------------------------------------------------------------------

    def _heartbeat(self, msg: dict[str, Any]) -> list[Record]:
        # channels.md "Heartbeat Channel"; fixture "heartbeat"
        if "product_id" not in msg:
            raise ValueError("heartbeat without product_id")
        self._emit(Heartbeat())
        return []

    def _subscriptions(self, msg: dict[str, Any]) -> list[Record]:
        # overview.md "Subscribe": the reply lists every channel and product now subscribed
        current: dict[str, None] = {}
        for channel in msg["channels"]:
            if channel["name"] == self.channel:
                current.update(dict.fromkeys(channel["product_ids"]))
        added = tuple(p for p in current if p not in self._listed)
        removed = tuple(p for p in self._listed if p not in current)
        self._listed = current
        if added:
            for product in added:
                self._pending.pop(product, None)
            self._emit(Subscribed(added, f"subscribed to {self.channel}: {','.join(added)}"))
        if removed:
            for product in removed:
                self._last_trade.pop(product, None)  # a later subscription starts afresh
                self._last_sequence.pop(product, None)
            self._emit(Unsubscribed(removed, f"unsubscribed from {self.channel}"))
        return []

    def _error(self, msg: dict[str, Any]) -> list[Record]:
        # overview.md: errors are {"type": "error", "message": ..., "reason": ...}
        message = str(msg.get("message", ""))
        reason = str(msg.get("reason", ""))
        text = f"{message}: {reason}" if reason else message
        if reason.endswith(_NOT_VALID):
            self._refuse(reason[: -len(_NOT_VALID)].strip().upper(), text)
        else:
            self._emit(ProviderMessage("error", f"Coinbase: {text}"))
        return []

    def _refuse(self, product: str, text: str) -> None:
        """Coinbase rejects a whole subscribe request for one invalid product: report that
        product, forget it, and ask again for the others of the request."""
        self._emit(SubscriptionFailed((product,), f"Coinbase: {text}"))
        self._wanted.pop(product, None)
        self._pending.pop(product, None)
        others = [p for p in self._pending if p in self._wanted]
        if others:
            self._send(self._request("subscribe", others))

    def _request(self, kind: str, products: Sequence[str]) -> str:
        return json.dumps(
            {"type": kind, "product_ids": list(products), "channels": [self.channel, "heartbeat"]}
        )


def _check(params: dict[str, Any]) -> None:
    check_ws_url("coinbase", params.get("url"), " (leave it out for the real Coinbase feed)")


PROVIDER = ProviderSpec(
    name="coinbase",
    description="Coinbase Exchange public feed (no key): trades (matches) or ticker "
    "(last trade with best bid/ask); heartbeats and trade-id gap counting.",
    session_class=CoinbaseSession,
    params=(
        Param("symbol", str, description="comma-separated product ids, e.g. BTC-USD,ETH-USD"),
        Param("asset_type", str, "crypto", choices=("crypto",), description="crypto"),
        Param(
            "feed",
            str,
            "trade",
            choices=tuple(CHANNELS),
            description="trade (matches channel) or ticker (ticker channel)",
        ),
        Param("url", str, None, description="websocket URL override (e.g. a fake server)"),
    ),
    docs="docs/providers/coinbase.md",
    check=_check,
)
