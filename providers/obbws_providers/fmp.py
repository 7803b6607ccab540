"""The ``fmp`` provider: Financial Modeling Prep's websockets for stocks, forex and crypto.

What it supports (FMP docs "Company / Forex / Crypto Web Socket API"; OpenBB reference §9.3,
§14.3):

==========  ==============================================  ===========================
asset_type  URL                                             events
==========  ==============================================  ===========================
``stock``   ``wss://websockets.financialmodelingprep.com``  trades, quotes, breaks
``fx``      ``wss://forex.financialmodelingprep.com``       quotes (trades if sent)
``crypto``  ``wss://crypto.financialmodelingprep.com``      trades, quotes (default)
==========  ==============================================  ===========================

Symbols: comma-separated, any case; sent lower-case (``aapl``, ``eurusd``, ``btcusd``),
upper-case in records as OpenBB does. For fx and crypto ``-`` and ``/`` are dropped
(``BTC/USD`` -> ``btcusd``). FMP has no "all symbols" wildcard.

Credentials: ``api_key=``, else ``FMP_API_KEY``, else ``fmp_api_key`` in OpenBB's user
settings. ``url=`` replaces the asset type's URL as given (e.g. ``url=fake.url`` for
:mod:`obbws_jupyter.fakes.fmp`).

The protocol (control frames are ``{"event": ..., "status": ..., "message": ...}``)::

    client  {"event":"login","data":{"apiKey":"<key>"}}
    server  {"event":"login","status":200,"message":"Authenticated"}   (401 "Unauthorized")
    client  {"event":"subscribe","data":{"ticker":["btcusd","ethusd"]}}
    server  {"event":"subscribe","status":200,"message":"Subscribed to btcusd,ethusd"}
    server  {"s":"btcusd","t":1734040670164,"e":"binance","type":"T","lp":99818.1,"ls":0.01}
    server  {"event":"heartbeat","timestamp":1734040670164}
    client  {"event":"unsubscribe","data":{"ticker":["ethusd"]}}

FMP documents the login, subscribe and unsubscribe frames and the data fields; it does not
document its acknowledgements, so the session accepts any login reply that is not a refusal.
Refusals: ``"Unauthorized"`` (or status 401) is a rejected key (fatal credentials error); a
message containing "you are not authorized" means the plan lacks websocket access (fatal).
FMP allows **one websocket per API key**: when another program logs in with the same key, FMP
sends "Connected from another location" to the older connection and closes it. That is
reported as a fatal error naming the cause (no reconnect, which would only kick the other
program off in turn).

Records, one per data event, named as OpenBB's ``FmpWebSocketData``: ``date`` (``t``: epoch
ms, epoch ns or ISO 8601, as int ns UTC), ``symbol`` (``s``, upper-case), ``exchange`` (``e``),
``type`` (``T`` trade, ``Q`` quote, ``B`` break), ``bid_price`` (``bp``), ``bid_size``
(``bs``), ``ask_price`` (``ap``), ``ask_size`` (``as``), ``last_price`` (``lp``),
``last_size`` (``ls``). Fields an event does not carry are absent (NULL in the table).

OpenBB mistakes fixed here: subscriptions made after connecting survive reconnects (OpenBB
re-subscribed only the initial symbols); "Connected from another location" ends the stream with
an explanation instead of a silent exit; naive timestamps are not localized to New York (all
dates are UTC instants); no fixed sleeps while logging in.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from obbws_jupyter.protocol import (
    AuthFailed,
    Field,
    FieldType,
    Frame,
    Heartbeat,
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
    ms_to_ns,
)
from obbws_providers._tickers import normalize_ticker

__all__ = ["ASSET_TYPES", "FIELDS", "PROVIDER", "URLS", "FmpSession"]

ASSET_TYPES = ("stock", "fx", "crypto")
URLS = {
    "stock": "wss://websockets.financialmodelingprep.com",
    "fx": "wss://forex.financialmodelingprep.com",
    "crypto": "wss://crypto.financialmodelingprep.com",
}

FIELDS = (
    Field("date", FieldType.TIMESTAMP, "FMP's event time"),
    Field("symbol", FieldType.STRING, "ticker, upper-case (e.g. AAPL, BTCUSD)"),
    Field("exchange", FieldType.STRING, "venue, when FMP names one"),
    Field("type", FieldType.STRING, '"trade", "quote" or "break"'),
    Field("bid_price", FieldType.FLOAT, "best bid price (quotes)"),
    Field("bid_size", FieldType.FLOAT, "size at the best bid (quotes)"),
    Field("ask_price", FieldType.FLOAT, "best ask price (quotes)"),
    Field("ask_size", FieldType.FLOAT, "size at the best ask (quotes)"),
    Field("last_price", FieldType.FLOAT, "trade price (trades and breaks)"),
    Field("last_size", FieldType.FLOAT, "trade size (trades and breaks)"),
)

UNAUTHORIZED = "Unauthorized"
NOT_AUTHORIZED = "you are not authorized"
ANOTHER_LOCATION = "Connected from another location"

_STOCK_RE = re.compile(r"^[a-z0-9^][a-z0-9.\-^=]{0,19}$")
_STOCK_RULE = "1-20 letters, digits, '.', '-', '^' or '=' (e.g. aapl, brk-b, ^gspc)"
_TICKERS_AFTER = re.compile(r"\b(?:to|from):?\s+(.+)$", re.IGNORECASE)


def _date(value: Any) -> int:
    """``t`` as int ns UTC: epoch ms (crypto, fx), epoch ns (stocks) or ISO 8601."""
    if type(value) is int:
        return value if value > 10**17 else value * 1_000_000
    if isinstance(value, str):
        return iso_to_ns(value)
    return ms_to_ns(value)


def _trade(message: dict[str, Any], kind: str) -> Record:
    record: Record = {
        "date": _date(message["t"]),
        "symbol": message["s"].upper(),
        "type": kind,
        "last_price": message.get("lp"),
        "last_size": message.get("ls"),
    }
    exchange = message.get("e")
    if exchange is not None:
        record["exchange"] = exchange
    return record


def _quote(message: dict[str, Any], kind: str) -> Record:
    get = message.get
    record: Record = {
        "date": _date(message["t"]),
        "symbol": message["s"].upper(),
        "type": kind,
        "bid_price": get("bp"),
        "bid_size": get("bs"),
        "ask_price": get("ap"),
        "ask_size": get("as"),
    }
    exchange = get("e")
    if exchange is not None:
        record["exchange"] = exchange
    return record


#: data parsers by ``type``: name in the record and the function that builds it
_DATA = {"T": ("trade", _trade), "Q": ("quote", _quote), "B": ("break", _trade)}


class FmpSession(ProviderSession):
    """FMP's websocket protocol as a sans-I/O state machine (see the module docstring)."""

    provider = "fmp"
    text_as_bytes = True  # JSON text frames only: read from bytes, never decoded first
    fields = FIELDS
    # FMP's heartbeat interval is undocumented and quiet tickers may be silent for long:
    # no staleness limit (websocket pings still guard the socket; stale_timeout= sets one)
    stale_after = None

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.asset_type = str(params.get("asset_type") or "crypto").lower()
        self._pending: deque[tuple[str, tuple[str, ...]]] = deque()
        super().__init__(params)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        given = self.params.get("url")
        return str(given) if given else URLS[self.asset_type]

    def normalize_symbol(self, symbol: str) -> str:
        return normalize_ticker("fmp", self.asset_type, symbol, _STOCK_RE, _STOCK_RULE)

    def connection_made(self) -> None:
        self._pending.clear()
        super().connection_made()

    def auth_frames(self) -> list[Frame]:
        return [json.dumps({"event": "login", "data": {"apiKey": self.params["api_key"]}})]

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [self._tickers("subscribe", symbols)]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [self._tickers("unsubscribe", symbols)]

    def parse(self, frame: Frame) -> list[Record]:
        message = json_loads(frame)
        if type(message) is not dict:
            raise ValueError(f"expected a JSON object, got {type(message).__name__}")
        event = message.get("event")
        if event is None:
            kind, build = _DATA[message["type"]]
            return [build(message, kind)]
        self._on_control(str(event), message)
        return []

    # control frames --------------------------------------------------------------------------

    def _on_control(self, event: str, message: dict[str, Any]) -> None:
        text = str(message.get("message") or "")
        status = message.get("status")
        refusal = self._refusal(text)
        if refusal is not None:
            self._emit(refusal)
            return
        if event == "login":
            self._on_login(status, text)
            return
        if not self.is_authenticated:
            # FMP does not document its login reply: as OpenBB does, the first reply that is
            # not a refusal means logged in (then the frame is handled as what it is)
            self._on_login(status, text)
        if event == "heartbeat":
            self._emit(Heartbeat())
        elif event in ("subscribe", "unsubscribe"):
            self._on_ack(event, status, text)
        else:
            level = "error" if isinstance(status, int) and status >= 400 else "info"
            self._emit(ProviderMessage(level, f"fmp {event}: {text or message}"))

    def _refusal(self, text: str) -> ProviderFailed | None:
        """The fatal refusals FMP words in any control frame (OpenBB matches the same text)."""
        lowered = text.lower()
        if ANOTHER_LOCATION.lower() in lowered:
            return ProviderFailed(
                f"FMP closed this connection: {text!r}. FMP allows one websocket per API key, "
                "and another program (or another obbws connection) logged in with the same "
                "key. Stop the other one, then restart_connection(); reconnecting now would "
                "only disconnect it in turn.",
                retry=False,
            )
        if NOT_AUTHORIZED in lowered:
            return ProviderFailed(
                f"FMP refused access: {text!r}. Your FMP plan does not include the "
                f"{self.asset_type} websocket; check it at financialmodelingprep.com.",
                retry=False,
            )
        return None

    def _on_login(self, status: Any, text: str) -> None:
        if text.strip().lower() == UNAUTHORIZED.lower() or status in (401, 403):
            self._emit(
                AuthFailed(
                    f"FMP: {text or 'login refused'}. Account not authorized: check that the "
                    "API key is entered correctly and is entitled to websocket access"
                )
            )
        elif not self.is_authenticated:
            self._authenticated(f"fmp: {text or 'logged in'}")

    def _on_ack(self, event: str, status: Any, text: str) -> None:
        """An acknowledgement: the symbols it names, or else those of the oldest request."""
        asked = self._take_pending(event, text)
        if not asked:
            return
        if isinstance(status, int) and status >= 400:
            if event == "subscribe":
                self._emit(SubscriptionFailed(asked, f"FMP: {text or status}"))
            else:
                self._emit(ProviderMessage("error", f"FMP unsubscribe refused: {text}"))
        elif event == "subscribe":
            self._emit(Subscribed(asked, text))
        else:
            self._emit(Unsubscribed(asked, text))

    def _take_pending(self, event: str, text: str) -> tuple[str, ...]:
        named = _named_tickers(text)
        for i, (action, asked) in enumerate(self._pending):
            if action != event:
                continue
            if not named:
                del self._pending[i]
                return asked
            hit = tuple(s for s in asked if s in named)
            if hit:
                rest = tuple(s for s in asked if s not in named)
                if rest:
                    self._pending[i] = (action, rest)
                else:
                    del self._pending[i]
                return hit
        return ()

    # helpers ---------------------------------------------------------------------------------

    def _tickers(self, event: str, symbols: Sequence[str]) -> str:
        self._pending.append((event, tuple(symbols)))
        return json.dumps({"event": event, "data": {"ticker": list(symbols)}})


def _named_tickers(text: str) -> set[str]:
    """Tickers an acknowledgement names ("Subscribed to btcusd,ethusd", "Unsubscribed from
    ethusd"), lower-case."""
    match = _TICKERS_AFTER.search(text)
    if match is None:
        return set()
    return {t for t in re.split(r"[\s,;\[\]'\"]+", match.group(1).lower()) if t}


def _check(params: dict[str, Any]) -> None:
    check_ws_url("fmp", params.get("url"), " (leave it out for FMP's own URL)")


PROVIDER = ProviderSpec(
    name="fmp",
    description="Financial Modeling Prep websockets: stocks, forex, crypto (API key required).",
    session_class=FmpSession,
    params=(
        Param("symbol", str, description="comma-separated tickers, e.g. btcusd,ethusd"),
        Param("asset_type", str, "crypto", choices=ASSET_TYPES, description="stock, fx, crypto"),
        Param(
            "api_key",
            str,
            secret=True,
            env="FMP_API_KEY",
            openbb_setting="fmp_api_key",
            description="FMP API key (one websocket per key)",
        ),
        Param("url", str, None, description="websocket URL (default: FMP's for the asset type)"),
    ),
    docs="docs/providers/fmp.md",
    check=_check,
)
