"""Sinks: each engine's sink at full speed against a bare client publish loop, and what a sink
costs DuckDB ingestion.

Run: ``python benchmarks/sinks.py [--seconds 4] [--runs 3] [--events-per-frame 50] [--quick]
[--smoke] [--only duckdb,nats-sink-process,...] [--json] [--readme]``

It starts its own ``redis-server`` and ``nats-server -js`` (``make engine-deps`` installs them) on
free loopback ports, with the demo fake server in firehose mode (frames of N events re-sent as
fast as the client reads), all three pinned to the first usable core; every measurement runs in
a fresh process pinned to the other core(s), in interleaved rounds. Per engine, in the same run:

* **ceiling**: the bare client publishing the same encoded records (broadcast-frame JSON from
  :class:`obbws_jupyter._wire.RecordEncoder`, encoded once before the window): redis-py's
  pipelined ``XADD ... MAXLEN ~ 1000`` (1,000 per round trip), or nats-py's JetStream
  ``publish_async`` with up to 1,000 acks outstanding; records/s acknowledged by the engine;
* **sink**: ``create_connection(provider="demo", url=<firehose>, limit=1000, sinks=[URL])``
  at full speed, counted by the sink's ``rows_written`` (rows the engine acknowledged; the
  slope of samples every 0.2 s), which includes encoding every record; ratio = sink / ceiling.

Each sink runs in the kernel (``process=False``) and in a child process (``process=True``,
the default for NATS and Redis: nice 10, fed over a pipe): with the child on the measured
client's core (it inherits the pinning: the worst
case), and with the child free to run on any core (as the OS places it on an unpinned
machine); the child's CPU is reported apart.

And DuckDB ingestion (``status.records_stored``, rows committed per second, and the measured
process's CPU µs per record received, which holds on a busy machine) of the same connection
alone and with each sink, at full speed and at a steady 20,000 events/s. The NATS half loads the
``nats://`` scheme through ``sink_from_url``; where it cannot load (nats-py missing) it is
skipped with a printed note.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import _common as common
import psutil

DEMO_SERVER = "obbws_jupyter.offline.demo_server"
DEMO_SYMBOLS = "btcusd,ethusd,solusd"
LIMIT = 1_000  # DuckDB's cap and the engines' (MAXLEN ~ / max_msgs)
CHUNK = 1_000  # records per pipeline (Redis) / acks outstanding (NATS) in the ceilings
POOL = 20_000  # distinct encoded records the ceilings cycle through
SAMPLE_EVERY = 0.2  # seconds between samples of ours
SINK_TARGET = 0.5  # sink / ceiling
COST_TARGET = 0.15  # DuckDB ingestion lost to a NATS sink, at most
NAN = float("nan")

#: measurement -> (engine, label); sinks' URLs are filled in by the orchestrator
CLIENTS = {
    "redis-ceiling": ("redis", "ceiling: redis-py pipelined XADD"),
    "redis-sink": ("redis", "RedisSink in the kernel (process=False; Lua append script)"),
    "redis-sink-pipeline": ("redis", "RedisSink in the kernel (method='pipeline': XADD per entry)"),
    "nats-ceiling": ("nats", "ceiling: nats-py JetStream publish_async"),
    "nats-sink": ("nats", "NatsSink in the kernel (process=False, cpu_share 0.1)"),
    "redis-sink-process": ("redis", "RedisSink, default: child process (nice 10), same core"),
    "nats-sink-process": ("nats", "NatsSink, default: child process (nice 10), same core"),
    "redis-sink-process-any": ("redis", "RedisSink, default: child process on any core"),
    "nats-sink-process-any": ("nats", "NatsSink, default: child process on any core"),
    "duckdb": ("duckdb", "no sink"),
    "steady-duckdb": ("duckdb", "no sink"),
    "steady-redis-sink": ("redis", "+ RedisSink in the kernel"),
    "steady-nats-sink": ("nats", "+ NatsSink in the kernel"),
    "steady-redis-sink-process": ("redis", "+ RedisSink (default: child process)"),
    "steady-nats-sink-process": ("nats", "+ NatsSink (default: child process)"),
}
# the rows of the cost tables, in order
COST_ROWS = (
    "duckdb",
    "nats-sink",
    "nats-sink-process",
    "nats-sink-process-any",
    "redis-sink",
    "redis-sink-process",
    "redis-sink-process-any",
)
STEADY_RATE = 20_000  # events/s of the steady feed (the demo server's paced mode)


# -- engines ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str | None:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _wait_port(proc: subprocess.Popen[str], port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling the server's readiness, with a deadline
    raise RuntimeError(f"{what} did not listen on port {port} within 30 s")


@contextlib.contextmanager
def engine(kind: str, cores: set[int] | None) -> Iterator[str | None]:
    """Start redis-server or nats-server (JetStream) on a free port with a temporary data
    directory; yield its URL (None when the binary is missing); stop it afterwards."""
    binary = _binary("redis-server" if kind == "redis" else "nats-server")
    if binary is None:
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"obbws-bench-{kind}-") as data:
        if kind == "redis":
            argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data]
            argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
            url = f"redis://127.0.0.1:{port}/0"
        else:
            argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", data]
            url = f"nats://127.0.0.1:{port}"
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=(lambda: common.pin_self(cores)) if cores else None,
        )
        try:
            _wait_port(proc, port, kind)
            yield url
        finally:
            common.stop(proc)


def nats_sink_loads() -> bool:
    """Whether ``nats://`` sinks can be built here (module present, client library installed)."""
    try:
        return importlib.util.find_spec("obbws_jupyter.sinks.nats") is not None
    except ImportError:
        return False


