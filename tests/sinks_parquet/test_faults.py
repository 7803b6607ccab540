"""The Parquet sink under storage faults: a read-only folder, the folder removed, a file in the
folder's place, a full disk. Each shows state "retrying" and the error, keeps the rows (the
backlog bounded by max_pending), then recovers with every row written exactly once."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from obbws_jupyter.exceptions import ObbwsTimeoutError
from obbws_jupyter.sinks.parquet import ParquetSink, read
from tests.conftest import TIMEOUT, wait_until
from tests.sinks_parquet.conftest import batch, make_read_only, records

Make = Callable[..., ParquetSink]


def _retrying_with(sink: ParquetSink, words: str) -> bool:
    health = sink.health()
    return health.state == "retrying" and words in str(health.last_error)


def test_a_read_only_folder_is_retried_then_written(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """Writes into a read-only folder fail: state retrying with the OS error, flush times
    out, rows kept; once writable, every row is written once and the state is ok again."""
    out = tmp_path / "out"
    out.mkdir()
    sink = make_sink(roll_seconds=0.1)
    sink.write(batch(records(1, 10)))
    sink.flush(TIMEOUT)
    undo = make_read_only(out)
    try:
        sink.write(batch(records(11, 10)))
        assert wait_until(lambda: sink.health().state == "retrying")
        error = str(sink.health().last_error)
        assert any(
            words in error for words in ("Read-only file system", "Permission denied", "Errno")
        )
        with pytest.raises(ObbwsTimeoutError, match=r"rows not in files|still pending"):
            sink.flush(0.3)
        assert sink.health().rows_pending == 10
    finally:
        undo()
    sink.flush(TIMEOUT)
    health = sink.health()
    assert (health.state, health.last_error, health.rows_written) == ("ok", None, 20)
    assert list(read(out)["id"]) == list(range(1, 21))


def test_a_removed_folder_is_made_again(make_sink: Make, tmp_path: pathlib.Path) -> None:
    """The output folder removed under a running sink: the next files make it again (the
    files removed with it are the remover's choice), with no error."""
    out = tmp_path / "out"
    sink = make_sink()
    sink.write(batch(records(1, 10)))
    sink.flush(TIMEOUT)
    shutil.rmtree(out)
    sink.write(batch(records(11, 10)))
    sink.flush(TIMEOUT)
    assert list(read(out)["id"]) == list(range(11, 21))
    assert sink.health().state == "ok"


def test_a_file_in_the_folders_place_is_retried_with_a_bounded_backlog(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """A file where the folder was: writes fail (retrying, the error shown), the rows wait in a
    backlog bounded by max_pending (the oldest dropped and counted); once the file is gone the
    rows kept are written once and the state is ok."""
    out = tmp_path / "out"
    sink = make_sink(max_pending=100, roll_seconds=0.05)
    sink.write(batch(records(1, 10)))
    sink.flush(TIMEOUT)
    shutil.rmtree(out)
    out.write_text("in the way")
    sink.write(batch(records(11, 50)))
    assert wait_until(lambda: _retrying_with(sink, "Error"))
    for first in range(61, 261, 50):
        sink.write(batch(records(first, 50)))
    health = sink.health()
    assert health.rows_pending <= 100 + 50 and health.rows_dropped >= 100
    out.unlink()
    sink.flush(TIMEOUT)
    health = sink.health()
    ids = list(read(out)["id"])
    assert health.state == "ok" and health.last_error is None
    assert ids == sorted(set(ids)) and ids[-1] == 260  # once each, the newest kept
    assert health.rows_written + health.rows_dropped == 260
    assert len(ids) == health.rows_written - 10  # the first 10 went with the folder


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path | None]:
    """A 1 MiB tmpfs (None where this machine cannot mount one)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True,
            timeout=TIMEOUT,
        )
    except OSError:
        done = None
    if done is None or done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], timeout=TIMEOUT)


def test_a_full_disk_is_retried_then_written(
    make_sink: Make, small_disk: pathlib.Path | None, tmp_path: pathlib.Path
) -> None:
    """A disk that fills (a ballast file on a small tmpfs; elsewhere a read-only folder stands
    in for it): retrying with the error, no partial file left, and every row written once
    after space is freed."""
    if small_disk is None:  # no mount rights here: the same path with another error
        out = tmp_path / "out"
        out.mkdir()
        free = make_read_only(out)
    else:
        out = small_disk / "out"
        ballast = small_disk / "ballast"

        def free() -> None:
            ballast.unlink()

    sink = make_sink(f"parquet://{out}", roll_seconds=0.05, compression="none")
    sink.write(batch(records(1, 10)))
    sink.flush(TIMEOUT)
    if small_disk is not None:
        with open(ballast, "wb") as fill, contextlib.suppress(OSError):
            while True:
                fill.write(b"\0" * 65_536)
                fill.flush()
    try:
        sink.write(batch(records(11, 2_000)))
        assert wait_until(lambda: sink.health().state == "retrying")
        assert sink.health().last_error
        assert not [p for p in out.rglob("*.tmp")]  # a failed file is removed
    finally:
        free()
    sink.flush(TIMEOUT)
    assert sink.health().state == "ok"
    assert list(read(out)["id"]) == list(range(1, 2_011))


def test_close_while_writes_fail_reports_every_row_not_written(
    make_sink: Make, tmp_path: pathlib.Path
) -> None:
    """Closing a sink whose folder cannot be written returns (and counts as dropped) every row
    not in a file: the ones gathered in memory and the ones still in the backlog."""
    (tmp_path / "a-file").write_text("in the way")
    sink = make_sink(f"parquet://{tmp_path / 'a-file' / 'out'}", roll_seconds=0.05)
    sink.write(batch(records(1, 30)))
    assert wait_until(lambda: sink.health().state == "retrying")
    sink.write(batch(records(31, 20)))
    assert sink.close(0.5) == 50
    health = sink.health()
    assert (health.state, health.rows_written, health.rows_dropped) == ("closed", 0, 50)
