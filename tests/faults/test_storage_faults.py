"""Storage faults: a full disk, a fatal DuckDB error, the file removed or made read-only under a
running store, SIGKILL mid-write. Each counts records sent (put) and stored (in the file) and
asserts the documented outcome: every row put is stored once the fault is gone, and a loss
that cannot be avoided is counted and reported."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import signal
import subprocess

import pytest

import obbws_jupyter as obbws
from obbws_jupyter._store import ROW_GROUP_ROWS
from obbws_jupyter.offline.demo_server import start_demo_server
from tests.conftest import TIMEOUT, RecordWaiter, wait_until
from tests.faults.conftest import StoreWorker, report, rows_in

pytestmark = pytest.mark.integration

CYCLES = 3


class _Disk:
    """Fills and frees a disk: a tmpfs filled with a ballast file where one can be mounted,
    else the store process's RLIMIT_FSIZE (writes past it fail with EFBIG)."""

    def __init__(self, worker: StoreWorker, mount: pathlib.Path | None, fallback: pathlib.Path):
        self.worker = worker
        self.mount = mount
        self.dir = mount if mount is not None else fallback
        self.ballast = self.dir / "ballast"

    def fill(self, results: pathlib.Path) -> None:
        if self.mount is None:
            self.worker.call("rlimit", bytes=max(results.stat().st_size, 1) + 4096)
            return
        with open(self.ballast, "ab") as out:
            chunk = b"\0" * (1 << 20)
            while True:
                try:
                    out.write(chunk)
                    out.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
            with contextlib.suppress(OSError):
                os.fsync(out.fileno())

    def free(self) -> None:
        if self.mount is None:
            self.worker.call("rlimit", bytes=None)
        else:
            self.ballast.unlink()


def test_full_disk_is_survived_without_losing_a_row(
    worker: StoreWorker, small_disk: pathlib.Path | None, tmp_path: pathlib.Path
) -> None:
    """While the disk is full the store reports state 'retrying' with the error and keeps the
    rows; once space is back it writes them all and clears the error."""
    disk = _Disk(worker, small_disk, tmp_path)
    path = disk.dir / "r.duckdb"
    worker.call("open", path=str(path), limit=None)
    worker.call("put", n=5_000)
    assert worker.call("flush")["ok"]
    survived = 0
    for _ in range(CYCLES):
        disk.fill(path)
        worker.call("put", n=20_000)
        assert not worker.call("flush", timeout=0.5)["ok"]
        stats = worker.call("stats")
        assert stats["state"] == "retrying"
        assert stats["last_error"] and stats["errors"] >= 1
        disk.free()
        assert worker.call("flush", timeout=TIMEOUT)["ok"]
        stats = worker.call("stats")
        assert (stats["state"], stats["last_error"], stats["dropped"]) == ("ok", None, 0)
        survived += 1
    closed = worker.call("close")
    assert closed["lost"] == 0
    ids = rows_in(path)
    assert ids == list(range(1, closed["put"] + 1))
    kind = "tmpfs" if small_disk is not None else "RLIMIT_FSIZE"
    report(f"disk full ({kind}), then freed", CYCLES, survived, closed["put"], len(ids))


def test_fatal_checkpoint_error_is_recovered_by_reopening(
    worker: StoreWorker, tmp_path: pathlib.Path
) -> None:
    """A checkpoint that fails for lack of space invalidates the DuckDB database; the store
    reopens it once writes can succeed again, and no acknowledged or pending row is lost."""
    path = tmp_path / "fatal.duckdb"
    worker.call("open", path=str(path), limit=None)
    survived = 0
    for _ in range(CYCLES):
        worker.call("put", n=20_000)
        assert worker.call("flush")["ok"]
        worker.call("rlimit", bytes=path.stat().st_size + 4096)
        failed = worker.call("checkpoint")
        assert not failed["ok"] and "FATAL" in failed["error"]
        worker.call("put", n=1_000)
        assert not worker.call("flush", timeout=0.5)["ok"]
        stats = worker.call("stats")
        assert stats["state"] == "retrying"
        # first "database has been invalidated"; once reopened, the full disk itself
        assert "invalidated" in stats["last_error"] or "too large" in stats["last_error"]
        worker.call("rlimit", bytes=None)
        assert worker.call("flush", timeout=TIMEOUT)["ok"]
        stats = worker.call("stats")
        assert (stats["state"], stats["last_error"]) == ("ok", None)
        assert stats["rows_in_table"] == stats["put"]
        survived += 1
    closed = worker.call("close")
    assert closed["lost"] == 0
    ids = rows_in(path)
    assert ids == list(range(1, closed["put"] + 1))
    report("fatal DuckDB error (failed checkpoint)", CYCLES, survived, closed["put"], len(ids))


def test_close_while_writes_keep_failing_reports_the_loss(
    worker: StoreWorker, tmp_path: pathlib.Path
) -> None:
    """Closing a store that cannot write returns (and logs) how many rows were lost; the
    rows written before the fault are all in the file."""
    path = tmp_path / "lost.duckdb"
    worker.call("open", path=str(path), limit=None)
    worker.call("put", n=3_000)
    assert worker.call("flush")["ok"]
    worker.call("rlimit", bytes=path.stat().st_size + 4096)
    worker.call("put", n=7_000)
    assert not worker.call("flush", timeout=0.3)["ok"]
    closed = worker.call("close")
    assert closed["lost"] == 7_000
    worker.stop()
    ids = rows_in(path)
    assert ids == list(range(1, 3_001))
    report("disk full at close (loss reported)", 1, 1, closed["put"], len(ids))


