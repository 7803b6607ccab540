"""ResultsStore: the DuckDB results file, its writer thread, the limit cap and the readers."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import duckdb
import pandas as pd
import pytest

from obbws_jupyter._store import ROW_GROUP_ROWS, ResultsStore, rows_due
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    ObbwsTimeoutError,
    SchemaMismatchError,
    StoreError,
)
from obbws_jupyter.protocol import Field, FieldType
from tests.conftest import wait_until

FIELDS = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("price", FieldType.FLOAT),
    Field("size", FieldType.INT),
    Field("is_bid", FieldType.BOOL),
)
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in ns


def record(i: int, **overrides: Any) -> dict[str, Any]:
    """A demo-like record with id ``i``."""
    rec: dict[str, Any] = {
        "id": i,
        "received_at": T0 + i * 1_000_000,
        "date": T0 + i * 1_000_000 - 5_000,
        "symbol": "btcusd" if i % 2 else "ethusd",
        "price": 100.0 + i / 4,
        "size": i,
        "is_bid": i % 3 == 0,
    }
    rec.update(overrides)
    return rec


def records(start: int, count: int) -> list[dict[str, Any]]:
    return [record(i) for i in range(start, start + count)]


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def private_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Make tempfile put the store's temp directories under tmp_path/tmp."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def store(private_tmp: pathlib.Path) -> Iterator[ResultsStore]:
    s = ResultsStore(FIELDS, limit=None, tz="Asia/Tokyo", name="test")
    yield s
    s.close()


def make_table(path: pathlib.Path, ddl: str, rows: str = "") -> None:
    con = duckdb.connect(str(path))
    con.execute(ddl)
    if rows:
        con.execute(rows)
    con.close()


# -- roundtrip and types ---------------------------------------------------------------------


def test_roundtrip_typed_columns_tz_aware(store: ResultsStore) -> None:
    """put + flush + read gives typed columns, oldest first, dates tz-aware in the store's tz."""
    store.put([record(1), record(2)])
    store.put([record(3, price=None, symbol=None)])
    store.put([{"id": 4, "received_at": T0}])  # optional fields absent -> NULL
    store.flush()
    df = store.read()
    assert list(df.columns) == ["id", "received_at", "date", "symbol", "price", "size", "is_bid"]
    assert df["id"].tolist() == [1, 2, 3, 4]
    assert str(df["date"].dt.tz) == "Asia/Tokyo"
    assert str(df["received_at"].dt.tz) == "Asia/Tokyo"
    expected = pd.Timestamp(T0 + 1_000_000 - 5_000, unit="ns", tz="UTC").tz_convert("Asia/Tokyo")
    assert df["date"].iloc[0] == expected
    assert df["symbol"].iloc[0] == "btcusd"
    assert df["price"].iloc[1] == 100.5
    assert df["size"].iloc[1] == 2
    assert bool(df["is_bid"].iloc[2]) is True
    assert pd.isna(df["price"].iloc[2]) and pd.isna(df["symbol"].iloc[2])
    assert pd.isna(df["date"].iloc[3])
    assert df["price"].dtype == "float64"
    assert store.count() == 4


def test_empty_read_has_columns_and_dtypes(store: ResultsStore) -> None:
    """An empty table reads as an empty DataFrame with every column and typed dtypes."""
    df = store.read()
    assert df.empty
    assert list(df.columns) == ["id", "received_at", "date", "symbol", "price", "size", "is_bid"]
    assert str(df["date"].dtype).startswith("datetime64[") and "Asia/Tokyo" in str(df["date"].dtype)
    assert df["id"].dtype == "int64"
    assert df["price"].dtype == "float64"


def test_read_last_gives_newest_oldest_first(store: ResultsStore) -> None:
    """read(last=n) returns the newest n rows, still ordered oldest first."""
    store.put(records(1, 10))
    store.flush()
    assert store.read(last=3)["id"].tolist() == [8, 9, 10]
    assert store.read(last=0).empty
    with pytest.raises(InvalidParameterError):
        store.read(last=-1)


