"""The hand-off's own logic, without a child: what a frame becomes on the pipe (records the
store rejects left out, ids kept), and values that are not plain JSON crossing intact."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import orjson

from obbws_jupyter._store import _compile_fit_check
from obbws_jupyter.sinks._base import _Backlog
from obbws_jupyter.sinks._process import JSON_ROWS, PICKLED_ROWS, _batch, _payload, encode_payload
from obbws_providers.demo import TRADE_FIELDS


def trade(price: object) -> dict[str, object]:
    return {"symbol": "BTCUSD", "type": "trade", "price": price, "size": 1.0, "date": 5}


def frames_of(*frames: list[dict[str, object]]) -> _Backlog:
    backlog = _Backlog(100, coalesce=True)
    first = 1
    for i, records in enumerate(frames):
        backlog.add_frame(records, first, 1_000 + i, TRADE_FIELDS)
        first += len(records)
    return backlog


def test_frames_cross_unstamped_and_come_back_stamped() -> None:
    """Frames go over as their dicts plus (first id, length, received_at) per frame; the
    child's batch carries the ids and times the stream gave them."""
    all_fit = _compile_fit_check(TRADE_FIELDS)
    (chunk,) = frames_of([trade(1.0), trade(2.0)], [trade(3.0)]).take(100)
    payload = _payload(chunk, all_fit)
    assert payload["firsts"] == [1, 3] and payload["counts"] == [2, 1]
    kind, data = encode_payload(payload)
    assert kind == JSON_ROWS
    rows = _batch(orjson.loads(data), TRADE_FIELDS).rows()
    assert [(r["id"], r["received_at"], r["price"]) for r in rows] == [
        (1, 1_000, 1.0),
        (2, 1_000, 2.0),
        (3, 1_001, 3.0),
    ]


def test_a_record_the_store_rejects_never_crosses() -> None:
    """A frame with a value that does not fit its column: that record is left out (as the
    store leaves it out) and the others keep their ids."""
    all_fit = _compile_fit_check(TRADE_FIELDS)
    (chunk,) = frames_of([trade(1.0), trade("not a price"), trade(3.0)]).take(100)
    payload = _payload(chunk, all_fit)
    assert "firsts" not in payload  # sent as stamped rows
    rows = _batch(orjson.loads(encode_payload(payload)[1]), TRADE_FIELDS).rows()
    assert [(r["id"], r["price"]) for r in rows] == [(1, 1.0), (3, 3.0)]


def test_values_that_are_not_plain_json_cross_by_pickle() -> None:
    """A datetime (or any value orjson would change) sends the payload by pickle: the child
    gets the same values and types."""
    when = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)
    payload = {"rows": [{"id": 1, "received_at": 2, "date": when, "price": 1.5}]}
    kind, data = encode_payload(payload)
    assert kind == PICKLED_ROWS
    assert pickle.loads(data) == payload
    assert encode_payload({"rows": [{"id": 1, "price": 1.5}]})[0] == JSON_ROWS
