"""Fixtures for the Parquet sink tests: sinks opened on a temporary directory and closed after,
batches of made-up records (built here, not captured), and a folder made read-only."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from obbws_jupyter.sinks import Batch, SinkContext
from obbws_jupyter.sinks.parquet import ParquetSink
from tests.conftest import TIMEOUT
from tests.faults.test_storage_faults import _bind_read_only
from tests.unit.test_store import FIELDS

# FIELDS: every field type a provider may declare (the store tests' made-up record)
TZ = "America/New_York"
CONTEXT = SinkContext(name="pq-test", provider="made-up", fields=FIELDS, tz=TZ)
NOON_UTC = 1_795_176_000 * 10**9  # 2026-11-20 12:00 UTC (07:00 in New York)


def records(first: int, n: int, symbols: tuple[str, ...] = ("BTCUSD", "ETHUSD")) -> list[dict]:
    """``n`` made-up records with ids from ``first``, symbols in turn, one second apart from
    a noon UTC, so every one falls on the same New York day."""
    return [
        {
            "id": i,
            "received_at": NOON_UTC + i * 10**9 + 7,
            "date": NOON_UTC + i * 10**9 + 123_456,
            "symbol": symbols[i % len(symbols)],
            "price": 100.0 + i / 8,
            "size": i * 3,
            "is_bid": bool(i % 2),
        }
        for i in range(first, first + n)
    ]


def batch(rows: list[dict]) -> Batch:
    return Batch.from_records(rows, FIELDS)


@pytest.fixture
def make_sink(tmp_path: pathlib.Path) -> Iterator[Callable[..., ParquetSink]]:
    """Open ParquetSinks on ``tmp_path/"out"`` (or a given URL) with quick flushes; closed
    after the test."""
    sinks: list[ParquetSink] = []

    def make(url: str | None = None, **options: Any) -> ParquetSink:
        options.setdefault("flush_interval", 0.02)
        options.setdefault("retry_base", 0.05)
        options.setdefault("retry_cap", 0.2)
        sink = ParquetSink(url or f"parquet://{tmp_path / 'out'}", **options)
        sink.open(CONTEXT)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close(TIMEOUT)


def parquet_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(root.rglob("*.parquet"))


def make_read_only(directory: pathlib.Path) -> Callable[[], None]:
    """Make ``directory`` unwritable and return the function that undoes it: a read-only bind
    mount for root (which ignores file modes), chmod for anyone else; where root may not
    mount, the folder is moved aside and a file put in its place (writes fail all the same)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return lambda: directory.chmod(0o755)
    if _bind_read_only(directory, True):
        return lambda: _bind_read_only(directory, False)
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_text("in the way")

    def undo() -> None:
        directory.unlink()
        aside.rename(directory)

    return undo
