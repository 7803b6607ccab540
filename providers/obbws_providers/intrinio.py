"""The ``intrinio`` provider: Intrinio's real-time equities websocket (binary, little-endian).

What it supports
================

============  ==========================================  =====================================
asset_type    feed (default ``realtime``)                 host (auth + socket)
============  ==========================================  =====================================
``stock``     ``realtime`` (IEX / multi-exchange)          ``realtime-mx.intrinio.com``
``stock``     ``delayed_sip`` (delayed CTA + UTP)          ``realtime-delayed-sip.intrinio.com``
``stock``     ``nasdaq_basic``                             ``realtime-nasdaq-basic.intrinio.com``
============  ==========================================  =====================================

Other parameters: ``trades_only`` (bool, default False: trades and top-of-book bid/ask),
``api_key`` (argument, ``INTRINIO_API_KEY``, or ``intrinio_api_key`` in OpenBB's user settings),
``url`` (websocket base, e.g. ``ws://127.0.0.1:PORT``; ``/socket/websocket`` is appended when the
URL has no path) and ``auth_url`` (the token endpoint; derived from ``url`` when only ``url`` is
given, since Intrinio serves both on one host).

Symbols: tickers, upper-cased (``aapl`` -> ``AAPL``, ``brk.b`` -> ``BRK.B``). ``*`` (and
OpenBB's ``lobby``) is the firehose: the channel ``$FIREHOSE``, every symbol of the feed (it
needs a firehose entitlement). Intrinio's SDKs call it "lobby" in their API and send
``$FIREHOSE`` on the wire; we show the wire name in ``subscribed_symbols``.

The protocol (verified against Intrinio's SDKs: ``intrinio-realtime-python-sdk``
``intriniorealtime/equities_client.py`` and ``intrinio-realtime-csharp-sdk``
``Intrinio.Realtime/Equities/EquitiesWebSocketClient.cs``; reference §9.4, §14.4):

1. Before every connection attempt, an HTTP token exchange (``http_requests``):
   ``GET https://<host>/auth?api_key=KEY`` with the header ``Client-Information``; 200 -> the
   body is the token; 401/403 -> the key is refused (``AuthFailed``: a credentials error).
2. The socket ``wss://<host>/socket/websocket?vsn=1.0.0&token=TOKEN`` with the headers
   ``UseNewEquitiesFormat: v2`` and ``Client-Information``. The server says nothing on open:
   an open socket is an authenticated one. There is no application heartbeat (websocket pings
   guard the socket), so quiet symbols may be silent: ``stale_after`` is None.
3. Join ``b"J" + bytes([trades_only]) + ascii(channel)``; leave ``b"L" + ascii(channel)``. The
   server sends no acknowledgement: a join is reported as acknowledged once sent, as the SDKs
   log "Joined channel" then.
4. Data: binary frames, byte 0 = item count, then items; each item starts with its type (0
   trade, 1 ask, 2 bid), its total length, the symbol's length and the ASCII symbol, then from
   offset ``3 + symbol_length``: subprovider (u8), market center (one UTF-16LE code unit),
   price (f32), size (u32), timestamp (u64, ns since the epoch), for trades the day's total
   volume (u32), then the condition length (u8) and ASCII condition characters. The next item
   starts ``length`` bytes after this one. Examples: ``tests/fixtures/intrinio.jsonl``.
5. Text frames are control messages (the SDKs log them as warnings): Phoenix-style JSON
   (``phx_reply`` ok/error, ``phx_error``, ``phx_close``, ``heartbeat``) or plain text.

Records (``IntrinioWebSocketData`` in OpenBB): ``date`` (the exchange timestamp), ``symbol``,
``type`` (``trade``/``ask``/``bid``), ``exchange`` (market center code -> venue name),
``price``, ``size``, ``volume`` (trades: total volume of the day), ``conditions`` (trades:
condition characters -> names joined by ``"; "``; quotes: the raw characters), ``is_darkpool``
(trades), ``feed`` (the subprovider: ``IEX``, ``UTP``, ``CTA_A``, ``NASDAQ_BASIC``...). As in
OpenBB, items with market center ``"!"`` or price 0 are discarded.

OpenBB mistakes fixed
=====================
- ``trades_only`` is honoured: OpenBB's fetcher never passes it to the provider script, so
  OpenBB always joins trades and quotes.
- ``is_darkpool`` follows Intrinio's current SDK (per subprovider: CTA/UTP/OTC market center
  empty, ``D`` or ``E``; NASDAQ Basic ``L`` or ``2``; never for IEX). OpenBB's vendored SDK
  v5.3.0 flags every trade with an empty market center, so every IEX trade was "dark".
- Subscriptions survive reconnects and a fresh token is fetched before every attempt; a
  refused key is a credentials error at once instead of a self-healing retry loop (10 s ...
  600 s backoff) that never reports it.
- Dates are int ns UTC (tz-aware in results), not strings converted to New York time.

Deviations
==========
- Prices are float32 on the wire (about 7 significant digits): records carry them rounded to
  7 significant digits, so 190.11 reads 190.11 and not 190.11000061035156.
- ``exchange`` is absent (null) for an empty market center (``\\x00`` or blank) instead of the
  raw ``"\\x00"``; an unknown code is kept as its character, as OpenBB does.
- An unknown subprovider code is reported as ``SUBPROVIDER_<n>`` (the SDK guesses ``IEX``).
- An unknown item type is skipped by its length with one warning (the SDK treats it as a bid).
- ``Client-Information`` is sent as ``IntrinioPythonSDKv5.3.0``, the value OpenBB sends.
"""

