"""The one JSON decoder of provider frames: ``loads(frame)`` reads ``str`` or ``bytes``.

orjson (a runtime dependency) decodes a frame two to four times faster than the stdlib and
reads ``bytes`` as they come off the socket, so a session never decodes a frame to ``str``
first. Where orjson refuses a document the stdlib accepts (``NaN``/``Infinity`` literals,
numbers beyond a double, lone ``\\ud800`` surrogates) the stdlib decodes it, so a frame gives the
same values as it always did, and a frame neither can read raises the stdlib's
``json.JSONDecodeError`` (its message is what a :class:`MalformedFrame` shows). One known
difference remains: an integer beyond 64 bits comes back as a ``float`` from orjson (no
provider sends one in a field we keep).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["loads"]

_fast: Callable[[str | bytes], Any]
try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a runtime dependency; the stdlib still works
    _fast = json.loads
    _FastError: type[Exception] = json.JSONDecodeError
else:
    _fast = orjson.loads
    _FastError = orjson.JSONDecodeError


def loads(frame: str | bytes) -> Any:
    """Decode one JSON frame (``str`` or UTF-8 ``bytes``)."""
    try:
        return _fast(frame)
    except _FastError:
        # orjson is stricter than the stdlib (NaN, huge numbers, lone surrogates): keep what
        # the stdlib reads, and its error message for what neither reads
        return json.loads(frame)