# -- workers (each runs in a fresh process) ----------------------------------------------------


def encoded_records(n: int) -> list[bytes]:
    """``n`` demo-like trade records as broadcast frames, encoded once."""
    from obbws_jupyter._wire import RecordEncoder
    from obbws_providers.demo import TRADE_FIELDS

    encode = RecordEncoder(TRADE_FIELDS, "America/New_York").encode
    now = time.time_ns()
    symbols = ("BTCUSD", "ETHUSD", "SOLUSD")
    return [
        encode(
            {"id": i, "received_at": now, "date": now - 1_000_000, "symbol": symbols[i % 3]}
            | {"type": "trade", "exchange": "DEMO", "price": 100.0 + i / 100, "size": 0.25}
        ).encode()
        for i in range(1, n + 1)
    ]


async def _timed(
    publish_chunk: Callable[[], Awaitable[None]], warmup: float, seconds: float
) -> float:
    """Records/s of ``publish_chunk()`` (CHUNK records acknowledged per call), called again
    and again: ``warmup`` seconds, then a window of ``seconds``."""
    clock = time.perf_counter
    start, t0, sent = clock() + warmup, 0.0, 0
    while True:
        await publish_chunk()
        now = clock()
        if not t0:
            t0 = now if now >= start else 0.0
        else:
            sent += CHUNK
            if now - t0 >= seconds:
                return sent / (now - t0)


async def _redis_ceiling(url: str, warmup: float, seconds: float) -> dict[str, Any]:
    import redis.asyncio as aioredis

    records = itertools.cycle(encoded_records(POOL))
    client = aioredis.Redis.from_url(url)
    key = f"bench:ceiling:{time.time_ns()}"

    async def chunk() -> None:
        pipe = client.pipeline(transaction=False)
        for record in itertools.islice(records, CHUNK):
            pipe.xadd(key, {"record": record}, maxlen=LIMIT, approximate=True)
        await pipe.execute()

    try:
        rate = await _timed(chunk, warmup, seconds)
        await client.delete(key)
    finally:
        await client.aclose()
    return {"records_per_s": rate}


async def _nats_ceiling(url: str, warmup: float, seconds: float) -> dict[str, Any]:
    import nats

    records = itertools.cycle(encoded_records(POOL))
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=CHUNK)
    stream = f"BENCH_CEILING_{time.time_ns()}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"], max_msgs=LIMIT)
    subject = f"{stream}.trades"

    async def chunk() -> None:
        for record in itertools.islice(records, CHUNK):
            await js.publish_async(subject, record)
        await js.publish_async_completed()

    try:
        rate = await _timed(chunk, warmup, seconds)
        await js.delete_stream(stream)
    finally:
        await nc.close()
    return {"records_per_s": rate}


