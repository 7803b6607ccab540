"""Fan-out: 100 listeners at 10k events/s, then one stops reading; the others must not notice.

Run: ``python benchmarks/fanout.py [--rate 10000] [--listeners 100] [--seconds 5] [--quick]
[--json] [--readme]``

Same set-up as ``latency.py`` (stamped demo server in its own process, ``create_connection``
+ ``start_broadcasting(port=0, ping_interval=None)`` here, lean listeners in 2 processes of
their own). Phases:

1. **all reading**: ``--seconds`` with every listener reading: latency of every record;
2. **one stalled**: listener 0 stops reading its socket (``pause_reading``); the window runs
   until the broadcast has dropped it (``status.listeners`` falls by one) and ``--seconds``
   have passed, whichever is later: latency of the other listeners' records;
3. listener 0 reads again: it must find the close frame, code 1013.

This process's RSS is sampled every 0.1 s throughout. Verdicts, stated as rules: the others'
p99 "did not rise" when the stalled phase's p99 is at most 1.5 x the first phase's + 2 ms;
memory "bounded" when the peak RSS of phase 2 exceeds phase 1's by less than 32 MiB (the
broadcast drops a listener whose unsent bytes pass ``max_buffer``, 4 MiB by default).
"""

from __future__ import annotations

import time
from typing import Any

import _common as common

import obbws_jupyter as obbws

SERVER = str(common.HERE / "_stamped_server.py")
SYMBOLS = "btcusd,ethusd,solusd"
DROP_TIMEOUT = 60.0
RSS_SLACK_MB = 32.0


def _wait_listeners(conn: Any, below: int, timeout: float) -> float | None:
    """Seconds until ``status.listeners`` < ``below`` (polled every 0.1 s), None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if conn.status.listeners < below:
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def _stalled_outcome(group: common.Listeners) -> dict[str, Any]:
    """Listener 0's report once it has read its backlog and seen the close frame or lost the
    connection (polled every 0.2 s, for 10 s at most)."""
    deadline = time.monotonic() + 10.0
    while True:
        item: dict[str, Any] = group.report()["listeners"][0]
        if item["close_code"] is not None or item["lost"] or time.monotonic() > deadline:
            return item
        time.sleep(0.2)


def _phase(report: dict[str, Any], elapsed: float, t: tuple[float, float], rss: Any) -> dict:
    steady = [item for item in report["listeners"] if not item["stalled"]]
    return {
        **common.latency_summary(report["latency_ms"]),
        "delivered_per_s": sum(item["records"] for item in steady) / elapsed,
        "listeners_counted": len(steady),
        "rss_peak_mb": rss.peak(*t),
        "seconds": elapsed,
    }


def run(
    rate: int, listeners: int, warmup: float, seconds: float, max_buffer: int | None
) -> dict[str, Any]:
    with common.server(SERVER, "--rate", str(rate)) as url, common.RssSampler(None, 0.1) as rss:
        conn = obbws.create_connection(
            provider="demo", name="fanout", url=url, symbol=SYMBOLS, limit=1000
        )
        try:
            options = {} if max_buffer is None else {"max_buffer": max_buffer}
            conn.start_broadcasting(port=0, ping_interval=None, **options)
            address = conn.status.broadcast_address
            with common.Listeners(address, listeners, processes=2) as group:
                time.sleep(warmup)  # the window starts after the warm-up
                group.command("reset")
                t0 = time.monotonic()
                time.sleep(seconds)
                first = _phase(group.report(), time.monotonic() - t0, (t0, time.monotonic()), rss)
                first["listeners_connected"] = conn.status.listeners

                group.command("reset")
                group.stall(0)
                t1 = time.monotonic()
                dropped_after = _wait_listeners(conn, listeners, DROP_TIMEOUT)
                time.sleep(max(0.0, seconds - (time.monotonic() - t1)))
                second = _phase(group.report(), time.monotonic() - t1, (t1, time.monotonic()), rss)
                second["listeners_connected"] = conn.status.listeners

                group.resume(0)
                stalled = _stalled_outcome(group)
            rss_end = common.rss_mb()
        finally:
            conn.kill()
    return {
        "rate": rate,
        "listeners": listeners,
        "all_reading": first,
        "one_stalled": second,
        "dropped_after_s": dropped_after,
        "stalled_close_code": stalled["close_code"],
        "stalled_lost": stalled["lost"],
        "rss_end_mb": rss_end,
        "p99_not_risen": second["p99"] <= 1.5 * first["p99"] + 2.0,
        "rss_bounded": second["rss_peak_mb"] - first["rss_peak_mb"] < RSS_SLACK_MB,
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render(r: dict[str, Any], load_before: float) -> str:
    rows = []
    for name, key in (("all reading", "all_reading"), ("one stalled", "one_stalled")):
        ph = r[key]
        rows.append(
            [
                name,
                f"{ph['seconds']:.1f}",
                ph["listeners_counted"],
                common.ms(ph["p50"]),
                common.ms(ph["p99"]),
                common.ms(ph["p999"]),
                common.rate(ph["delivered_per_s"]),
                ph["listeners_connected"],
                f"{ph['rss_peak_mb']:.0f}",
            ]
        )
    dropped = (
        f"after {r['dropped_after_s']:.1f} s"
        if r["dropped_after_s"] is not None
        else f"NOT within {DROP_TIMEOUT:g} s"
    )
    code = r["stalled_close_code"]
    seen = (
        f"close code {code} seen by the listener"
        if code
        else "the listener saw no close frame"
        + (" (the connection was reset)" if r["stalled_lost"] else " within 10 s")
    )
    return "\n".join(
        [
            f"### Fan-out: {r['listeners']} listeners at {r['rate']:,} events/s, one stalls",
            "",
            f"Machine: {common.machine_line()}; load average before the run {load_before:.2f}.",
            "",
            common.table(
                [
                    "phase",
                    "seconds",
                    "listeners counted",
                    "p50 ms",
                    "p99 ms",
                    "p99.9 ms",
                    "delivered/s (counted)",
                    "connected at end",
                    "peak RSS MiB",
                ],
                rows,
            ),
            "",
            f"- stalled listener dropped by the broadcast {dropped}; {seen}.",
            f"- others' p99 did not rise (≤ 1.5 x + 2 ms): **{_yes(r['p99_not_risen'])}**",
            f"- our RSS bounded (stalled-phase peak - first peak < {RSS_SLACK_MB:g} MiB): "
            f"**{_yes(r['rss_bounded'])}**; RSS at the end {r['rss_end_mb']:.0f} MiB.",
        ]
    )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--rate", type=int, default=10_000)
    p.add_argument("--listeners", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--max-buffer", type=int, default=None, help="broadcast max_buffer, bytes")
    args = p.parse_args()
    listeners = args.listeners or (5 if args.smoke else 100)
    seconds = args.seconds or (1.0 if args.smoke else 3.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if args.smoke else 1.0)
    rate = args.rate
    load_before = common.load_average()
    max_buffer = args.max_buffer or (2**16 if args.smoke else None)
    result = run(rate, listeners, warmup, seconds, max_buffer)
    common.emit(args, "fanout", render(result, load_before), result)


if __name__ == "__main__":
    main()
