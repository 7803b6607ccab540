"""The Parquet sink's files: hive partitions, typed columns, the values written, rolls by rows,
bytes and time, no partial file ever visible, close, bad options refused up front."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.sinks import sink_from_url
from obbws_jupyter.sinks.parquet import ParquetSink, read
from tests.conftest import TIMEOUT, wait_until
from tests.sinks_parquet.conftest import NOON_UTC, TZ, batch, parquet_files, records

Make = Callable[..., ParquetSink]


def test_files_are_hive_partitioned_with_typed_tz_aware_columns(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """Rows land in date=YYYY-MM-DD/symbol=S folders, one file per partition, each with every
    column typed as the results table (timestamps tz-aware in the connection's tz)."""
    sink = make_sink()
    sink.write(batch(records(1, 10)))
    sink.flush(TIMEOUT)
    files = parquet_files(tmp_path / "out")
    assert [f.parent.relative_to(tmp_path / "out").as_posix() for f in files] == [
        "date=2026-11-20/symbol=BTCUSD",
        "date=2026-11-20/symbol=ETHUSD",
    ]
    schema = pq.read_schema(files[0])
    assert schema.names == ["id", "received_at", "date", "symbol", "price", "size", "is_bid"]
    assert schema.field("date").type == pa.timestamp("us", tz=TZ)
    assert schema.field("received_at").type == pa.timestamp("us", tz=TZ)
    assert [schema.field(n).type for n in ("price", "size", "is_bid", "symbol")] == [
        pa.float64(),
        pa.int64(),
        pa.bool_(),
        pa.string(),
    ]
    described = duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{files[0]}', hive_partitioning = false)"
    ).fetchall()
    assert described[2][:2] == ("date", "TIMESTAMP WITH TIME ZONE")
    health = sink.health()
    assert (health.kind, health.state, health.rows_written, health.rows_pending) == (
        "parquet",
        "ok",
        10,
        0,
    )


