"""The sans-I/O session base: frames in, records and events out, frames to send."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from obbws_jupyter.protocol._events import (
    Authenticated,
    Event,
    MalformedFrame,
    Subscribed,
    Unsubscribed,
)
from obbws_jupyter.protocol._http import HttpRequest, HttpResponse
from obbws_jupyter.protocol._records import Field, Frame, Record
from obbws_jupyter.protocol._values import split_symbols

__all__ = ["ProviderSession"]


class ProviderSession:
    """Base class of a provider's protocol state machine. Subclasses override the hooks:

    - ``fields`` (class or instance attribute): the record model.
    - ``url()``: where to connect for the configured asset type / feed.
    - ``normalize_symbol(symbol)``: the provider's convention; raise SymbolError if invalid.
    - ``http_requests()`` / ``http_response(request, response)``: HTTP steps before each
      connection attempt (a token exchange); ``url()`` is asked again after them. Report a
      rejected key with ``self._emit(AuthFailed(...))``.
    - ``auth_frames()``: frames to send when the connection opens (may be empty).
    - ``subscribe_frames(symbols)`` / ``unsubscribe_frames(symbols)``.
    - ``parse(frame)``: records of one frame; call ``self._emit(...)`` for events and
      ``self._authenticated()`` when the provider accepts the credentials. Raise on a frame it
      cannot read: ``receive`` turns that into a :class:`MalformedFrame` event.

    ``stale_after`` is how long (seconds) a silent connection may last before the driver treats
    it as dead; ``None`` turns the watchdog off. ``text_as_bytes``: ``parse`` reads a text
    frame given as its UTF-8 ``bytes`` exactly as the ``str`` (a JSON-only session decoding
    with :func:`json_loads`), so the driver skips decoding it; leave it False for a session
    that tells text from binary frames by their type.
    """

    provider: ClassVar[str] = ""
    fields: tuple[Field, ...] = ()
    stale_after: float | None = 30.0
    connect_kwargs: ClassVar[Mapping[str, Any]] = {}
    text_as_bytes: ClassVar[bool] = False

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

    def http_requests(self) -> list[HttpRequest]:
        return []

    def http_response(self, request: HttpRequest, response: HttpResponse) -> None:
        return None

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
            reason = f"{type(exc).__name__}: {exc}"
            self._events.append(MalformedFrame(reason, self.excerpt(frame)))
            return []

    def excerpt(self, frame: Frame) -> str:
        """The start of a frame as a log line shows it: text as text (a text frame given as
        bytes too, see ``text_as_bytes``), a binary frame in hex."""
        if isinstance(frame, str):
            return frame[:200]
        if self.text_as_bytes:
            return frame[:200].decode("utf-8", "replace")
        return frame[:100].hex()

    @property
    def has_output(self) -> bool:
        """Events to report or frames to send are waiting: the driver's per-frame check,
        which allocates nothing (most frames only carry records)."""
        return bool(self._events or self._outgoing)

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