from __future__ import annotations

import re
import struct
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from obbws_jupyter.protocol import (
    AuthFailed,
    Field,
    FieldType,
    Frame,
    Heartbeat,
    HttpRequest,
    HttpResponse,
    InvalidParameterError,
    MalformedFrame,
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
)

__all__ = [
    "CLIENT_INFORMATION",
    "FEED_HOSTS",
    "FIELDS",
    "FIREHOSE",
    "PROVIDER",
    "SUBPROVIDERS",
    "TRADE_CONDITIONS",
    "VENUES",
    "IntrinioSession",
]

ASSET_TYPES = ("stock",)
FEED_HOSTS: dict[str, str] = {
    "realtime": "realtime-mx.intrinio.com",
    "delayed_sip": "realtime-delayed-sip.intrinio.com",
    "nasdaq_basic": "realtime-nasdaq-basic.intrinio.com",
}
FEEDS = tuple(FEED_HOSTS)

FIREHOSE = "$FIREHOSE"
_FIREHOSE_ALIASES = frozenset({"*", "LOBBY", FIREHOSE})
SOCKET_PATH = "/socket/websocket"
AUTH_PATH = "/auth"
SOCKET_QUERY = "vsn=1.0.0"
CLIENT_INFORMATION = "IntrinioPythonSDKv5.3.0"  # what OpenBB's vendored SDK sends
#: Headers of the websocket handshake; ``v2`` selects the binary layout parsed here.
SOCKET_HEADERS: dict[str, str] = {
    "UseNewEquitiesFormat": "v2",
    "Client-Information": CLIENT_INFORMATION,
}

JOIN = 0x4A  # b"J"
LEAVE = 0x4C  # b"L"
TRADE, ASK, BID = 0, 1, 2

#: Subprovider codes (byte 3 + symbol length of an item), as Intrinio's SDK names them.
SUBPROVIDERS: tuple[str, ...] = (
    "NO_SUBPROVIDER",
    "CTA_A",
    "CTA_B",
    "UTP",
    "OTC",
    "NASDAQ_BASIC",
    "IEX",
    "CBOE_ONE",
    "EQUITIES_EDGE",
)
_CBOE_ONE = SUBPROVIDERS.index("CBOE_ONE")  # its trade conditions are a number (bit flags)

#: Market center codes (reference §9.4, OpenBB's ``openbb_intrinio.utils.references``).
VENUES: dict[str, str] = {
    "A": "NYSE MKT",
    "B": "NASDAQ OMX BX",
    "C": "National Stock Exchange",
    "D": "FINRA ADF",
    "I": "International Securities Exchange",
    "J": "Bats EDGA Exchange",
    "K": "Bats EDGX Exchange",
    "L": "Long-term Stock Exchange",
    "M": "Chicago Stock Exchange",
    "N": "New York Stock Exchange",
    "P": "NYSE Arca",
    "S": "Consolidated Tape System",
    "T": "NASDAQ (Tape A, B securities)",
    "Q": "NASDAQ (Tape C securities)",
    "V": "The Investors Exchange",
    "W": "Cboe",
    "X": "NASDAQ OMX PSX",
    "Y": "Bats BYX Exchange",
    "Z": "Bats BZX Exchange",
    "U": "Other OTC Markets",
}

