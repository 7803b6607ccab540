"""Fault-suite helpers: a store in a child process, a small disk, and the fault report.

Every fault test records one row per fault kind with :func:`report` (fault, times injected,
times survived, records sent, records stored). With ``OBBWS_FAULT_REPORT=path`` the rows are
written there as JSON lines at the end of the session (the table in the closing note).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from tests.conftest import TIMEOUT

ROOT = pathlib.Path(__file__).resolve().parents[2]
_ROWS: list[dict[str, Any]] = []


def report(fault: str, injected: int, survived: int, sent: int, stored: int) -> None:
    """Record the outcome of one fault kind for the fault table."""
    _ROWS.append(
        {"fault": fault, "injected": injected, "survived": survived, "sent": sent, "stored": stored}
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("OBBWS_FAULT_REPORT")
    if target and _ROWS:
        with open(target, "a", encoding="utf-8") as out:
            for row in _ROWS:
                out.write(json.dumps(row) + "\n")


def rows_in(path: pathlib.Path, table: str = "records") -> list[int]:
    """Ids stored in ``path`` (opened read-only in this process, then closed)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r[0] for r in con.execute(f'SELECT id FROM "{table}" ORDER BY id').fetchall()]
    finally:
        con.close()


class StoreWorker:
    """A ResultsStore in a child process (tests/faults/_store_worker.py)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._store_worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the worker died (exit {self.proc.wait(TIMEOUT)})"
        reply = json.loads(line)
        assert "exception" not in reply, reply["exception"]
        return reply

    def readline(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture
def worker() -> Iterator[StoreWorker]:
    w = StoreWorker()
    yield w
    w.stop()


def _mount_tmpfs(where: pathlib.Path, size: str) -> bool:
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path | None]:
    """A 16 MB tmpfs where this machine lets us mount one (CI runs as root), else None."""
    where = tmp_path / "disk"
    mounted = _mount_tmpfs(where, "16m")
    yield where if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=TIMEOUT)
