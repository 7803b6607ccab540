"""HTTP API throughput: get_results streamed as JSON, CSV and Parquet, a small incremental
poll (since_id), and records delivered by the server-sent-events route.

Fills a demo connection (limit None) with ``--rows`` records, stops its stream, serves the
API with ``serve_api(port=0)`` (real uvicorn on loopback) and prints records/s per format
(median of ``--runs``) and the median latency of a ``since_id`` poll of ``--poll`` records.
Then restarts the stream at ``--rate`` events/s and counts what one SSE client receives.

    python benchmarks/http_results.py [--rows 50000] [--runs 3] [--poll 100] [--rate 2000]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx2 as httpx

import obbws_jupyter as obbws
from obbws_jupyter import _api as api


def fill(rows: int) -> None:
    obbws.create_connection(provider="demo", name="bench", symbol="*", limit=None, rate=50_000.0)
    client = api.get_client("bench")
    done = threading.Event()
    count = [0]

    def hook(records: list) -> None:
        count[0] += len(records)
        if count[0] >= rows:
            done.set()

    client.add_record_hook(hook)
    if not done.wait(600):
        raise SystemExit("the demo stream did not deliver enough records in time")
    client.remove_record_hook(hook)
    api.stop_connection("bench")


def timed_get(url: str, params: dict) -> tuple[float, int]:
    start = time.perf_counter()
    response = httpx.get(url, params=params, timeout=600)
    response.raise_for_status()
    return time.perf_counter() - start, len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--poll", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    fill(args.rows)
    stored = len(api.get_results("bench"))
    with obbws.serve_api(port=0) as server:
        url = server.url + "/api/v1/websockets/get_results"
        print(f"get_results of {stored} records over HTTP (median of {args.runs} runs):")
        for fmt in ("json", "csv", "parquet"):
            runs = [timed_get(url, {"name": "bench", "format": fmt}) for _ in range(args.runs)]
            seconds = statistics.median(r[0] for r in runs)
            size = runs[0][1] / 2**20
            print(f"  {fmt:8s} {stored / seconds:>10,.0f} records/s  {size:6.1f} MiB")
        last = api.get_results("bench")["id"].iloc[-1]
        params = {"name": "bench", "since_id": int(last) - args.poll}
        polls = [timed_get(url, params)[0] for _ in range(20)]
        print(f"  since_id poll of {args.poll} records: {statistics.median(polls) * 1e3:.1f} ms")
        api.kill("bench")
        obbws.create_connection(provider="demo", name="bench", symbol="*", rate=args.rate)
        received = 0
        start = time.perf_counter()
        stream = server.url + "/api/v1/websockets/stream"
        with httpx.stream("GET", stream, params={"name": "bench"}, timeout=30) as response:
            for line in response.iter_lines():
                received += line.startswith("data: ")
                if time.perf_counter() - start >= args.seconds:
                    break
        elapsed = time.perf_counter() - start
        produced = api.get_client_status("bench")[0].records_received
        print(
            f"SSE at {args.rate:,.0f} events/s offered: {received / elapsed:,.0f} records/s "
            f"received by one client ({received} of {produced} produced)"
        )
        api.kill("bench")


if __name__ == "__main__":
    main()