#: Trade condition characters (Intrinio's SDK README, "Equities Trade Conditions").
TRADE_CONDITIONS: dict[str, str] = {
    "@": "Regular Sale",
    "A": "Acquisition",
    "B": "Bunched Trade",
    "C": "Cash Sale",
    "D": "Distribution",
    "E": "Placeholder",
    "F": "Intermarket Sweep",
    "G": "Bunched Sold Trade",
    "H": "Priced Variation Trade",
    "I": "Odd Lot Trade",
    "K": "Rule 155 Trade (AMEX)",
    "L": "Sold Last",
    "M": "Market Center Official Close",
    "N": "Next Day",
    "O": "Opening Prints",
    "P": "Prior Reference Price",
    "Q": "Market Center Official Open",
    "R": "Seller",
    "S": "Split Trade",
    "T": "Form T",
    "U": "Extended Trading Hours (Sold Out of Sequence)",
    "V": "Contingent Trade",
    "W": "Average Price Trade",
    "X": "Cross/Periodic Auction Trade",
    "Y": "Yellow Flag Regular Trade",
    "Z": "Sold (Out of Sequence)",
    "1": "Stopped Stock (Regular Trade)",
    "4": "Derivatively Priced",
    "5": "Re-Opening Prints",
    "6": "Closing Prints",
    "7": "Qualified Contingent Trade (QCT)",
    "8": "Placeholder for 611 Exempt",
    "9": "Corrected Consolidated Close (Per Listing Market)",
}

FIELDS = (
    Field("date", FieldType.TIMESTAMP, "exchange time of the trade or quote"),
    Field("symbol", FieldType.STRING, "ticker, e.g. AAPL"),
    Field("type", FieldType.STRING, '"trade", "ask" or "bid"'),
    Field("exchange", FieldType.STRING, "market center (venue name)"),
    Field("price", FieldType.FLOAT, "trade price, or the ask / bid price"),
    Field("size", FieldType.INT, "trade size, or the size at the ask / bid"),
    Field("volume", FieldType.INT, "trades: total volume of the symbol so far today"),
    Field("conditions", FieldType.STRING, 'trade conditions by name ("; "), quote condition'),
    Field("is_darkpool", FieldType.BOOL, "trades: reported from an unlit venue"),
    Field("feed", FieldType.STRING, "Intrinio's subprovider, e.g. IEX, UTP, CTA_A"),
)

# -- binary layout (offsets from the subprovider byte, at 3 + symbol length) ---------------
# subprovider u8 | market center u16 (UTF-16LE) | price f32 | size u32 | timestamp u64 |
# [trade: total volume u32] | condition length u8
_TRADE_BODY = struct.Struct("<BHfIQIB")
_QUOTE_BODY = struct.Struct("<BHfIQB")
MIN_ITEM = 3 + 1 + _QUOTE_BODY.size  # a quote with a one-letter symbol, no condition: 24

_TYPE_NAMES = ("trade", "ask", "bid")
_FEED_NAMES: dict[int, str] = {
    **{i: f"SUBPROVIDER_{i}" for i in range(256)},
    **dict(enumerate(SUBPROVIDERS)),
}
_BLANK = frozenset(code for code in range(256) if code == 0 or chr(code).isspace())
#: market center code -> venue name (None for blank); codes above 255 are looked up lazily
_EXCHANGES: dict[int, str | None] = {
    code: None if code in _BLANK else VENUES.get(chr(code), chr(code)) for code in range(256)
}
_DISCARDED_CENTER = ord("!")
_LIT_DARK = frozenset(map(ord, "DE")) | _BLANK
#: market centers that mean "dark pool", per subprovider (Intrinio's SDK ``is_darkpool``)
_DARK: dict[int, frozenset[int]] = {
    SUBPROVIDERS.index(name): _LIT_DARK for name in ("CTA_A", "CTA_B", "UTP", "OTC")
}
_DARK[SUBPROVIDERS.index("NASDAQ_BASIC")] = frozenset(map(ord, "L2")) | _BLANK
_NEVER_DARK: frozenset[int] = frozenset()
_CONDITION_CACHE_MAX = 4096
_PRICE_CACHE_MAX = 1 << 14
_UNSEEN: Any = object()

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-/_^=]{0,19}$")

