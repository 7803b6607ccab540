"""Where ingest time goes: py-spy samples of create_connection ingesting a firehose into DuckDB.

Run: ``python benchmarks/profile_ingest.py [--cases 1:1000,1:None,50:1000,50:None]
[--seconds 8] [--rate 200] [--top 15] [--json] [--readme]``

For each case (events per frame : limit) a demo firehose server runs in its own process
(pinned to the first core) and ``ingest.py``'s worker (``create_connection(provider="demo",
url=..., limit=...)``) in another (pinned to the other core(s)). Once it streams, ``py-spy
record --threads`` (pinned beside the server, so it does not take the client's core) samples
every thread of the worker at ``--rate`` Hz for ``--seconds``. py-spy leaves idle threads out,
so the shares are of the samples in which a thread was running or runnable. Printed per case:
the share of each thread, the functions with the most self time (the innermost frame) and
the most inclusive time (anywhere in the stack), as ``function (file)``.

Needs ``py-spy`` (in the ``dev`` extra) and permission to attach to a child process (root,
or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

DEMO_SERVER = "obbws_jupyter.offline.demo_server"
INGEST = str(common.HERE / "ingest.py")
PLUMBING = 0.8  # a frame in this share of its thread's samples is plumbing (run_forever...)
STARTUP = 3.0  # seconds from starting the worker to attaching: imports, connect, warm-up
_LINE = re.compile(r"^thread \((?P<tid>[^)]*)\): (?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (it is in the dev extra)")
    return found


#: (area, thread name prefix or "", file prefix or ""): the first match names a sample's area
AREAS = (
    ("store writer thread: dicts -> Arrow, DuckDB insert, cap", "obbws-store", ""),
    ("websockets: frame parsing, message assembly, recv", "", "websockets/"),
    ("JSON decoding (stdlib json)", "", "json/"),
    ("provider session: parse, events", "", "providers/"),
    ("provider session: parse, events", "", "obbws_providers/"),
    ("provider session: parse, events", "", "obbws_jupyter/protocol/"),
    ("stream driver: frame scanner, read loop", "", "obbws_jupyter/_stream.py"),
    ("client._on_records: ids, received_at, fan-out", "", "obbws_jupyter/client.py"),
    ("store.put on the loop thread", "", "obbws_jupyter/_store.py"),
    ("broadcast", "", "obbws_jupyter/_broadcast.py"),
    ("asyncio: event loop, selector, transports", "", "asyncio/"),
    ("asyncio: event loop, selector, transports", "", "selectors.py"),
)


def _short_path(path: str) -> str:
    """A frame's file, short: relative to the checkout, site-packages or the stdlib."""
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(common.ROOT))
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker.startswith("/lib") else rest
    return path


def _frame(frame: str) -> tuple[str, str]:
    """``"func (path:line)"`` -> (``"func (short path)"``, short path)."""
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    path = _short_path(match["file"])
    return f"{match['func']} ({path})", path


def area_of(thread: str, path: str) -> str:
    for name, thread_prefix, path_prefix in AREAS:
        if thread.startswith(thread_prefix) and path.startswith(path_prefix):
            return name
    return f"other ({thread})"


Stack = tuple[str, list[tuple[str, str]], int]  # thread, [(frame, path)] outermost first, count


def parse_raw(text: str) -> tuple[int, dict[str, int], list[Stack]]:
    """py-spy ``--format raw --threads`` -> (samples, samples per thread, stacks)."""
    total = 0
    threads: dict[str, int] = collections.Counter()
    stacks: list[Stack] = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        count = int(match["count"])
        thread, *frames = match["stack"].split(";")
        name = re.sub(r"-bench-ingest$", "", thread) or "?"
        total += count
        threads[name] += count
        stacks.append((name, [_frame(f) for f in frames], count))
    return total, dict(threads), stacks


def shares(total: int, threads: dict[str, int], stacks: list[Stack], top: int) -> dict[str, Any]:
    """Areas and functions by self time, functions by inclusive time (leaving out the frames
    found in most samples of their thread: thread and event-loop plumbing)."""
    self_time: dict[str, int] = collections.Counter()
    inclusive: dict[str, int] = collections.Counter()
    areas: dict[str, int] = collections.Counter()
    for thread, frames, count in stacks:
        if frames:
            name, path = frames[-1]
            self_time[f"{name} [{thread}]"] += count
            areas[area_of(thread, path)] += count
        for name in {f"{frame} [{thread}]" for frame, _ in frames}:
            inclusive[name] += count
    plumbing = frozenset(
        name
        for name, count in inclusive.items()
        if count >= PLUMBING * threads[name.rsplit(" [", 1)[1].rstrip("]")]
    )

    def ranked(
        counter: dict[str, int], skip: frozenset[str] = frozenset()
    ) -> list[tuple[str, float]]:
        items = sorted(((n, c) for n, c in counter.items() if n not in skip), key=lambda kv: -kv[1])
        return [(name, count / total) for name, count in items[:top]]

    return {
        "areas": ranked(areas),
        "self": ranked(self_time),
        "inclusive": ranked(inclusive, plumbing),
    }