def test_reserved_word_table_name_is_quoted(private_tmp: pathlib.Path) -> None:
    """A table name that is an SQL keyword works because identifiers are always quoted."""
    with ResultsStore(FIELDS, table_name="select") as s:
        s.put([record(1)])
        s.flush()
        assert s.read()["id"].tolist() == [1]
        assert len(s.query('SELECT * FROM "select"')) == 1


# -- limit cap -------------------------------------------------------------------------------


def test_limit_caps_rows_to_newest(private_tmp: pathlib.Path) -> None:
    """With limit=1000, 50k rows in 100 batches leave exactly the newest 1000 rows."""
    with ResultsStore(FIELDS, limit=1000, flush_interval=0.01) as s:
        for batch in range(100):
            s.put(records(1 + batch * 500, 500))
            if batch % 10 == 9:
                s.flush()
                assert s.count() <= 1000
        s.flush()
        assert s.count() == 1000
        ids = s.read()["id"].tolist()
        assert ids == list(range(49_001, 50_001))
        assert s.stats["rows_written"] == 50_000


def test_batch_larger_than_limit(private_tmp: pathlib.Path) -> None:
    """A single batch bigger than the limit stores only its newest `limit` rows."""
    with ResultsStore(FIELDS, limit=7, flush_interval=60) as s:
        s.put(records(1, 100))
        s.flush()
        assert s.read()["id"].tolist() == list(range(94, 101))


def test_limit_none_keeps_all(private_tmp: pathlib.Path) -> None:
    """limit=None keeps every row."""
    with ResultsStore(FIELDS, limit=None, flush_interval=0.01) as s:
        for batch in range(20):
            s.put(records(1 + batch * 1000, 1000))
        s.flush()
        assert s.count() == 20_000


# -- clear, ids ------------------------------------------------------------------------------


def test_clear_returns_count_and_ids_continue(store: ResultsStore) -> None:
    """clear() flushes, deletes everything, returns the count; later ids keep growing."""
    assert store.next_id == 1
    store.put(records(1, 5))
    assert store.clear() == 5
    assert store.count() == 0
    store.put(records(6, 2))
    store.flush()
    assert store.read()["id"].tolist() == [6, 7]


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table_name": "bad name"}, "bad name"),
        ({"table_name": "1abc"}, "1abc"),
        ({"table_name": 'x"; DROP TABLE y; --'}, "DROP"),
        ({"table_name": "a" * 64}, "62"),
        ({"limit": 0}, "limit=0"),
        ({"limit": True}, "limit=True"),
        ({"limit": 1.5}, "limit=1.5"),
        ({"tz": "Mars/Olympus"}, "Mars/Olympus"),
        ({"tz": ""}, "tz=''"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"max_pending": 0}, "max_pending"),
        ({"coalesce_lag": -1.0}, "coalesce_lag"),
    ],
)
def test_invalid_parameters_raise_before_any_file(
    tmp_path: pathlib.Path, private_tmp: pathlib.Path, kwargs: dict[str, Any], match: str
) -> None:
    """Bad table_name / limit / tz raise InvalidParameterError and create no file or dir."""
    target = tmp_path / "r.duckdb"
    with pytest.raises(InvalidParameterError, match=match):
        ResultsStore(FIELDS, results_file=target, **kwargs)
    with pytest.raises(InvalidParameterError, match=match):
        ResultsStore(FIELDS, **kwargs)
    assert not target.exists()
    assert list(private_tmp.iterdir()) == []


def test_table_name_error_names_the_rule(private_tmp: pathlib.Path) -> None:
    """The table_name error message states the naming rule."""
    with pytest.raises(InvalidParameterError, match="letter or underscore"):
        ResultsStore(FIELDS, table_name="my-table")


# -- existing files --------------------------------------------------------------------------