def measure_connection(
    feed: str, sink: dict[str, Any] | None, warmup: float, seconds: float, child_any: bool
) -> dict[str, Any]:
    """A demo connection on the firehose, with ``sink`` or none: slopes of the rows the sink
    had acknowledged and of the rows DuckDB committed. A ``process=True`` sink's child
    inherits this process's core; ``child_any`` lets the OS place it on any core."""
    import obbws_jupyter as obbws

    conn = obbws.create_connection(
        provider="demo",
        name="bench-sinks",
        url=feed,
        symbol=DEMO_SYMBOLS,
        asset_type="crypto",
        limit=LIMIT,
        sinks=[sink] if sink else None,
    )
    times: list[float] = []
    stored: list[int] = []
    written: list[int] = []
    me = psutil.Process()
    if child_any:
        for child in me.children(recursive=True):
            child.cpu_affinity(list(range(psutil.cpu_count() or 1)))
    if sink and sink.get("process"):
        warmup += 2.0  # the child imports the library and connects meanwhile
    try:
        time.sleep(warmup)  # the window starts after the warm-up (not synchronisation)
        end = time.perf_counter() + seconds
        cpu0, received0 = sum(me.cpu_times()[:2]), conn.status.records_received
        children = me.children(recursive=True)  # a process=True sink's child
        child0 = _cpu(children)
        while True:
            status = conn.status
            times.append(time.perf_counter())
            stored.append(status.records_stored)
            written.append(status.sinks[0].rows_written if status.sinks else 0)
            if times[-1] >= end:
                break
            time.sleep(SAMPLE_EVERY)  # the sampling cadence
        cpu = sum(me.cpu_times()[:2]) - cpu0
        child_cpu = _cpu(children) - child0
        received = status.records_received - received0
        health = status.sinks[0] if status.sinks else None
        result = {
            "records_per_s": common.slope_per_minute(times, written) / 60 if sink else NAN,
            "stored_per_s": common.slope_per_minute(times, stored) / 60,
            "received_per_s": received / (times[-1] - times[0]),
            "cpu_us_per_record": 1e6 * cpu / received if received else NAN,
            "child_cpu_us_per_record": 1e6 * child_cpu / received if received else NAN,
            "sink_dropped": health.rows_dropped if health else 0,
            "sink_state": health.state if health else None,
            "sink_error": health.last_error if health else None,
            "rss_mb": common.rss_mb(),
        }
        common.worker_result(result)  # answer first: closing a full backlog takes a while
    finally:
        conn.kill()
    return result


def _cpu(processes: list[psutil.Process]) -> float:
    """CPU seconds (user + system) of ``processes`` so far (0 for one that has exited)."""
    total = 0.0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            total += sum(proc.cpu_times()[:2])
    return total


def worker(args: argparse.Namespace) -> None:
    spec = json.loads(args.spec)
    kind, warmup, seconds = spec["client"], spec["warmup"], spec["seconds"]
    if kind == "redis-ceiling":
        common.worker_result(asyncio.run(_redis_ceiling(spec["engine"], warmup, seconds)))
    elif kind == "nats-ceiling":
        common.worker_result(asyncio.run(_nats_ceiling(spec["engine"], warmup, seconds)))
    else:
        child_any = kind.endswith("-process-any")
        measure_connection(spec["feed"], spec.get("sink"), warmup, seconds, child_any)


# -- the orchestrator ----------------------------------------------------------------------------


def sink_spec(client: str, urls: dict[str, str | None]) -> dict[str, Any] | None:
    client = client.removeprefix("steady-")
    if client.endswith("-process-any"):
        client = client.removesuffix("-any")
    if client.endswith("-process"):
        spec = sink_spec(client.removesuffix("-process"), urls)
        return spec and {**spec, "process": True}
    # the plain rows run the sink in the kernel (the network sinks' default is a child)
    if client == "redis-sink":
        return {"url": urls["redis"], "process": False}
    if client == "redis-sink-pipeline":
        return {"url": urls["redis"], "method": "pipeline", "process": False}
    if client == "nats-sink":
        return {"url": urls["nats"], "process": False}
    return None


