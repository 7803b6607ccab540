"""The Redis sink's fast frame encoder decodes to exactly what the broadcast's encoder gives
(no sockets)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from obbws_jupyter._wire import RecordEncoder
from obbws_jupyter.protocol import Field, FieldType
from obbws_jupyter.sinks import Batch
from obbws_jupyter.sinks.redis import FrameEncoder

FIELDS = (
    Field("date", FieldType.TIMESTAMP, "event time"),
    Field("symbol", FieldType.STRING, "symbol"),
    Field("price", FieldType.FLOAT, "price"),
    Field("size", FieldType.FLOAT, "size"),
    Field("flag", FieldType.STRING, "anything"),
)
NS = 1_795_988_934_861_953_123  # 2026-11-29, with nanoseconds

ROWS: list[dict[str, Any]] = [
    {"id": 1, "received_at": NS, "date": NS - 1_234, "symbol": "BTCUSD", "price": 1.5, "size": 2.0},
    {"id": 2, "received_at": NS, "date": NS, "symbol": "ÉTH€", "price": math.nan, "size": math.inf},
    {"id": 3, "received_at": NS, "symbol": None, "price": -math.inf, "flag": True},  # no date
    {"id": 4, "received_at": NS, "date": datetime(2026, 3, 8, 6, 59, 59, 999_999, tzinfo=UTC)},
    {"id": 5, "received_at": NS, "date": datetime(2026, 3, 8, 2, 30), "flag": 2**70},  # naive
    {"id": 6, "received_at": 0, "date": -1_500, "price": 1e-7, "size": 1e22, "flag": [1, "a"]},
    {"id": 7, "received_at": NS, "date": -2_208_988_800_000_000_000, "extra": "dropped"},  # 1900
    {"id": 8, "received_at": NS, "date": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
]


@pytest.mark.parametrize("tz", ["America/New_York", "UTC", "Asia/Kolkata", "Europe/London"])
def test_frames_decode_to_the_broadcast_encoders_values(tz: str) -> None:
    """For every row (timestamps as ns, datetimes naive or aware, across DST, before 1900;
    NaN, infinities, None, missing and extra keys, unicode, big ints), the fast encoder's
    bytes decode to the same object, keys in the same order, as RecordEncoder's text."""
    reference = RecordEncoder(FIELDS, tz)
    fast = FrameEncoder(reference)
    for _ in range(2):  # the second pass reads the per-second cache
        for row in ROWS:
            expected = json.loads(reference.encode(row))
            got = orjson.loads(fast.encode(row))
            assert list(got.items()) == list(expected.items()), row


def test_a_value_orjson_cannot_take_falls_back() -> None:
    """A value outside JSON's types (here a set) is encoded by RecordEncoder's fallback."""
    reference = RecordEncoder(FIELDS, "UTC")
    row = {"id": 1, "received_at": NS, "flag": {"a"}}
    assert FrameEncoder(reference).encode(row) == reference.encode(row).encode()


@pytest.mark.parametrize("odd", [False, True])
def test_a_batch_encodes_as_its_records_do(odd: bool) -> None:
    """encode_batch (by column) gives, record by record, what RecordEncoder gives: on plain
    rows, and on rows with a value orjson refuses (the whole batch then goes record by record)."""
    reference = RecordEncoder(FIELDS, "America/New_York")
    rows = [dict(row) for row in ROWS]
    if not odd:
        for row in rows:
            row.pop("flag", None)
    got = FrameEncoder(reference).encode_batch(Batch.from_records(rows, FIELDS))
    assert [orjson.loads(g) for g in got] == [json.loads(reference.encode(r)) for r in rows]