def test_reuse_existing_file_keeps_rows_and_continues_ids(tmp_path: pathlib.Path) -> None:
    """A file with a matching table is reused: rows kept, next_id continues, file kept."""
    target = tmp_path / "r.duckdb"
    with ResultsStore(FIELDS, results_file=target, save_results=True) as first:
        assert first.created
        first.put(records(1, 3))
    assert target.exists()
    with ResultsStore(FIELDS, results_file=target) as second:
        assert not second.created
        assert second.next_id == 4
        second.put(records(second.next_id, 2))
        second.flush()
        assert second.read()["id"].tolist() == [1, 2, 3, 4, 5]
    assert target.exists()  # pre-existing: never deleted


def test_other_table_in_same_file_is_untouched(tmp_path: pathlib.Path) -> None:
    """A new table_name in an existing file adds a table and leaves the others alone."""
    target = tmp_path / "r.duckdb"
    make_table(target, "CREATE TABLE other (x INTEGER)", "INSERT INTO other VALUES (42)")
    with ResultsStore(FIELDS, results_file=target) as s:
        s.put([record(1)])
        s.flush()
    con = duckdb.connect(str(target))
    try:
        assert con.execute("SELECT x FROM other").fetchall() == [(42,)]
        assert con.execute("SELECT count(*) FROM records").fetchall() == [(1,)]
    finally:
        con.close()


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE records (id BIGINT, received_at TIMESTAMPTZ, date TIMESTAMPTZ)",
        "CREATE TABLE records (id BIGINT, received_at TIMESTAMPTZ, date TIMESTAMPTZ, "
        "symbol VARCHAR, price VARCHAR, size BIGINT, is_bid BOOLEAN)",
        "CREATE TABLE RECORDS (id INTEGER)",
    ],
)
def test_schema_mismatch_raises_and_changes_nothing(tmp_path: pathlib.Path, ddl: str) -> None:
    """An existing table with other columns raises SchemaMismatchError; the file is unchanged."""
    target = tmp_path / "r.duckdb"
    make_table(target, ddl)
    before = sha256(target)
    with pytest.raises(SchemaMismatchError, match="table_name") as info:
        ResultsStore(FIELDS, results_file=target)
    assert "price DOUBLE" in str(info.value)  # the expected columns are named
    assert target.exists() and sha256(target) == before


def test_non_duckdb_file_raises_and_is_untouched(tmp_path: pathlib.Path) -> None:
    """A file that is not a DuckDB database raises StoreError; its bytes stay the same."""
    for name, content in [("notes.txt", b"hello, not a database\n" * 20), ("empty.db", b"")]:
        target = tmp_path / name
        target.write_bytes(content)
        with pytest.raises(StoreError, match="not a valid DuckDB"):
            ResultsStore(FIELDS, results_file=target)
        assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "notes.txt"]


def test_missing_directory_raises(tmp_path: pathlib.Path) -> None:
    """A results_file in a directory that does not exist raises StoreError."""
    with pytest.raises(StoreError, match="does not exist"):
        ResultsStore(FIELDS, results_file=tmp_path / "nope" / "r.duckdb")


# -- file lifetime ---------------------------------------------------------------------------


def test_temp_dir_removed_on_close(private_tmp: pathlib.Path) -> None:
    """With no results_file, close() removes the private temp directory."""
    s = ResultsStore(FIELDS)
    assert s.created and s.path.name == "results.duckdb"
    assert s.path.parent.parent == private_tmp
    assert s.path.parent.name.startswith(f"obbws-{os.getpid()}-")
    s.put([record(1)])
    s.close()
    assert not s.path.parent.exists()
    assert list(private_tmp.iterdir()) == []


def test_temp_dir_kept_with_save_results(private_tmp: pathlib.Path) -> None:
    """save_results=True keeps the temp file, readable after close."""
    s = ResultsStore(FIELDS, save_results=True)
    s.put([record(1)])
    s.close()
    assert s.path.exists()
    con = duckdb.connect(str(s.path))
    try:
        assert con.execute("SELECT count(*) FROM records").fetchall() == [(1,)]
    finally:
        con.close()