# Phoenix-style control messages (text frames)
_ENTITLEMENT_WORDS = ("unauthorized", "not authorized", "entitle", "forbidden", "permission")


def _exchange(center: int) -> str:
    """A market center beyond the prefilled codes: its character (a lone surrogate is not
    text a table can hold: shown as U+XXXX)."""
    return f"U+{center:04X}" if 0xD800 <= center <= 0xDFFF else chr(center)


class IntrinioSession(ProviderSession):
    """Protocol state machine of Intrinio's equities websocket (see the module docstring)."""

    provider = "intrinio"
    fields = FIELDS
    stale_after = None  # no heartbeat, and a quiet symbol may legitimately be silent
    connect_kwargs = {"additional_headers": SOCKET_HEADERS}

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.feed = str(params.get("feed") or "realtime").lower()
        if self.feed not in FEED_HOSTS:
            raise InvalidParameterError(
                f"intrinio: feed={self.feed!r} is not supported; choose one of {', '.join(FEEDS)}."
            )
        self.trades_only = bool(params.get("trades_only"))
        self.token: str | None = None
        self._conditions: dict[bytes, str | None] = {}
        self._prices: dict[float, float] = {}
        self._unknown_types: set[int] = set()
        super().__init__(params)

    # -- hooks: URLs and the token step ------------------------------------------------------

    def url(self) -> str:
        """The socket URL; it carries the token once the HTTP step has fetched one."""
        base = self.params.get("url") or f"wss://{FEED_HOSTS[self.feed]}"
        query = SOCKET_QUERY if self.token is None else f"{SOCKET_QUERY}&token={self.token}"
        return _with_query(_with_path(str(base), SOCKET_PATH), query)

    def auth_url(self) -> str:
        """The token endpoint (without the key)."""
        given = self.params.get("auth_url")
        if given:
            return _with_path(str(given), AUTH_PATH)
        base = self.params.get("url")
        if base:  # Intrinio serves /auth on the socket's host: so does the fake server
            parts = urllib.parse.urlsplit(str(base))
            scheme = "https" if parts.scheme == "wss" else "http"
            return f"{scheme}://{parts.netloc}{AUTH_PATH}"
        return f"https://{FEED_HOSTS[self.feed]}{AUTH_PATH}"

    def http_requests(self) -> list[HttpRequest]:
        self.token = None  # a fresh token before every connection attempt, as the SDKs do
        key = urllib.parse.quote(str(self.params.get("api_key") or ""), safe="")
        return [
            HttpRequest(
                _with_query(self.auth_url(), f"api_key={key}"),
                headers={"Client-Information": CLIENT_INFORMATION},
            )
        ]

    def http_response(self, request: HttpRequest, response: HttpResponse) -> None:
        status = response.status
        where = _host(request.url)
        if status == 200 and response.body.strip():
            self.token = urllib.parse.quote(response.text.strip(), safe="")
        elif status in (401, 403):
            self._emit(AuthFailed(f"the token request to {where} was refused (HTTP {status})"))
        elif status == 200:
            self._emit(ProviderFailed(f"the token request to {where} returned an empty token"))
        elif status == 429 or status >= 500:
            self._emit(ProviderFailed(f"the token service {where} answered HTTP {status}"))
        else:
            self._emit(
                ProviderFailed(
                    f"the token request to {where} failed with HTTP {status}; check auth_url",
                    retry=False,
                )
            )

    def auth_frames(self) -> list[Frame]:
        # The token was the authentication: an open socket is an authenticated one (the
        # server sends nothing on open). This queues the joins of every wanted symbol.
        self._authenticated("socket opened with a fresh token")
        return []

    # -- hooks: symbols, join and leave ------------------------------------------------------

    def normalize_symbol(self, symbol: str) -> str:
        """``aapl`` -> ``AAPL``; ``*``, ``lobby`` and ``$FIREHOSE`` -> ``$FIREHOSE``."""
        text = symbol.strip().upper()
        if text in _FIREHOSE_ALIASES:
            return FIREHOSE
        if _SYMBOL_RE.match(text):
            return text
        raise SymbolError(
            f"intrinio: invalid symbol {symbol!r}: use a ticker of 1-20 ASCII letters, digits "
            "or . - / _ ^ = (e.g. AAPL, BRK.B), or '*' for the firehose."
        )

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        head = bytes((JOIN, 1 if self.trades_only else 0))
        frames: list[Frame] = [head + s.encode("ascii") for s in symbols]
        # Intrinio does not acknowledge a join: it is acknowledged once sent (as the SDKs do)
        self._emit(Subscribed(tuple(symbols), "joined"))
        return frames

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        frames: list[Frame] = [bytes((LEAVE,)) + s.encode("ascii") for s in symbols]
        self._emit(Unsubscribed(tuple(symbols), "left"))
        return frames

    # -- parsing -----------------------------------------------------------------------------

    def parse(self, frame: Frame) -> list[Record]:
        if isinstance(frame, str):
            self._on_text(frame)
            return []
        return self._parse_items(frame)

    def _parse_items(self, data: bytes) -> list[Record]:
        """Every item of one binary frame; a broken item ends the frame with one
        MalformedFrame event (the items before it are kept)."""
        total = len(data)
        if not total:
            raise ValueError("empty binary frame")
        records: list[Record] = []
        append = records.append
        trade_unpack = _TRADE_BODY.unpack_from
        quote_unpack = _QUOTE_BODY.unpack_from
        exchanges = _EXCHANGES
        feeds = _FEED_NAMES
        dark = _DARK
        conditions = self._conditions
        prices = self._prices
        count = data[0]
        start = 1
        i = 0
        try:
            for i in range(count):  # noqa: B007 - i names the broken item below
                kind = data[start]
                end = start + data[start + 1]
                body = start + 3 + data[start + 2]
                if end - start < MIN_ITEM or end > total:
                    raise ValueError(f"item length {end - start} does not fit the frame")
                if kind == TRADE:
                    sub, center, price, size, stamp, volume, clen = trade_unpack(data, body)
                    body += 24
                elif kind in (ASK, BID):
                    sub, center, price, size, stamp, clen = quote_unpack(data, body)
                    volume = None
                    body += 20
                else:
                    self._unknown_type(kind)
                    start = end
                    continue
                if body + clen > end:
                    raise ValueError("the condition runs past the item's length")
                symbol = data[start + 3 : start + 3 + data[start + 2]].decode("ascii")
                start = end
                if center == _DISCARDED_CENTER or price == 0.0:
                    continue  # placeholders: OpenBB discards them too
                if kind == TRADE:
                    text = conditions.get(data[body : body + clen], _UNSEEN) if clen else None
                    if text is _UNSEEN:
                        text = self._trade_conditions(data[body : body + clen], sub)
                    darkpool: bool | None = center in dark.get(sub, _NEVER_DARK)
                else:
                    text = (
                        (data[body : body + clen].decode("ascii").strip() or None) if clen else None
                    )
                    darkpool = None
                append(
                    {
                        "date": stamp,
                        "symbol": symbol,
                        "type": _TYPE_NAMES[kind],
                        "exchange": exchanges[center] if center < 256 else _exchange(center),
                        "price": prices.get(price) or self._price(price),
                        "size": size,
                        "volume": volume,
                        "conditions": text,
                        "is_darkpool": darkpool,
                        "feed": feeds[sub],
                    }
                )
        except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
            self._emit(
                MalformedFrame(
                    f"item {i + 1} of {count} unreadable ({type(exc).__name__}: {exc}); "
                    f"{len(records)} record(s) kept",
                    data[:100].hex(),
                )
            )
        return records

    def _price(self, price: float) -> float:
        """A float32 price at its own precision (7 significant digits: 190.11, not
        190.11000061035156); cached, since prices repeat (emptied when full, so it follows
        the prices of the day)."""
        rounded = float(f"{price:.7g}")
        if len(self._prices) >= _PRICE_CACHE_MAX:
            self._prices.clear()
        self._prices[price] = rounded
        return rounded

    def _trade_conditions(self, raw: bytes, subprovider: int) -> str | None:
        """Condition characters -> names joined by "; " (OpenBB's model); cached, since a feed
        uses few distinct combinations."""
        chars = raw.decode("ascii").replace(" ", "").replace("\x00", "")
        if not chars:
            text = None
        elif subprovider == _CBOE_ONE:  # a number of bit flags, not characters
            text = chars
        else:
            text = "; ".join(TRADE_CONDITIONS.get(c, c) for c in chars)
        if len(self._conditions) < _CONDITION_CACHE_MAX:
            self._conditions[raw] = text
        return text

    def _unknown_type(self, kind: int) -> None:
        if kind not in self._unknown_types:
            self._unknown_types.add(kind)
            self._emit(
                ProviderMessage("warning", f"skipping items of unknown type {kind} (not 0/1/2)")
            )

    # -- text control messages ---------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        stripped = text.strip()
        if not stripped:
            return  # an empty keep-alive
        try:
            message = json_loads(stripped)
        except ValueError:
            self._emit(ProviderMessage("warning", stripped[:500]))
            return
        if not isinstance(message, dict) or "event" not in message:
            self._emit(ProviderMessage("info", stripped[:500]))
            return
        event = message.get("event")
        topic = str(message.get("topic") or "")
        payload = message.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        if event == "heartbeat" or (event == "phx_reply" and topic == "phoenix"):
            self._emit(Heartbeat())
        elif event == "phx_reply":
            self._on_reply(topic, payload)
        elif event == "phx_error":
            self._emit(ProviderMessage("error", f"channel {topic or '?'} failed on the server"))
        elif event == "phx_close":
            self._emit(ProviderMessage("warning", f"the server closed channel {topic or '?'}"))
        else:
            self._emit(ProviderMessage("info", stripped[:500]))

    def _on_reply(self, topic: str, payload: Mapping[str, Any]) -> None:
        status = payload.get("status")
        response = payload.get("response")
        reason = response.get("reason") if isinstance(response, dict) else response
        reason_text = str(reason or status or "no reason given")
        channel = _channel_of(topic)
        if status == "ok":
            self._emit(ProviderMessage("info", f"{topic or 'server'}: ok"))
        elif any(word in reason_text.lower() for word in _ENTITLEMENT_WORDS):
            what = "the firehose" if channel == FIREHOSE else f"channel {channel or topic}"
            self._emit(
                ProviderFailed(
                    f"Intrinio refused {what}: {reason_text}. Your plan may not include it "
                    f"(the firehose needs a firehose entitlement; feed={self.feed!r}).",
                    retry=False,
                )
            )
        elif channel and channel in self._wanted:
            self._emit(SubscriptionFailed((channel,), f"{channel}: {reason_text}"))
        else:
            self._emit(ProviderMessage("error", f"{topic or 'server'}: {reason_text}"))


