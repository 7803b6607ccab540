"""Sans-I/O base for provider sessions: frames in, records and events out, frames to send.

A provider session never touches a socket. The stream driver (``obbws_jupyter.stream``) owns
the websocket and calls, for every connection attempt::

    session.connection_made()            # per-connection state reset; auth frames queued
    for frame in socket:
        records = session.receive(frame) # normalized records (dicts), one parse per frame
        events = session.events_received()
        outgoing = session.data_to_send()

User commands (``subscribe``/``unsubscribe``) go through the same session, which keeps the
wanted symbols in order so that a reconnect replays them (``connection_made`` followed by
``_authenticated`` queues a subscribe for every wanted symbol).

A record is a plain ``dict`` keyed by the names in ``session.fields``. Timestamps
(:attr:`FieldType.TIMESTAMP`) are ``int`` nanoseconds since the Unix epoch, UTC: cheap to make
in a parser, exact, and converted columnar by the store. Missing optional fields may be absent.

This module imports only the standard library: providers import it and nothing else of ours.
"""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError

__all__ = [
    "CAPTURE_VERSION",
    "ENTRY_POINT_GROUP",
    "AuthFailed",
    "Authenticated",
    "Event",
    "Field",
    "FieldType",
    "Heartbeat",
    "InvalidParameterError",
    "MalformedFrame",
    "Param",
    "ProviderFailed",
    "ProviderMessage",
    "ProviderSession",
    "ProviderSpec",
    "Record",
    "StreamEnded",
    "Subscribed",
    "SubscriptionFailed",
    "SymbolError",
    "Unsubscribed",
    "check_ws_url",
    "iso_to_ns",
    "ms_to_ns",
    "read_capture_header",
    "split_symbols",
]

Record = dict[str, Any]
Frame = str | bytes


class FieldType(enum.StrEnum):
    """Column types a provider record may declare (mapped to DuckDB/Arrow by the store)."""

    TIMESTAMP = "timestamp"  # int ns since epoch, UTC -> TIMESTAMPTZ
    STRING = "string"  # str -> VARCHAR
    FLOAT = "float"  # float -> DOUBLE
    INT = "int"  # int -> BIGINT
    BOOL = "bool"  # bool -> BOOLEAN


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a provider's normalized record: a typed column in the results table."""

    name: str
    type: FieldType
    description: str = ""


# -- events a session reports besides records ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The provider accepted the credentials; subscriptions may be sent."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """The provider rejected the credentials. Fatal: reconnecting will not help."""

    message: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The provider acknowledged a subscription."""

    symbols: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The provider acknowledged an unsubscription."""

    symbols: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True, slots=True)
class SubscriptionFailed:
    """The provider refused a subscription; the stream goes on."""

    symbols: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A keep-alive from the provider (any frame also counts as a sign of life)."""


@dataclass(frozen=True, slots=True)
class ProviderMessage:
    """An informational, warning or error message from the provider (logged, not fatal)."""

    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True, slots=True)
class ProviderFailed:
    """The provider reported a failure. ``retry`` says whether a reconnect may help."""

    message: str
    retry: bool = True


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The provider finished the stream on purpose (e.g. a replay reached its end)."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A frame could not be parsed; it was skipped and counted."""

    reason: str
    excerpt: str


Event = (
    Authenticated
    | AuthFailed
    | Subscribed
    | Unsubscribed
    | SubscriptionFailed
    | Heartbeat
    | ProviderMessage
    | ProviderFailed
    | StreamEnded
    | MalformedFrame
)


# -- provider parameters ---------------------------------------------------------------------

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Param:
    """A provider parameter of ``create_connection`` (``symbol``, ``asset_type``, ``api_key``...).

    ``secret`` parameters are credentials: never logged, shown or recorded. ``env`` names an
    environment variable read when the parameter is not given.
    """

    name: str
    type: type = str
    default: Any = _MISSING
    choices: tuple[Any, ...] | None = None
    secret: bool = False
    env: str | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.env is None

    def convert(self, provider: str, value: Any) -> Any:
        """Return ``value`` as this parameter's type, or raise InvalidParameterError."""
        if value is None:
            return None
        try:
            converted = _convert(self.type, value)
        except (TypeError, ValueError, OverflowError):
            shown = "<hidden>" if self.secret else repr(value)
            raise InvalidParameterError(
                f"{provider}: parameter {self.name!r} must be {self.type.__name__}, got {shown}."
            ) from None
        if self.choices is not None:
            candidate = converted.lower() if isinstance(converted, str) else converted
            if candidate not in self.choices:
                shown = "<hidden>" if self.secret else repr(value)
                raise InvalidParameterError(
                    f"{provider}: {self.name}={shown} is not supported; "
                    f"choose one of {', '.join(map(str, self.choices))}."
                )
            converted = candidate
        return converted


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if math.isnan(number):
            raise ValueError(value)
        return number
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(value)
        return int(value)
    if kind is str:
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        if not isinstance(value, (str, int, float)):
            raise TypeError(value)
        return str(value)
    return kind(value)