def test_new_user_file_deleted_unless_saved(tmp_path: pathlib.Path) -> None:
    """A results_file the store created is deleted on close unless save_results."""
    gone = tmp_path / "gone.duckdb"
    ResultsStore(FIELDS, results_file=gone).close()
    assert not gone.exists()
    kept = tmp_path / "kept.duckdb"
    ResultsStore(FIELDS, results_file=kept, save_results=True).close()
    assert kept.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.duckdb"]


def test_pre_existing_file_never_deleted(tmp_path: pathlib.Path) -> None:
    """A results_file that existed before is kept on close, even without save_results."""
    target = tmp_path / "r.duckdb"
    ResultsStore(FIELDS, results_file=target, save_results=True).close()
    s = ResultsStore(FIELDS, results_file=target, save_results=False)
    s.close()
    assert target.exists()


def test_close_delete_overrides(tmp_path: pathlib.Path) -> None:
    """close(delete=...) overrides the default choice."""
    kept = tmp_path / "kept.duckdb"
    ResultsStore(FIELDS, results_file=kept).close(delete=False)
    assert kept.exists()
    ResultsStore(FIELDS, results_file=kept).close(delete=True)
    assert not kept.exists()


def test_close_is_idempotent_and_final(store: ResultsStore) -> None:
    """close() twice is fine; afterwards every method raises StoreError('store is closed')."""
    store.put([record(1)])
    store.close()
    store.close()
    assert store.closed
    calls = [
        lambda: store.put([record(2)]),
        store.flush,
        store.read,
        store.count,
        lambda: store.query("SELECT 1"),
        store.clear,
        lambda: store.last_records(1),
        lambda: store.export(store.path.with_suffix(".csv")),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="store is closed"):
            call()


def test_writer_thread_stops_on_close(store: ResultsStore) -> None:
    """The writer thread is named after the store and is gone after close()."""
    names = {t.name for t in threading.enumerate()}
    assert "obbws-store-test" in names
    store.close()
    assert "obbws-store-test" not in {t.name for t in threading.enumerate()}


# -- query -----------------------------------------------------------------------------------


def test_query_runs_select(store: ResultsStore) -> None:
    """query() runs a SELECT (with parameters) and converts timestamps to the tz."""
    store.put(records(1, 10))
    store.flush()
    df = store.query(
        "SELECT symbol, count(*) AS n, max(date) AS last FROM records "
        "WHERE id > ? GROUP BY symbol ORDER BY symbol",
        [4],
    )
    assert df["symbol"].tolist() == ["btcusd", "ethusd"]
    assert df["n"].tolist() == [3, 3]
    assert str(df["last"].dt.tz) == "Asia/Tokyo"
    assert len(store.query("WITH t AS (SELECT * FROM records) SELECT * FROM t;")) == 10


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM records",
        "DROP TABLE records",
        "SELECT 1; SELECT 2",
        "SELECT 1; DELETE FROM records",
        "INSERT INTO records (id) VALUES (99)",
        "UPDATE records SET price = 0",
        "COPY records TO 'x.csv'",
        "ATTACH 'other.duckdb'",
        "",
    ],
)
def test_query_refuses_non_select(store: ResultsStore, sql: str) -> None:
    """query() refuses anything but exactly one SELECT, and the table is unchanged."""
    store.put(records(1, 3))
    store.flush()
    with pytest.raises(InvalidParameterError, match="one read-only SELECT"):
        store.query(sql)
    assert store.count() == 3


def test_query_data_modifying_cte_changes_nothing(store: ResultsStore) -> None:
    """A SELECT with a DELETE ... RETURNING CTE runs in a rolled-back transaction."""
    store.put(records(1, 3))
    store.flush()
    store.query("WITH d AS (DELETE FROM records RETURNING *) SELECT count(*) FROM d")
    assert store.count() == 3


def test_query_bad_sql_raises_parameter_error(store: ResultsStore) -> None:
    """Unparseable SQL or an unknown column raise InvalidParameterError with DuckDB's reason."""
    with pytest.raises(InvalidParameterError, match="parse"):
        store.query("SELEC 1")
    with pytest.raises(InvalidParameterError, match="nope"):
        store.query("SELECT nope FROM records")


