"""What a live chart costs: updates/s, comm messages/s, bytes/s and CPU at 20,000 events/s.

Run: ``python benchmarks/chart.py [--rate 20000] [--seconds 5] [--sleep-time 0.25]``

A real Jupyter kernel (``jupyter_client``) holds a demo connection fed by the demo server in
another process at ``--rate`` events/s, as a provider would be. For each chart kind the script
measures the kernel for ``--seconds`` twice: without a chart (the baseline), then with the
chart created and displayed (its comm is open, so its updates really go out on iopub, where
this script counts them). Per chart it prints:

* updates/s (plotly updates) and comm messages/s received on iopub, with their bytes/s (JSON
  content plus binary buffers, as the kernel serializes them; message headers not counted)
  and the largest message;
* CPU that the chart adds, from per-thread CPU times of the kernel (``psutil``): the chart's
  timer thread, plus the growth of the obbws loop thread (where the record hook feeds the
  chart's buffer) and of the kernel's own threads (iopub sending) over the baseline; in % of
  one core. The kernel process total is shown as well (it moves by ±2% with the feed alone).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
from typing import Any

from jupyter_client.manager import start_new_kernel

sys.path.insert(0, os.path.dirname(__file__))
from ingest import start_server  # the demo server in another process

SETUP = """
import json, threading, time, psutil
import obbws_jupyter as obbws
from IPython.display import display

def _threads():
    names = {t.native_id: t.name for t in threading.enumerate()}
    cpu = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, "other")
        name = "chart" if name.startswith("obbws-chart") else name
        cpu[name] = cpu.get(name, 0.0) + t.user_time + t.system_time
    return cpu

def _sample(conn):
    p = psutil.Process().cpu_times()
    return {"wall": time.monotonic(), "cpu": p.user + p.system, "threads": _threads(),
            "records": conn.status.records_received}
"""

CHARTS = [  # windows that fill within a measurement: the steady-state size of each chart
    ("line, window 5s (500 pts)", "trade", "dict(window='5s')"),
    ("line, window 2000 points", "trade", "dict(window=2000)"),
    ("candles 1s, window 5min", "trade", "dict(kind='candles', interval='1s')"),
    ("band, window 5s (500 pts)", "quote", "dict(window='5s')"),
]


class Kernel:
    """A kernel and a client that runs code and reads iopub."""

    def __init__(self) -> None:
        self.km, self.kc = start_new_kernel(kernel_name="python3")

    def run(self, code: str) -> str:
        """Execute ``code``; return its stdout (raise on an error)."""
        msg_id = self.kc.execute(code)
        out = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise RuntimeError("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)

    def value(self, expr: str) -> Any:
        return json.loads(self.run(f"print(json.dumps({expr}))").strip().splitlines()[-1])

    def count_comm(self, seconds: float) -> dict[str, float]:
        """Comm messages and their bytes on iopub for ``seconds``."""
        count = size = largest = 0
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = self.kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                break
            if msg["msg_type"] != "comm_msg":
                continue
            n = len(json.dumps(msg["content"], separators=(",", ":")))
            n += sum(len(memoryview(b).cast("B")) for b in msg.get("buffers") or ())
            count += 1
            size += n
            largest = max(largest, n)
        return {"messages": count, "bytes": size, "largest": largest}

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    seconds = b["wall"] - a["wall"]
    threads = {
        k: (b["threads"].get(k, 0.0) - a["threads"].get(k, 0.0)) / seconds for k in b["threads"]
    }
    return {
        "seconds": seconds,
        "cpu": (b["cpu"] - a["cpu"]) / seconds,
        "threads": threads,
        "rate": (b["records"] - a["records"]) / seconds,
    }


def measure(k: Kernel, conn: str, options: str, seconds: float) -> dict[str, Any]:
    """Baseline, then the same feed with a displayed chart."""
    before = k.value(f"_sample({conn})")
    time.sleep(seconds)
    base = _delta(before, k.value(f"_sample({conn})"))
    k.run(f"fig = {conn}.chart(**{options}); display(fig); _s0 = _sample({conn})")
    start = k.value("_s0")
    comm = k.count_comm(seconds)
    stats = k.value("fig.stats")
    after = _delta(start, k.value(f"_sample({conn})"))
    k.run("fig.close()")
    chart = after["threads"].get("chart", 0.0)
    loop = after["threads"].get("obbws-loop", 0.0) - base["threads"].get("obbws-loop", 0.0)
    kernel = sum(
        v - base["threads"].get(name, 0.0)
        for name, v in after["threads"].items()
        if not name.startswith("obbws") and name != "chart"
    )
    return {
        "rate": after["rate"],
        "updates_per_s": stats["updates"] / stats["seconds"],
        "messages_per_s": comm["messages"] / seconds,
        "kbytes_per_s": comm["bytes"] / seconds / 1000,
        "largest_kb": comm["largest"] / 1000,
        "chart_cpu": 100 * chart,
        "loop_cpu": 100 * loop,
        "kernel_cpu": 100 * kernel,
        "added_cpu": 100 * (chart + max(loop, 0.0) + max(kernel, 0.0)),
        "process_delta": 100 * (after["cpu"] - base["cpu"]),
        "baseline_process": 100 * base["cpu"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20_000, help="events/s of the feed")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--sleep-time", type=float, default=0.25, help="chart refresh cadence")
    args = parser.parse_args()

    proc, url = start_server("--port", "0", "--rate", str(args.rate))
    k = Kernel()
    try:
        k.run(SETUP)
        rows = []
        for feed in ("trade", "quote"):  # one feed at a time, so that only one loads the kernel
            k.run(
                f"{feed} = obbws.create_connection(provider='demo', name='bench_{feed}', "
                f"symbol='btcusd,ethusd,solusd', feed='{feed}', url={url!r}, "
                f"sleep_time={args.sleep_time})\n"
                f"while {feed}.status.records_received < {int(args.rate)}: time.sleep(0.05)"
            )
            for label, chart_feed, options in CHARTS:
                if chart_feed == feed:
                    rows.append((label, measure(k, feed, options, args.seconds)))
            k.run(f"{feed}.kill()")
    finally:
        k.close()
        proc.terminate()
        proc.wait(5)

    print()
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; "
        f"demo feed {args.rate:,.0f} events/s per connection (server in another process), "
        f"sleep_time {args.sleep_time} s, {args.seconds:g} s per measurement"
    )
    header = (
        f"{'chart':<26} {'feed ev/s':>9} {'upd/s':>6} {'msg/s':>6} {'kB/s':>7} {'max kB':>7} "
        f"{'timer %':>8} {'hook %':>7} {'iopub %':>8} {'added %':>8} {'process Δ%':>10}"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows:
        print(
            f"{label:<26} {r['rate']:>9,.0f} {r['updates_per_s']:>6.1f} "
            f"{r['messages_per_s']:>6.1f} {r['kbytes_per_s']:>7.1f} {r['largest_kb']:>7.1f} "
            f"{r['chart_cpu']:>8.1f} {r['loop_cpu']:>7.1f} {r['kernel_cpu']:>8.1f} "
            f"{r['added_cpu']:>8.1f} {r['process_delta']:>10.1f}"
        )
    print(
        "timer: the chart's refresh thread; hook: growth of the obbws loop thread (the record "
        "hook); iopub: growth of the kernel's own threads; added: their sum, % of one core."
    )
    print(json.dumps({label: {k: round(v, 2) for k, v in r.items()} for label, r in rows}))


if __name__ == "__main__":
    main()
