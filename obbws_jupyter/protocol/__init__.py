"""The provider kit: everything a provider may import, and nothing that does I/O.

A provider session never touches a socket. The stream driver (``obbws_jupyter._stream``) owns
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

The kit, one small module per concern:

- ``_records``: :class:`Field`, :class:`FieldType`, ``Record``, ``Frame``;
- ``_events``: what a session reports besides records (:class:`Authenticated`, ...);
- ``_session``: the :class:`ProviderSession` base;
- ``_spec``: :class:`Param` and :class:`ProviderSpec` (typed parameters, credentials from the
  argument, the environment or OpenBB's user settings file);
- ``_values``: symbol lists, timestamps, URL checks;
- ``_json``: :func:`json_loads`, the one decoder of JSON frames (orjson, ``bytes`` or ``str``);
- ``_capture``: the capture-file header;
- ``_http``: HTTP steps before connecting (token exchanges), described not performed;
- ``_lookup``: the one provider lookup (entry points + :func:`register_provider`).

Only the standard library, :mod:`obbws_jupyter.exceptions` and orjson (a pure decoder, a
runtime dependency) are imported: providers import this package and nothing else of ours (a
test checks both rules).
"""

from __future__ import annotations

from obbws_jupyter.exceptions import (
    InvalidParameterError,
    MissingCredentialsError,
    SymbolError,
    UnknownProviderError,
)
from obbws_jupyter.protocol._capture import CAPTURE_VERSION, read_capture_header
from obbws_jupyter.protocol._events import (
    Authenticated,
    AuthFailed,
    Event,
    Heartbeat,
    MalformedFrame,
    ProviderFailed,
    ProviderMessage,
    SequenceGap,
    StreamEnded,
    Subscribed,
    SubscriptionFailed,
    Unsubscribed,
)
from obbws_jupyter.protocol._http import HttpRequest, HttpResponse
from obbws_jupyter.protocol._json import loads as json_loads
from obbws_jupyter.protocol._lookup import (
    ENTRY_POINT_GROUP,
    available_providers,
    get_provider,
    register_provider,
)
from obbws_jupyter.protocol._records import Field, FieldType, Frame, Record
from obbws_jupyter.protocol._session import ProviderSession
from obbws_jupyter.protocol._spec import (
    OPENBB_SETTINGS_ENV,
    Param,
    ProviderSpec,
    openbb_settings_path,
)
from obbws_jupyter.protocol._values import check_ws_url, iso_to_ns, ms_to_ns, split_symbols

__all__ = [
    "CAPTURE_VERSION",
    "ENTRY_POINT_GROUP",
    "OPENBB_SETTINGS_ENV",
    "AuthFailed",
    "Authenticated",
    "Event",
    "Field",
    "FieldType",
    "Frame",
    "Heartbeat",
    "HttpRequest",
    "HttpResponse",
    "InvalidParameterError",
    "MalformedFrame",
    "MissingCredentialsError",
    "Param",
    "ProviderFailed",
    "ProviderMessage",
    "ProviderSession",
    "ProviderSpec",
    "Record",
    "SequenceGap",
    "StreamEnded",
    "Subscribed",
    "SubscriptionFailed",
    "SymbolError",
    "UnknownProviderError",
    "Unsubscribed",
    "available_providers",
    "check_ws_url",
    "get_provider",
    "iso_to_ns",
    "json_loads",
    "ms_to_ns",
    "openbb_settings_path",
    "read_capture_header",
    "register_provider",
    "split_symbols",
]
