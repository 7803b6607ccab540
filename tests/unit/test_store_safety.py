"""ResultsStore under hostile or unlucky use: nothing saved is lost, query() stays in its table,
bad paths are refused, failures are reported and recovered from (issue #7)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import duckdb
import pytest

from obbws_jupyter._store import ResultsStore, sweep_orphan_temp_dirs
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    ObbwsError,
    ObbwsTimeoutError,
    StoreError,
)
from tests.conftest import TIMEOUT
from tests.unit.test_store import FIELDS, record, records


def _rows(path: pathlib.Path, table: str = "records") -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return int(con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])
    finally:
        con.close()


def _failing_inserts(store: ResultsStore, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the store's writes fail (like a full disk) while the returned event is set."""
    real_insert = store._insert
    failing = threading.Event()
    failing.set()

    def insert(*args: Any) -> Any:
        if failing.is_set():
            raise duckdb.IOException('Could not write file "results.duckdb.wal": No space left')
        return real_insert(*args)

    monkeypatch.setattr(store, "_insert", insert)
    return failing


# -- data loss -------------------------------------------------------------------------------


def test_saved_temp_file_survives_the_next_process_sweep(tmp_path: pathlib.Path) -> None:
    """A temp results file kept with save_results=True is never swept by a later process."""
    root = tmp_path / "tmp"
    root.mkdir()
    code = textwrap.dedent(
        """
        from obbws_jupyter._store import ResultsStore
        from tests.unit.test_store import FIELDS, records
        s = ResultsStore(FIELDS, save_results=True, limit=None)
        s.put(records(1, 463))
        s.close()
        print(s.path)
        """
    )
    env = {**os.environ, "TMPDIR": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    saved = pathlib.Path(out.stdout.strip())
    assert saved.exists()
    sweep_orphan_temp_dirs(str(root))  # what the next process (or restarted kernel) does
    assert saved.exists()
    assert _rows(saved) == 463


def test_reopening_with_a_smaller_limit_is_refused_and_keeps_rows(tmp_path: pathlib.Path) -> None:
    """Reopening a file holding more rows than `limit` is refused; no row is trimmed."""
    path = tmp_path / "kept.duckdb"
    with ResultsStore(FIELDS, results_file=path, limit=None, save_results=True) as s:
        s.put(records(1, 3000))
    with pytest.raises(InvalidParameterError, match=r"limit=1000.*3000 rows.*limit=None"):
        ResultsStore(FIELDS, results_file=path, limit=1000)
    assert _rows(path) == 3000
    with ResultsStore(FIELDS, results_file=path, limit=None) as s:
        s.put([record(s.next_id)])
        s.flush()
        assert s.count() == 3001
    with ResultsStore(FIELDS, results_file=path, limit=5000) as s:
        assert s.count() == 3001


def test_closing_the_creator_keeps_another_connections_saved_table(
    tmp_path: pathlib.Path,
) -> None:
    """Closing the store that created a shared file keeps the file when another table is in
    it; only the creator's own unsaved table goes."""
    path = tmp_path / "shared.duckdb"
    creator = ResultsStore(FIELDS, results_file=path, name="creator")
    other = ResultsStore(FIELDS, results_file=path, table_name="kept", save_results=True)
    creator.put(records(1, 10))
    other.put(records(1, 20))
    other.close()
    creator.close()
    assert path.exists()
    assert _rows(path, "kept") == 20
    con = duckdb.connect(str(path), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert tables == {"kept"}


def test_results_file_deleted_from_outside_is_noticed_and_recreated(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A results file removed under a running store is reported and re-created with every row."""
    path = tmp_path / "gone.duckdb"
    with ResultsStore(FIELDS, results_file=path, limit=None, save_results=True) as s:
        s.put(records(1, 100))
        s.flush()
        path.unlink()
        s.put(records(101, 50))
        s.flush()
        assert s.stats["errors"] >= 1
        assert path.exists()
        assert s.count() == 150
    assert "deleted" in caplog.text
    assert _rows(path) == 150


def test_store_recovers_after_failures_and_clears_last_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While writes fail the state says so with the error; after recovery both are cleared."""
    s = ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb", limit=None, flush_interval=0.01)
    try:
        failing = _failing_inserts(s, monkeypatch)
        s.put(records(1, 10))
        with pytest.raises(ObbwsTimeoutError):
            s.flush(timeout=0.3)
        stats = s.stats
        assert stats["state"] == "retrying"
        assert "No space left" in stats["last_error"]
        failing.clear()
        s.flush(timeout=TIMEOUT)
        stats = s.stats
        assert stats["state"] == "ok"
        assert stats["last_error"] is None
        assert stats["rows_in_table"] == 10
    finally:
        s.close()


def test_backlog_is_bounded_while_writes_fail(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With limit=None the backlog is bounded and drops are counted; with a limit only the
    newest `limit` rows wait (older ones would be capped anyway: not a loss)."""
    quiet = {"flush_interval": 3600, "batch_rows": 10**9}  # the writer only runs on flush()
    unbounded = ResultsStore(FIELDS, results_file=tmp_path / "a.duckdb", limit=None, **quiet)
    capped = ResultsStore(FIELDS, results_file=tmp_path / "b.duckdb", limit=1000, **quiet)
    try:
        _failing_inserts(unbounded, monkeypatch)
        _failing_inserts(capped, monkeypatch)
        batch = records(1, 1000)
        for i in range(300):
            unbounded.put([dict(r, id=r["id"] + i * 1000) for r in batch])
            capped.put([dict(r, id=r["id"] + i * 1000) for r in batch[:20]])
        for store in (unbounded, capped):
            with pytest.raises(ObbwsTimeoutError):
                store.flush(timeout=0.3)  # one failed write: the rows went back in line
        stats = unbounded.stats
        assert stats["pending"] == unbounded.max_pending <= 250_000
        assert stats["dropped"] == 300_000 - stats["pending"]
        stats = capped.stats
        assert stats["pending"] == 1000
        assert stats["dropped"] == 0
    finally:
        assert unbounded.close() == unbounded.max_pending
        assert capped.close() == 1000


def test_close_reports_rows_it_could_not_write(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """close() on a store whose writes keep failing returns how many rows were lost."""
    s = ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb", limit=None)
    _failing_inserts(s, monkeypatch)
    s.put(records(1, 1234))
    assert s.close() == 1234
    assert "1234 rows" in caplog.text


def test_written_files_open_in_duckdb_1x(tmp_path: pathlib.Path) -> None:
    """A new results file is written in a storage format that DuckDB 1.3+ readers open."""
    path = tmp_path / "compat.duckdb"
    with ResultsStore(FIELDS, results_file=path, save_results=True) as s:
        s.put(records(1, 10))
    header = path.read_bytes()[:20]
    assert header[8:12] == b"DUCK"
    assert int.from_bytes(header[12:20], "little") == 66  # storage version of DuckDB v1.3.0


# -- query() is closed at the engine and scoped to its table ---------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
    ],
)
def test_query_cannot_read_files(tmp_path: pathlib.Path, sql: str) -> None:
    """query() cannot read the file system: DuckDB's external access is off."""
    with (
        ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb") as s,
        pytest.raises(ObbwsError),
    ):
        s.query(sql)


def test_query_engine_is_locked_down(tmp_path: pathlib.Path) -> None:
    """The engine serving query() has external access, autoinstall and autoload off, and its
    configuration locked."""
    with ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb") as s:
        got = s.query(
            "SELECT current_setting('enable_external_access') AS ext, "
            "current_setting('autoinstall_known_extensions') AS inst, "
            "current_setting('autoload_known_extensions') AS load, "
            "current_setting('lock_configuration') AS locked"
        ).iloc[0]
        assert [bool(v) for v in got] == [False, False, False, True]
        with pytest.raises(ObbwsError):
            s.query("SELECT 1 FROM (SELECT set_config('enable_external_access', 'true'))")


def test_query_cannot_read_another_table_in_the_same_file(tmp_path: pathlib.Path) -> None:
    """query() sees only its own table, never another connection's table in the same file."""
    path = tmp_path / "shared.duckdb"
    with (
        ResultsStore(FIELDS, results_file=path, table_name="mine") as mine,
        ResultsStore(FIELDS, results_file=path, table_name="secret") as other,
    ):
        mine.put(records(1, 3))
        other.put(records(1, 5))
        mine.flush()
        other.flush()
        assert len(mine.query("SELECT * FROM mine")) == 3
        for sql in (
            "SELECT * FROM secret",
            "SELECT * FROM main.secret",
            "SELECT * FROM query_table('secret')",
            "SELECT * FROM query('SELECT * FROM secret')",
        ):
            with pytest.raises(ObbwsError):
                mine.query(sql)


def test_query_times_out(tmp_path: pathlib.Path) -> None:
    """A query running longer than its timeout is cancelled with ObbwsTimeoutError naming it."""
    with ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb") as s:
        with pytest.raises(ObbwsTimeoutError, match=r"0\.2 s"):
            s.query("SELECT count(*) FROM range(100000000000) a", timeout=0.2)
        assert len(s.query("SELECT 1 AS one")) == 1


def test_ctrl_c_cancels_a_running_query(tmp_path: pathlib.Path) -> None:
    """Ctrl-C (SIGINT to the main thread, as a kernel interrupt) stops a running query."""
    with ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb") as s:
        timer = threading.Timer(
            0.3,
            signal.pthread_kill,
            (threading.main_thread().ident, signal.SIGINT),  # type: ignore[arg-type]
        )
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                s.query("SELECT count(*) FROM range(100000000000) a", timeout=10 * TIMEOUT)
        finally:
            timer.cancel()
        assert len(s.query("SELECT 1 AS one")) == 1


# -- paths -----------------------------------------------------------------------------------


def _in_thread(func: Any) -> BaseException | None:
    """Run ``func`` in a thread; fail (instead of hanging the suite) if it blocks."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            func()
        except BaseException as exc:
            result.append(exc)
        else:
            result.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert result, "the call blocked"
    return result[0]


def test_fifo_as_results_file_or_export_target_is_refused(tmp_path: pathlib.Path) -> None:
    """A FIFO (anything not a regular file) as results_file or export target is refused."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    exc = _in_thread(lambda: ResultsStore(FIELDS, results_file=fifo))
    assert isinstance(exc, StoreError) and "regular file" in str(exc)
    with ResultsStore(FIELDS, results_file=tmp_path / "r.duckdb") as s:
        s.put(records(1, 3))
        exc = _in_thread(lambda: s.export(fifo, format="csv"))
        assert isinstance(exc, InvalidParameterError) and "regular file" in str(exc)


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("res\x00ults.duckdb", "NUL"),
        ("~nosuchuser-obbws/r.duckdb", "nosuchuser"),
    ],
)
def test_bad_results_file_paths_name_the_parameter(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, path: str, match: str
) -> None:
    """A NUL byte or an unknown ~user in results_file is an ObbwsError naming results_file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ObbwsError, match=rf"results_file.*{match}"):
        ResultsStore(FIELDS, results_file=path)
    assert list(tmp_path.iterdir()) == []


# -- rows_in_table ---------------------------------------------------------------------------


def test_rows_in_table_follows_the_cap_clear_and_reopen(tmp_path: pathlib.Path) -> None:
    """stats['rows_in_table'] is the table's row count after each batch (cap, clear and an
    existing file included), kept by the writer without a query."""
    path = tmp_path / "count.duckdb"
    with ResultsStore(FIELDS, results_file=path, limit=100, save_results=True) as s:
        for start in range(1, 1001, 50):
            s.put(records(start, 50))
            s.flush()
            assert s.stats["rows_in_table"] == s.count() == min(start + 49, 100)
        s.clear()
        assert s.stats["rows_in_table"] == 0
        s.put(records(1001, 7))
        s.flush()
        assert s.stats["rows_in_table"] == 7
    with ResultsStore(FIELDS, results_file=path, limit=100) as s:
        assert s.stats["rows_in_table"] == 7


def test_query_copy_follows_the_table(tmp_path: pathlib.Path) -> None:
    """query()'s private copy tracks the table exactly through the cap, clear() and a
    data-modifying CTE (which changes neither the table nor the copy)."""
    with ResultsStore(FIELDS, results_file=tmp_path / "m.duckdb", limit=100) as s:

        def summary() -> list[int]:
            got = s.query("SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM records")
            return [int(v) if v == v else -1 for v in got.iloc[0]]  # NaN (no rows) -> -1

        s.put(records(1, 50))
        s.flush()
        assert summary() == [50, 1, 50]
        s.put(records(51, 100))
        s.flush()
        assert summary() == [100, 51, 150]
        s.query("WITH d AS (DELETE FROM records RETURNING *) SELECT count(*) FROM d")
        assert summary() == [100, 51, 150]
        s.clear()
        assert summary()[0] == 0
        s.put(records(151, 10))
        s.flush()
        assert summary() == [10, 151, 160]


def test_a_query_racing_a_close_raises_store_error_not_a_raw_duckdb_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the query copy's connection is closed under a starting query (kill in another
    thread), query() raises StoreError naming the likely cause, not duckdb's own exception."""
    with ResultsStore(FIELDS, limit=None) as s:
        s.put(records(1, 3))
        s.flush()
        assert len(s.query("SELECT * FROM records")) == 3

        def closed(*args: Any, **kwargs: Any) -> Any:
            raise duckdb.ConnectionException("Connection Error: Connection already closed!")

        monkeypatch.setattr(s._mirror, "cursor", closed)
        with pytest.raises(StoreError, match="killed"):
            s.query("SELECT * FROM records")