def _channel_of(topic: str) -> str:
    """A Phoenix topic's channel: ``iex:securities:AAPL`` -> ``AAPL``; lobby -> firehose."""
    last = topic.rpartition(":")[2].upper()
    return FIREHOSE if last in _FIREHOSE_ALIASES else last


def _with_path(url: str, path: str) -> str:
    """``url`` with ``path`` when it has none (``ws://h:1`` -> ``ws://h:1/socket/websocket``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=path)
    return urllib.parse.urlunsplit(parts)


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _host(url: str) -> str:
    """Scheme, host and path of ``url``: never its query (the key travels there)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _check(params: dict[str, Any]) -> None:
    check_ws_url("intrinio", params.get("url"), " (the websocket base, e.g. ws://127.0.0.1:PORT)")
    auth_url = params.get("auth_url")
    if auth_url is not None and not str(auth_url).startswith(("http://", "https://")):
        raise InvalidParameterError(
            f"intrinio: auth_url must start with http:// or https://, got {auth_url!r} "
            "(the token endpoint, e.g. http://127.0.0.1:PORT/auth)."
        )


PROVIDER = ProviderSpec(
    name="intrinio",
    description="Intrinio real-time equities (binary websocket): trades, bid and ask.",
    session_class=IntrinioSession,
    params=(
        Param("symbol", str, description="comma-separated tickers, e.g. AAPL,MSFT; * = firehose"),
        Param("asset_type", str, "stock", choices=ASSET_TYPES, description="stock"),
        Param(
            "feed",
            str,
            "realtime",
            choices=FEEDS,
            description="realtime, delayed_sip or nasdaq_basic",
        ),
        Param("trades_only", bool, False, description="trades only (no bid/ask)"),
        Param(
            "api_key",
            str,
            secret=True,
            env="INTRINIO_API_KEY",
            openbb_setting="intrinio_api_key",
            description="Intrinio API key",
        ),
        Param("url", str, None, description="websocket base override, e.g. ws://127.0.0.1:PORT"),
        Param("auth_url", str, None, description="token endpoint override (default: from url)"),
    ),
    docs="docs/providers/intrinio.md",
    check=_check,
)