def test_results_file_removed_under_a_running_connection(tmp_path: pathlib.Path) -> None:
    """A results file deleted while the demo stream writes to it is noticed (errors, a
    warning) and re-created with every row; the stream never stops."""
    path = tmp_path / "removed.duckdb"
    server = start_demo_server(rate=2_000.0)
    try:
        conn = obbws.create_connection(
            provider="demo",
            name="rm",
            symbol="btcusd",
            url=server.url_for("crypto"),
            results_file=str(path),
            save_results=True,
            limit=None,
        )
        client = conn.get_client()
        waiter = RecordWaiter(client)
        survived = 0
        for i in range(CYCLES):
            assert waiter.wait_more(500)
            client.store.flush(timeout=TIMEOUT)
            path.unlink()
            assert wait_until(lambda: path.exists())
            assert waiter.wait_more(500)
            assert wait_until(lambda n=i + 1: conn.status.errors >= n)
            assert conn.status.is_running
            survived += 1
        client.store.flush(timeout=TIMEOUT)
        server.set_rate(0)
        client.store.flush(timeout=TIMEOUT)
        received = conn.status.records_received
        assert conn.kill() == "Client rm killed."
        sent = server.events_sent
    finally:
        server.close()
    ids = rows_in(path)
    assert ids == list(range(1, received + 1))
    assert received <= sent
    report("results file removed", CYCLES, survived, sent, len(ids))


def _bind_read_only(directory: pathlib.Path, on: bool) -> bool:
    """Make ``directory`` read-only with a read-only bind mount over it (needs root); False
    when this machine does not allow it."""
    if not on:
        subprocess.run(["umount", str(directory)], check=True, timeout=TIMEOUT)
        return True
    steps = (
        ["mount", "--bind", str(directory), str(directory)],
        ["mount", "-o", "remount,bind,ro", str(directory)],
    )
    for i, cmd in enumerate(steps):
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
        except OSError:
            return False
        if done.returncode != 0:
            if i:
                subprocess.run(["umount", str(directory)], timeout=TIMEOUT)
            return False
    return True


def test_results_file_made_read_only_under_a_running_store(
    worker: StoreWorker, tmp_path: pathlib.Path
) -> None:
    """A results directory made read-only under a running store (a read-only bind mount: the
    WAL cannot be removed, DuckDB's checkpoint fails and invalidates the database) stops
    writes with state 'retrying' and the rows kept; once writable again the store reopens the
    database and writes every row. Without mount rights, RLIMIT_FSIZE=0 refuses the writes."""
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "ro.duckdb"
    worker.call("open", path=str(path), limit=None)
    worker.call("put", n=2_000)
    assert worker.call("flush")["ok"]
    kind = "read-only bind mount"

    def read_only(on: bool) -> None:
        nonlocal kind
        if kind == "read-only bind mount" and _bind_read_only(directory, on):
            return
        kind = "RLIMIT_FSIZE=0"
        worker.call("rlimit", bytes=0 if on else None)

    survived = 0
    for _ in range(CYCLES):
        read_only(True)
        try:
            worker.call("put", n=5_000)
            worker.call("checkpoint")  # what DuckDB does by itself once the WAL is large
            worker.call("put", n=1_000)
            assert not worker.call("flush", timeout=0.5)["ok"]
            assert worker.call("stats")["state"] == "retrying"
        finally:
            read_only(False)
        assert worker.call("flush", timeout=TIMEOUT)["ok"]
        assert worker.call("stats")["state"] == "ok"
        survived += 1
    closed = worker.call("close")
    assert closed["lost"] == 0
    ids = rows_in(path)
    assert ids == list(range(1, closed["put"] + 1))
    report(f"results directory read-only ({kind})", CYCLES, survived, closed["put"], len(ids))


@pytest.mark.parametrize(
    "n", [5_000, ROW_GROUP_ROWS + 1_000], ids=["commits-via-wal", "whole-row-groups"]
)
def test_sigkill_during_heavy_writes_keeps_every_acknowledged_row(
    tmp_path: pathlib.Path, n: int
) -> None:
    """SIGKILL while rows are written: the file reopens with every acknowledged row, ids
    without a gap; the next process continues after them. Commits of ``n`` rows: small ones
    go through DuckDB's WAL, a row group or more straight into the file."""
    path = tmp_path / "killed.duckdb"
    acked = 0
    survived = 0
    for _ in range(CYCLES):
        w = StoreWorker()
        try:
            w.call("open", path=str(path), limit=None)
            assert w.proc.stdin is not None
            w.proc.stdin.write(f'{{"op": "stream", "n": {n}}}\n')
            w.proc.stdin.flush()
            target = acked + max(50_000, 2 * n)
            while acked < target:
                acked = w.readline()["acked"]
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait(TIMEOUT)
        finally:
            w.stop()
        ids = rows_in(path)
        assert len(ids) >= acked
        assert ids == list(range(1, len(ids) + 1))
        acked = len(ids)  # put but unacknowledged rows may or may not have been committed
        survived += 1
    kind = "row groups" if n >= ROW_GROUP_ROWS else "WAL commits"
    report(f"SIGKILL during heavy writes ({kind})", CYCLES, survived, acked, len(rows_in(path)))
