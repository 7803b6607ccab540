"""Store ingest cost: frames handed to a ResultsStore the way the client does, until committed.

Prints, per ``limit`` and feed rate, the rows committed per second, the process's CPU time per
row (every thread: the writer's Arrow build, DuckDB's insert and its own threads, the
producer's ``put_frame``), the average ``put_frame()`` call as the asyncio loop sees it, and
the number of writes (commits). Records are made-up demo-like trades (built by this script),
handed over as a session makes them: frames of ``--frame`` dicts without ``id`` and
``received_at``, given to :meth:`ResultsStore.put_frame` with their first id and time.

``--rate full`` puts every frame at once (the writer always finds whole row groups waiting);
a number paces the frames at that many rows per second (bursts every 10 ms), so the writer's
choice between whole row groups and everything-now at that rate is what is measured. CPU per
row is the figure to compare across runs on a busy machine.

    python benchmarks/store_ingest.py [--rows 491520] [--frame 50] [--runs 3]
        [--rates full,400000,50000] [--limits 1000,None]
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
BURST = 0.01  # seconds between bursts of frames at a paced rate


def make_frames(rows: int, frame: int) -> list[list[dict[str, Any]]]:
    """Demo-like records with ids 1..rows (and received_at), grouped in frames of ``frame``."""
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


def session_frames(rows: int, frame: int) -> list[list[dict[str, Any]]]:
    """:func:`make_frames` without ``id`` and ``received_at``: what a session hands over."""
    return [
        [{k: v for k, v in r.items() if k not in ("id", "received_at")} for r in f]
        for f in make_frames(rows, frame)
    ]


def run_once(frames: list[list[dict[str, Any]]], limit: int | None, rate: float | None) -> dict:
    """Put every frame (copies: the store owns what it is given) and flush."""
    copies = [[dict(r) for r in f] for f in frames]
    rows = sum(len(f) for f in frames)
    per_burst = max(1, round((rate or 0) * BURST / max(1, len(frames[0]))))
    with tempfile.TemporaryDirectory(prefix="obbws-bench-") as tmp:
        store = ResultsStore(
            FIELDS, results_file=f"{tmp}/bench.duckdb", limit=limit, max_pending=2 * rows
        )
        try:
            put_time = 0.0
            next_id = 1
            start, cpu0 = time.perf_counter(), time.process_time()
            for i, frame in enumerate(copies):
                if rate and i % per_burst == 0:
                    due = start + next_id / rate
                    time.sleep(max(0.0, due - time.perf_counter()))  # pacing the feed
                t = time.perf_counter()
                store.put_frame(frame, next_id, time.time_ns())
                put_time += time.perf_counter() - t
                next_id += len(frame)
            store.flush(timeout=600)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
            stats = store.stats
            count = store.count()
        finally:
            store.close()
    return {
        "rows_per_s": rows / elapsed,
        "cpu_us": cpu / rows * 1e6,
        "put_us": put_time / len(frames) * 1e6,
        "writes": stats["batches"],
        "kept": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4 * 122_880)
    parser.add_argument("--frame", type=int, default=50, help="records per put_frame() call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", default="full,400000,50000", help="rows/s, or full")
    parser.add_argument("--limits", default="1000,None")
    args = parser.parse_args()
    frames = session_frames(args.rows, args.frame)
    print(
        f"store ingest: {args.rows:,} records, {args.frame} per put_frame(), median of {args.runs}"
    )
    for limit_text in args.limits.split(","):
        limit = None if limit_text == "None" else int(limit_text)
        for rate_text in args.rates.split(","):
            rate = None if rate_text == "full" else float(rate_text)
            results = [run_once(frames, limit, rate) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            print(
                f"  limit={limit!s:>5} rate={rate_text:>7}: {med['rows_per_s']:>10,.0f} rows/s  "
                f"CPU {med['cpu_us']:5.2f} µs/row  put_frame() {med['put_us']:5.2f} µs/call  "
                f"writes {med['writes']:>4.0f}  rows kept {med['kept']:,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
