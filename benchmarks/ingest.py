"""Ingest: a fake server at full speed -> create_connection -> DuckDB, against an orjson ceiling.

Run: ``python benchmarks/ingest.py [--seconds 5] [--runs 5] [--quick] [--json] [--readme]``

The fake server runs in its own process (pinned to the first usable core when there are two or
more) in firehose mode: its frames are encoded once and re-sent as fast as the client reads
(``--firehose --events-per-frame N``). Every measurement runs in a fresh process pinned to the
other core(s), against the same server process, in rounds that interleave the clients (ceiling,
ours, ours, ... rotated each round), so the ratios hold on a noisy machine. Per frame shape:

* **ceiling**: a bare ``websockets`` client that receives each frame and ``orjson``-parses it,
  counting the events (the fastest client a user could write themselves);
* **ours**: ``create_connection(provider=..., url=..., limit=...)``, counted when the rows are
  committed: ``status.records_stored`` (rows the store's writer committed to DuckDB), sampled
  every 0.2 s over the window, its least-squares slope (with ``limit=None``, where the writer
  commits whole row groups at high rates, the rows the table gained between two flushing
  ``count(*)`` reads around the window instead); afterwards a ``count(*)`` query
  (which flushes) checks that the table holds what was stored (``limit=None``) or ``limit``
  rows, nothing dropped;
* **driver** (the producer side alone): our ``StreamDriver`` and provider session, every
  frame parsed into records that are counted and dropped (no ids, no store): what the
  socket-to-records path costs beside the ceiling, whatever the consumers cost; on
  single-event frames also **driver:noscan** (``frame_scanner=False``: websockets' parser
  for every frame, without its message queue) and **driver:recv** (``direct_frames=False``:
  the ``recv()`` path, websockets' public API, that the default direct-frames path replaces);
* **ceiling:scan** (single-event frames): the ceiling's loop on our transport, websockets'
  handshake and our frame scanner (``_DirectConnection``) handing each frame to ``orjson``
  with nothing else: the bound of the path ours now takes, whose frame parsing is cheaper
  than websockets' (so ours can pass the plain ceiling);
* **polygon-api-client** (on the Polygon fake's frames): Polygon's own ``WebSocketClient``
  (``feed="127.0.0.1:PORT", secure=False``) parsing into its typed models, storing nothing.

Cases: demo frames of 1 and 50 events (``limit=1000`` and ``limit=None``), Polygon crypto
trade frames of 50 and 1 events (``limit=None``, and Polygon's client). Each figure is the
median events/s of ``--runs`` rounds; the ratio is ours over the ceiling's median (the
per-round ratios' range is shown too). Beside it, each client's CPU time (every thread of its
process) per event over the same window: the ceiling's over ours is the ratio the throughput
would show on cores nobody else uses, so it stays put on a busy machine where the throughput
ratio swings. The peers' figures from issue #8 are quoted beside.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import _common as common

DEMO_SERVER = "obbws_jupyter.offline.demo_server"
POLYGON_SERVER = "obbws_jupyter.fakes.polygon"
KEY = "bench-key"  # the fakes accept any key
DEMO_SYMBOLS = "btcusd,ethusd,solusd"

#: provider parameters of ours, and the subscribe message of the ceiling, per fake
FEEDS: dict[str, dict[str, Any]] = {
    "demo": {
        "params": {"provider": "demo", "symbol": DEMO_SYMBOLS, "asset_type": "crypto"},
        "subscribe": "T.BTCUSD,T.ETHUSD,T.SOLUSD",
    },
    "polygon": {
        # feed="trade": XT.*, the frames the ceiling and Polygon's client subscribe to (the
        # default feed, aggs_sec, would be another stream: XAS aggregates)
        "params": {
            "provider": "polygon",
            "symbol": "*",
            "asset_type": "crypto",
            "feed": "trade",
            "api_key": KEY,
        },
        "subscribe": "XT.*",
    },
}

#: issue #8's peer figures, measured on the same kind of machine, no storage: quoted only
PEERS = [
    ("cryptofeed (callback only)", "single-event", "124k", "0.68"),
    ("polygon-api-client (typed models)", "batched", "280k", "0.17"),
    ("polygon-api-client (typed models)", "single-event", "46k", "0.23"),
]
NAN = float("nan")
SAMPLE_EVERY = 0.2  # seconds between status samples of ours (each costs the loop some GIL)
CEILING = "ceiling: websockets + orjson"
TARGETS = {1: 0.75, 50: 0.40}  # issue #8: ours / ceiling, store on


@dataclass(frozen=True)
class Case:
    feed: str  # "demo" | "polygon"
    per_frame: int
    clients: tuple[str, ...]  # "ceiling", "ours:1000", "ours:None", "polygon-client"

    @property
    def server(self) -> tuple[str, ...]:
        module = DEMO_SERVER if self.feed == "demo" else POLYGON_SERVER
        return (module, "--firehose", "--events-per-frame", str(self.per_frame))

    @property
    def label(self) -> str:
        return f"{self.feed}, {self.per_frame} event{'s' if self.per_frame > 1 else ''}/frame"


CASES = (
    Case(
        "demo",
        1,
        (
            "ceiling",
            "ceiling:scan",
            "ours:1000",
            "ours:None",
            "driver",
            "driver:noscan",
            "driver:recv",
        ),
    ),
    Case("demo", 50, ("ceiling", "ours:1000", "ours:None", "driver")),
    Case("polygon", 50, ("ceiling", "ours:None", "polygon-client", "driver")),
    Case(
        "polygon",
        1,
        (
            "ceiling",
            "ceiling:scan",
            "ours:None",
            "polygon-client",
            "driver",
            "driver:noscan",
            "driver:recv",
        ),
    ),
)


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The demo server in another process, (process, URL): ``chart.py`` uses it."""
    return common.start_server(DEMO_SERVER, *args)