def run_all(
    args: argparse.Namespace, clients: list[str], urls: dict[str, str | None], feeds: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    _, client_cores = common.pinning()
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    for r in range(args.runs):
        order = clients[r % len(clients) :] + clients[: r % len(clients)]
        for client in order:
            engine_name = CLIENTS[client][0]
            spec = {
                "client": client,
                "engine": urls.get(engine_name),
                "feed": feeds["steady" if client.startswith("steady") else "firehose"],
                "sink": sink_spec(client, urls),
                "warmup": args.warmup,
                "seconds": args.seconds,
            }
            argv = [sys.executable, __file__, "--worker", "--spec", json.dumps(spec)]
            try:
                res = common.run_worker(argv, client_cores, args.warmup + args.seconds + 120)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # keep the others
                print(f"  {client} failed: {exc}", file=sys.stderr, flush=True)
                res = {"records_per_s": NAN, "stored_per_s": NAN, "failed": str(exc)[-300:]}
            out[client].append(res)
            print(
                f"  round {r + 1}: {client:<20} {common.rate(res['records_per_s']):>7} records/s"
                f" acknowledged, {common.rate(res.get('stored_per_s')):>7} rows/s stored",
                file=sys.stderr,
                flush=True,
            )
    return out


def summarize(out: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for client, results in out.items():
        done = [r for r in results if "failed" not in r]
        rows[client] = {
            "client": client,
            "records_per_s": common.median(r["records_per_s"] for r in results),
            "stored_per_s": common.median(r.get("stored_per_s", NAN) for r in results),
            "received_per_s": common.median(r.get("received_per_s", NAN) for r in results),
            "cpu_us_per_record": common.median(r.get("cpu_us_per_record", NAN) for r in results),
            "child_cpu_us_per_record": common.median(
                r.get("child_cpu_us_per_record", NAN) for r in results
            ),
            "sink_dropped": sum(r.get("sink_dropped", 0) for r in done),
            "errors": sorted({r["sink_error"] for r in done if r.get("sink_error")}),
            "failed_runs": len(results) - len(done),
        }
    for engine_name in ("redis", "nats"):
        ceiling = rows.get(f"{engine_name}-ceiling", {}).get("records_per_s", NAN)
        for client, row in rows.items():
            if client.startswith(f"{engine_name}-sink"):
                row["ratio"] = row["records_per_s"] / ceiling if ceiling else NAN
    alone = rows.get("duckdb", {}).get("stored_per_s", NAN)
    for row in rows.values():
        row["ingest_cost"] = 1 - row["stored_per_s"] / alone if alone else NAN
    return rows


def _sink_table(rows: dict[str, dict[str, Any]]) -> str:
    body = []
    for client, row in rows.items():
        engine_name, label = CLIENTS[client]
        if engine_name == "duckdb" or client.startswith("steady"):
            continue
        ceiling = client.endswith("ceiling")
        ratio = "1.00" if ceiling else f"**{row.get('ratio', NAN):.2f}**"
        note = "" if ceiling else f"sink drops {row['sink_dropped']:,}"
        if row["failed_runs"]:
            note += f"; {row['failed_runs']} run(s) failed"
        body.append(
            [
                engine_name,
                label,
                common.rate(row["records_per_s"]),
                ratio,
                "" if ceiling else f"≥ {SINK_TARGET:.2f}",
                "-" if ceiling else common.rate(row["stored_per_s"]),
                note,
            ]
        )
    headers = ["engine", "client", "records/s acked", "ratio", "target", "DuckDB rows/s", "notes"]
    return common.table(headers, body)


def _cost_table(rows: dict[str, dict[str, Any]]) -> str:
    body = []
    alone_cpu = rows.get("duckdb", {}).get("cpu_us_per_record", NAN)
    for client in COST_ROWS:
        row = rows.get(client)
        if row is None:
            continue
        cost = "-" if client == "duckdb" else f"{100 * row['ingest_cost']:.0f}%"
        target = f"≤ {100 * COST_TARGET:.0f}%" if client.startswith("nats-sink") else ""
        label = "no sink" if client == "duckdb" else f"+ {CLIENTS[client][1]}"
        cpu, child = row["cpu_us_per_record"], row.get("child_cpu_us_per_record", NAN)
        cpu_cost = "-" if client == "duckdb" else f"+{100 * (cpu / alone_cpu - 1):.0f}%"
        body.append(
            [
                label,
                common.rate(row["stored_per_s"]),
                cost,
                target,
                f"{cpu:.2f}",
                cpu_cost,
                f"{child:.2f}" if client.endswith(("-process", "-process-any")) else "-",
            ]
        )
    headers = ["connection", "DuckDB rows/s committed", "cost", "target"]
    headers += ["CPU µs per record received", "CPU", "the sink's process, µs per record"]
    return common.table(headers, body)


def _steady_table(rows: dict[str, dict[str, Any]]) -> str:
    body = []
    alone = rows.get("steady-duckdb", {}).get("cpu_us_per_record", NAN)
    for client in ["steady-" + c for c in COST_ROWS]:
        row = rows.get(client)
        if row is None:
            continue
        cpu = row["cpu_us_per_record"]
        child = row.get("child_cpu_us_per_record", NAN)
        process = client.endswith("-process")
        extra = "-" if client == "steady-duckdb" else f"+{100 * (cpu / alone - 1):.0f}%"
        acked = "-" if client == "steady-duckdb" else common.rate(row["records_per_s"])
        body.append(
            [
                CLIENTS[client][1],
                common.rate(row["received_per_s"]),
                f"{cpu:.1f}",
                extra,
                f"{child:.1f}" if process else "-",
                acked,
            ]
        )
    headers = [
        "connection",
        "records/s received",
        "CPU µs per record (the stream's process)",
        "CPU",
        "the sink's process, µs per record",
        "sink acked/s",
    ]
    return common.table(headers, body)


def render(rows: dict[str, dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> str:
    server_cores, client_cores = common.pinning()
    pin = (
        f"servers (firehose, redis-server, nats-server) pinned to core(s) {sorted(server_cores)}, "
        f"measured clients to {sorted(client_cores)}"
        if server_cores and client_cores
        else "not pinned (fewer than 2 usable cores)"
    )
    lines = [
        "### Sinks: each sink at full speed against a bare client publish loop",
        "",
        f"Machine: {common.machine_line()}; load average before the run {args.load_before:.2f}.",
        f"Medians of {args.runs} interleaved rounds of {args.seconds:g} s windows; {pin}. Feed: "
        f"the demo firehose, {args.events_per_frame} events per frame, `limit={LIMIT}`. A sink's "
        "rate is the slope of its `rows_written` (acknowledged by the engine), encoding "
        "included; the ceilings publish records encoded beforehand.",
        "",
        _sink_table(rows),
        "",
        "DuckDB ingestion of the same connection at full speed, alone and with a sink "
        "(`status.records_stored`, rows committed per second):",
        "",
        _cost_table(rows),
        "",
        "At full speed the measured process has one core and the feed never waits: what a sink "
        "spends encoding and publishing comes out of ingestion, so the cost is the sink's share "
        "of that core, and a sink slower than the stream drops the oldest rows beyond its "
        "bounded backlog (counted in `rows_dropped`, never slowing the stream). Below full "
        "speed ingestion keeps its rate and a sink only adds CPU.",
        "",
        f"So at a steady {STEADY_RATE:,} events/s (the demo server's paced mode, DuckDB on): "
        "the process's CPU time (user + system) per record received, alone and with a sink:",
        "",
        _steady_table(rows),
    ]
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    for flag, kind, default, text in (
        ("--seconds", float, None, "window per measurement"),
        ("--warmup", float, None, "seconds before each window"),
        ("--runs", int, None, "interleaved rounds"),
        ("--events-per-frame", int, 50, "events per firehose frame"),
    ):
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument(
        "--only", default="", help=f"comma-separated measurements of: {', '.join(CLIENTS)}"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    args.runs = args.runs or (1 if args.smoke else 3 if args.quick else 5)
    args.seconds = args.seconds or (0.5 if args.smoke else 3.0 if args.quick else 5.0)
    if args.warmup is None:
        args.warmup = 0.3 if args.smoke else 1.0
    args.load_before = common.load_average()
    notes: list[str] = []
    server_cores, _ = common.pinning()
    feed_args = ("--firehose", "--events-per-frame", str(args.events_per_frame))
    with (
        engine("redis", server_cores) as redis_url,
        engine("nats", server_cores) as nats_url,
        common.server(DEMO_SERVER, *feed_args, cores=server_cores) as firehose,
        common.server(DEMO_SERVER, "--rate", str(STEADY_RATE), cores=server_cores) as steady,
    ):
        urls = {"redis": redis_url, "nats": nats_url}
        feeds = {"firehose": firehose, "steady": steady}
        clients = ["duckdb", "steady-duckdb"]
        if redis_url is None:
            notes.append("Redis skipped: redis-server is not installed (`make engine-deps`).")
        else:
            clients += ["redis-ceiling", "redis-sink", "redis-sink-pipeline", "steady-redis-sink"]
            clients += ["redis-sink-process", "redis-sink-process-any", "steady-redis-sink-process"]
        if nats_url is None:
            notes.append("NATS skipped: nats-server is not installed (`make engine-deps`).")
        elif not nats_sink_loads():
            notes.append("NATS skipped: the nats:// sink (obbws_jupyter.sinks.nats) is not here.")
        else:
            clients += ["nats-ceiling", "nats-sink", "steady-nats-sink"]
            clients += ["nats-sink-process", "nats-sink-process-any", "steady-nats-sink-process"]
        for note in notes:
            print(note, file=sys.stderr, flush=True)
        if args.smoke:  # one sink and its ceiling prove the script works
            clients = [c for c in clients if c in ("duckdb", "redis-ceiling", "redis-sink")]
        if args.only:
            clients = [c for c in clients if c in args.only.split(",")]
        rows = summarize(run_all(args, clients, urls, feeds))
    common.emit(args, "sinks", render(rows, args, notes), rows)


if __name__ == "__main__":
    main()
