"""Parquet sink throughput: write() of demo-like frames until every row is in a finished file.

Prints, for made-up demo-like records (5 symbols) handed over in frames of ``--frame`` records
the way the client hands them to its sinks:

- rows/s from the first write() to the end of flush() (every row in a renamed .parquet file),
  median of ``--runs`` runs, beside the same rows through a bare pyarrow loop (dicts ->
  Arrow table -> one pq.write_table per symbol) as the ceiling;
- the mean cost of one write() call on the caller's (the loop's) thread, in µs;
- the files and bytes written, and a DuckDB read of them back (rows/s).

    python benchmarks/parquet_sink.py [--rows 500000] [--frame 10] [--runs 3] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from store_ingest import FIELDS, SYMBOLS, make_frames  # the same made-up demo-like records

from obbws_jupyter.sinks import Batch, SinkContext
from obbws_jupyter.sinks.parquet import ParquetSink, arrow_schema

CONTEXT = SinkContext(name="bench", provider="demo", fields=FIELDS)


def run_sink(frames: list[list[dict[str, Any]]]) -> dict[str, float]:
    rows = sum(len(f) for f in frames)
    with tempfile.TemporaryDirectory(prefix="obbws-bench-") as tmp:
        sink = ParquetSink(f"parquet://{tmp}/out", max_pending=rows + 1)
        sink.open(CONTEXT)
        batches = [Batch.from_records(f, FIELDS) for f in frames]
        start = time.perf_counter()
        for b in batches:
            sink.write(b)
        handed = time.perf_counter() - start
        sink.flush(600)
        elapsed = time.perf_counter() - start
        sink.close()
        files = list(Path(tmp, "out").rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        read_start = time.perf_counter()
        (n,) = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{tmp}/out/**/*.parquet', "
            "hive_partitioning = false) WHERE price > 0"
        ).fetchall()[0]
        read_s = time.perf_counter() - read_start
        assert n == rows, (n, rows)
    return {
        "rows_per_s": rows / elapsed,
        "write_us": handed / len(frames) * 1e6,
        "files": len(files),
        "mb": size / 1e6,
        "read_rows_per_s": rows / read_s,
    }


def run_bare(frames: list[list[dict[str, Any]]]) -> float:
    """The ceiling: the same rows as one Arrow table, one pq.write_table per symbol."""
    rows = sum(len(f) for f in frames)
    schema = arrow_schema(FIELDS, CONTEXT.tz)
    stamp_free = pa.schema(
        [f.with_type(pa.int64()) if pa.types.is_timestamp(f.type) else f for f in schema]
    )
    with tempfile.TemporaryDirectory(prefix="obbws-bench-") as tmp:
        start = time.perf_counter()
        records = [r for f in frames for r in f]
        table = pa.Table.from_pylist(records, schema=stamp_free)
        for symbol in SYMBOLS:
            part = table.filter(pc.equal(table.column("symbol"), symbol))
            folder = Path(tmp, f"symbol={symbol}")
            folder.mkdir()
            pq.write_table(part, folder / "part.parquet", compression="zstd")
        return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--frame", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 20,000 rows, 1 run")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.runs = 20_000, 1
    frames = make_frames(args.rows, args.frame)
    sink_runs = [run_sink(frames) for _ in range(args.runs)]
    bare = statistics.median(run_bare(frames) for _ in range(args.runs))
    best = {k: statistics.median(r[k] for r in sink_runs) for k in sink_runs[0]}
    load = os.getloadavg()[0]
    print(f"### Parquet sink ({args.rows:,} rows, frames of {args.frame}, {len(SYMBOLS)} symbols)")
    print(f"median of {args.runs} run(s); load average {load:.2f}, {os.cpu_count()} cores\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| sink: write() to every row in a finished file | {best['rows_per_s']:,.0f} rows/s |")
    print(f"| bare pyarrow (dicts -> Arrow -> one file per symbol) | {bare:,.0f} rows/s |")
    print(f"| sink / bare | {best['rows_per_s'] / bare:.2f} |")
    print(f"| one write() on the loop thread | {best['write_us']:.1f} µs |")
    print(f"| files, size | {best['files']:.0f} files, {best['mb']:.1f} MB |")
    print(f"| DuckDB read_parquet of the files | {best['read_rows_per_s']:,.0f} rows/s |")
    if args.json:
        print(json.dumps({"benchmark": "parquet_sink", "results": {**best, "bare": bare}}))


if __name__ == "__main__":
    main()