# -- workers (each runs in a fresh process) ----------------------------------------------------


def _limit(text: str) -> int | None:
    return None if text == "None" else int(text)


def _counts(conn: Any, seconds: float) -> tuple[list[float], list[int], list[int], list[float]]:
    """``status`` every 0.2 s for ``seconds``: times, records stored, records received, and
    the process's CPU seconds (every thread) at each sample."""
    times: list[float] = []
    stored: list[int] = []
    received: list[int] = []
    cpu: list[float] = []
    end = time.perf_counter() + seconds
    while True:
        status = conn.status
        times.append(time.perf_counter())
        cpu.append(time.process_time())
        stored.append(status.records_stored)
        received.append(status.records_received)
        if times[-1] >= end:
            return times, stored, received, cpu
        time.sleep(SAMPLE_EVERY)  # the sampling cadence


def _cpu_us(cpu: list[float], events: float) -> float:
    """CPU microseconds (all threads of the process) per event over a window."""
    return (cpu[-1] - cpu[0]) * 1e6 / events if events > 0 else NAN


def _committed(conn: Any) -> tuple[float, int, float]:
    """(time, rows in the table, process CPU s) right after a read that flushed the store."""
    rows = int(conn.query("SELECT count(*) AS n FROM records")["n"].iloc[0])
    return time.perf_counter(), rows, time.process_time()


