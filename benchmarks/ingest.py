"""Ingest throughput: the demo fake server at full speed into DuckDB, against the raw ceiling.

Run: ``python benchmarks/ingest.py [--seconds 5] [--runs 3] [--rate 400000] [--limit 1000]``

The demo server runs in a separate process (as a real provider would be), so this process
only receives. Two measurements per run, in the same run:

* ceiling: a bare websockets client doing ``recv`` + ``DemoSession.receive`` (parse) and nothing
  else — the most this process could ingest from that server;
* pipeline: ``create_connection(provider="demo", limit=...)`` — parse, ids, the DuckDB writer
  thread with the limit cap, status counters — events stored per second.

Prints the median events/s of each, their ratio, latency percentiles (provider timestamp to
receipt, and receipt to commit is bounded by the flush interval) and the process RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import psutil
from websockets.asyncio.client import connect

import obbws_jupyter as obbws
from obbws_providers.demo import PROVIDER as DEMO

SYMBOLS = "btcusd,ethusd,solusd"


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "obbws_jupyter.offline.demo_server", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("ws://"):
        proc.kill()
        raise SystemExit(f"demo server did not start: {url!r}")
    return proc, url


async def _ceiling(url: str, seconds: float) -> float:
    params = DEMO.resolve({"symbol": SYMBOLS, "url": url}, {})
    session = DEMO.session_class(params)
    records = 0
    elapsed = 0.0
    async with connect(session.url(), compression=None, max_size=2**24, close_timeout=0.1) as ws:
        session.connection_made()
        start = None
        async for frame in ws:
            got = session.receive(frame)
            session.events_received()
            for out in session.data_to_send():
                await ws.send(out)
            if got:
                if start is None:  # measure from the first data frame
                    start = time.perf_counter()
                    continue
                records += len(got)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break  # the close handshake that follows is not timed
    return records / elapsed


def ceiling(url: str, seconds: float) -> float:
    return asyncio.run(_ceiling(url, seconds))


def pipeline(url: str, seconds: float, limit: int | None, run: int) -> dict[str, float]:
    """Events/s through the whole pipeline: parse, ids, DuckDB writer with the limit cap."""
    conn = obbws.create_connection(
        provider="demo", name=f"bench-{run}", symbol=SYMBOLS, url=url, limit=limit
    )
    client = conn.get_client()
    time.sleep(0.5)  # warm-up: measuring window only, not synchronisation
    client.store.flush()
    s0, t0 = client.status(), time.perf_counter()
    time.sleep(seconds)
    client.store.flush()
    s1, t1 = client.status(), time.perf_counter()
    conn.stop_connection()
    rows = len(conn.get_results())
    rss = psutil.Process().memory_info().rss / 2**20
    conn.kill()
    return {
        "received": (s1.records_received - s0.records_received) / (t1 - t0),
        "stored": (s1.records_stored - s0.records_stored) / (t1 - t0),
        "rows": rows,
        "dropped": s1.dropped_records,
        "rss_mb": rss,
    }


def latency(url: str, seconds: float) -> dict[str, float]:
    """Provider timestamp -> receipt on the loop, per record, at a rate the server sustains."""
    conn = obbws.create_connection(provider="demo", name="bench-lat", symbol=SYMBOLS, url=url)
    client = conn.get_client()
    lags: list[int] = []

    def hook(records: list[dict]) -> None:
        now = time.time_ns()
        lags.extend(now - r["date"] for r in records)

    client.add_record_hook(hook)
    time.sleep(seconds)
    client.remove_record_hook(hook)
    conn.kill()
    lags.sort()
    return {
        "n": len(lags),
        "p50": lags[len(lags) // 2] / 1e6,
        "p90": lags[int(len(lags) * 0.9)] / 1e6,
        "p99": lags[int(len(lags) * 0.99)] / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--latency-rate", type=float, default=20_000.0)
    args = parser.parse_args()

    proc, url = start_server("--firehose")
    try:
        ceilings, results = [], []
        for run in range(args.runs):
            ceilings.append(ceiling(url, args.seconds))
            results.append(pipeline(url, args.seconds, args.limit, run))
            r = results[-1]
            print(
                f"run {run + 1}: ceiling {ceilings[-1]:,.0f} ev/s | pipeline received "
                f"{r['received']:,.0f} ev/s, stored {r['stored']:,.0f} ev/s, "
                f"table rows {r['rows']:.0f}, dropped {r['dropped']:.0f}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(5)
    proc, url = start_server("--rate", str(args.latency_rate))
    try:
        lat = latency(url, args.seconds)
    finally:
        proc.terminate()
        proc.wait(5)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    c = statistics.median(ceilings)
    print()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"demo server in another process, firehose mode; symbols {SYMBOLS}; limit {args.limit}")
    print(f"raw receive+parse ceiling : {c:,.0f} events/s (median of {args.runs})")
    print(
        f"pipeline into DuckDB      : {med('stored'):,.0f} events/s stored "
        f"({med('received'):,.0f} received; median of {args.runs})"
    )
    print(f"pipeline / ceiling        : {med('stored') / c:.2f}")
    print(
        f"latency at {args.latency_rate:,.0f} ev/s   : provider timestamp -> receipt "
        f"p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms "
        f"({lat['n']:,.0f} records; includes the server's 15 ms batching tick)"
    )
    print(f"process RSS after a run   : {med('rss_mb'):.0f} MiB")
    print(json.dumps({"ceiling_eps": round(c), "pipeline_eps": round(med("stored"))}))


if __name__ == "__main__":
    main()
