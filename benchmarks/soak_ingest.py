"""Soak: 10 minutes at 20k events/s with limit=100_000; RSS and file size must not grow.

Run: ``python benchmarks/soak_ingest.py [--minutes 10] [--rate 20000] [--limit 100000]
[--sample 10] [--quick] [--json] [--readme]``

A paced demo server in its own process sends ``--rate`` events/s (one frame per 15 ms); this
process runs ``create_connection(provider="demo", url=..., limit=...)`` and every ``--sample``
seconds records its RSS, the results file's size (with its ``.wal``), the records received and
stored (``status``), rows dropped, and the rows in the table (a ``count(*)`` query). After the
warm-up (the first fifth of the run, at least one minute; a third of runs under 3 minutes) it
fits a least-squares slope to the RSS and the file size, in MiB per minute. The verdict is
"no growth" when both slopes are under 1 MiB/min (60 MiB an hour) and the table holds exactly
``limit`` rows at the end, nothing dropped. ``--quick`` (``make bench``) runs 3 minutes.
(``soak.py``, of the reliability work, is the hour-long soak with drops, several connections
and listeners.)
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as common

import obbws_jupyter as obbws

SERVER = "obbws_jupyter.offline.demo_server"
SYMBOLS = "btcusd,ethusd,solusd"
GROWTH_MB_PER_MIN = 1.0


def sample(conn: Any, t0: float, path: str) -> dict[str, Any]:
    status = conn.status
    rows = int(conn.query("SELECT count(*) AS n FROM records")["n"].iloc[0])
    return {
        "t": time.monotonic() - t0,
        "rss_mb": common.rss_mb(),
        "file_mb": common.file_mb([path]),
        "received": status.records_received,
        "stored": status.records_stored,
        "dropped": status.dropped_records,
        "rows": rows,
    }


def run(minutes: float, rate: int, limit: int, every: float) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with common.server(SERVER, "--rate", str(rate)) as url:
        conn = obbws.create_connection(
            provider="demo", name="soak", url=url, symbol=SYMBOLS, limit=limit
        )
        try:
            path = conn.status.results_file
            t0 = time.monotonic()
            end = t0 + minutes * 60
            while True:
                samples.append(sample(conn, t0, path))
                s = samples[-1]
                print(
                    f"  {s['t']:6.0f} s: RSS {s['rss_mb']:.0f} MiB, file {s['file_mb']:.1f} MiB, "
                    f"stored {s['stored']:,}, rows {s['rows']:,}",
                    file=sys.stderr,
                    flush=True,
                )
                left = end - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(every, left))  # the sampling cadence
        finally:
            conn.kill()
    return summarize(samples, minutes, rate, limit)


def summarize(samples: list[dict], minutes: float, rate: int, limit: int) -> dict[str, Any]:
    total = minutes * 60
    warmup = max(60.0, total / 5) if total >= 180 else total / 3  # short runs: smoke only
    after = [s for s in samples if s["t"] >= warmup] or samples[-3:]
    xs = [s["t"] for s in after]
    rss_slope = common.slope_per_minute(xs, [s["rss_mb"] for s in after])
    file_slope = common.slope_per_minute(xs, [s["file_mb"] for s in after])
    first, last = samples[0], samples[-1]
    span = last["t"] - first["t"] or float("nan")
    table_ok = last["rows"] == min(limit, last["stored"]) and last["dropped"] == 0
    no_growth = rss_slope < GROWTH_MB_PER_MIN and file_slope < GROWTH_MB_PER_MIN and table_ok
    return {
        "minutes": minutes,
        "rate": rate,
        "limit": limit,
        "warmup_s": warmup,
        "stored_per_s": (last["stored"] - first["stored"]) / span,
        "received_per_s": (last["received"] - first["received"]) / span,
        "rss_slope_mb_min": rss_slope,
        "file_slope_mb_min": file_slope,
        "rss_after_warmup": [min(s["rss_mb"] for s in after), max(s["rss_mb"] for s in after)],
        "file_after_warmup": [min(s["file_mb"] for s in after), max(s["file_mb"] for s in after)],
        "table_ok": table_ok,
        "no_growth": no_growth,
        "samples": samples,
    }


def render(r: dict[str, Any], every: float, load_before: float) -> str:
    lo, hi = r["rss_after_warmup"]
    flo, fhi = r["file_after_warmup"]
    rows = [
        [
            "stored / received",
            f"{common.rate(r['stored_per_s'])} / {common.rate(r['received_per_s'])} events/s",
        ],
        ["RSS after warm-up", f"{lo:.0f}-{hi:.0f} MiB, slope {r['rss_slope_mb_min']:+.2f} MiB/min"],
        [
            "file after warm-up",
            f"{flo:.1f}-{fhi:.1f} MiB, slope {r['file_slope_mb_min']:+.2f} MiB/min",
        ],
        [
            "table at the end",
            f"{r['samples'][-1]['rows']:,} rows, "
            f"{r['samples'][-1]['dropped']} dropped{'' if r['table_ok'] else ' (CHECK FAILED)'}",
        ],
        [
            "verdict",
            f"**{'no growth' if r['no_growth'] else 'GROWTH'}** (both slopes < "
            f"{GROWTH_MB_PER_MIN:g} MiB/min, table at limit, nothing dropped)",
        ],
    ]
    per_minute = [s for s in r["samples"] if s["t"] % 60 < every or s is r["samples"][-1]]
    trace = ", ".join(
        f"{s['t'] / 60:.0f} min {s['rss_mb']:.0f}/{s['file_mb']:.1f}" for s in per_minute
    )
    return "\n".join(
        [
            f"### Soak: {r['minutes']:g} min at {r['rate']:,} events/s, limit={r['limit']:,}",
            "",
            f"Machine: {common.machine_line()}; load average before the run {load_before:.2f}.",
            f"Samples every {every:g} s; slopes by least squares after a {r['warmup_s']:.0f} s "
            "warm-up.",
            "",
            common.table(["what", "figure"], rows),
            "",
            f"RSS/file MiB by minute: {trace}.",
        ]
    )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--rate", type=int, default=20_000)
    p.add_argument("--limit", type=int, default=100_000)
    p.add_argument("--sample", type=float, default=None, help="seconds between samples")
    args = p.parse_args()
    minutes = args.minutes or (0.1 if args.smoke else 3.0 if args.quick else 10.0)
    every = args.sample or (1.0 if args.smoke else 10.0)
    load_before = common.load_average()
    result = run(minutes, args.rate, args.limit, every)
    common.emit(args, "soak_ingest", render(result, every, load_before), result)


if __name__ == "__main__":
    main()
