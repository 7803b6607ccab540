"""Latency: fake server send -> broadcast listener receipt, p50/p99/p99.9, by rate and listeners.

Run: ``python benchmarks/latency.py [--rates 1000,10000,50000] [--listeners 1,10,100]
[--seconds 5] [--quick] [--json] [--readme]``

A demo market server in its own process (``_stamped_server.py``) sends ``rate`` events/s, one
frame every 5 ms, each event stamped with its send time (ns). This process opens
``create_connection(provider="demo", url=..., limit=1000)`` and ``start_broadcasting(port=0,
ping_interval=None)``; the listeners are lean stdlib clients (``_listener.py``) in processes
of their own (1 for up to 10 listeners, 2 for 100), which take every record's latency from its
``date`` (the send stamp) at the moment its bytes are read. So a figure covers: the server's
send, our receive, parse, id/store queueing, broadcast encode and fan-out, and the listener's
read. Target (issue #8): 10k events/s to 10 listeners with p50 < 5 ms and p99 < 50 ms.

Also shown per point: records/s delivered to all listeners together and the share of what
they should have got (every listener gets every record), listeners dropped as too slow (close
1013), this process's CPU (% of one core) and RSS.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as common

import obbws_jupyter as obbws

SERVER = str(common.HERE / "_stamped_server.py")
SYMBOLS = "btcusd,ethusd,solusd"
TARGET = (10_000, 10, 5.0, 50.0)  # rate, listeners, p50 ms, p99 ms


def processes_for(listeners: int) -> int:
    return 1 if listeners <= 10 else 2


def measure(conn: Any, listeners: int, warmup: float, seconds: float) -> dict[str, Any]:
    """One point: ``listeners`` listeners on ``conn``'s broadcast for ``seconds``."""
    address = conn.status.broadcast_address
    me = common.psutil.Process()
    with common.Listeners(address, listeners, processes_for(listeners)) as group:
        time.sleep(warmup)  # the window starts after the warm-up (not synchronisation)
        group.command("reset")
        s0, c0, t0 = conn.status, me.cpu_times(), time.perf_counter()
        time.sleep(seconds)
        report = group.report()
        s1, c1, t1 = conn.status, me.cpu_times(), time.perf_counter()
    elapsed = t1 - t0
    ingested = (s1.records_received - s0.records_received) / elapsed
    delivered = sum(item["records"] for item in report["listeners"]) / elapsed
    dropped = sum(1 for item in report["listeners"] if item["close_code"] is not None)
    cpu = (c1.user + c1.system - c0.user - c0.system) / elapsed * 100
    return {
        "listeners": listeners,
        "ingest_per_s": ingested,
        "delivered_per_s": delivered,
        "delivered_share": delivered / (ingested * listeners) if ingested else float("nan"),
        "dropped": dropped,
        "cpu_pct": cpu,
        "rss_mb": common.rss_mb(),
        **common.latency_summary(report["latency_ms"]),
    }


def run_rate(rate: int, counts: list[int], warmup: float, seconds: float) -> list[dict]:
    out = []
    with common.server(SERVER, "--rate", str(rate)) as url:
        conn = obbws.create_connection(
            provider="demo", name=f"latency-{rate}", url=url, symbol=SYMBOLS, limit=1000
        )
        try:
            conn.start_broadcasting(port=0, ping_interval=None)
            time.sleep(warmup)  # the stream's own warm-up, before the first point
            for n in counts:
                point = measure(conn, n, warmup, seconds)
                point["rate"] = rate
                out.append(point)
                print(
                    f"  {rate:>6} ev/s, {n:>3} listeners: p50 {common.ms(point['p50'])} ms, "
                    f"p99 {common.ms(point['p99'])} ms",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            conn.kill()
    return out


def verdict(point: dict) -> str:
    rate, listeners, p50, p99 = TARGET
    if point["rate"] != rate or point["listeners"] != listeners:
        return ""
    met = point["p50"] < p50 and point["p99"] < p99
    return f"target p50 < {p50:g}, p99 < {p99:g}: **{'met' if met else 'missed'}**"


def render(points: list[dict], seconds: float, load_before: float) -> str:
    rows = [
        [
            f"{p['rate']:,}",
            p["listeners"],
            common.ms(p["p50"]),
            common.ms(p["p99"]),
            common.ms(p["p999"]),
            f"{p['samples']:,}",
            common.rate(p["ingest_per_s"]),
            f"{common.rate(p['delivered_per_s'])} ({p['delivered_share']:.0%})",
            p["dropped"],
            f"{p['cpu_pct']:.0f}%",
            f"{p['rss_mb']:.0f}",
            verdict(p),
        ]
        for p in points
    ]
    return "\n".join(
        [
            "### Latency: fake server send -> broadcast listener receipt",
            "",
            f"Machine: {common.machine_line()}; load average before the run {load_before:.2f}.",
            f"{seconds:g} s per point; the server sends one frame per 5 ms; listeners in other "
            "processes; latency of every record, in ms (10 µs bins).",
            "",
            common.table(
                [
                    "events/s",
                    "listeners",
                    "p50",
                    "p99",
                    "p99.9",
                    "records",
                    "ingested/s",
                    "delivered/s (share)",
                    "dropped",
                    "our CPU",
                    "RSS MiB",
                    "",
                ],
                rows,
            ),
        ]
    )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--rates", default="1000,10000,50000")
    p.add_argument("--listeners", default="1,10,100")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--warmup", type=float, default=None)
    args = p.parse_args()
    rates = [int(x) for x in args.rates.split(",")]
    counts = [int(x) for x in args.listeners.split(",")]
    if args.smoke:
        rates, counts = rates[:1], counts[:1]
    seconds = args.seconds or (1.0 if args.smoke else 3.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if args.smoke else 1.0)
    load_before = common.load_average()
    points: list[dict] = []
    for rate in rates:
        points += run_rate(rate, counts, warmup, seconds)
    common.emit(args, "latency", render(points, seconds, load_before), points)


if __name__ == "__main__":
    main()