@dataclass(frozen=True)
class ProviderSpec:
    """What the core needs to know about a provider; found through the entry-point group
    ``obbws_jupyter.providers`` (the entry point's object is a ``ProviderSpec``).

    ``embedded_server`` names (``"module:function"``) an async factory
    ``serve(params: dict) -> server`` with ``.url`` and ``async close()``, started when no ``url``
    is given: the offline ``demo`` and ``replay`` providers serve themselves on 127.0.0.1.
    """

    name: str
    description: str
    session_class: type[ProviderSession]
    params: tuple[Param, ...]
    embedded_server: str | None = None
    docs: str = ""
    check: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def secret_params(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.secret)

    def resolve(self, given: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
        """Validate provider parameters and fill defaults; raise before anything starts."""
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InvalidParameterError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"this provider takes {', '.join(sorted(known))}."
            )
        out: dict[str, Any] = {}
        for p in self.params:
            value = given.get(p.name)
            if value is None and p.env is not None:
                value = environ.get(p.env) or None
            if value is None:
                if p.default is _MISSING:
                    hint = f" or set the environment variable {p.env}" if p.env else ""
                    raise InvalidParameterError(
                        f"{self.name}: parameter {p.name!r} is required; pass {p.name}=...{hint}."
                    )
                value = None if p.default is _MISSING else p.default
            out[p.name] = p.convert(self.name, value)
        if self.check is not None:
            self.check(out)
        return out


ENTRY_POINT_GROUP = "obbws_jupyter.providers"  # where the core finds providers' ProviderSpecs
CAPTURE_VERSION = 1  # format of capture files (obbws_jupyter.capture writes them)


def read_capture_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header line of a capture file: ``{"obbws_capture": 1, "provider": ..., "params":
    {...}}``. Here (stdlib only) so both the core and the replay provider read it one way.
    Raises InvalidParameterError naming the path and what was expected."""
    shown = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block open() forever
        raise _not_a_capture(shown, "not a regular file")
    try:
        with open(path, encoding="utf-8") as file:
            first = file.readline(1 << 20)
    except FileNotFoundError:
        raise InvalidParameterError(f"capture file {shown!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        raise _not_a_capture(shown, f"unreadable: {exc}") from None
    try:
        header = json.loads(first)
    except ValueError:
        raise _not_a_capture(shown, "line 1 is not JSON") from None
    if not isinstance(header, dict) or "obbws_capture" not in header:
        raise _not_a_capture(shown, "no obbws_capture header")
    if header["obbws_capture"] != CAPTURE_VERSION:
        raise _not_a_capture(shown, f"unsupported capture version {header['obbws_capture']!r}")
    if not isinstance(header.get("provider"), str) or not isinstance(header.get("params"), dict):
        raise _not_a_capture(shown, "the header lacks provider/params")
    return header


def _not_a_capture(shown: str, why: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"{shown!r} is not a capture file ({why}); expected JSON lines starting with a header "
        f'like {{"obbws_capture": {CAPTURE_VERSION}, "provider": ..., "params": {{...}}}}, '
        "as written by obbws_jupyter.capture.CaptureWriter."
    )


def check_ws_url(provider: str, url: Any, hint: str = "") -> None:
    """Raise InvalidParameterError unless ``url`` is None or a ws:// / wss:// URL."""
    if url is not None and not str(url).startswith(("ws://", "wss://")):
        raise InvalidParameterError(
            f"{provider}: url must start with ws:// or wss://, got {url!r}{hint}."
        )


def split_symbols(symbols: str | Iterable[str] | None) -> list[str]:
    """``"btcusd, ethusd"`` or ``["btcusd", "ethusd"]`` -> ``["btcusd", "ethusd"]`` (order kept,
    blanks and duplicates dropped)."""
    if symbols is None:
        return []
    items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise SymbolError(f"symbols must be strings, got {item!r}.")
        text = item.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def ms_to_ns(value: Any) -> int:
    """Epoch milliseconds (or ns/us when clearly larger) -> int nanoseconds."""
    number = int(value)
    if number > 10**17:  # already ns
        return number
    if number > 10**14:  # us
        return number * 1_000
    return number * 1_000_000


