"""The Polygon session (sans-I/O) and its provider spec.

Wire protocol (Polygon's websocket docs, reference §9.2 and §14.1; every server frame is a JSON
array, fixtures in ``tests/fixtures/polygon.jsonl``)::

    server  [{"ev":"status","status":"connected","message":"Connected Successfully"}]
    client  {"action":"auth","params":"<API key>"}
    server  [{"ev":"status","status":"auth_success","message":"authenticated"}]
    client  {"action":"subscribe","params":"XT.BTC-USD,XT.ETH-USD"}
    server  [{"ev":"status","status":"success","message":"subscribed to: XT.BTC-USD"},
             {"ev":"status","status":"success","message":"subscribed to: XT.ETH-USD"}]
    server  [{"ev":"XT","pair":"BTC-USD","p":65001.5,"s":0.01,"x":1,"t":...,"r":...}, ...]
    client  {"action":"unsubscribe","params":"XT.ETH-USD"}
    server  [{"ev":"status","status":"success","message":"unsubscribed to: XT.ETH-USD"}]

Status elements, by ``status``: ``connected`` (send the key), ``auth_success``,
``auth_failed`` (fatal), ``success`` (acks), ``error``, ``auth_timeout`` (the key came too
late: reconnect), ``max_connections`` (another connection uses the key: fatal, no reconnect
storm); a message "Your plan doesn't include websocket access" is fatal whatever its status.
Polygon sends no heartbeat, so the staleness watchdog is off (``stale_after = None``): a quiet
ticker is legitimately silent, and websocket pings still guard the socket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from obbws_jupyter.protocol import (
    AuthFailed,
    Field,
    Frame,
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
    split_symbols,
)
from obbws_providers.polygon._channels import (
    ASSET_TYPES,
    FEED_MAP,
    FEEDS,
    GROUP,
    MARKET,
    MAX_OPTION_CONTRACTS,
    check_feed,
    default_url,
    normalize,
)
from obbws_providers.polygon._records import (
    CHANNEL_MODELS,
    MODEL_FIELDS,
    MODELS,
    Parser,
    fields_for,
)

#: the frame decoder (orjson; a module global so that a test can swap in the stdlib's)
_loads: Callable[[str | bytes], Any] = json_loads

__all__ = ["PROVIDER", "PolygonSession"]

_SUBSCRIBED = "subscribed to: "
_UNSUBSCRIBED = "unsubscribed to: "
_PLAN_REFUSED = "plan doesn't include websocket access"  # in "Your plan doesn't include ..."


class PolygonSession(ProviderSession):
    """Polygon's websocket protocol for one asset type (see the package docstring).

    Symbols are subscription keys ``<channel>.<ticker>`` (``XT.BTC-USD``); records carry the
    ticker as Polygon sends it (``BTC-USD``). The table (``fields``) is the union of the
    models of the feed's channel and of the channels named in the initial symbols; a later
    subscription to a channel whose fields the table lacks is refused with SymbolError.
    """

    provider = "polygon"
    text_as_bytes = True  # JSON text frames only: read from bytes, never decoded first
    stale_after = None  # no heartbeat in Polygon's protocol; quiet tickers send nothing

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.asset_type = _choice("asset_type", params.get("asset_type") or "crypto", ASSET_TYPES)
        self.feed = _choice("feed", params.get("feed") or "aggs_sec", FEEDS)
        check_feed(self.asset_type, self.feed)
        self.group = GROUP[self.asset_type]
        self.market = MARKET[self.asset_type]
        self.channel = FEED_MAP[self.group][self.feed]
        channels = {self.channel}
        for item in split_symbols(params.get("symbol")):
            channels.add(_channel(normalize(item, self.asset_type, self.feed)))
        self.fields, self._parsers = _table(self.group, channels)
        self._status: dict[str, Callable[[str], None]] = {
            "connected": self._on_connected,
            "auth_success": self._on_auth_success,
            "auth_failed": self._on_auth_failed,
            "success": self._on_success,
            "error": self._on_error,
            "auth_timeout": self._on_auth_timeout,
            "max_connections": self._on_max_connections,
        }
        super().__init__(params)
        self._check_option_count(0)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        """``url=`` if given (a URL without a path gets the market's: ``/crypto``...), else
        Polygon's cluster for the asset type and feed."""
        given = self.params.get("url")
        if not given:
            return default_url(self.asset_type, self.feed)
        parts = urlsplit(str(given))
        if parts.path.strip("/"):
            return str(given)
        return urlunsplit(parts._replace(path=f"/{self.market}"))

    def normalize_symbol(self, symbol: str) -> str:
        key = normalize(symbol, self.asset_type, self.feed)
        channel = _channel(key)
        if channel not in self._parsers:
            columns = {f.name for f in self.fields}
            missing = [
                n for n in MODEL_FIELDS[CHANNEL_MODELS[self.group][channel]] if n not in columns
            ]
            raise SymbolError(
                f"polygon: {key} cannot join this connection: its table was made for "
                f"{', '.join(sorted(self._parsers))} events and lacks {', '.join(missing)}. "
                f"Name {channel}.<ticker> items in symbol= when creating the connection (a "
                "mixed list widens the table), or open another connection."
            )
        return key

    def auth_frames(self) -> list[Frame]:
        return []  # the key goes out when the server says "connected"

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [_action("subscribe", ",".join(symbols))]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        return [_action("unsubscribe", ",".join(symbols))]

    def subscribe(self, symbols: str | Iterable[str]) -> list[str]:
        new = [s for s in self.normalize(symbols) if s not in self._wanted]
        self._check_option_count(len(new))
        return super().subscribe(new)

    def parse(self, frame: Frame) -> list[Record]:
        data = _loads(frame)
        if type(data) is not list:
            raise ValueError(f"expected a JSON array of events, got {type(data).__name__}")
        parsers = self._parsers
        try:
            # the hot path: every element an event of this table, built in one pass (the
            # parse functions are pure, so a frame that fails here is simply read again below)
            return [parsers[event["ev"]](event) for event in data]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return self._parse_each(data, frame)  # status, other channels or bad elements

    def _parse_each(self, data: list[Any], frame: Frame) -> list[Record]:
        """Element by element: events, status elements; a bad element is counted (one
        MalformedFrame for the frame) and the others are kept."""
        records: list[Record] = []
        append = records.append
        parsers = self._parsers
        bad = 0
        for event in data:
            try:
                parse = parsers.get(event["ev"])
                if parse is not None:
                    append(parse(event))
                elif event["ev"] == "status":
                    self._on_status(event)
                # events of channels this connection's table does not hold are ignored
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                bad += 1
        if bad:
            self._emit(
                MalformedFrame(
                    f"{bad} of {len(data)} elements are not valid Polygon events",
                    self.excerpt(frame),
                )
            )
        return records

    # status elements -------------------------------------------------------------------------

    def _on_status(self, event: dict[str, Any]) -> None:
        message = str(event.get("message", ""))
        if _PLAN_REFUSED in message.lower():
            self._emit(AuthFailed(self._plan_message(message)))
            return
        handler = self._status.get(event["status"])
        if handler is None:
            self._emit(ProviderMessage("info", message or str(event["status"])))
        else:
            handler(message)

    def _on_connected(self, message: str) -> None:
        self._send(_action("auth", str(self.params.get("api_key") or "")))
        self._emit(ProviderMessage("info", message))

    def _on_auth_success(self, message: str) -> None:
        if not self.is_authenticated:
            self._authenticated(message)

    def _on_auth_failed(self, message: str) -> None:
        self._emit(AuthFailed(message or "authentication failed"))

    def _on_success(self, message: str) -> None:
        if message.startswith(_SUBSCRIBED):
            self._emit(Subscribed(_keys(message[len(_SUBSCRIBED) :]), message))
        elif message.startswith(_UNSUBSCRIBED):
            self._emit(Unsubscribed(_keys(message[len(_UNSUBSCRIBED) :]), message))
        else:
            self._emit(ProviderMessage("info", message))

    def _on_error(self, message: str) -> None:
        named = tuple(key for key in self._wanted if key in message)
        if named:
            self._emit(SubscriptionFailed(named, message))
        else:
            self._emit(ProviderMessage("error", message))

    def _on_auth_timeout(self, message: str) -> None:
        self._emit(ProviderFailed(f"Polygon closed the connection: {message}", retry=True))

    def _on_max_connections(self, message: str) -> None:
        self._emit(
            ProviderFailed(
                f"Polygon refused the connection: {message} Polygon allows one connection per "
                "cluster and API key: close the other connection using this key (another "
                "notebook, kernel, program or OpenBB session), then restart this one.",
                retry=False,
            )
        )

    # helpers ---------------------------------------------------------------------------------

    def _plan_message(self, message: str) -> str:
        delayed = ", ".join(a for a in ASSET_TYPES if a.endswith("_delayed"))
        return (
            f"{message.rstrip('.')}. The key was accepted but its plan has no websocket access "
            f"to {self.url()} (asset_type={self.asset_type!r}, feed={self.feed!r}); use a "
            f"plan that includes it, or a delayed asset type ({delayed}) if the plan has "
            "delayed data"
        )

    def _check_option_count(self, adding: int) -> None:
        if self.group == "options" and len(self._wanted) + adding > MAX_OPTION_CONTRACTS:
            raise SymbolError(
                f"polygon: at most {MAX_OPTION_CONTRACTS} option contracts per connection "
                f"(Polygon's limit); this would make {len(self._wanted) + adding}. Split them "
                "over several connections."
            )


def _action(action: str, params: str) -> str:
    """A client frame, compact as in Polygon's docs: ``{"action":"auth","params":"..."}``."""
    return json.dumps({"action": action, "params": params}, separators=(",", ":"))


def _table(group: str, channels: set[str]) -> tuple[tuple[Field, ...], dict[str, Parser]]:
    """The fields of a connection receiving ``channels`` (the union of their models), and a
    parse function for every channel whose model fits in them (other events are ignored)."""
    models = CHANNEL_MODELS[group]
    fields = fields_for({models[c] for c in channels})
    columns = {f.name for f in fields}
    parsers = {
        channel: MODELS[model]
        for channel, model in models.items()
        if columns.issuperset(MODEL_FIELDS[model])
    }
    return fields, parsers


def _channel(key: str) -> str:
    return key.partition(".")[0]


def _keys(text: str) -> tuple[str, ...]:
    """``"XT.BTC-USD,XT.ETH-USD"`` -> the subscription keys, as the session names them."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    text = str(value).lower()
    if text not in choices:
        raise InvalidParameterError(
            f"polygon: {name}={value!r} is not supported; choose one of {', '.join(choices)}."
        )
    return text


def _check(params: dict[str, Any]) -> None:
    check_feed(params["asset_type"], params["feed"])
    check_ws_url(
        "polygon",
        params.get("url"),
        " (e.g. wss://socket.polygon.io, wss://socket.massive.com or a fake server's ws:// URL)",
    )


PROVIDER = ProviderSpec(
    name="polygon",
    description="Polygon.io (Massive) websockets: stocks, options, indices, forex and crypto; "
    "real-time or delayed.",
    session_class=PolygonSession,
    params=(
        Param(
            "symbol",
            str,
            description="comma-separated tickers (BTCUSD, XAUUSD, SPX, AAPL, OCC contracts); "
            "* = all (not options); a channel prefix mixes feeds (XQ.BTCUSD,XT.ETHUSD)",
        ),
        Param(
            "asset_type",
            str,
            "crypto",
            choices=ASSET_TYPES,
            description="the market; *_delayed use Polygon's 15-minute delayed cluster",
        ),
        Param(
            "feed",
            str,
            "aggs_sec",
            choices=FEEDS,
            description="aggs_min, aggs_sec, trade, quote, l2 (crypto), fmv (Business plans), "
            "value (index)",
        ),
        Param(
            "api_key",
            str,
            secret=True,
            env="POLYGON_API_KEY",
            openbb_setting="polygon_api_key",
            description="Polygon (Massive) API key",
        ),
        Param(
            "url",
            str,
            None,
            description="websocket URL instead of Polygon's (a fake server, or "
            "wss://socket.massive.com); without a path the market's is added",
        ),
    ),
    docs="docs/providers/polygon.md",
    check=_check,
)