# -- last_records ----------------------------------------------------------------------------


def test_last_records_shape_and_before_id(store: ResultsStore) -> None:
    """last_records gives put()-shaped dicts (ns timestamps, None omitted), oldest first."""
    store.put(records(1, 9))
    store.put([record(10, symbol=None, is_bid=None)])
    store.flush()
    last = store.last_records(3)
    assert [r["id"] for r in last] == [8, 9, 10]
    assert last[0] == record(8)
    assert last[-1] == {k: v for k, v in record(10).items() if k not in ("symbol", "is_bid")}
    assert isinstance(last[0]["date"], int)
    assert [r["id"] for r in store.last_records(2, before_id=5)] == [3, 4]
    assert store.last_records(0) == []
    assert [r["id"] for r in store.last_records(100, before_id=3)] == [1, 2]


# -- export ----------------------------------------------------------------------------------


def test_export_parquet_roundtrip(store: ResultsStore, tmp_path: pathlib.Path) -> None:
    """export('x.parquet') writes every row; pandas reads the same values back."""
    store.put(records(1, 50))
    out = store.export(tmp_path / "x.parquet")
    assert out == tmp_path / "x.parquet"
    back = pd.read_parquet(out)
    df = store.read()
    assert back["id"].tolist() == df["id"].tolist()
    assert back["price"].tolist() == df["price"].tolist()
    assert (back["date"].dt.tz_convert("Asia/Tokyo") == df["date"]).all()


def test_export_csv_roundtrip(store: ResultsStore, tmp_path: pathlib.Path) -> None:
    """export(format='csv') writes a header and every row; pandas parses it back."""
    store.put(records(1, 20))
    out = store.export(tmp_path / "x.txt", format="csv")
    back = pd.read_csv(out)
    df = store.read()
    assert list(back.columns) == list(df.columns)
    assert back["id"].tolist() == df["id"].tolist()
    assert back["symbol"].tolist() == df["symbol"].tolist()
    dates = pd.to_datetime(back["date"], format="ISO8601").dt.tz_convert("Asia/Tokyo")
    assert (dates == df["date"]).all()


def test_export_refuses_other_formats(store: ResultsStore, tmp_path: pathlib.Path) -> None:
    """Unknown formats, unknown suffixes and the results file itself are refused."""
    with pytest.raises(InvalidParameterError, match="'json'"):
        store.export(tmp_path / "x.json", format="json")
    with pytest.raises(InvalidParameterError, match=r"\.parquet or \.csv"):
        store.export(tmp_path / "x.xlsx")
    with pytest.raises(InvalidParameterError, match="results file"):
        store.export(store.path, format="csv")
    assert list(tmp_path.glob("x.*")) == []


# -- threads and back-pressure ---------------------------------------------------------------


