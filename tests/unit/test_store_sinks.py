"""The store, broadcast, record hooks and live tail as sinks behind the seam, and the store's
columnar writer path, without sockets.

Frames are handed to a never-connected demo client the way the stream does
(``WebSocketClient._on_records``). Records are samples built for these tests, or what the
provider sessions parse from the wire fixtures in ``tests/fixtures``.
"""

from __future__ import annotations

import itertools
import pathlib
import random
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from obbws_jupyter._store import ResultsStore
from obbws_jupyter._tail import LiveTail
from obbws_jupyter.client import WebSocketClient
from obbws_jupyter.protocol import Field, Record, get_provider
from obbws_jupyter.sinks import Batch, Sink, SinkHealth
from obbws_jupyter.sinks._base import FRAMES_CHUNK, _Backlog
from tests.conftest import TIMEOUT
from tests.provider_fixtures import FIXTURES, load_fixture
from tests.unit.test_store import FIELDS  # date, symbol, price, size (int), is_bid

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def trades(n: int, start: int = 0) -> list[Record]:
    return [
        {
            "date": T0 + (start + i) * 1_000_000,
            "symbol": ("BTCUSD", "ETHUSD")[i % 2],
            "type": "trade",
            "exchange": "DEMO",
            "price": 100.0 + start + i,
            "size": 1.5,
        }
        for i in range(n)
    ]


class Collector(Sink):
    """A user sink that keeps the ids it is given and notes the order of calls."""

    kind = "collect"

    def __init__(self, url: str, calls: list[str]) -> None:
        super().__init__(url)
        self.ids: list[int] = []
        self.calls = calls

    def write(self, batch: Batch) -> None:
        self.calls.append(self.url)
        self.ids.extend(r["id"] for r in batch.rows())

    def health(self) -> SinkHealth:
        return SinkHealth(url=self.url, kind=self.kind, state="ok", rows_written=len(self.ids))


@pytest.fixture
def client() -> Iterator[WebSocketClient]:
    c = WebSocketClient("demo", symbol="btcusd,ethusd", limit=None)
    yield c
    c.close()


# -- the sinks behind _on_records -----------------------------------------------------------


def test_store_hooks_and_user_sinks_run_in_order_on_one_batch(client: WebSocketClient) -> None:
    """Per frame the store takes the records first, then the record hooks, then the user
    sinks, all from one batch: the hook sees the frame already queued in the store."""
    calls: list[str] = []
    queued: list[int] = []

    def hook(records: list[Record]) -> None:
        calls.append("hook")
        queued.append(client.store._backlog.put_seq)

    client.add_record_hook(hook)
    sink = client.add_sink(Collector("collect://one", calls))
    client._on_records(trades(3))
    client._on_records(trades(2, 3))
    assert calls == ["hook", "collect://one"] * 2
    assert queued == [3, 5]
    assert isinstance(sink, Collector) and sink.ids == [1, 2, 3, 4, 5]
    assert client.get_results()["id"].tolist() == [1, 2, 3, 4, 5]


def test_a_record_the_store_rejects_reaches_no_hook_or_sink(client: WebSocketClient) -> None:
    """A record whose values do not fit the columns is counted as rejected and reaches
    neither a record hook nor a user sink; the rest of its frame goes everywhere."""
    seen: list[list[Any]] = []
    client.add_record_hook(lambda records: seen.append([r["price"] for r in records]))
    sink = client.add_sink(Collector("collect://two", []))
    frame = trades(3)
    frame[1]["price"] = "not a number"
    client._on_records(frame)
    assert seen == [[100.0, 102.0]]
    assert isinstance(sink, Collector) and sink.ids == [1, 2]
    assert client.get_results()["price"].tolist() == [100.0, 102.0]
    assert client.status().rejected_records == 1


def test_internal_sinks_are_not_listed(client: WebSocketClient) -> None:
    """The store, the hooks and a live tail are internal sinks: conn.sinks and status.sinks
    list only the sinks the user added."""
    tail = LiveTail(client.fields).follow(client)
    client.add_record_hook(lambda records: None)
    assert client.sinks == [] and client.status().sinks == []
    client.add_sink(Collector("collect://three", []))
    assert [s.url for s in client.sinks] == ["collect://three"]
    assert [s.url for s in client.status().sinks] == ["collect://three"]
    tail.close()