def iso_to_ns(text: str) -> int:
    """ISO 8601 with an offset (nanosecond digits allowed) -> int nanoseconds UTC."""
    head, dot, rest = text.partition(".")
    frac = ""
    tail = ""
    if dot:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tail = rest[:i], rest[i:]
    stamp = datetime.fromisoformat(head + tail.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    seconds = int(stamp.timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


# -- the session base ------------------------------------------------------------------------


class ProviderSession:
    """Base class of a provider's protocol state machine. Subclasses override the hooks:

    - ``fields`` (class or instance attribute): the record model.
    - ``url()``: where to connect for the configured asset type / feed.
    - ``normalize_symbol(symbol)``: the provider's convention; raise SymbolError if invalid.
    - ``auth_frames()``: frames to send when the connection opens (may be empty).
    - ``subscribe_frames(symbols)`` / ``unsubscribe_frames(symbols)``.
    - ``parse(frame)``: records of one frame; call ``self._emit(...)`` for events and
      ``self._authenticated()`` when the provider accepts the credentials. Raise on a frame it
      cannot read: ``receive`` turns that into a :class:`MalformedFrame` event.

    ``stale_after`` is how long (seconds) a silent connection may last before the driver treats
    it as dead; ``None`` turns the watchdog off.
    """

    provider: ClassVar[str] = ""
    fields: tuple[Field, ...] = ()
    stale_after: float | None = 30.0
    connect_kwargs: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self._wanted: dict[str, None] = {}
        self._acked: dict[str, None] = {}
        self._outgoing: list[Frame] = []
        self._events: list[Event] = []
        self.is_authenticated = False
        initial = split_symbols(self.params.get("symbol"))
        for symbol in self._normalize_all(initial):
            self._wanted[symbol] = None

    # hooks ---------------------------------------------------------------------------------

    def url(self) -> str:
        raise NotImplementedError

    def normalize_symbol(self, symbol: str) -> str:
        return symbol

    def auth_frames(self) -> list[Frame]:
        return []

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        raise NotImplementedError

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        raise NotImplementedError

    def parse(self, frame: Frame) -> list[Record]:
        raise NotImplementedError

    # driver-facing API ---------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols the user wants, in the order asked (replayed on every reconnect)."""
        return tuple(self._wanted)

    @property
    def acknowledged(self) -> tuple[str, ...]:
        """Symbols the provider acknowledged on the current connection."""
        return tuple(self._acked)

    def connection_made(self) -> None:
        """A new socket is open: forget per-connection state and queue the auth frames."""
        self.is_authenticated = False
        self._acked.clear()
        self._outgoing.extend(self.auth_frames())

    def receive(self, frame: Frame) -> list[Record]:
        try:
            return self.parse(frame)
        except Exception as exc:  # a bad frame is reported, never fatal
            text = frame if isinstance(frame, str) else frame[:120].hex()
            self._events.append(MalformedFrame(f"{type(exc).__name__}: {exc}", text[:200]))
            return []

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[Frame]:
        frames, self._outgoing = self._outgoing, []
        return frames

    def subscribe(self, symbols: str | Iterable[str]) -> list[str]:
        """Add symbols (validated, normalized); returns the new ones. Frames are queued only
        while authenticated; otherwise they go out after the next authentication."""
        new = [s for s in self._normalize_all(split_symbols(symbols)) if s not in self._wanted]
        for symbol in new:
            self._wanted[symbol] = None
        if new and self.is_authenticated:
            self._outgoing.extend(self.subscribe_frames(new))
        return new

    def unsubscribe(self, symbols: str | Iterable[str]) -> list[str]:
        """Remove symbols; returns those that were subscribed."""
        gone = [s for s in self._normalize_all(split_symbols(symbols)) if s in self._wanted]
        for symbol in gone:
            del self._wanted[symbol]
            self._acked.pop(symbol, None)
        if gone and self.is_authenticated:
            self._outgoing.extend(self.unsubscribe_frames(gone))
        return gone

    def normalize(self, symbols: str | Iterable[str]) -> list[str]:
        """Normalize symbols without subscribing (raises SymbolError for invalid ones)."""
        return self._normalize_all(split_symbols(symbols))

    # helpers for subclasses ----------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, Subscribed):
            for symbol in event.symbols:
                self._acked[symbol] = None
        elif isinstance(event, Unsubscribed):
            for symbol in event.symbols:
                self._acked.pop(symbol, None)

    def _send(self, frame: Frame) -> None:
        self._outgoing.append(frame)

    def _authenticated(self, message: str = "") -> None:
        """Call from ``parse`` when the provider accepts the credentials."""
        self.is_authenticated = True
        self._events.append(Authenticated(message))
        if self._wanted:
            self._outgoing.extend(self.subscribe_frames(list(self._wanted)))

    def _normalize_all(self, symbols: Sequence[str]) -> list[str]:
        out: dict[str, None] = {}
        for symbol in symbols:
            out.setdefault(self.normalize_symbol(symbol), None)
        return list(out)
