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
STARTUP = 3.0  # seconds from starting the worker to attaching: imports, connect, warm-up
_LINE = re.compile(r"^thread \((?P<tid>[^)]*)\): (?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (it is in the dev extra)")
    return found


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({Path(path).name if '/' in path else path})"


def parse_raw(text: str) -> tuple[int, dict[str, int], list[tuple[list[str], int]]]:
    """py-spy ``--format raw --threads`` -> (samples, samples per thread, [(stack, count)])."""
    total = 0
    threads: dict[str, int] = collections.Counter()
    stacks: list[tuple[list[str], int]] = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        count = int(match["count"])
        thread, *frames = match["stack"].split(";")
        name = re.sub(r"-bench-ingest$", "", thread) or "?"
        total += count
        threads[name] += count
        stacks.append(([name, *(_frame_name(f) for f in frames)], count))
    return total, dict(threads), stacks


def shares(total: int, stacks: list[tuple[list[str], int]], top: int) -> dict[str, Any]:
    self_time: dict[str, int] = collections.Counter()
    inclusive: dict[str, int] = collections.Counter()
    for stack, count in stacks:
        thread, frames = stack[0], stack[1:]
        if frames:
            self_time[f"{frames[-1]} [{thread}]"] += count
        for name in set(frames):
            inclusive[f"{name} [{thread}]"] += count

    def ranked(counter: dict[str, int]) -> list[tuple[str, float]]:
        items = sorted(counter.items(), key=lambda kv: -kv[1])[:top]
        return [(name, count / total) for name, count in items]

    return {"self": ranked(self_time), "inclusive": ranked(inclusive)}


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
        **shares(total, stacks, top),
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