def test_the_live_tail_is_a_sink_fed_by_the_hooks(client: WebSocketClient) -> None:
    """LiveTail is a Sink: following a client it gets each frame through the record hooks,
    and write(batch) feeds it the same way; its health counts what it took."""
    tail = LiveTail(client.fields, rows=10).follow(client)
    client._on_records(trades(4))
    tail.write(Batch.stamped(trades(2, 4), client._fields, 100, T0))
    snapshot = tail.snapshot()
    assert snapshot["rows"]["id"] == [101, 100, 4, 3, 2, 1]
    assert snapshot["total"] == 6 and tail.health().rows_written == 6
    tail.close()
    assert tail.health().state == "closed" and client._record_hooks == []


def test_without_other_consumers_the_record_dicts_are_not_touched(
    client: WebSocketClient,
) -> None:
    """With the store alone, ids and received_at stay beside the dicts (no per-record work on
    the loop thread) and still reach the table."""
    frame = trades(3)
    client._on_records(frame)
    assert all("id" not in r for r in frame)
    stored = client.get_results()
    assert stored["id"].tolist() == [1, 2, 3]
    assert stored["received_at"].nunique() == 1


# -- Batch.stamped, the backlog ----------------------------------------------------------------


def test_a_stamped_batch_writes_its_ids_only_when_rows_are_asked_for() -> None:
    """Batch.stamped keeps ids and received_at apart; column() builds them without the dicts,
    rows() writes them in, and tail() keeps the right ids."""
    rows = trades(4)
    batch = Batch.stamped(rows, FIELDS, 10, T0)
    assert (batch.first_id, batch.last_id, len(batch)) == (10, 13, 4)
    assert list(batch.column("id")) == [10, 11, 12, 13]
    assert list(batch.column("received_at")) == [T0] * 4
    assert "id" not in rows[0]
    tail = batch.tail(2)
    assert [r["id"] for r in tail.rows()] == [12, 13]
    assert [r["id"] for r in batch.rows()] == [10, 11, 12, 13]
    assert batch.columns()["price"] == [100.0, 101.0, 102.0, 103.0]


def test_a_coalescing_backlog_cuts_exactly_and_keeps_the_newest() -> None:
    """Stamped frames merge into chunks; beyond max_pending exactly the oldest excess rows
    are dropped and counted, whatever the frame sizes, and the newest rows are kept in order."""
    rng = random.Random(7)
    backlog = _Backlog(max_pending=1_000, coalesce=True)
    next_id = 1
    with backlog.lock:  # callers hold it
        for _ in range(3_000):
            n = rng.randint(1, 9)
            backlog.add(Batch.stamped(trades(n), FIELDS, next_id, T0 + next_id))
            next_id += n
        total = next_id - 1
        assert backlog.rows == 1_000 and backlog.dropped == total - 1_000
        assert len(backlog.batches) <= 1_000 // FRAMES_CHUNK + 2  # chunks, not one per frame
        taken = backlog.take(10**9)
    parts = Batch.gather(taken)
    assert parts is not None
    rows, firsts, counts, times = parts
    ids = [first + k for first, count in zip(firsts, counts, strict=True) for k in range(count)]
    assert ids == list(range(total - 999, total + 1)) and len(rows) == 1_000
    # a frame cut in two keeps its received_at (T0 + its first id) for the rows left
    assert times[1:] == [T0 + first for first in firsts[1:]] and times[0] <= T0 + firsts[0]
    merged = taken[0]
    assert [r["id"] for r in merged.rows()][:3] == ids[:3]


