"""What a displayed connection widget costs the kernel while it follows a 20k events/s feed.

Run: ``python benchmarks/widget.py [--rate 20000] [--seconds 5] [--runs 3] [--sleep-time 0.25]``

A demo connection (embedded server at ``--rate`` events/s, three symbols) gets its
``ConnectionWidget`` with one view reported visible, as JupyterLab would. The widget's comm is
the no-kernel ``DummyComm`` whose ``publish_msg`` is replaced by a recorder that serializes
every message with ``json.dumps`` (as ipykernel would), so the measured CPU includes encoding.

Prints, medians of ``--runs`` runs:
- comm messages/s and bytes/s the widget sends, and its largest message;
- CPU of the widget's work, as a share of one core: the refresher thread
  (``time.thread_time`` of the ``obbws-widgets`` thread: status, snapshot, trimming, encoding)
  plus the tail's ``feed`` on the loop thread (``time.thread_time`` around every call);
- the whole process's CPU with and without the widget over the same span (A/B; it includes
  the embedded demo server, so it is noisy), and the stream's events/s meanwhile.
Target: the widget adds at most 10% of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import obbws_jupyter as obbws
from obbws_jupyter.widgets import connection_widget
from obbws_jupyter.widgets._refresher import refresher


def _timed_feed(client: Any, feed: Any, spent: list[float]) -> None:
    """Replace the tail's record hook by one that adds its loop-thread CPU to ``spent``."""

    def timed(records: list[dict[str, Any]]) -> None:
        start = time.thread_time()
        feed(records)
        spent[0] += time.thread_time() - start

    hooks = client._record_hooks
    hooks[hooks.index(feed)] = timed


def measure(rate: float, seconds: float, sleep_time: float, widget: bool) -> dict[str, float]:
    conn = obbws.create_connection(
        provider="demo",
        name="bench_widget",
        symbol="btcusd,ethusd,solusd",
        rate=rate,
        sleep_time=sleep_time,
        if_exists="replace",
    )
    try:
        conn.wait(n_records=int(rate), timeout=30)  # warm up: about a second of stream
        sizes: list[int] = []
        feed_cpu = [0.0]
        view = None
        if widget:
            view = connection_widget(conn)

            def publish(msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
                sizes.append(len(json.dumps(data, ensure_ascii=False).encode()))

            view.comm.publish_msg = publish
            _timed_feed(conn.get_client(), view._tail.feed, feed_cpu)
        received0 = conn.status.records_received
        refresh0 = refresher.cpu_seconds
        cpu0, t0 = time.process_time(), time.monotonic()
        if view is not None:
            view.view_changed("bench-view", True)
        conn.wait(n_records=int(rate * seconds), timeout=seconds * 10)
        elapsed = time.monotonic() - t0
        process_cpu = time.process_time() - cpu0
        refresh_cpu = refresher.cpu_seconds - refresh0
        received = conn.status.records_received - received0
        if view is not None:
            view.close()
    finally:
        conn.kill()
    return {
        "events_per_s": received / elapsed,
        "messages_per_s": len(sizes) / elapsed,
        "bytes_per_s": sum(sizes) / elapsed,
        "max_message": max(sizes, default=0),
        "refresh_cpu": refresh_cpu / elapsed,
        "feed_cpu": feed_cpu[0] / elapsed,
        "widget_cpu": (refresh_cpu + feed_cpu[0]) / elapsed,
        "process_cpu": process_cpu / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sleep-time", type=float, default=0.25)
    args = parser.parse_args()

    with_widget, without = [], []
    for run in range(args.runs):
        without.append(measure(args.rate, args.seconds, args.sleep_time, widget=False))
        with_widget.append(measure(args.rate, args.seconds, args.sleep_time, widget=True))
        w = with_widget[-1]
        print(
            f"run {run + 1}: {w['messages_per_s']:.2f} msg/s, {w['bytes_per_s'] / 1024:.1f} KiB/s,"
            f" widget CPU {100 * w['widget_cpu']:.2f}% of a core",
            flush=True,
        )

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows = [
        ("stream events/s (with the widget)", f"{med(with_widget, 'events_per_s'):,.0f}"),
        ("comm messages/s", f"{med(with_widget, 'messages_per_s'):.2f}"),
        ("comm bytes/s", f"{med(with_widget, 'bytes_per_s') / 1024:.1f} KiB/s"),
        ("largest message", f"{med(with_widget, 'max_message') / 1024:.1f} KiB"),
        ("refresh thread CPU", f"{100 * med(with_widget, 'refresh_cpu'):.2f}% of a core"),
        ("tail feed CPU (loop thread)", f"{100 * med(with_widget, 'feed_cpu'):.2f}% of a core"),
        ("widget CPU in total", f"{100 * med(with_widget, 'widget_cpu'):.2f}% of a core"),
        (
            "process CPU without / with widget",
            f"{100 * med(without, 'process_cpu'):.0f}% / "
            f"{100 * med(with_widget, 'process_cpu'):.0f}% of a core",
        ),
    ]
    print()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(
        f"demo feed {args.rate:,.0f} events/s (3 symbols), sleep_time {args.sleep_time} s, "
        f"one visible view, {args.seconds} s per run, median of {args.runs} runs"
    )
    width = max(len(k) for k, _ in rows)
    print(f"| {'what'.ljust(width)} | figure |")
    print(f"|{'-' * (width + 2)}|--------|")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")
    print(
        json.dumps(
            {k: round(med(with_widget, k), 5) for k in with_widget[0]}
            | {"process_cpu_without": round(med(without, "process_cpu"), 5)}
        )
    )


if __name__ == "__main__":
    main()
