"""Consumer side: a frame's records -> ids, the sinks, the DuckDB writer; no socket, no parse.

Run: ``python benchmarks/consumer.py [--records 300000] [--runs 3] [--quick] [--smoke]``

Measures what ``WebSocketClient._on_records`` and the store's writer thread cost together,
apart from the websocket and the provider's parser (``ingest.py`` measures all of it against
the orjson ceiling, but on a shared machine its figures swing by 2x from one round to the
next). A demo client is created but never connected; pre-built demo trade records (samples
built here) are handed to ``_on_records`` the way the stream does, in frames of 1 and 50
records, with ``limit=1000`` and ``limit=None``, with and without a record hook (a hook makes
the client write ids into the dicts and check each record before anyone sees it). Per case:
records/s from the first frame to the committed flush (median of ``--runs``), the loop
thread's time per frame, and the process CPU time per record (robust to a busy machine).
"""

from __future__ import annotations

import gc
import random
import time
from typing import Any

import _common as common

SYMBOLS = ("BTCUSD", "ETHUSD", "SOLUSD")
CASES = [(1, 1000), (1, None), (50, 1000), (50, None)]


def make_frames(total: int, per_frame: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    t0 = time.time_ns()
    return [
        [
            {
                "date": t0 + i + k,
                "symbol": rng.choice(SYMBOLS),
                "type": "trade",
                "exchange": "demo",
                "price": 100.0 + rng.random(),
                "size": rng.random(),
            }
            for k in range(per_frame)
        ]
        for i in range(0, total, per_frame)
    ]


def run_once(total: int, per_frame: int, limit: int | None, hook: bool) -> dict[str, float]:
    from obbws_jupyter.client import WebSocketClient

    client = WebSocketClient("demo", symbol=",".join(SYMBOLS), limit=limit)
    try:
        if hook:
            client.add_record_hook(lambda records: None)
        frames = make_frames(total, per_frame)
        gc.collect()
        on_records = client._on_records
        cpu, start = time.process_time(), time.perf_counter()
        for frame in frames:
            on_records(frame)
        looped = time.perf_counter() - start
        client.store.flush(timeout=600)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        stored = client.status().records_stored
    finally:
        client.close()
    return {
        "records_per_s": total / elapsed,
        "loop_us_per_frame": looped / len(frames) * 1e6,
        "cpu_us_per_record": cpu / total * 1e6,
        "stored": stored,
    }


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--records", type=int, default=None, help="records per run")
    p.add_argument("--runs", type=int, default=None, help="runs per case (median)")
    args = p.parse_args()
    total = args.records or (2_000 if args.smoke else 100_000 if args.quick else 300_000)
    runs = args.runs or (1 if args.smoke else 3)
    load_before = common.load_average()
    rows: list[dict[str, Any]] = []
    for per_frame, limit in CASES:
        for hook in (False, True):
            results = [run_once(total, per_frame, limit, hook) for _ in range(runs)]
            row: dict[str, Any] = {"per_frame": per_frame, "limit": limit, "hook": hook}
            for key in ("records_per_s", "loop_us_per_frame", "cpu_us_per_record"):
                row[key] = common.median(r[key] for r in results)
            row["all_stored"] = all(r["stored"] == total for r in results)
            rows.append(row)
    table = common.table(
        ["records/frame", "limit", "record hook", "records/s", "loop µs/frame", "CPU µs/record"],
        [
            (
                r["per_frame"],
                r["limit"],
                "yes" if r["hook"] else "no",
                common.rate(r["records_per_s"]),
                f"{r['loop_us_per_frame']:.2f}",
                f"{r['cpu_us_per_record']:.2f}" + ("" if r["all_stored"] else " (rows missing!)"),
            )
            for r in rows
        ],
    )
    markdown = "\n".join(
        [
            "### Consumer side: _on_records -> sinks -> DuckDB writer (no socket, no parse)",
            "",
            common.machine_line() + f"; load average before the run {load_before:.2f}.",
            f"{total:,} pre-built demo trade records per run, median of {runs} runs; records/s "
            "from the first frame to the committed flush; CPU is the process's (all threads).",
            "",
            table,
        ]
    )
    common.emit(args, "consumer", markdown, rows)


if __name__ == "__main__":
    main()
