"""Broadcast frame encoding: one plain JSON object per record, ISO dates, valid JSON."""

from __future__ import annotations

import json
import math
from zoneinfo import ZoneInfo

import pytest

from obbws_jupyter._util import mask_secrets
from obbws_jupyter._wire import RecordEncoder, encode_record
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.protocol import Field, FieldType

NY = ZoneInfo("America/New_York")
FIELDS = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("price", FieldType.FLOAT),
)
# 2026-11-25 13:12:33.123456789 UTC
NS = 1_795_612_353_123_456_789


def test_timestamp_is_iso_in_zone_with_offset_and_microseconds():
    """An int-ns timestamp field becomes ISO 8601 in the zone, with offset and microseconds."""
    text = encode_record({"date": NS}, frozenset({"date"}), NY)
    assert json.loads(text) == {"date": "2026-11-25T08:12:33.123456-05:00"}


def test_timestamp_in_utc_and_whole_seconds_keep_microseconds():
    """Whole-second timestamps still show six fractional digits; UTC shows +00:00."""
    text = encode_record({"date": 1_795_612_353_000_000_000}, frozenset({"date"}), ZoneInfo("UTC"))
    assert json.loads(text) == {"date": "2026-11-25T13:12:33.000000+00:00"}


def test_summer_time_offset():
    """The offset follows daylight saving time in the zone."""
    july = 1_782_950_400_000_000_000  # 2026-07-02 00:00 UTC
    value = json.loads(encode_record({"d": july}, frozenset({"d"}), NY))["d"]
    assert value.endswith("-04:00")


def test_none_nan_and_inf_become_null():
    """None stays null and NaN/inf floats become null, so the frame is valid JSON."""
    record = {"a": None, "b": math.nan, "c": math.inf, "d": -math.inf, "e": 1.5, "date": None}
    text = encode_record(record, frozenset({"date"}), NY)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": None, "c": None, "d": None, "e": 1.5, "date": None}


def test_frame_is_an_object_not_a_json_string():
    """The frame decodes in one json.loads to a dict (OpenBB double-encoded it)."""
    assert isinstance(json.loads(encode_record({"x": 1}, frozenset(), NY)), dict)


def test_encoder_key_order_and_stable_key_set():
    """RecordEncoder emits id, received_at, then schema fields in order; missing -> null."""
    encoder = RecordEncoder(FIELDS, "America/New_York")
    text = encoder.encode({"symbol": "btcusd", "id": 7, "extra": "dropped", "received_at": NS})
    decoded = json.loads(text)
    assert list(decoded) == ["id", "received_at", "date", "symbol", "price"]
    assert decoded == {
        "id": 7,
        "received_at": "2026-11-25T08:12:33.123456-05:00",
        "date": None,
        "symbol": "btcusd",
        "price": None,
    }


def test_encoder_rejects_unknown_time_zone():
    """An unknown time zone is a clear InvalidParameterError."""
    with pytest.raises(InvalidParameterError, match="time zone"):
        RecordEncoder(FIELDS, "Mars/Olympus_Mons")


def test_mask_secrets_hides_query_and_bearer_tokens():
    """Tokens in auth_token= queries and Bearer headers are masked."""
    text = mask_secrets("ws://h:1/?a=1&auth_token=s3cr3t&b=2 Authorization: Bearer s3cr3t")
    assert "s3cr3t" not in text
    assert "auth_token=********&b=2" in text and "Bearer ********" in text


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_websockets_serialization(size: int) -> None:
    """The pre-serialized broadcast frame is byte-identical to websockets' own framing."""
    from websockets.frames import Frame, Opcode

    from obbws_jupyter._broadcast import _text_frame

    payload = b"x" * size
    assert _text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_encoder_repeats_give_the_same_text_as_a_fresh_encode() -> None:
    """The encoder's memo of the last timestamp per field never changes a frame: repeated,
    changing, datetime and bool values encode exactly as encode_record does."""
    from datetime import UTC, datetime

    encoder = RecordEncoder(FIELDS, NY)
    stamp = datetime(2026, 11, 25, 13, 12, 33, 123456, tzinfo=UTC)
    values = [NS, NS, NS + 1_000, NS + 1_000, stamp, stamp, NS, True, None, "2026-01-01", NS]
    for i, value in enumerate(values):
        record = {"id": i, "received_at": NS, "date": value, "symbol": "X", "price": 1.0}
        expected = encode_record(
            {k: record.get(k) for k in encoder.keys}, encoder.timestamp_fields, NY
        )
        assert encoder.encode(record) == expected


def test_encode_record_text_is_json_dumps_compact_utf8() -> None:
    """The one reused JSON encoder writes what json.dumps writes with the wire's options:
    compact separators, UTF-8 text unescaped, numpy scalars as numbers."""
    import numpy as np

    record = {"id": 1, "symbol": 'é\u2028"\\', "price": np.float64(1.5), "size": np.int64(7)}
    plain = {"id": 1, "symbol": 'é\u2028"\\', "price": 1.5, "size": 7}
    text = encode_record(record, frozenset(), NY)
    assert text == json.dumps(plain, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
