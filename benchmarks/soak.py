"""Soak: hours of streaming with drops, watching for leaks (RSS, fds, threads, file size).

Run: ``python benchmarks/soak.py [--minutes 60] [--rate 5000] [--connections 3]
[--listeners 10] [--drop-every 120] [--sample 10] [--limit 20000] [--window 180]
[--write-readme]``

Three demo connections share ``--rate`` events/s in total (one demo server in this process;
each connection stores into its own DuckDB file capped at ``--limit`` rows and broadcasts),
ten background ``listen()`` listeners are spread over the broadcasts, and every
``--drop-every`` seconds the provider drops every connection (close 1011), which the streams
survive by reconnecting. Every ``--sample`` seconds the process's RSS, open fds, threads and
the results files' size are sampled. At the end it prints the slope of each after warm-up
(the first fifth of the run, at least two minutes when the run allows it) by least squares,
per hour, the lowest and highest values of each ``--window`` (the sawtooth of DuckDB's
checkpoints makes those the better leak signal), and checks that nothing was lost: per
connection records received == stored, none dropped, and every listener still connected.
``--write-readme`` puts the summary in ``benchmarks/README.md`` (between the ``soak``
markers). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

import obbws_jupyter as obbws
from obbws_jupyter.listen import Listener, listen
from obbws_jupyter.offline.demo_server import start_demo_server

README = pathlib.Path(__file__).with_name("README.md")
START, END = "<!-- bench:soak -->", "<!-- /bench:soak -->"


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    threads: int
    file_mb: float
    py_blocks: int  # sys.getallocatedblocks(): Python objects alive, a cheap leak proxy
    stored: int
    heard: int


@dataclass
class Run:
    args: argparse.Namespace
    samples: list[Sample] = field(default_factory=list)
    drops: int = 0


def _file_mb(paths: list[str]) -> float:
    total = 0
    for path in paths:
        for candidate in (path, path + ".wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(candidate)
    return total / 2**20


def _slope_per_hour(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 3600


def soak(args: argparse.Namespace) -> dict[str, Any]:
    proc = psutil.Process()
    run = Run(args)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="obbws-soak-"))
    server = start_demo_server(rate=args.rate / args.connections, heartbeat_interval=1.0)
    conns = []
    for i in range(args.connections):
        conns.append(
            obbws.create_connection(
                provider="demo",
                name=f"soak{i}",
                symbol="btcusd,ethusd,solusd",
                url=server.url_for("crypto"),
                results_file=str(folder / f"soak{i}.duckdb"),
                limit=args.limit,
                max_reconnects=None,
                reconnect_base=0.2,
                reconnect_cap=2.0,
            )
        )
    addresses = [c.start_broadcasting(port=0).broadcast_address for c in conns]
    listeners: list[Listener] = [
        listen(addresses[i % len(addresses)], block=False) for i in range(args.listeners)
    ]
    for listener in listeners:
        listener.wait_connected(10)
    files = [c.status.results_file or "" for c in conns]
    started = time.monotonic()
    deadline = started + args.minutes * 60
    next_drop = started + args.drop_every
    next_sample = started
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_drop:
                server.drop_connections(1011, "soak: provider drop")
                run.drops += 1
                next_drop += args.drop_every
            if now >= next_sample:
                run.samples.append(_sample(proc, now - started, conns, listeners, files))
                s = run.samples[-1]
                print(
                    f"t={s.t:7.0f}s rss={s.rss_mb:7.1f}MB fds={s.fds:4d} "
                    f"threads={s.threads:3d} files={s.file_mb:6.1f}MB "
                    f"blocks={s.py_blocks:>9,} stored={s.stored:>10,} "
                    f"heard={s.heard:>11,} drops={run.drops}",
                    flush=True,
                )
                next_sample += args.sample
            time.sleep(max(0.0, min(next_drop, next_sample, deadline) - time.monotonic()))
        server.set_rate(0)
        return _summary(run, conns, listeners, server.events_sent)
    finally:
        for listener in listeners:
            listener.stop()
        for conn in conns:
            conn.kill()
        server.close()
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def _sample(
    proc: psutil.Process, t: float, conns: list[Any], listeners: list[Listener], files: list[str]
) -> Sample:
    statuses = [c.status for c in conns]
    return Sample(
        t=t,
        rss_mb=proc.memory_info().rss / 2**20,
        fds=proc.num_fds(),
        threads=proc.num_threads(),
        file_mb=_file_mb(files),
        py_blocks=sys.getallocatedblocks(),
        stored=sum(s.records_stored for s in statuses),
        heard=sum(listener.count for listener in listeners),
    )


def _windows(steady: list[Sample], window: float) -> dict[str, Any]:
    """Lowest and highest RSS and file size in each ``window`` seconds after warm-up. Both
    follow a sawtooth (a WAL grows to DuckDB's checkpoint threshold, then is folded into its
    file, which frees the memory that held it; three files do it at different times), so a
    straight line through the samples mostly says where the run stopped in a tooth: the
    lows and highs of whole windows, and their slopes, are the better leak signal."""
    groups: list[list[Sample]] = []
    for sample in steady:
        if not groups or sample.t - groups[-1][0].t >= window:
            groups.append([])
        groups[-1].append(sample)
    if len(groups) > 1 and groups[-1][-1].t - groups[-1][0].t < window / 2:
        groups.pop()  # a short last window would understate its range
    xs = [g[0].t for g in groups]
    rss_low = [min(s.rss_mb for s in g) for g in groups]
    rss_high = [max(s.rss_mb for s in g) for g in groups]
    file_low = [min(s.file_mb for s in g) for g in groups]
    file_high = [max(s.file_mb for s in g) for g in groups]
    return {
        "window_s": window,
        "rss_low_mb": [round(v) for v in rss_low],
        "rss_high_mb": [round(v) for v in rss_high],
        "rss_low_slope_mb_h": round(_slope_per_hour(xs, rss_low), 1),
        "rss_high_slope_mb_h": round(_slope_per_hour(xs, rss_high), 1),
        "file_low_mb": [round(v, 1) for v in file_low],
        "file_high_mb": [round(v, 1) for v in file_high],
        "file_low_slope_mb_h": round(_slope_per_hour(xs, file_low), 1),
        "file_high_slope_mb_h": round(_slope_per_hour(xs, file_high), 1),
    }


def _quiesce(conns: list[Any]) -> None:
    """Wait until no more records arrive (the server's rate is 0), then flush the stores."""
    last = -1
    while (seen := sum(c.status.records_received for c in conns)) != last:
        last = seen
        time.sleep(0.5)
    for conn in conns:
        conn.get_client().store.flush(timeout=30)


def _summary(run: Run, conns: list[Any], listeners: list[Listener], sent: int) -> dict[str, Any]:
    _quiesce(conns)
    statuses = [c.status for c in conns]
    samples = run.samples
    total = samples[-1].t if samples else 0.0
    warmup = min(max(total / 5, 120.0), total / 2)
    steady = [s for s in samples if s.t >= warmup]
    xs = [s.t for s in steady]
    elapsed = total or 1.0
    return {
        "minutes": round(total / 60, 1),
        "rate": run.args.rate,
        "connections": len(conns),
        "listeners": len(listeners),
        "drops": run.drops,
        "warmup_s": round(warmup),
        "samples": len(steady),
        "rss_mb": [round(samples[0].rss_mb), round(max(s.rss_mb for s in samples))],
        "rss_slope_mb_h": round(_slope_per_hour(xs, [s.rss_mb for s in steady]), 1),
        "fds": [samples[0].fds, max(s.fds for s in samples)],
        "fds_slope_h": round(_slope_per_hour(xs, [float(s.fds) for s in steady]), 2),
        "threads": [samples[0].threads, max(s.threads for s in samples)],
        "threads_slope_h": round(_slope_per_hour(xs, [float(s.threads) for s in steady]), 2),
        "file_mb": [round(samples[0].file_mb, 1), round(max(s.file_mb for s in samples), 1)],
        "file_slope_mb_h": round(_slope_per_hour(xs, [s.file_mb for s in steady]), 2),
        "blocks": [samples[0].py_blocks, max(s.py_blocks for s in samples)],
        "blocks_slope_h": round(_slope_per_hour(xs, [float(s.py_blocks) for s in steady])),
        **_windows(steady, run.args.window),
        "events_sent": sent,
        "stored_per_s": round(sum(s.records_stored for s in statuses) / elapsed),
        "received": sum(s.records_received for s in statuses),
        "stored": sum(s.records_stored for s in statuses),
        "dropped": sum(s.dropped_records for s in statuses),
        "store_errors": sum(1 for s in statuses if s.store_state != "ok"),
        "reconnects": sum(s.reconnects for s in statuses),
        "listener_records": sum(listener.count for listener in listeners),
        "listeners_connected": sum(1 for listener in listeners if listener.connected),
    }


def _markdown(summary: dict[str, Any]) -> str:
    s = summary
    when = datetime.date.today().isoformat()
    machine = f"{psutil.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"Measured {when} on {machine}: {s['minutes']} min, {s['connections']} demo "
        f"connections at {s['rate']:,.0f} events/s in total, {s['listeners']} listeners, "
        f"{s['drops']} provider drops; slopes by least squares after {s['warmup_s']} s of "
        f"warm-up ({s['samples']} samples).",
        "",
        "| what | start -> max | slope after warm-up |",
        "|---|---|---|",
        f"| RSS | {s['rss_mb'][0]} -> {s['rss_mb'][1]} MB | {s['rss_slope_mb_h']:+} MB/h |",
        f"| open fds | {s['fds'][0]} -> {s['fds'][1]} | {s['fds_slope_h']:+} /h |",
        f"| threads | {s['threads'][0]} -> {s['threads'][1]} | {s['threads_slope_h']:+} /h |",
        f"| results files (3 x limit {summary.get('limit', '')}) | {s['file_mb'][0]} -> "
        f"{s['file_mb'][1]} MB | {s['file_slope_mb_h']:+} MB/h |",
        f"| Python allocated blocks | {s['blocks'][0]:,} -> {s['blocks'][1]:,} | "
        f"{s['blocks_slope_h']:+,} /h |",
        f"| RSS, lowest per {s['window_s']:.0f} s window | "
        f"{', '.join(map(str, s['rss_low_mb']))} MB | {s['rss_low_slope_mb_h']:+} MB/h |",
        f"| RSS, highest per window | {', '.join(map(str, s['rss_high_mb']))} MB | "
        f"{s['rss_high_slope_mb_h']:+} MB/h |",
        f"| files, lowest per window | {', '.join(map(str, s['file_low_mb']))} MB | "
        f"{s['file_low_slope_mb_h']:+} MB/h |",
        f"| files, highest per window | {', '.join(map(str, s['file_high_mb']))} MB | "
        f"{s['file_high_slope_mb_h']:+} MB/h |",
        "",
        "RSS and file size follow a sawtooth: each connection's WAL grows to DuckDB's "
        "checkpoint threshold (16 MB) and is then folded into its file, which frees the memory "
        "that held it. A straight line through a few teeth mostly says where the run stopped "
        "in the last one; the lows and highs of whole windows are the better leak signal.",
        "",
        f"Records: {s['received']:,} received, {s['stored']:,} stored, {s['dropped']} dropped, "
        f"{s['reconnects']} reconnects (all drops survived), {s['listener_records']:,} "
        f"delivered to listeners, {s['listeners_connected']}/{s['listeners']} listeners "
        "still connected at the end.",
    ]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    section = f"## Soak (`benchmarks/soak.py`)\n\n{START}\n{text}\n{END}\n"
    current = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        tail = rest.split(END, 1)[1]
        current = head + START + "\n" + text + "\n" + END + tail
    else:
        current = current.rstrip("\n") + "\n\n" + section
    README.write_text(current)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s, all connections")
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--listeners", type=int, default=10)
    parser.add_argument("--drop-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds")
    parser.add_argument("--limit", type=int, default=20_000, help="rows kept per connection")
    parser.add_argument("--window", type=float, default=180.0, help="seconds, for lows/highs")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    summary = soak(args)
    summary["limit"] = args.limit
    print(json.dumps(summary))
    text = _markdown(summary)
    print(text)
    if args.write_readme:
        write_readme(text)
    lost = summary["received"] != summary["stored"] or summary["dropped"]
    sys.exit(1 if lost or summary["listeners_connected"] < summary["listeners"] else 0)


if __name__ == "__main__":
    main()