def test_values_round_trip_as_duckdb_stores_them(make_sink: Make, tmp_path: pathlib.Path) -> None:
    """Every value read back equals the record's; nanoseconds are rounded to microseconds the
    way DuckDB rounds them into a TIMESTAMPTZ column."""
    rows = records(1, 50)
    rows[3]["date"] = NOON_UTC + 999  # rounds up
    rows[4]["date"] = NOON_UTC + 499  # rounds down
    del rows[5]["price"]  # a missing value is a NULL
    sink = make_sink()
    sink.write(batch(rows))
    sink.flush(TIMEOUT)
    got = read(tmp_path / "out")
    assert list(got["id"]) == list(range(1, 51))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (d TIMESTAMPTZ)")
    con.executemany("INSERT INTO t SELECT make_timestamp_ns(?)", [[r["date"]] for r in rows])
    expected = [v for (v,) in con.execute("SELECT epoch_us(d) FROM t").fetchall()]
    assert [int(ts.value // 1_000) for ts in got["date"]] == expected
    assert got.loc[5, "price"] != got.loc[5, "price"]  # NaN: the NULL
    assert list(got["size"]) == [r["size"] for r in rows]
    assert list(got["is_bid"]) == [r["is_bid"] for r in rows]
    assert list(got["symbol"]) == [r["symbol"] for r in rows]
    assert str(got["date"].dt.tz) == TZ


def test_day_is_the_record_date_in_the_connection_tz_else_received_at(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """02:00 UTC is the previous day in New York, so that is the record's date= folder; a
    record without a date goes by its received_at."""
    early = NOON_UTC - 10 * 3_600 * 10**9  # 2026-11-20 02:00 UTC = 11-19 21:00 in New York
    rows = records(1, 2)
    rows[0]["date"] = early
    del rows[1]["date"]
    rows[1]["received_at"] = early + 86_400 * 10**9  # 11-20 21:00 in New York
    sink = make_sink()
    sink.write(batch(rows))
    sink.flush(TIMEOUT)
    folders = [f.parent.parent.name for f in parquet_files(tmp_path / "out")]
    assert sorted(folders) == ["date=2026-11-19", "date=2026-11-20"]


def test_symbols_are_percent_encoded_and_hive_readers_decode_them(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """EUR/USD becomes symbol=EUR%2FUSD (one folder, not two), a missing symbol the hive
    default partition; DuckDB's hive reader gives the symbols back."""
    rows = records(1, 3, symbols=("EUR/USD", "A B%", "X"))
    del rows[1]["symbol"]  # the "X" one
    sink = make_sink()
    sink.write(batch(rows))
    sink.flush(TIMEOUT)
    names = sorted(f.parent.name for f in parquet_files(tmp_path / "out"))
    assert names == ["symbol=A%20B%25", "symbol=EUR%2FUSD", "symbol=__HIVE_DEFAULT_PARTITION__"]
    glob = f"{tmp_path / 'out'}/**/*.parquet"
    decoded = duckdb.sql(
        f"SELECT DISTINCT symbol FROM read_parquet('{glob}', hive_partitioning = true) "
        "WHERE symbol <> '__HIVE_DEFAULT_PARTITION__' ORDER BY 1"
    ).fetchall()
    assert decoded == [("A B%",), ("EUR/USD",)]


def test_roll_by_rows_writes_whole_files_and_keeps_the_rest(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """With roll_rows=100, 250 rows of one symbol make two files of 100 at once; the last 50
    wait (pending) for more rows or a flush."""
    sink = make_sink(roll_rows=100, roll_seconds=3_600)
    sink.write(batch(records(1, 250, symbols=("BTCUSD",))))
    assert wait_until(lambda: sink.health().rows_written == 200)
    files = parquet_files(tmp_path / "out")
    assert [pq.read_metadata(f).num_rows for f in files] == [100, 100]
    assert sink.health().rows_pending == 50
    sink.flush(TIMEOUT)
    assert sorted(pq.read_metadata(f).num_rows for f in parquet_files(tmp_path / "out")) == [
        50,
        100,
        100,
    ]


def test_roll_by_time_makes_rows_visible_without_a_flush(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """With roll_seconds=0.2, rows become a file by themselves; later rows a later file."""
    sink = make_sink(roll_seconds=0.2)
    sink.write(batch(records(1, 10)))
    assert wait_until(lambda: sink.health().rows_written == 10)
    assert len(parquet_files(tmp_path / "out")) == 2
    sink.write(batch(records(11, 10)))
    assert wait_until(lambda: sink.health().rows_written == 20)
    assert len(parquet_files(tmp_path / "out")) == 4
    assert list(read(tmp_path / "out")["id"]) == list(range(1, 21))


def test_roll_by_bytes_writes_every_partition(make_sink: Make, tmp_path: pathlib.Path) -> None:
    """Once the rows held in memory pass roll_bytes, every partition is written."""
    sink = make_sink(roll_bytes=20_000, roll_seconds=3_600)
    sink.write(batch(records(1, 100)))  # ~6 KB of Arrow
    assert sink.health().rows_written == 0
    sink.write(batch(records(101, 400)))
    assert wait_until(lambda: sink.health().rows_written == 500)
    assert len(parquet_files(tmp_path / "out")) == 2


def test_a_reader_never_sees_a_partial_file(make_sink: Make, tmp_path: pathlib.Path) -> None:
    """While files are written as fast as possible, a reader globbing *.parquet in a loop
    always reads whole files: no error, and the row count it sees only grows."""
    out = tmp_path / "out"
    out.mkdir()
    sink = make_sink(roll_rows=500, roll_seconds=3_600)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        con = duckdb.connect()
        while not stop.is_set():
            try:
                if not parquet_files(out):
                    continue
                query = f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')"
                seen.append(con.execute(query).fetchall()[0][0])
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for first in range(1, 40_001, 2_000):
            sink.write(batch(records(first, 2_000)))
        sink.flush(TIMEOUT)
        assert wait_until(lambda: len(seen) > 5 and seen[-1] == 40_000)
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert not errors, errors[0]
    assert seen == sorted(seen)
    assert len(parquet_files(out)) == 80
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_close_writes_what_is_held_and_counts_nothing_lost(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """Rows still in memory at close are written; close reports no loss."""
    sink = make_sink(roll_seconds=3_600)
    sink.write(batch(records(1, 30)))
    assert wait_until(lambda: sink.health().rows_pending == 30)
    assert sink.close(TIMEOUT) == 0
    assert len(read(tmp_path / "out")) == 30
    health = sink.health()
    assert (health.state, health.rows_written, health.rows_dropped) == ("closed", 30, 0)


@pytest.mark.parametrize(
    ("url", "options", "says"),
    [
        ("parquet://relative/dir", {}, "parquet:///absolute/dir"),
        ("parquet://host/dir", {}, "names a local directory"),
        ("parquet:///tmp/x*", {}, "glob characters"),
        ("parquet:///", {}, "not the root"),
        ("parquet:///tmp/obbws-pq", {"roll_rows": 0}, "roll_rows must be an int >= 1"),
        ("parquet:///tmp/obbws-pq", {"roll_bytes": "1MB"}, "roll_bytes must be an int"),
        ("parquet:///tmp/obbws-pq", {"roll_seconds": -1}, "roll_seconds must be seconds"),
        ("parquet:///tmp/obbws-pq", {"compression": "brotli2"}, "compression must be one of"),
        ("parquet:///tmp/obbws-pq", {"view": "drop table"}, "view must be an SQL name"),
        ("parquet:///tmp/obbws-pq", {"roll_every": 5}, "unknown Parquet sink option"),
        ("parquet:///tmp/obbws-pq", {"drop": "all"}, "drop must be one of"),
    ],
)
def test_bad_urls_and_options_raise_before_anything_starts(
    url: str, options: dict[str, Any], says: str
) -> None:
    """A bad URL or option raises InvalidParameterError naming it, and nothing is created."""
    with pytest.raises(InvalidParameterError, match=says.replace("*", r"\*")):
        sink_from_url(url, **options)
    assert not pathlib.Path("/tmp/obbws-pq").exists()


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: pathlib.Path) -> None:
    """A URL naming an existing file (not a directory) is refused when the sink is built."""
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InvalidParameterError, match="is not a directory"):
        sink_from_url(f"parquet://{target}")


def test_relative_urls_resolve_against_the_current_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parquet://./rel/dir is the directory rel/dir under the current directory."""
    monkeypatch.chdir(tmp_path)
    sink = sink_from_url("parquet://./rel/dir")
    assert isinstance(sink, ParquetSink)
    assert sink.directory == tmp_path / "rel" / "dir"


def test_read_returns_rows_oldest_first_in_a_chosen_tz(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """read(dir) gives every row of every file, sorted by id, timestamps in the tz asked for;
    dot-files and *.tmp files are not read."""
    sink = make_sink()
    sink.write(batch(records(11, 5)))
    sink.write(batch(records(1, 5)))
    sink.flush(TIMEOUT)
    (tmp_path / "out" / ".x.parquet.tmp").write_bytes(b"half a file")
    got = read(tmp_path / "out", tz="UTC")
    assert list(got["id"]) == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15]
    assert read(sink.url).equals(read(tmp_path / "out"))  # the sink's URL names it too
    assert str(got["date"].dt.tz) == "UTC"
    assert got["date"].iloc[0] == pd.Timestamp(NOON_UTC + 10**9 + 123_456, tz="UTC").floor("us")


def test_timestamps_given_as_datetimes_or_floats_are_written_as_instants(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """A provider's timestamp may be int or float nanoseconds or a datetime (naive means UTC,
    as the store takes it): each is written as the same instant."""
    from datetime import UTC, datetime, timedelta, timezone

    rows = records(1, 4)
    instant = datetime(2026, 11, 20, 12, 0, 1, 250_000, tzinfo=UTC)
    rows[0]["date"] = instant
    rows[1]["date"] = instant.replace(tzinfo=None)
    rows[2]["date"] = instant.astimezone(timezone(timedelta(hours=-5)))
    rows[3]["date"] = float(int(instant.timestamp()) * 10**9 + 250_000_000)
    sink = make_sink()
    sink.write(batch(rows))
    sink.flush(TIMEOUT)
    assert list(read(tmp_path / "out", tz="UTC")["date"]) == [pd.Timestamp(instant)] * 4


def test_two_connections_share_a_folder_without_overwriting(tmp_path: pathlib.Path) -> None:
    """Two sinks (two connections, the same ids) writing into one folder make files of their
    own: every row of both is there."""
    from obbws_jupyter.sinks import SinkContext
    from tests.sinks_parquet.conftest import FIELDS

    sinks = []
    for name in ("capture-a", "capture-b"):
        sink = ParquetSink(f"parquet://{tmp_path / 'shared'}", flush_interval=0.02)
        sink.open(SinkContext(name=name, provider="made-up", fields=FIELDS, tz=TZ))
        sinks.append(sink)
    for sink in sinks:
        sink.write(batch(records(1, 10, symbols=("BTCUSD",))))
    for sink in sinks:
        assert sink.close(TIMEOUT) == 0
    names = sorted(f.name.split("-0")[0] for f in parquet_files(tmp_path / "shared"))
    assert names == ["part-capture-a", "part-capture-b"]
    assert sorted(read(tmp_path / "shared")["id"]) == sorted(list(range(1, 11)) * 2)