def profile_case(per_frame: int, limit: str, seconds: float, rate: int, top: int) -> dict[str, Any]:
    server_cores, client_cores = common.pinning()
    with (
        common.server(
            DEMO_SERVER, "--firehose", "--events-per-frame", str(per_frame), cores=server_cores
        ) as url,
        tempfile.TemporaryDirectory(prefix="obbws-profile-") as tmp,
    ):
        out = Path(tmp) / "profile.txt"
        argv = [sys.executable, INGEST, "--worker", f"ours:{limit}", "--feed", "demo"]
        # the worker's measuring window covers the profile (and up to STARTUP s around it)
        argv += ["--url", url, "--warmup", "0.5", "--seconds", str(STARTUP + seconds)]
        worker = common.spawn(argv, client_cores)
        try:
            time.sleep(STARTUP)  # the worker imports, connects and streams before we attach
            spy = [py_spy(), "record", "--pid", str(worker.pid), "--rate", str(rate)]
            spy += ["--duration", str(int(seconds)), "--threads", "--format", "raw"]
            spy += ["--output", str(out), "--nonblocking"]
            done = subprocess.run(
                spy,
                capture_output=True,
                text=True,
                env=common.bench_env(),
                preexec_fn=(lambda: common.pin_self(server_cores)) if server_cores else None,
                timeout=seconds + 60,
                check=False,
            )
            if done.returncode != 0 or not out.exists():
                raise RuntimeError(f"py-spy failed: {done.stderr.strip()[-1500:]}")
            text = out.read_text()
            result = common.read_line(worker, STARTUP + seconds + 60)
        finally:
            common.stop(worker)
    total, threads, stacks = parse_raw(text)
    return {
        "per_frame": per_frame,
        "limit": limit,
        "samples": total,
        "events_per_s": json.loads(result)["events_per_s"],
        "threads": {k: v / total for k, v in sorted(threads.items(), key=lambda kv: -kv[1])},
        **shares(total, threads, stacks, top),
    }


def render(cases: list[dict], seconds: float, rate: int, load_before: float) -> str:
    lines = [
        "### Profile: where ingest time goes (py-spy, all threads)",
        "",
        f"Machine: {common.machine_line()}; load average before the run {load_before:.2f}.",
        f'`create_connection(provider="demo")` on a demo firehose; py-spy `record --threads` '
        f"at {rate} Hz for {seconds:g} s after the stream started; shares of the samples in "
        "which a thread was active (idle threads are left out). Thread names: `obbws-loop` "
        "(socket, parse, ids, broadcast), `obbws-store` (the DuckDB writer), `MainThread` "
        "(the benchmark, sleeping). Events/s: the worker's rate over a window that covers the "
        "profile (py-spy runs `--nonblocking`, beside the server).",
    ]
    for case in cases:
        threads = ", ".join(f"{name} {share:.0%}" for name, share in case["threads"].items())
        lines += [
            "",
            f"#### {case['per_frame']} event(s)/frame, limit={case['limit']}: "
            f"{common.rate(case['events_per_s'])} events/s stored, {case['samples']:,} samples",
            "",
            f"Threads: {threads}.",
            "",
            common.table(
                ["area (self time of the innermost frame)", "share"],
                [[name, f"{share:.1%}"] for name, share in case["areas"]],
            ),
            "",
            common.table(
                ["#", "self time [thread]", "share", "inclusive [thread]", "share"],
                [
                    [i + 1, s[0], f"{s[1]:.1%}", inc[0], f"{inc[1]:.1%}"]
                    for i, (s, inc) in enumerate(zip(case["self"], case["inclusive"], strict=False))
                ],
            ),
        ]
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--cases", default="1:1000,1:None,50:1000,50:None")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--rate", type=int, default=200, help="samples per second")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    seconds = args.seconds or (1.0 if args.smoke else 8.0)
    specs = [c.split(":") for c in args.cases.split(",")]
    if args.smoke:
        specs = specs[:1]
    load_before = common.load_average()
    cases = [profile_case(int(n), limit, seconds, args.rate, args.top) for n, limit in specs]
    common.emit(args, "profile_ingest", render(cases, seconds, args.rate, load_before), cases)


if __name__ == "__main__":
    main()
