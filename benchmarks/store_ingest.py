"""Store ingest throughput: put() + flush() of demo-like records into a ResultsStore.

Prints rows/s (median of ``--runs`` runs) for ``limit=1000`` and ``limit=None``, and the
average cost of one ``put()`` call as seen by the asyncio loop thread. Records arrive as
frames of ``--frame`` records, the way a provider session hands them to the store.

    python benchmarks/store_ingest.py [--rows 200000] [--frame 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from typing import Any

from obbws_jupyter._store import ResultsStore
from obbws_jupyter.protocol import Field, FieldType

FIELDS = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("type", FieldType.STRING),
    Field("exchange", FieldType.STRING),
    Field("price", FieldType.FLOAT),
    Field("size", FieldType.FLOAT),
)
SYMBOLS = ("btcusd", "ethusd", "solusd", "adausd", "dogeusd")


def make_frames(rows: int, frame: int) -> list[list[dict[str, Any]]]:
    """Demo-like records with ids 1..rows, grouped in frames of ``frame`` records."""
    rng = random.Random(0)
    t0 = time.time_ns()
    records = [
        {
            "id": i,
            "received_at": t0 + i * 1000,
            "date": t0 + i * 1000 - 250_000,
            "symbol": rng.choice(SYMBOLS),
            "type": "trade",
            "exchange": "demo",
            "price": 100.0 + rng.random(),
            "size": rng.random() * 3,
        }
        for i in range(1, rows + 1)
    ]
    return [records[i : i + frame] for i in range(0, rows, frame)]


def run_once(frames: list[list[dict[str, Any]]], limit: int | None) -> tuple[float, float, int]:
    """Return (rows/s for put+flush, mean µs per put() call, rows in the table)."""
    rows = sum(len(f) for f in frames)
    with tempfile.TemporaryDirectory(prefix="obbws-bench-") as tmp:
        store = ResultsStore(FIELDS, results_file=f"{tmp}/bench.duckdb", limit=limit)
        try:
            start = time.perf_counter()
            for frame in frames:
                store.put(list(frame))
            put_done = time.perf_counter()
            store.flush(timeout=600)
            elapsed = time.perf_counter() - start
            count = store.count()
        finally:
            store.close()
    return rows / elapsed, (put_done - start) / len(frames) * 1e6, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--frame", type=int, default=10, help="records per put() call")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frames = make_frames(args.rows, args.frame)
    print(f"store ingest: {args.rows:,} records, {args.frame} per put(), median of {args.runs}")
    for limit in (1000, None):
        results = [run_once(frames, limit) for _ in range(args.runs)]
        rate = statistics.median(r[0] for r in results)
        put_us = statistics.median(r[1] for r in results)
        count = results[-1][2]
        print(
            f"  limit={limit!s:>5}: {rate:>12,.0f} rows/s   put() {put_us:6.2f} µs/call   "
            f"rows kept {count:,}"
        )


if __name__ == "__main__":
    main()