def measure_ours(feed: str, url: str, limit: int | None, warmup: float, seconds: float) -> dict:
    """Events/s committed by ``create_connection``: with a ``limit``, the least-squares slope
    of ``status.records_stored`` sampled every 0.2 s (the writer commits in batches, so two
    samples alone would be off by up to a batch at each end); with ``limit=None``, the rows
    the table gained between two flushing reads that bracket the window."""
    import obbws_jupyter as obbws

    params = FEEDS[feed]["params"]
    conn = obbws.create_connection(name="bench-ingest", url=url, limit=limit, **params)
    try:
        time.sleep(warmup)  # the window starts after the warm-up (not synchronisation)
        if limit is None:
            # At high rates the writer commits whole DuckDB row groups (122,880 rows), so
            # records_stored moves in steps a short window cannot fit a slope to: bracket
            # the window with two reads instead (each flushes: every row received before
            # it is committed when it returns) and count the rows the table gained.
            before = _committed(conn)
        times, stored, received, cpu = _counts(conn, seconds)
        stored_per_s = common.slope_per_minute(times, stored) / 60
        if limit is None:
            after = _committed(conn)
            stored = [before[1], after[1]]
            cpu = [before[2], after[2]]
            stored_per_s = (after[1] - before[1]) / (after[0] - before[0])
        rss = common.rss_mb()
        conn.stop_connection()
        rows = int(conn.query("SELECT count(*) AS n FROM records")["n"].iloc[0])  # flushes
        final = conn.status
    finally:
        conn.kill()
    expected = final.records_stored if limit is None else min(limit, final.records_stored)
    return {
        "events_per_s": stored_per_s,
        "received_per_s": common.slope_per_minute(times, received) / 60,
        "cpu_us": _cpu_us(cpu, stored[-1] - stored[0]),
        "rows": rows,
        "table_ok": rows == expected and final.dropped_records == 0,
        "dropped": final.dropped_records,
        "rss_mb": rss,
    }


async def _ceiling(url: str, subscribe: str, warmup: float, seconds: float) -> dict:
    import orjson
    from websockets.asyncio.client import connect

    loads = orjson.loads
    clock = time.perf_counter
    events = 0
    start = clock() + warmup
    t0 = cpu0 = 0.0
    async with connect(url, compression=None, close_timeout=0.1) as ws:
        await ws.send(orjson.dumps({"action": "auth", "params": KEY}).decode())
        await ws.send(orjson.dumps({"action": "subscribe", "params": subscribe}).decode())
        async for frame in ws:
            n = len(loads(frame))
            if t0:
                events += n
                if clock() - t0 >= seconds:
                    break
            elif clock() >= start:
                t0, cpu0 = clock(), time.process_time()
        elapsed = clock() - t0
        cpu = time.process_time() - cpu0
    return {"events_per_s": events / elapsed, "cpu_us": _cpu_us([0.0, cpu], events)}


async def _ceiling_scan(url: str, subscribe: str, warmup: float, seconds: float) -> dict:
    """The ceiling's loop on our transport: the frame scanner hands each frame to orjson."""
    import orjson
    from websockets.asyncio.client import connect

    from obbws_jupyter._stream import _DirectConnection

    loads = orjson.loads
    events = [0]

    def on_message(data: bytes, text: bool) -> None:
        events[0] += len(loads(data))

    ws = await connect(
        url, compression=None, close_timeout=0.1, create_connection=_DirectConnection
    )
    assert isinstance(ws, _DirectConnection)
    try:
        await ws.send(orjson.dumps({"action": "auth", "params": KEY}).decode())
        await ws.send(orjson.dumps({"action": "subscribe", "params": subscribe}).decode())
        ws.start_delivery(on_message)
        await asyncio.sleep(warmup)  # the window starts after the warm-up (not synchronisation)
        t0, cpu0, n0 = time.perf_counter(), time.process_time(), events[0]
        await asyncio.sleep(seconds)  # the measurement window
        elapsed = time.perf_counter() - t0
        cpu, n = time.process_time() - cpu0, events[0] - n0
        scanned = ws.scanning
    finally:
        ws.stop_delivery()
        await ws.close()
    if not scanned:
        raise RuntimeError("the frame scanner was not on")
    return {"events_per_s": n / elapsed, "cpu_us": _cpu_us([0.0, cpu], n)}


