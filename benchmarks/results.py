"""Results: get_results(), query() and export() on 100k, 1M and 10M stored rows: time, peak RSS.

Run: ``python benchmarks/results.py [--sizes 100000,1000000,10000000] [--runs 3] [--quick]
[--json] [--readme]``

How the store is filled (fast, and through the documented file contract): for each size a
fresh process makes the results file with ``create_connection(provider="demo", rate=0,
results_file=PATH, save_results=True, limit=None)`` (so our code creates the table and its
schema) and kills it; DuckDB then appends N demo-like trades to that table with one
``INSERT ... BY NAME SELECT ... FROM range(N)`` (3 symbols, increasing ids and times); then
``create_connection(..., results_file=PATH, limit=None, rate=0)`` reopens the file as a
user's connection would, and each operation runs ``--runs`` times on it:

* ``get_results()``: the whole table as a DataFrame (the target: 1M rows in under 1 s);
* ``query()`` group-by: trades, average price and volume per symbol;
* ``query()`` filter: one symbol's trades above a size (about 1/30 of the rows);
* ``export()`` to Parquet and to CSV (file sizes shown).

Time is the median of the runs; peak RSS is the process's high-water mark during the
operation (Linux ``VmHWM``, reset before each run), beside the RSS when it started.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as common

SYMBOLS = "btcusd,ethusd,solusd"
GROUP_BY = (
    "SELECT symbol, count(*) AS trades, avg(price) AS avg_price, sum(size) AS volume "
    "FROM records GROUP BY symbol ORDER BY symbol"
)
FILTER = "SELECT * FROM records WHERE symbol = 'ETHUSD' AND size > 0.9 ORDER BY id"
FILL = """
INSERT INTO records BY NAME
SELECT
    i + 1 AS id,
    TIMESTAMPTZ '2026-11-02 14:30:00+00' + to_microseconds(i * 100) AS received_at,
    TIMESTAMPTZ '2026-11-02 14:30:00+00' + to_microseconds(i * 100 - 250) AS date,
    ['BTCUSD', 'ETHUSD', 'SOLUSD'][1 + i % 3] AS symbol,
    'trade' AS type,
    'DEMO' AS exchange,
    [65000.0, 3500.0, 150.0][1 + i % 3] * (1 + (random() - 0.5) / 100) AS price,
    random() AS size
FROM range(?) t(i)
"""
TARGET_S = 1.0  # get_results() on 1M rows


def _open(path: Path, name: str) -> Any:
    """A demo connection on the results file ``path`` (kept), no cap, no incoming data."""
    import obbws_jupyter as obbws

    return obbws.create_connection(
        provider="demo",
        name=name,
        symbol=SYMBOLS,
        results_file=str(path),
        save_results=True,
        limit=None,
        rate=0,
    )


def _fill(path: Path, rows: int) -> float:
    """Make the results file with our code, then append ``rows`` rows with DuckDB; seconds."""
    import duckdb

    _open(path, "results-fill").kill()
    start = time.perf_counter()
    with duckdb.connect(str(path)) as db:
        db.execute(FILL, [rows])
        db.execute("CHECKPOINT")
    return time.perf_counter() - start


def _timed(op: Callable[[], Any], runs: int) -> dict[str, Any]:
    times, peaks, starts = [], [], []
    detail: Any = None
    for _ in range(runs):
        gc.collect()
        common.reset_peak_rss()
        starts.append(common.rss_mb())
        t0 = time.perf_counter()
        result = op()
        times.append(time.perf_counter() - t0)
        peaks.append(common.peak_rss_mb())
        detail = result if isinstance(result, str) else len(result)
        del result
    return {
        "seconds": common.median(times),
        "peak_rss_mb": max(peaks),
        "start_rss_mb": common.median(starts),
        "detail": detail,
    }


def worker(rows: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="obbws-bench-results-") as tmp:
        path = Path(tmp) / "results.duckdb"
        fill_s = _fill(path, rows)
        conn = _open(path, "results")
        try:
            ops: dict[str, Callable[[], Any]] = {
                "get_results()": conn.get_results,
                "query() group-by": lambda: conn.query(GROUP_BY),
                "query() filter": lambda: conn.query(FILTER),
                "export() parquet": lambda: _export(conn, Path(tmp) / "x.parquet"),
                "export() csv": lambda: _export(conn, Path(tmp) / "x.csv"),
            }
            out = {name: _timed(op, runs) for name, op in ops.items()}
            check = len(conn.get_results())
        finally:
            conn.kill()
        file_mb = common.file_mb([path])
    return {"rows": rows, "fill_s": fill_s, "file_mb": file_mb, "rows_read": check, "ops": out}


def _export(conn: Any, path: Path) -> str:
    target = conn.export(path)
    return f"{Path(target).stat().st_size / 2**20:.0f} MiB"


def render(results: list[dict], runs: dict[int, int], load_before: float) -> str:
    rows = []
    for res in results:
        for name, op in res["ops"].items():
            detail = op["detail"]
            detail_text = f"{detail:,} rows" if isinstance(detail, int) else str(detail)
            target = ""
            if name == "get_results()" and res["rows"] == 1_000_000:
                met = op["seconds"] < TARGET_S
                target = f"< {TARGET_S:g} s: **{'met' if met else 'missed'}**"
            rows.append(
                [
                    f"{res['rows']:,}",
                    name,
                    f"{op['seconds']:.3f}",
                    f"{op['peak_rss_mb']:.0f} (from {op['start_rss_mb']:.0f})",
                    detail_text,
                    target,
                ]
            )
    fills = "; ".join(
        f"{r['rows']:,} rows: filled in {r['fill_s']:.1f} s, file {r['file_mb']:.0f} MiB"
        f"{'' if r['rows_read'] == r['rows'] else ' (ROW COUNT MISMATCH)'}"
        for r in results
    )
    run_text = ", ".join(f"{n} for {rows:,}" for rows, n in runs.items())
    return "\n".join(
        [
            "### Results: get_results(), query(), export() on stored rows",
            "",
            f"Machine: {common.machine_line()}; load average before the run {load_before:.2f}.",
            f"Each size in a fresh process; median time of the runs ({run_text}); peak RSS "
            "during the operation (from the RSS at its start). Stores: a demo trades table "
            "created by `create_connection(results_file=...)`, filled by DuckDB "
            "`INSERT ... SELECT FROM range(N)`, reopened with `limit=None`. " + fills + ".",
            "",
            common.table(
                ["rows", "operation", "seconds", "peak RSS MiB", "result", "target"], rows
            ),
        ]
    )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--sizes", default="100000,1000000,10000000")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--worker", type=int, default=None, help=common.argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        common.worker_result(worker(args.worker, args.runs or 1))
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.smoke:
        sizes = [10_000]
    runs = {n: args.runs or (1 if args.smoke or (args.quick and n >= 10**7) else 3) for n in sizes}
    load_before = common.load_average()
    results = []
    for rows in sizes:
        argv = [sys.executable, __file__, "--worker", str(rows), "--runs", str(runs[rows])]
        res = common.run_worker(argv, None, timeout=1800)
        print(f"  {rows:,} rows done", file=sys.stderr, flush=True)
        results.append(res)
    common.emit(args, "results", render(results, runs, load_before), results)


if __name__ == "__main__":
    main()
