"""The ``replay`` provider: plays back a capture file (``obbws_jupyter.capture``) as a live stream.

The core starts :mod:`obbws_jupyter.offline.replay_server` on 127.0.0.1 (unless ``url`` is
given), which sends the recorded frames with their recorded timing (divided by ``speed``) and
then the end marker ``{"obbws_replay":"end","frames":N}``. :class:`ReplaySession` parses the
frames with the *recorded provider's own session* (found through the entry points, like any
provider), so a replay yields exactly the records the live stream did.

What the inner session would send (auth, subscribe) is dropped, and so are its auth and
subscription events: a replay is authenticated as soon as it connects and acknowledges
subscriptions itself (a capture may start mid-stream, without any auth frames).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from obbws_jupyter.protocol import (
    Authenticated,
    AuthFailed,
    Frame,
    InvalidParameterError,
    Param,
    ProviderFailed,
    ProviderMessage,
    ProviderSession,
    ProviderSpec,
    Record,
    StreamEnded,
    Subscribed,
    SubscriptionFailed,
    UnknownProviderError,
    Unsubscribed,
    available_providers,
    check_ws_url,
    get_provider,
    read_capture_header,
)

__all__ = ["END_MARKER_KEY", "PROVIDER", "ReplaySession", "read_capture_header"]

END_MARKER_KEY = "obbws_replay"
_END_PREFIX = '{"' + END_MARKER_KEY + '"'
_SWALLOWED = (Authenticated, AuthFailed, Subscribed, Unsubscribed, SubscriptionFailed)


def _recorded_spec(path: str, name: str) -> ProviderSpec:
    if name == "replay":
        raise InvalidParameterError(
            f"replay: {path!r} was recorded from a replay; replay the original capture instead."
        )
    try:
        return get_provider(name)
    except UnknownProviderError:
        known = ", ".join(p for p in available_providers() if p != "replay") or "none"
        raise InvalidParameterError(
            f"replay: {path!r} was recorded from provider {name!r}, which is not installed "
            f"(installed providers: {known})."
        ) from None


def _inner_params(
    path: str, spec: ProviderSpec, header: Mapping[str, Any], symbol: Any
) -> dict[str, Any]:
    """The recorded parameters (unknown ones dropped, placeholders for secrets), resolved."""
    known = {p.name for p in spec.params}
    given = {k: v for k, v in header["params"].items() if k in known and k != "url"}
    if symbol is not None:
        given["symbol"] = symbol
    for p in spec.params:
        if p.secret and given.get(p.name) is None:
            given[p.name] = "replay"  # never recorded; the inner session sends nothing anyway
    try:
        return spec.resolve(given, {})
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            f"replay: the header of {path!r} does not fit provider {spec.name!r}: {exc}"
        ) from None


class ReplaySession(ProviderSession):
    """Parses a replayed stream with the recorded provider's session (see module docstring).

    ``symbol`` given: only records of the wanted symbols pass (subscribe/unsubscribe change
    that set). Not given: every record of the capture passes, except symbols the user has
    unsubscribed since (subscribing again lets them through).
    """

    provider = "replay"
    stale_after = None  # a replay may be paused by its timing or finished: no watchdog
    connect_kwargs: ClassVar[Mapping[str, Any]] = {"compression": None}  # our server: none

    def __init__(self, params: Mapping[str, Any]) -> None:
        path = params.get("path")
        if not path:
            raise InvalidParameterError("replay: parameter 'path' (the capture file) is required.")
        self.path = str(path)
        self.header = read_capture_header(self.path)
        self.recorded_provider: str = self.header["provider"]
        spec = _recorded_spec(self.path, self.recorded_provider)
        explicit = params.get("symbol")
        self.inner: ProviderSession = spec.session_class(
            _inner_params(self.path, spec, self.header, explicit)
        )
        self.fields = self.inner.fields
        self.explicit = explicit is not None
        self._excluded: set[str] = set()
        self.frames_replayed = 0
        super().__init__(params)
        if not self.explicit:
            self._wanted = dict.fromkeys(self.inner.symbols)

    # hooks -----------------------------------------------------------------------------------

    def url(self) -> str:
        url = self.params.get("url")
        if not url:
            raise InvalidParameterError(
                "replay: no server URL; create_connection starts the embedded replay server, "
                "or pass url='ws://HOST:PORT' of one started elsewhere."
            )
        return str(url)

    def normalize_symbol(self, symbol: str) -> str:
        return self.inner.normalize_symbol(symbol)

    def connection_made(self) -> None:
        super().connection_made()
        # the inner session starts a fresh connection too; whatever it wants to send is dropped
        self.inner.connection_made()
        self.inner.data_to_send()
        self.inner.events_received()
        self._authenticated(f"replaying {self.path}")

    def subscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        # nothing to ask upstream: acknowledge locally and adjust the filter
        self._excluded.difference_update(symbols)
        self._emit(Subscribed(tuple(symbols), "replay"))
        return []

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[Frame]:
        if not self.explicit:
            self._excluded.update(symbols)
        self._emit(Unsubscribed(tuple(symbols), "replay"))
        return []

    def parse(self, frame: Frame) -> list[Record]:
        if isinstance(frame, str) and frame.startswith(_END_PREFIX):
            self._on_end(frame)
            return []
        self.frames_replayed += 1
        inner = self.inner
        records = inner.receive(frame)
        inner.data_to_send()  # the inner session's replies are never sent
        for event in inner.events_received():
            if isinstance(event, _SWALLOWED):
                continue
            if isinstance(event, ProviderFailed):  # recorded, not happening now
                event = ProviderMessage("error", f"recorded provider failure: {event.message}")
            self._emit(event)
        if self.explicit:
            wanted = self._wanted
            if "*" not in wanted:
                records = [r for r in records if r.get("symbol") in wanted]
        elif self._excluded:
            excluded = self._excluded
            records = [r for r in records if r.get("symbol") not in excluded]
        return records

    def _on_end(self, frame: str) -> None:
        marker = json.loads(frame)
        frames = marker.get("frames", self.frames_replayed)
        self._emit(StreamEnded(f"replay finished after {frames} frames"))


def _check(params: dict[str, Any]) -> None:
    speed = params.get("speed")
    if speed is not None and not speed >= 0.0:
        raise InvalidParameterError(
            f"replay: speed must be >= 0 (1 = recorded timing, 10 = ten times faster, "
            f"0 = as fast as possible), got {speed!r}."
        )
    path = str(params["path"])
    _recorded_spec(path, read_capture_header(path)["provider"])
    check_ws_url("replay", params.get("url"), " (leave it out to use the embedded replay server)")


PROVIDER = ProviderSpec(
    name="replay",
    description="Replays a capture file recorded from any provider, offline.",
    session_class=ReplaySession,
    params=(
        Param("path", str, description="the capture file (obbws_jupyter.capture)"),
        Param("speed", float, 1.0, description="1 = recorded timing, 10 = 10x, 0 = max speed"),
        Param("loop", bool, False, description="start over at the end instead of stopping"),
        Param("symbol", str, None, description="only these symbols (default: all recorded)"),
        Param("url", str, None, description="ws://HOST:PORT of a running replay server"),
    ),
    embedded_server="obbws_jupyter.offline.replay_server:serve",
    docs="docs/demo_protocol.md#capture-format",
    check=_check,
)
