"""Soak: 10 minutes at 20k events/s with limit=100_000; RSS and file size must not grow.

Run: ``python benchmarks/soak_ingest.py [--minutes 10] [--rate 20000] [--limit 100000]
[--sample 10] [--quick] [--json] [--readme]``

A paced demo server in its own process sends ``--rate`` events/s (one frame per 15 ms); this
process runs ``create_connection(provider="demo", url=..., limit=...)`` and every ``--sample``
seconds records its RSS, the results file's size (with its ``.wal``), the records received and
stored (``status``), rows dropped, and the rows in the table (a ``count(*)`` query). After the
warm-up (the first fifth of the run, at least one minute; a third of runs under 3 minutes) it
fits a least-squares slope to the RSS and the file size, in MiB per minute. Both move in a
sawtooth (allocator reuse; DuckDB's WAL grows until a checkpoint folds it in, every minute or
so here), which a slope over a few minutes reads as growth or shrinkage; so the verdict "no
growth" compares envelopes instead: for the RSS and for the file size, the highest sample of
the second half of the post-warm-up run is at most the highest of the first half plus 5%
(at least 4 MiB); and the table holds exactly ``limit`` rows at the end, nothing dropped.
``--quick`` (``make bench``) runs 3 minutes. (``soak.py``, of the reliability work, is the
hour-long soak with drops, several connections and listeners.)
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as common

import obbws_jupyter as obbws

SERVER = "obbws_jupyter.offline.demo_server"
SYMBOLS = "btcusd,ethusd,solusd"
TOLERANCE = (0.05, 4.0)  # envelope growth allowed: 5% of the first half's peak, at least MiB


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
    first, last = samples[0], samples[-1]
    span = last["t"] - first["t"] or float("nan")
    table_ok = last["rows"] == min(limit, last["stored"]) and last["dropped"] == 0
    out: dict[str, Any] = {
        "minutes": minutes,
        "rate": rate,
        "limit": limit,
        "warmup_s": warmup,
        "stored_per_s": (last["stored"] - first["stored"]) / span,
        "received_per_s": (last["received"] - first["received"]) / span,
        "table_ok": table_ok,
        "samples": samples,
    }
    within = [table_ok]
    for key in ("rss_mb", "file_mb"):
        values = [s[key] for s in after]
        growth, ok = _envelope(values)
        within.append(ok)
        out[key] = {
            "min": min(values),
            "max": max(values),
            "slope_per_min": common.slope_per_minute(xs, values),
            "envelope_growth": growth,
        }
    out["no_growth"] = all(within)
    return out


def _envelope(values: list[float]) -> tuple[float, bool]:
    """(peak of the second half - peak of the first half, whether within the tolerance)."""
    half = len(values) // 2
    if half < 1:
        return float("nan"), False
    first, second = max(values[:half]), max(values[half:])
    share, floor = TOLERANCE
    return second - first, second - first <= max(floor, share * first)


def _level(m: dict[str, float], digits: int) -> str:
    return (
        f"{m['min']:.{digits}f}-{m['max']:.{digits}f} MiB; slope {m['slope_per_min']:+.2f} "
        f"MiB/min; peak of the 2nd half vs the 1st {m['envelope_growth']:+.1f} MiB"
    )


def render(r: dict[str, Any], every: float, load_before: float) -> str:
    last = r["samples"][-1]
    share, floor = TOLERANCE
    rows = [
        [
            "stored / received",
            f"{common.rate(r['stored_per_s'])} / {common.rate(r['received_per_s'])} events/s",
        ],
        ["RSS after warm-up", _level(r["rss_mb"], 0)],
        ["file (+ .wal) after warm-up", _level(r["file_mb"], 1)],
        [
            "table at the end",
            f"{last['rows']:,} rows, {last['dropped']} dropped"
            + ("" if r["table_ok"] else " (CHECK FAILED)"),
        ],
        [
            "verdict",
            f"**{'no growth' if r['no_growth'] else 'GROWTH'}** (peaks of the 2nd half within "
            f"{share:.0%} / {floor:g} MiB of the 1st, for RSS and file; table at the limit)",
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