async def _driver(feed: str, url: str, warmup: float, seconds: float, how: str) -> dict:
    """Our StreamDriver and session alone: records counted, then dropped (``how``: "" the
    default path, "noscan" without the frame scanner, "recv" the ``recv()`` path)."""
    from obbws_jupyter._stream import StreamDriver
    from obbws_jupyter.protocol import get_provider

    spec = get_provider(FEEDS[feed]["params"]["provider"])
    given = {k: v for k, v in FEEDS[feed]["params"].items() if k != "provider"}
    session = spec.session_class(spec.resolve({**given, "url": url}, {}))
    clock = time.perf_counter
    counted = [0]

    def count(records: list[Any]) -> None:
        counted[0] += len(records)

    driver = StreamDriver(
        session,
        url=session.url(),
        on_records=count,
        name="bench",
        direct_frames=how != "recv",
        frame_scanner=how != "noscan",
    )
    await driver.start()
    try:
        await asyncio.sleep(warmup)  # the window starts after the warm-up (not synchronisation)
        t0, cpu0, n0 = clock(), time.process_time(), counted[0]
        await asyncio.sleep(seconds)  # the measurement window
        elapsed, cpu, events = clock() - t0, time.process_time() - cpu0, counted[0] - n0
    finally:
        await driver.stop()
    return {"events_per_s": events / elapsed, "cpu_us": _cpu_us([0.0, cpu], events)}


async def _polygon_client(url: str, warmup: float, seconds: float) -> dict:
    from polygon import WebSocketClient  # polygon-api-client, in the dev extra

    host = url.removeprefix("ws://").rstrip("/")
    client = WebSocketClient(
        api_key=KEY,
        feed=host,
        market="crypto",
        secure=False,
        subscriptions=["XT.*"],
        max_reconnects=0,
    )
    clock = time.perf_counter
    state = {"t0": 0.0, "events": 0, "elapsed": 0.0, "cpu0": 0.0, "cpu": 0.0}
    done = asyncio.Event()
    start = clock() + warmup

    async def handle(messages: list[Any]) -> None:
        now = clock()
        if state["t0"]:
            state["events"] += len(messages)
            state["elapsed"] = now - state["t0"]
            state["cpu"] = time.process_time() - state["cpu0"]
            if state["elapsed"] >= seconds:
                done.set()
        elif now >= start:
            state["t0"], state["cpu0"] = now, time.process_time()

    task = asyncio.create_task(client.connect(handle))
    await asyncio.wait([task, asyncio.create_task(done.wait())], return_when="FIRST_COMPLETED")
    if not state["elapsed"]:
        raise RuntimeError(f"polygon-api-client received no data ({task!r})")
    result = {
        "events_per_s": state["events"] / state["elapsed"],
        "cpu_us": _cpu_us([0.0, state["cpu"]], state["events"]),
        "rss_mb": common.rss_mb(),
    }
    await client.close()  # its connect() then returns
    await asyncio.wait([task], timeout=5)
    if not task.done():
        # Its loop (wait_for(recv(), 1) in a while True) can swallow a cancellation on Python
        # 3.11, and asyncio.run would wait for it forever: answer and end the process here.
        common.worker_result(result)
        os._exit(0)
    return result


def worker(args: argparse.Namespace) -> None:
    kind, feed, url = args.worker, args.feed, args.url
    if kind.startswith("ceiling"):
        path = url.rstrip("/") + "/crypto"
        measure = _ceiling_scan if kind == "ceiling:scan" else _ceiling
        result = asyncio.run(measure(path, FEEDS[feed]["subscribe"], args.warmup, args.seconds))
    elif kind.startswith("driver"):
        how = kind.partition(":")[2]
        result = asyncio.run(_driver(feed, url, args.warmup, args.seconds, how))
    elif kind == "polygon-client":
        result = asyncio.run(_polygon_client(url, args.warmup, args.seconds))
    else:
        limit = _limit(kind.partition(":")[2])
        result = measure_ours(feed, url, limit, args.warmup, args.seconds)
    result["rss_mb"] = result.get("rss_mb", common.rss_mb())
    common.worker_result(result)


