"""Broadcast fan-out: records/s delivered and latency to N listeners.

Run: ``python benchmarks/broadcast.py [--rate 5000] [--listeners 1,10,50] [--seconds 4]``

A demo connection (embedded server at ``--rate`` events/s) broadcasts on a free port; the
listeners run in a separate process (plain websockets clients, so they do not share this
process's GIL) and count every record; one record in 20 is parsed to measure the time from
``received_at`` (the stream's receipt of the provider frame) to the listener's receipt.
Prints, per listener count, the records/s delivered to all listeners together, latency
percentiles, drops, and this process's RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time

import psutil

import obbws_jupyter as obbws

LISTENERS = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import datetime
    from websockets.asyncio.client import connect

    url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    async def one(lags, counts, ready):
        async with connect(url, compression=None, max_queue=None) as ws:
            ready.append(1)
            end = time.time() + seconds
            count = 0
            async for frame in ws:
                count += 1
                if count % 20 == 0:  # sample: parsing every frame would measure this process
                    now = time.time()
                    stamp = json.loads(frame)["received_at"]
                    lags.append(now - datetime.fromisoformat(stamp).timestamp())
                    if now >= end:
                        break
            counts.append(count)

    async def main():
        lags, counts, ready = [], [], []
        tasks = [asyncio.create_task(one(lags, counts, ready)) for _ in range(n)]
        while len(ready) < n:
            await asyncio.sleep(0.01)
        print("READY", flush=True)
        await asyncio.gather(*tasks)
        lags.sort()
        q = lambda p: lags[min(len(lags) - 1, int(len(lags) * p))] * 1000
        print(json.dumps({"records": sum(counts), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99)}))

    asyncio.run(main())
    """
)


def run(rate: float, listeners: int, seconds: float) -> dict[str, float]:
    conn = obbws.create_connection(
        provider="demo", name=f"bc-{listeners}", symbol="btcusd,ethusd,solusd", rate=rate
    )
    conn.start_broadcasting(port=0)
    address = conn.status.broadcast_address
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENERS, address, str(listeners), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    before = conn.status.records_received
    t0 = time.perf_counter()
    out = json.loads(proc.stdout.readline())
    elapsed = time.perf_counter() - t0
    proc.wait(10)
    status = conn.status
    out["ingest"] = (status.records_received - before) / elapsed
    out["rate"] = out["records"] / elapsed
    out["rss_mb"] = psutil.Process().memory_info().rss / 2**20
    out["dropped"] = conn.get_client()._broadcast.stats["dropped_slow"]  # type: ignore[union-attr]
    out["listeners_seen"] = status.listeners
    conn.kill()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="demo events/s")
    parser.add_argument("--listeners", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"demo stream at {args.rate:,.0f} events/s, {args.seconds:.0f} s per point")
    for n in (int(x) for x in args.listeners.split(",")):
        r = run(args.rate, n, args.seconds)
        print(
            f"{n:>3} listener(s): stream ingest {r['ingest']:>6,.0f}/s | "
            f"{r['rate']:>9,.0f} records/s delivered in all | "
            f"latency receipt->listener p50 {r['p50']:.1f} ms, p90 {r['p90']:.1f} ms, "
            f"p99 {r['p99']:.1f} ms | dropped {r['dropped']} | RSS {r['rss_mb']:.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