def test_put_and_read_from_other_threads(store: ResultsStore) -> None:
    """put() from one thread while another thread reads works, and nothing is lost."""
    errors: list[BaseException] = []
    done = threading.Event()

    def producer() -> None:
        try:
            for batch in range(200):
                store.put(records(1 + batch * 50, 50))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                df = store.read(last=100)
                assert df["id"].is_monotonic_increasing
                store.count()
                store.last_records(5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    store.flush()
    assert store.count() == 10_000


def test_max_pending_drops_oldest_and_counts(
    private_tmp: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond max_pending waiting rows the oldest are dropped, counted and logged."""
    with ResultsStore(FIELDS, limit=None, flush_interval=3600, max_pending=10) as s:
        s.put(records(1, 4))
        s.put(records(5, 8))
        s.put(records(13, 13))
        stats = s.stats
        assert stats["dropped"] == 15
        assert stats["pending"] == 10
        s.flush()
        assert s.read()["id"].tolist() == list(range(16, 26))
        assert s.stats["pending"] == 0
    assert "dropped" in caplog.text


def test_batch_rows_wakes_the_writer(private_tmp: pathlib.Path) -> None:
    """Reaching batch_rows pending rows starts a write before flush_interval elapses."""
    with ResultsStore(FIELDS, flush_interval=3600, batch_rows=10) as s:
        s.put(records(1, 10))
        s.flush(timeout=10)  # would also wake it; stats show the batch went through
        assert s.stats["batches"] == 1
        assert s.count() == 10


RG = ROW_GROUP_ROWS


@pytest.mark.parametrize(
    ("rows", "age", "batch_rows", "now", "wait"),
    [
        (2 * RG + 5, 0.01, RG, 2 * RG, 0.0),  # whole row groups at once; 5 rows wait
        (60_000, 0.1, RG, 0, 0.9),  # 600k rows/s fills a row group in time: wait
        (1_000, 0.1, RG, "all", 0.0),  # 10k rows/s never would: everything now
        (100_000, 1.0, RG, "all", 0.0),  # the oldest row has waited the lag
        (50, 0.0, 10, "all", 0.0),  # batch_rows reached
    ],
)
def test_rows_due_waits_only_for_a_row_group_that_fills_in_time(
    rows: int, age: float, batch_rows: int, now: int | str, wait: float
) -> None:
    """The writer writes whole row groups at once, waits (up to the lag) only when the rate
    fills one in time, and otherwise writes everything pending, as without coalescing."""
    due, delay = rows_due(rows, age, 1.0, batch_rows)
    if now == "all":
        assert due >= rows and delay == 0.0
    else:
        assert due == now and delay == pytest.approx(wait)


def _frames(first: int, count: int, size: int = 50) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Frames of ``size`` records (dicts without id and received_at, as a session makes them)
    and each frame's first id."""
    fields = [f.name for f in FIELDS]
    for start in range(first, first + count, size):
        n = min(size, first + count - start)
        frame = [record(i) for i in range(start, start + n)]
        yield [{k: v for k, v in r.items() if k in fields} for r in frame], start


def test_whole_row_groups_are_written_as_soon_as_they_wait(private_tmp: pathlib.Path) -> None:
    """With a row group pending the writer commits exactly one (cutting a frame) without
    waiting for flush_interval; the rest waits for flush(); every row comes back once, with
    its id, its frame's received_at and its values."""
    total = RG + 500
    with ResultsStore(FIELDS, limit=None, flush_interval=3600) as s:
        for rows, first in _frames(1, total):
            s.put_frame(rows, first, T0 + first * 1_000)
        assert wait_until(lambda: s.stats["rows_in_table"] == RG)
        stats = s.stats
        assert (stats["batches"], stats["pending"]) == (1, 500)
        s.flush()
        assert (s.stats["batches"], s.stats["rows_in_table"]) == (2, total)
        got = s.read()
    assert got["id"].tolist() == list(range(1, total + 1))
    expected = pd.DataFrame([record(i) for i in (1, 50, 51, RG, RG + 1, total)])
    frame_first = (expected["id"] - 1) // 50 * 50 + 1
    picked = got.set_index("id").loc[expected["id"]].reset_index()
    assert picked["symbol"].tolist() == expected["symbol"].tolist()
    assert picked["price"].tolist() == expected["price"].tolist()
    assert picked["size"].tolist() == expected["size"].tolist()
    assert picked["is_bid"].tolist() == expected["is_bid"].tolist()

    def utc(ns: pd.Series) -> list[pd.Timestamp]:
        return pd.to_datetime(ns, unit="ns", utc=True).tolist()

    assert picked["received_at"].tolist() == utc(T0 + frame_first * 1_000)
    assert picked["date"].tolist() == utc(expected["date"])


def test_the_cap_holds_with_row_group_writes(private_tmp: pathlib.Path) -> None:
    """A limit of at least a row group keeps row-group writes, and the table still holds
    exactly the newest ``limit`` rows, all counted as written."""
    limit = RG + 1_000
    total = 2 * RG + 10
    with ResultsStore(FIELDS, limit=limit, flush_interval=3600) as s:
        for rows, first in _frames(1, total):
            s.put_frame(rows, first, T0 + first)
        assert wait_until(lambda: s.stats["batches"] >= 1)
        s.flush()
        assert s.read()["id"].tolist() == list(range(total - limit + 1, total + 1))
        assert (s.stats["rows_in_table"], s.stats["rows_written"]) == (limit, total)


def test_write_error_keeps_rows_for_next_try(
    store: ResultsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write is counted and retried with the same rows; nothing is lost, and the
    error is cleared once a write succeeds."""
    real_insert = store._insert
    calls = {"n": 0}

    def flaky(cursor: Any, table: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise duckdb.IOException("disk on fire")
        real_insert(cursor, table)

    monkeypatch.setattr(store, "_insert", flaky)
    store.put(records(1, 5))
    store.flush()
    assert store.read()["id"].tolist() == [1, 2, 3, 4, 5]
    stats = store.stats
    assert stats["errors"] == 1
    assert stats["last_error"] is None  # cleared once writing works again


def test_flush_times_out_when_writes_keep_failing(
    store: ResultsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush() raises ObbwsTimeoutError naming the last write error when writes keep failing."""
    real_insert = store._insert
    failing = threading.Event()
    failing.set()

    def broken(cursor: Any, table: Any) -> None:
        if failing.is_set():
            raise duckdb.IOException("read-only disk")
        real_insert(cursor, table)

    monkeypatch.setattr(store, "_insert", broken)
    store.put(records(1, 3))
    with pytest.raises(ObbwsTimeoutError, match="read-only disk"):
        store.flush(timeout=0.3)
    failing.clear()
    store.flush()
    assert store.count() == 3


def test_unconvertible_records_are_rejected_not_blocking(store: ResultsStore) -> None:
    """A record whose values do not fit the columns is rejected; the others are written."""
    store.put([record(1), record(2, price="not a number"), record(3)])
    store.flush()
    assert store.stats["rejected"] == 1
    assert "not a number" in store.stats["last_error"]
    store.put([record(4, id=None), {"received_at": T0}, record(5)])
    store.flush()
    assert store.stats["rejected"] == 3
    assert "no 'id'" in store.stats["last_error"]
    assert store.read()["id"].tolist() == [1, 3, 5]


def test_same_file_and_table_twice_is_refused(tmp_path: pathlib.Path) -> None:
    """A second open store on the same file and table is refused; another table is fine."""
    target = tmp_path / "r.duckdb"
    with ResultsStore(FIELDS, results_file=target, name="one") as first:
        with pytest.raises(StoreError, match="in use by the open store 'one'"):
            ResultsStore(FIELDS, results_file=target, table_name="RECORDS")
        with ResultsStore(FIELDS, results_file=target, table_name="other") as second:
            first.put([record(1)])
            second.put([record(1), record(2)])
            first.flush()
            second.flush()
            assert (first.count(), second.count()) == (1, 2)
            first.close()  # created the file, but the other store still uses it
            assert target.exists()
            second.put([record(3)])
            second.flush()
            assert second.count() == 3


def test_orphan_temp_dirs_of_dead_processes_are_swept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Temp result dirs of dead processes are removed; live ones and foreign dirs stay."""
    import os
    import subprocess
    import sys

    from obbws_jupyter._store import sweep_orphan_temp_dirs

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    orphan = tmp_path / f"obbws-{dead}-abc123"
    orphan.mkdir()
    (orphan / "results.duckdb").write_bytes(b"x")
    mine = tmp_path / f"obbws-{os.getpid()}-def456"
    mine.mkdir()
    foreign = tmp_path / f"obbws-{dead}-zzz999"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    assert sweep_orphan_temp_dirs(str(tmp_path)) == [orphan]
    assert not orphan.exists() and mine.exists() and foreign.exists()


def test_file_held_by_another_process_gives_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A results file open in another process is refused with the PID and what to do."""
    import subprocess
    import sys

    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ok', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match=rf"another process \(PID {holder.pid}\)"):
            ResultsStore(FIELDS, results_file=path)
    finally:
        holder.communicate("", timeout=30)
    assert path.exists()  # never deleted: it existed before
