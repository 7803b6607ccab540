"""A Parquet sink on a live demo stream: its rows equal the DuckDB store's, conn.query reads its
files as a view while every other path stays refused, and the status shows it."""

from __future__ import annotations

import pathlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import InvalidParameterError, StoreError
from obbws_jupyter.sinks.parquet import read
from tests.conftest import TIMEOUT, RecordWaiter, wait_until

pytestmark = pytest.mark.integration


def demo(name: str, **kwargs: Any) -> obbws.Connection:
    return obbws.create_connection(
        provider="demo", name=name, symbol="btcusd,ethusd", limit=None, **kwargs
    )


def captured(conn: obbws.Connection, out: pathlib.Path, n: int = 300, **options: Any) -> None:
    """Stream ``n`` records or more into a Parquet sink on ``out``, stop, flush it."""
    sink = conn.add_sink(f"parquet://{out}", flush_interval=0.02, **options)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(n)
    conn.stop_connection()
    sink.flush(TIMEOUT)


def test_the_files_hold_exactly_the_stored_rows(tmp_path: pathlib.Path) -> None:
    """Every row the store holds from the sink's start is in the files, with equal values
    (timestamps included), and nothing else; status.sinks reports the rows written."""
    conn = demo("pq-equal", rate=2_000)
    captured(conn, tmp_path / "out", 1_000)
    files = read(tmp_path / "out")
    stored = conn.get_results()
    stored = stored[stored["id"] >= files["id"].min()].reset_index(drop=True)
    assert len(files) == len(stored) >= 1_000
    for column in stored.columns:
        assert files[column].equals(stored[column]), column
    (health,) = conn.status.sinks
    assert (health.kind, health.state, health.rows_written) == ("parquet", "ok", len(files))


def test_conn_query_reads_the_files_as_a_view(tmp_path: pathlib.Path) -> None:
    """conn.query sees the sink's files as the view `parquet`, joinable with the results
    table, with the same values and types."""
    conn = demo("pq-view", rate=2_000)
    captured(conn, tmp_path / "out", 500)
    (n, matching) = conn.query(
        "SELECT count(*), count(*) FILTER (WHERE r.price = p.price AND r.date = p.date "
        "AND r.received_at = p.received_at AND r.symbol = p.symbol) "
        "FROM parquet p JOIN records r USING (id)"
    ).iloc[0]
    assert n == matching == len(read(tmp_path / "out"))
    by_symbol = conn.query("SELECT symbol, count(*) AS n FROM parquet GROUP BY 1 ORDER BY 1")
    assert list(by_symbol["symbol"]) == ["BTCUSD", "ETHUSD"]
    assert str(conn.query("SELECT date FROM parquet LIMIT 1")["date"].dt.tz) == conn.get_client().tz


def test_the_view_follows_files_appearing_and_going(tmp_path: pathlib.Path) -> None:
    """Before any file is written the view is there, empty, with the table's columns; once
    files are written it reads them; with every file removed it is empty again."""
    conn = demo("pq-empty", rate=50)
    sink = conn.add_sink(f"parquet://{tmp_path / 'out'}", roll_seconds=3_600)
    empty = conn.query("SELECT * FROM parquet")
    assert len(empty) == 0
    assert list(empty.columns) == list(conn.get_results().columns)
    conn.wait(10)
    sink.flush(TIMEOUT)
    assert conn.query("SELECT count(*) AS n FROM parquet")["n"][0] == sink.health().rows_written
    for path in (tmp_path / "out").rglob("*.parquet"):
        path.unlink()
    assert len(conn.query("SELECT * FROM parquet")) == 0