# -- the orchestrator ----------------------------------------------------------------------------


def run_case(
    case: Case, runs: int, warmup: float, seconds: float, log: bool = True
) -> dict[str, list[dict]]:
    server_cores, client_cores = common.pinning()
    out: dict[str, list[dict]] = {c: [] for c in case.clients}
    with common.server(*case.server, cores=server_cores) as url:
        for r in range(runs):
            order = case.clients[r % len(case.clients) :] + case.clients[: r % len(case.clients)]
            for client in order:
                argv = [sys.executable, __file__, "--worker", client, "--feed", case.feed]
                argv += ["--url", url, "--warmup", str(warmup), "--seconds", str(seconds)]
                try:
                    res = common.run_worker(argv, client_cores, timeout=warmup + seconds + 120)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # keep the others
                    print(f"  {case.label}: {client} failed: {exc}", file=sys.stderr, flush=True)
                    res = {"events_per_s": NAN, "rss_mb": NAN, "failed": str(exc)[-300:]}
                res["round"] = r
                out[client].append(res)
                if log:
                    print(
                        f"  {case.label}, round {r + 1}: {client:<15} "
                        f"{common.rate(res['events_per_s']):>7} events/s",
                        file=sys.stderr,
                        flush=True,
                    )
    return out


def _client_label(client: str) -> tuple[str, str]:
    if client == "ceiling:scan":
        return "ceiling on our transport: frame scanner + orjson", "-"
    if client == "polygon-client":
        return "polygon-api-client (typed models, no storage)", "-"
    if client.startswith("driver"):
        how = {
            "driver:noscan": ", no frame scanner (frame_scanner=False)",
            "driver:recv": ", recv() path (direct_frames=False)",
        }.get(client, "")
        return f"obbws-jupyter stream driver + session{how} (records dropped)", "-"
    return "obbws-jupyter -> DuckDB", client.partition(":")[2]


def summarize(case: Case, out: dict[str, list[dict]]) -> list[dict]:
    ceiling = out["ceiling"]
    c_med = common.median(r["events_per_s"] for r in ceiling)
    c_cpu = common.median(r.get("cpu_us", NAN) for r in ceiling)
    rows = [
        {
            "case": case.label,
            "client": "ceiling",
            "events_per_s": c_med,
            "ratio": 1.0,
            "cpu_us": c_cpu,
            "cpu_ratio": 1.0,
        }
    ]
    for client in case.clients:
        if client == "ceiling":
            continue
        results = out[client]
        med = common.median(r["events_per_s"] for r in results)
        cpu = common.median(r.get("cpu_us", NAN) for r in results)
        per_round = [
            r["events_per_s"] / c["events_per_s"]
            for r, c in zip(results, ceiling, strict=True)
            if c["events_per_s"] and not math.isnan(r["events_per_s"] / c["events_per_s"])
        ]
        row = {
            "case": case.label,
            "per_frame": case.per_frame,
            "client": client,
            "events_per_s": med,
            "ratio": med / c_med if c_med else float("nan"),
            "cpu_us": cpu,
            "cpu_ratio": c_cpu / cpu if cpu else NAN,
            "ratio_min": min(per_round, default=float("nan")),
            "ratio_max": max(per_round, default=float("nan")),
            "rss_mb": common.median(r["rss_mb"] for r in results),
            "failed_runs": sum(1 for r in results if "failed" in r),
        }
        if client.startswith("ours"):
            done = [r for r in results if "failed" not in r]
            row["received_per_s"] = common.median(r["received_per_s"] for r in done)
            row["table_ok"] = all(r["table_ok"] for r in done)
            row["dropped"] = sum(r["dropped"] for r in done)
        rows.append(row)
    return rows


