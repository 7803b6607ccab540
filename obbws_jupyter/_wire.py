"""The wire form of a record: one JSON object, the same everywhere a record leaves the process.

The broadcast server (one text frame per record), ``listen``, the HTTP API (JSON results and
server-sent events) and every sink that writes JSON (NATS, Redis) encode records here, so a
record reads the same on every path (DESIGN §7):

- keys ``id``, ``received_at``, then the provider's fields in schema order (``null`` where a
  record lacks one; keys outside the schema are left out);
- timestamps (int ns since the epoch, UTC, or datetimes) as ISO 8601 strings in the
  connection's time zone, with offset and microseconds, e.g. ``"2026-11-25T08:12:33.123456-05:00"``;
- NaN and infinities as ``null``, so the text is valid JSON.

Also the two constants listeners need: the default broadcast port and the largest replay.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.protocol import Field, FieldType, Record

if TYPE_CHECKING:  # the sinks import this module
    from obbws_jupyter.sinks import Batch

__all__ = ["DEFAULT_PORT", "MAX_REPLAY", "FrameEncoder", "RecordEncoder", "encode_record", "zone"]

DEFAULT_PORT = 6666  # the broadcast's default port (OpenBB's)
MAX_REPLAY = 100_000  # the most stored records a listener may ask to replay (?replay=N)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(value: Any, tz: ZoneInfo) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):  # ns since epoch, UTC
        stamp = _EPOCH + timedelta(microseconds=value // 1000)
        return stamp.astimezone(tz).isoformat(timespec="microseconds")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(tz).isoformat(timespec="microseconds")
    return value


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy / pandas scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return _finite(item())
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# What json.dumps(..., ensure_ascii=False, allow_nan=False, separators=(",", ":"),
# default=_json_default) builds on every call, built once: the same text, without a new
# encoder object per record (its state per call lives in the C encoder it makes).
_JSON = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode_record(record: Mapping[str, Any], timestamp_fields: Iterable[str], tz: ZoneInfo) -> str:
    """Encode one record as the JSON object of one broadcast frame.

    Keys keep the record's order. Values of ``timestamp_fields`` (int ns since the epoch, UTC,
    or datetimes) become ISO 8601 strings in ``tz`` with offset and microseconds; ``None``
    stays ``null``; NaN and infinities become ``null`` so the frame is valid JSON.
    """
    stamps = timestamp_fields if isinstance(timestamp_fields, frozenset) else set(timestamp_fields)
    out: dict[str, Any] = {}
    for key, value in record.items():
        if value is None:
            out[key] = None
        elif key in stamps:
            out[key] = _iso(value, tz)
        elif isinstance(value, float):
            out[key] = value if math.isfinite(value) else None
        else:
            out[key] = value
    return _JSON.encode(out)


def zone(tz: str | ZoneInfo) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidParameterError(
            f"Unknown time zone {tz!r}; use an IANA name such as 'America/New_York' or 'UTC'."
        ) from None


class RecordEncoder:
    """Encodes records of one schema to broadcast frames (built once per connection).

    The key set is stable: ``id``, ``received_at``, then every field of the schema in order,
    ``null`` where a record lacks the field. Keys outside the schema are left out.
    """

    def __init__(self, fields: Sequence[Field], tz: str | ZoneInfo = "America/New_York") -> None:
        self.tz = zone(tz)
        names = ["id", "received_at"]
        names += [f.name for f in fields if f.name not in ("id", "received_at")]
        self.keys: tuple[str, ...] = tuple(dict.fromkeys(names))
        self.timestamp_fields = frozenset(
            {"received_at"} | {f.name for f in fields if f.type == FieldType.TIMESTAMP}
        )

        # The last timestamp seen per field and its text: the records of a frame share one
        # received_at, and quotes often share a date, so most conversions are repeats (a
        # tuple is replaced whole, so a thread sharing the encoder never reads half of one).
        self._stamp_keys = tuple(k for k in self.keys if k in self.timestamp_fields)
        self._last: dict[str, tuple[type, Any, str]] = {}

    def encode(self, record: Mapping[str, Any]) -> str:
        """One record -> the JSON text of its frame."""
        get = record.get
        values = {k: get(k) for k in self.keys}
        last = self._last
        for key in self._stamp_keys:
            value = values[key]
            if value is None or isinstance(value, str):
                continue
            seen = last.get(key)
            if seen is not None and seen[0] is type(value) and seen[1] == value:
                values[key] = seen[2]
            else:
                text = _iso(value, self.tz)
                if isinstance(text, str):
                    last[key] = (type(value), value, text)
                values[key] = text
        return encode_record(values, self.timestamp_fields, self.tz)


class FrameEncoder:
    """The broadcast frame of a record as UTF-8 bytes, several times faster than
    :meth:`RecordEncoder.encode` and decoding to the same values: orjson instead of
    ``json.dumps``, and timestamps formatted from a per-second cache (the date, time and UTC
    offset of a second are computed once; only the microseconds change). Anything orjson
    cannot take falls back to the :class:`RecordEncoder` it wraps."""

    def __init__(self, encoder: RecordEncoder) -> None:
        self.encoder = encoder
        self._keys = [(key, key in encoder.timestamp_fields) for key in encoder.keys]
        self._seconds: dict[int, tuple[str, str]] = {}  # second -> ("date T time", "offset")

    def _iso(self, value: Any) -> Any:
        if type(value) is not int:  # datetimes (and bools, left as they are)
            return _iso(value, self.encoder.tz)
        second, rest = divmod(value, 1_000_000_000)
        parts = self._seconds.get(second)
        if parts is None:
            text = _iso(second * 1_000_000_000, self.encoder.tz)
            if len(text) != 32 or text[19:26] != ".000000":  # odd offsets/years: no shortcut
                return _iso(value, self.encoder.tz)
            if len(self._seconds) >= 4_096:
                self._seconds.clear()
            parts = self._seconds[second] = (text[:19], text[26:])
        return f"{parts[0]}.{rest // 1000:06d}{parts[1]}"

    def _objects(self, batch: Batch) -> list[dict[str, Any]]:
        """Every record of ``batch`` as the dict its frame encodes, by column: timestamps
        converted a column at a time, and each dict built by ``zip`` (no loop over keys)."""
        columns = batch.columns()
        nothing = [None] * batch.n
        values: list[Sequence[Any]] = []
        for key, stamp in self._keys:
            column = columns.get(key, nothing)
            if stamp:
                column = self._iso_column(column)
            values.append(column)
        # dict(zip(keys, row)) per record, driven by map (no Python frame per record, and no
        # keyword arguments parsed per call: the columns' lengths are checked once, outside)
        rows = zip(*values, strict=True)
        return list(map(dict, map(zip, itertools.repeat(self.encoder.keys), rows)))

    def _iso_column(self, column: Sequence[Any]) -> list[Any]:
        first = column[0] if column else None
        if first is not None and column.count(first) == len(column):  # one frame's received_at
            return [self._iso(first)] * len(column)
        iso = self._iso
        return [None if v is None else iso(v) for v in column]

    def encode_batch(self, batch: Batch) -> list[bytes]:
        """Every record of ``batch``, one ``bytes`` each (see :meth:`_objects`)."""
        objects = self._objects(batch)
        dumps = orjson.dumps
        try:
            return [dumps(obj) for obj in objects]
        except (TypeError, orjson.JSONEncodeError):  # one odd value: record by record
            return [self.encode(row) for row in batch.rows()]

    def encode_array(self, batch: Batch) -> bytes | None:
        """Every record of ``batch`` as one JSON array of their frames' objects, in one orjson
        call (several times cheaper per record than one call each); None when a value needs
        the :class:`RecordEncoder` fallback (then use :meth:`encode_batch`)."""
        try:
            return orjson.dumps(self._objects(batch))
        except (TypeError, orjson.JSONEncodeError):
            return None

    def encode(self, record: Record) -> bytes:
        get = record.get
        out: dict[str, Any] = {}
        for key, stamp in self._keys:
            value = get(key)
            out[key] = self._iso(value) if stamp and value is not None else value
        try:
            return orjson.dumps(out)  # NaN and infinities become null, as in RecordEncoder
        except (TypeError, orjson.JSONEncodeError):  # numpy scalars, ints beyond 64 bits...
            return self.encoder.encode(record).encode()