def test_several_sinks_get_their_own_views_and_removal_drops_one(tmp_path: pathlib.Path) -> None:
    """Two Parquet sinks are `parquet` and `parquet_2` (or the view= name given); once a sink
    is removed its view is gone."""
    conn = demo("pq-two", rate=500)
    conn.add_sink(f"parquet://{tmp_path / 'a'}")
    conn.add_sink(f"parquet://{tmp_path / 'b'}")
    conn.add_sink(f"parquet://{tmp_path / 'c'}", view="ticks")
    assert conn.get_client().query_views == {
        "parquet": str(tmp_path / "a"),
        "parquet_2": str(tmp_path / "b"),
        "ticks": str(tmp_path / "c"),
    }
    for view in ("parquet", "parquet_2", "ticks"):
        assert len(conn.query(f"SELECT * FROM {view}").columns) > 3
    conn.remove_sink(f"parquet://{tmp_path / 'b'}")
    with pytest.raises(InvalidParameterError, match="parquet_2"):
        conn.query("SELECT * FROM parquet_2")


def test_other_paths_stay_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a Parquet sink, conn.query still cannot read any other file (a Parquet file next
    to the sink's folder, a path climbing out of it, DuckDB's default spill folder ./.tmp,
    /etc/passwd) nor write one."""
    monkeypatch.chdir(tmp_path)
    conn = demo("pq-closed", rate=500)
    captured(conn, tmp_path / "out", 50)
    (tmp_path / "outside").mkdir()
    pq.write_table(pa.table({"secret": [1]}), tmp_path / "outside" / "x.parquet")
    spill = pathlib.Path(".tmp")  # DuckDB's default spill folder, readable unless turned off
    spill.mkdir(exist_ok=True)
    (spill / "x.csv").write_text("secret\n1\n")
    refused = [
        f"SELECT * FROM read_csv('{spill.absolute()}/x.csv')",
        f"SELECT * FROM read_parquet('{tmp_path}/outside/x.parquet')",
        f"SELECT * FROM read_parquet('{tmp_path}/out/../outside/x.parquet')",
        f"SELECT * FROM read_parquet('{tmp_path}/out*/**/*.parquet')",
        "SELECT * FROM read_csv('/etc/passwd')",
    ]
    for sql in refused:
        with pytest.raises((InvalidParameterError, StoreError), match=r"Permission|disabled"):
            conn.query(sql)
    with pytest.raises(InvalidParameterError, match="one read-only SELECT"):
        conn.query(f"COPY (SELECT 1) TO '{tmp_path}/out/x.csv'")
    with pytest.raises(InvalidParameterError, match="one read-only SELECT"):
        conn.query("SET allowed_directories = ['/']")
    assert not (tmp_path / "out" / "x.csv").exists()
    settings = conn.query(
        "SELECT current_setting('enable_external_access') AS external, "
        "current_setting('lock_configuration') AS locked"
    ).iloc[0]
    assert (bool(settings["external"]), bool(settings["locked"])) == (False, True)


def test_create_connection_takes_a_parquet_sink_and_kill_writes_its_files(
    tmp_path: pathlib.Path,
) -> None:
    """create_connection(sinks=[{"url": "parquet://...", ...}]) opens it; kill writes the
    rows it still holds, so the files have every row received."""
    out = tmp_path / "out"
    conn = demo("pq-create", rate=1_000, sinks=[{"url": f"parquet://{out}", "roll_seconds": 3_600}])
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(200)
    conn.stop_connection()
    received = conn.status.records_received
    conn.kill()
    assert list(read(out)["id"]) == list(range(1, received + 1))


def test_a_folder_that_cannot_be_made_is_reported_and_the_store_keeps_every_row(
    tmp_path: pathlib.Path,
) -> None:
    """A sink whose folder cannot be made (under a file) is still added: the status shows it
    retrying with the OS error, and the stream and the DuckDB store go on untouched."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    conn = demo("pq-dead", rate=1_000, sinks=[{"url": f"parquet://{blocker}/out",
                                                "roll_seconds": 0.05}])  # fmt: skip
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(300)
    assert wait_until(lambda: conn.status.sinks[0].state == "retrying")
    assert "Not a directory" in str(conn.status.sinks[0].last_error)
    conn.stop_connection()
    assert len(conn.get_results()) == conn.status.records_received