def render(rows: list[dict], runs: int, seconds: float, load_before: float) -> str:
    body = []
    for row in rows:
        if row["client"] == "ceiling":
            ceiling = common.rate(row["events_per_s"])
            cpu = f"{row['cpu_us']:.2f} (1.00)"
            body.append([row["case"], CEILING, "-", ceiling, "1.00", "", cpu, "", ""])
            continue
        who, limit = _client_label(row["client"])
        target = ""
        if row["client"].startswith("ours"):
            goal = TARGETS.get(row["per_frame"])
            target = f"≥ {goal:.2f}" if goal else ""
            stored = f"stored ({common.rate(row['received_per_s'])} received)" + (
                "" if row["table_ok"] else "; TABLE CHECK FAILED"
            )
        elif row["client"].startswith("driver"):
            stored = "parsed into records"
        elif row["client"] == "ceiling:scan":
            stored = "parsed"
        else:
            stored = "parsed into models"
        if row["failed_runs"]:
            stored += f"; {row['failed_runs']} run(s) failed"
        body.append(
            [
                row["case"],
                who,
                limit,
                f"{common.rate(row['events_per_s'])} {stored}",
                f"**{row['ratio']:.2f}**",
                f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}",
                f"{row['cpu_us']:.2f} (**{row['cpu_ratio']:.2f}**)",
                target,
                f"{row['rss_mb']:.0f}",
            ]
        )
    server_cores, client_cores = common.pinning()
    pin = (
        f"server pinned to core(s) {sorted(server_cores)}, clients to {sorted(client_cores)}"
        if server_cores and client_cores
        else "not pinned (fewer than 2 usable cores)"
    )
    lines = [
        "### Ingest: fake server at full speed -> DuckDB, against the orjson ceiling",
        "",
        f"Machine: {common.machine_line()}; load average before the run {load_before:.2f}.",
        f"Medians of {runs} interleaved rounds of {seconds:g} s windows; {pin}. "
        "Ours is counted when rows are committed (with a limit: slope of "
        "`status.records_stored` sampled every 0.2 s; with `limit=None`, where the writer "
        "commits whole 122,880-row groups at high rates: the rows the table gained between "
        "two flushing reads around the window); ratio = ours / "
        "ceiling (median), with the range of the per-round ratios. CPU µs/event: the client "
        "process's CPU time (every thread) per event over the same window, median; its ratio "
        "(ceiling's / ours) is what the throughput ratio becomes when the client's core is "
        "not shared, so it holds on a busy machine where the throughput ratio swings.",
        "",
        common.table(
            [
                "frames",
                "client",
                "limit",
                "events/s",
                "ratio",
                "per round",
                "CPU µs/event (ratio)",
                "target",
                "RSS MiB",
            ],
            body,
        ),
        "",
        "Peers (quoted from issue #8, same kind of machine, no storage; ratio to the orjson "
        "ceiling on the same frames):",
        "",
        common.table(["peer", "frames", "events/s", "ratio"], PEERS),
    ]
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--seconds", type=float, default=None, help="window per measurement")
    p.add_argument("--warmup", type=float, default=None, help="seconds before each window")
    p.add_argument("--runs", type=int, default=None, help="interleaved rounds")
    p.add_argument("--cases", default=None, help="e.g. demo-1,polygon-50 (default: all)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--feed", default="demo", help=argparse.SUPPRESS)
    p.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    quick_or_smoke = args.smoke or args.quick
    runs = args.runs or (1 if args.smoke else 3 if args.quick else 5)
    seconds = args.seconds or (0.3 if args.smoke else 2.5 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if quick_or_smoke else 1.0)
    cases = CASES
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = tuple(c for c in CASES if f"{c.feed}-{c.per_frame}" in wanted)
    elif args.smoke:
        cases = CASES[:1]
    load_before = common.load_average()
    rows: list[dict] = []
    for case in cases:
        rows += summarize(case, run_case(case, runs, warmup, seconds))
    common.emit(args, "ingest", render(rows, runs, seconds, load_before), rows)


if __name__ == "__main__":
    main()