def test_take_rows_cuts_exactly_inside_a_frame() -> None:
    """take_rows(n) hands over exactly the oldest n rows, splitting the chunk (and the frame)
    at the cut: ids and received_at stay with their rows, the rest stays first in line and
    later frames still join it."""
    backlog = _Backlog(max_pending=10**6, coalesce=True)
    next_id = 1
    with backlog.lock:
        for _ in range(40):
            backlog.add(Batch.stamped(trades(7), FIELDS, next_id, T0 + next_id))
            next_id += 7
        taken = backlog.take_rows(100)  # 14 frames and 2 of the 15th's 7 rows
        assert sum(b.n for b in taken) == 100 and backlog.rows == 180
        backlog.add(Batch.stamped(trades(3), FIELDS, next_id, T0 + next_id))
        rest = backlog.take_rows(10**9)
    for part, first_id in ((taken, 1), (rest, 101)):
        parts = Batch.gather(part)
        assert parts is not None
        rows, firsts, counts, times = parts
        ids = [f + k for f, c in zip(firsts, counts, strict=True) for k in range(c)]
        assert ids == list(range(first_id, first_id + len(rows)))
        # each frame's received_at is T0 + the first id of the whole frame (ids 1, 8, 15...)
        frame_of = [(i - 1) // 7 * 7 + 1 for i in ids]
        stamped = [t for t, c in zip(times, counts, strict=True) for _ in range(c)]
        assert stamped == [T0 + f for f in frame_of]
    assert [r["id"] for r in rest[0].rows()][:2] == [101, 102]
    plain = Batch(FIELDS, rows=[{"id": i} for i in range(1, 6)])
    assert [r["id"] for r in plain.head(2).rows()] == [1, 2]
    assert list(Batch(FIELDS, columns=plain.columns()).head(3).column("id")) == [1, 2, 3]


# -- the columnar writer path ------------------------------------------------------------------


def _fixture_groups() -> Iterator[tuple[str, tuple[Field, ...], list[Record]]]:
    """(label, fields, records) for every provider session and feed that parses records out
    of the provider's wire fixture."""
    for path in sorted(FIXTURES.glob("*.jsonl")):
        spec = get_provider(path.stem)
        frames = [s.frame for s in load_fixture(path.stem).values() if s.dir == "in"]
        choices = [(p.name, p.choices) for p in spec.params if p.choices and p.name != "region"]
        for combo in itertools.product(*(values for _, values in choices)):
            given: dict[str, Any] = dict(zip((n for n, _ in choices), combo, strict=True))
            session = _session(spec, given)
            if session is None:
                continue
            records: list[Record] = []
            for frame in frames:
                try:
                    records += session.receive(frame)
                except Exception:  # a frame of another feed: not ours to judge here
                    continue
            if records:
                yield f"{path.stem}-{'-'.join(map(str, combo))}", tuple(session.fields), records


def _session(spec: Any, given: dict[str, Any]) -> Any:
    for symbol in ("*", "btcusd", "aapl", "eurusd"):
        try:
            params = spec.resolve({**given, "symbol": symbol, "api_key": "k"}, {})
        except Exception:
            try:
                params = spec.resolve({**given, "symbol": symbol}, {})
            except Exception:
                continue
        try:
            return spec.session_class(params)
        except Exception:
            continue
    return None


GROUPS = list(_fixture_groups())


def test_the_fixtures_give_records_of_every_provider() -> None:
    """The equivalence test below covers every provider that has a wire fixture."""
    covered = {label.split("-")[0] for label, _, _ in GROUPS}
    assert covered == {path.stem for path in FIXTURES.glob("*.jsonl")}


@pytest.mark.parametrize(("label", "fields", "records"), GROUPS, ids=[g[0] for g in GROUPS])
def test_columnar_writer_path_equals_the_row_path(
    tmp_path: pathlib.Path, label: str, fields: tuple[Field, ...], records: list[Record]
) -> None:
    """Over the provider fixtures' records, the Arrow table the writer builds from stamped
    frames (and from column batches) equals the one built from dicts with ids: same rows,
    same types, same nulls."""
    frames = [records[i : i + 3] for i in range(0, len(records), 3)]
    with ResultsStore(fields, results_file=tmp_path / "r.duckdb", limit=None) as store:
        stamped: list[Batch] = []
        next_id = 1
        for k, frame in enumerate(frames):
            copy = [dict(r) for r in frame]
            stamped.append(Batch.stamped(copy, fields, next_id, T0 + k))
            next_id += len(frame)
        old_rows = [dict(r) for b in stamped for r in b.rows()]  # ids written into copies
        stamped = [
            Batch.stamped([dict(r) for r in f], fields, b.first_id or 0, T0 + k)
            for k, (f, b) in enumerate(zip(frames, stamped, strict=True))
        ]
        old = store._rows_to_table(old_rows)
        new = store._batches_to_table(stamped)
        assert new.schema == old.schema
        assert new.equals(old), label
        columns = [Batch(fields, columns=b.columns()) for b in stamped]
        assert store._batches_to_table(columns).equals(old), label


def test_stamped_frames_are_stored_with_their_types_and_the_cap_holds(
    tmp_path: pathlib.Path,
) -> None:
    """Frames of any size put as stamped batches land in DuckDB typed like the declared
    columns; with limit the table holds exactly the newest limit rows, and every row counts
    as written."""
    rng = random.Random(3)
    with ResultsStore(FIELDS, results_file=tmp_path / "cap.duckdb", limit=100) as store:
        next_id = 1
        for k in range(500):
            n = rng.randint(1, 12)
            frame = [
                {"date": T0 + i, "symbol": "S", "price": float(i), "size": i, "is_bid": i % 2 == 0}
                for i in range(next_id, next_id + n)
            ]
            store.put(Batch.stamped(frame, FIELDS, next_id, T0 + k))
            next_id += n
            if k % 50 == 0:
                store.flush(TIMEOUT)
                assert store.count() <= 100
        store.flush(TIMEOUT)
        got = store.read()
        assert got["id"].tolist() == list(range(next_id - 100, next_id))
        assert store.stats["rows_written"] == next_id - 1
        assert store.stats["dropped"] == 0
        assert str(got["date"].dtype).startswith("datetime64") and got["date"].dt.tz is not None
        assert got["size"].dtype == "int64" and got["is_bid"].dtype == "bool"
        assert got["price"].tolist() == [float(i) for i in range(next_id - 100, next_id)]


def test_a_take_mixing_stamped_rows_and_columns_is_written_whole(
    tmp_path: pathlib.Path,
) -> None:
    """Batches of dicts with ids, stamped frames and column batches in one write all land,
    in id order."""
    with ResultsStore(FIELDS, results_file=tmp_path / "mix.duckdb", limit=None) as store:
        plain = [
            {"id": 1, "received_at": T0, "symbol": "A", "price": 1.0},
            {"id": 2, "received_at": T0, "symbol": "B"},
        ]
        store.put(plain)
        store.put(Batch.stamped([{"symbol": "C", "size": 3}], FIELDS, 3, T0))
        store.put(
            Batch(FIELDS, columns={"id": [4], "received_at": [T0], "symbol": ["D"]}),
        )
        store.flush(TIMEOUT)
        got = store.read()
        assert got["id"].tolist() == [1, 2, 3, 4]
        assert got["symbol"].tolist() == ["A", "B", "C", "D"]
        assert got["size"].isna().tolist() == [True, True, False, True]


def test_arrow_schema_of_the_writer_matches_the_table(tmp_path: pathlib.Path) -> None:
    """The writer's Arrow types are the declared columns' (int64 ids, UTC ns timestamps)."""
    with ResultsStore(FIELDS, results_file=tmp_path / "s.duckdb") as store:
        table = store._batches_to_table([Batch.stamped(trades(2), FIELDS, 1, T0)])
        assert table.schema.field("id").type == pa.int64()
        assert table.schema.field("received_at").type == pa.timestamp("ns", tz="UTC")
        assert table.column("id").to_pylist() == [1, 2]


def test_frames_with_id_gaps_and_one_record_each_keep_their_ids_and_times(
    tmp_path: pathlib.Path,
) -> None:
    """The writer's two shortcuts (contiguous ids, one record per frame) fall back to the
    general path when ids have gaps or frames hold several records."""
    with ResultsStore(FIELDS, results_file=tmp_path / "gap.duckdb", limit=None) as store:
        store.put_frame(trades(2), 1, T0)
        store.put_frame(trades(3), 10, T0 + 5_000)
        store.put_frame(trades(1), 13, T0 + 9_000)
        store.flush(TIMEOUT)
        store.put_frame(trades(1), 14, T0 + 12_000)
        store.put_frame(trades(1), 15, T0 + 13_000)
        store.flush(TIMEOUT)
        got = store.read()
    assert got["id"].tolist() == [1, 2, 10, 11, 12, 13, 14, 15]
    micros = [(stamp.value - T0) // 1_000 for stamp in got["received_at"]]  # .value: ns
    assert micros == [0, 0, 5, 5, 5, 9, 12, 13]
