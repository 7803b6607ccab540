"""Shared helpers of the issue #8 benchmarks: processes, CPU pinning, percentiles, RSS, README.

Every benchmark script is a small orchestrator that measures through the public API only
(``create_connection``, ``get_results``, ``query``, ``export``, broadcast listeners), starts
fake servers and listeners in processes of their own, prints a Markdown table, and with
``--json`` the raw results as one JSON line, and with ``--readme`` writes its table into
``benchmarks/README.md`` between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``.
``--quick`` is the short mode ``make bench`` uses; ``--smoke`` shrinks a run to a few seconds
(the test suite runs every script so, to prove it still works: no figure is asserted).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README = HERE / "README.md"
README_HEAD = """# Benchmark results

Written by `make bench` (each script's `--readme`); rerun it on a quiet machine for figures to
quote. Each section says what was measured, how, and the machine's load at the time. Scripts
and options: see each script's docstring (`python benchmarks/NAME.py --help`).
"""


# -- command line ------------------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    text = doc or ""
    p = argparse.ArgumentParser(
        description=text.splitlines()[0] if text else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(text.splitlines()[1:]),
    )
    p.add_argument("--quick", action="store_true", help="the shorter run make bench uses")
    p.add_argument("--smoke", action="store_true", help="a few seconds: proves it runs")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.add_argument("--readme", action="store_true", help="write the table to README.md")
    return p


def emit(args: argparse.Namespace, name: str, markdown: str, results: Any) -> None:
    """Print the table (and the JSON results with ``--json``); write the README section with
    ``--readme`` (never in ``--smoke`` mode: a smoke run's figures mean nothing)."""
    print(markdown, flush=True)
    if args.json:
        print(json.dumps({"benchmark": name, "results": results}, default=str), flush=True)
    if args.readme and not args.smoke:
        write_readme(name, markdown)
        print(f"(written to {README.relative_to(ROOT)}, section {name})", flush=True)


# -- the README ------------------------------------------------------------------------------


def write_readme(name: str, markdown: str, path: Path = README) -> None:
    """Replace (or append) the section between ``<!-- bench:NAME -->`` and
    ``<!-- /bench:NAME -->``; other sections and text are kept as they are."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else README_HEAD
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def machine_line() -> str:
    """One line: cores, Python, the load average now, and the date (UTC)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{len(usable_cpus())} cores usable ({os.cpu_count()} in the machine), "
        f"Python {platform.python_version()}, load average {load} (1/5/15 min), {now}"
    )


def load_average() -> float:
    return os.getloadavg()[0]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rate(value: float | None) -> str:
    """Events per second, short: 1.23M, 456k, 789."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


# -- statistics ------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return float("nan")
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def weighted_percentiles(histogram: Mapping[float, int], ps: Sequence[float]) -> dict[float, float]:
    """Nearest-rank percentiles of a histogram ``{value: count}``; NaN when it is empty."""
    total = sum(histogram.values())
    out = {p: float("nan") for p in ps}
    if not total:
        return out
    items = sorted(histogram.items())
    targets = sorted((max(1, math.ceil(p / 100 * total)), p) for p in ps)
    seen = 0
    k = 0
    for value, count in items:
        seen += count
        while k < len(targets) and seen >= targets[k][0]:
            out[targets[k][1]] = value
            k += 1
    return out


def slope_per_minute(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (seconds), per minute; NaN with < 3 points."""
    if len(xs) < 3:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60


# -- CPUs and processes ------------------------------------------------------------------------


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def pinning() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, client cores): the first usable core for fake servers, the others for
    the client under test; (None, None) when fewer than two cores are usable or the platform
    cannot pin."""
    cpus = usable_cpus()
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        return None, None
    return {cpus[0]}, set(cpus[1:])


def pin_self(cores: set[int] | None) -> None:
    """Pin this process's calling thread (and threads it starts later) to ``cores``."""
    if cores:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cores)


def _preexec(cores: set[int] | None) -> Callable[[], None] | None:
    if not cores:
        return None
    return lambda: pin_self(cores)


def bench_env() -> dict[str, str]:
    """The environment for child processes: this checkout importable, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(HERE), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(
    argv: Sequence[str],
    cores: set[int] | None = None,
    stdin: int | None = None,
) -> subprocess.Popen[str]:
    """Start ``argv`` (pinned to ``cores``) with a text stdout pipe."""
    return subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stdin=stdin,
        text=True,
        env=bench_env(),
        preexec_fn=_preexec(cores),
    )


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``proc`` within ``timeout`` seconds (RuntimeError otherwise)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{proc.args!r} said nothing within {timeout:g} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args!r} exited (code {proc.wait()}) before answering")
    return line.strip()


def stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL) and close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for pipe in (proc.stdout, proc.stdin):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def start_server(
    module_or_script: str, *args: str, cores: set[int] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start a fake server (``python -m MODULE`` or ``python SCRIPT.py``) in its own process,
    pinned to ``cores``: (the process, the URL it printed once listening)."""
    if module_or_script.endswith(".py"):
        argv = [sys.executable, module_or_script, *args]
    else:
        argv = [sys.executable, "-m", module_or_script, *args]
    proc = spawn(argv, cores)
    try:
        url = read_line(proc, 60)
        if not url.startswith("ws://"):
            raise RuntimeError(f"server {module_or_script} printed {url!r}, not its URL")
    except BaseException:
        stop(proc)
        raise
    return proc, url


@contextlib.contextmanager
def server(module_or_script: str, *args: str, cores: set[int] | None = None) -> Iterator[str]:
    """:func:`start_server` for a ``with`` block: yields the URL, stops the server after."""
    proc, url = start_server(module_or_script, *args, cores=cores)
    try:
        yield url
    finally:
        stop(proc)


def run_worker(argv: Sequence[str], cores: set[int] | None, timeout: float) -> dict[str, Any]:
    """Run a measurement in a fresh process pinned to ``cores``; its last stdout line is the
    JSON result."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env=bench_env(),
        preexec_fn=_preexec(cores),
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {' '.join(argv[1:])} failed (code {proc.returncode}): "
            f"{proc.stderr.strip()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def worker_result(result: Mapping[str, Any]) -> None:
    """A worker's answer: one JSON line, the last thing it prints."""
    print(json.dumps(result), flush=True)


# -- memory ----------------------------------------------------------------------------------


def rss_mb(pid: int | None = None) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


class RssSampler:
    """Samples a process's RSS (MiB) every ``interval`` seconds in a daemon thread."""

    def __init__(self, pid: int | None = None, interval: float = 0.2) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self.process.memory_info().rss / 2**20))
            self._stop.wait(self.interval)

    def peak(self, since: float = 0.0, until: float = math.inf) -> float:
        values = [mb for t, mb in self.samples if since <= t <= until]
        return max(values) if values else float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM) in MiB since start or the last :func:`reset_peak_rss`."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_mb(paths: Iterable[str | os.PathLike[str]]) -> float:
    """Total size of the files that exist among ``paths`` and their ``.wal`` companions."""
    total = 0
    for path in paths:
        for candidate in (Path(path), Path(f"{os.fspath(path)}.wal")):
            with contextlib.suppress(OSError):
                total += candidate.stat().st_size
    return total / 2**20


# -- broadcast listeners in other processes ----------------------------------------------------


class Listeners:
    """``n`` lean listeners (``_listener.py``) to a broadcast, spread over ``processes``
    processes of their own (so they never share the measured process's GIL)."""

    def __init__(self, url: str, n: int, processes: int = 1) -> None:
        processes = max(1, min(processes, n))
        sizes = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
        self.n = n
        self.procs: list[subprocess.Popen[str]] = []
        self.first: list[int] = []  # global index of each process's first listener
        start = 0
        try:
            for size in sizes:
                argv = [sys.executable, str(HERE / "_listener.py"), url, str(size)]
                self.procs.append(spawn(argv, stdin=subprocess.PIPE))
                self.first.append(start)
                start += size
            for proc in self.procs:
                line = read_line(proc, 60)
                if line != "READY":
                    raise RuntimeError(f"listener process said {line!r}")
        except BaseException:
            self.close()
            raise

    def _send(self, proc: subprocess.Popen[str], command: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(command + "\n")
        proc.stdin.flush()

    def command(self, command: str) -> None:
        for proc in self.procs:
            self._send(proc, command)

    def _locate(self, index: int) -> tuple[subprocess.Popen[str], int]:
        k = max(i for i, first in enumerate(self.first) if first <= index)
        return self.procs[k], index - self.first[k]

    def stall(self, index: int) -> None:
        proc, local = self._locate(index)
        self._send(proc, f"stall {local}")

    def resume(self, index: int) -> None:
        proc, local = self._locate(index)
        self._send(proc, f"resume {local}")

    def report(self) -> dict[str, Any]:
        """Every listener's window results, and the merged latency histograms (ms keys)."""
        self.command("report")
        listeners: list[dict[str, Any]] = []
        steady: dict[float, int] = {}
        stalled: dict[float, int] = {}
        for proc, first in zip(self.procs, self.first, strict=True):
            part = json.loads(read_line(proc, 60))
            scale = part["bin_ns"] / 1e6
            for item in part["listeners"]:
                item["index"] += first
                listeners.append(item)
            for key, merged in (("histogram", steady), ("histogram_stalled", stalled)):
                for bin_, count in part[key].items():
                    upper = (int(bin_) + 1) * scale  # the bin's upper edge, in ms
                    merged[upper] = merged.get(upper, 0) + count
        return {"listeners": listeners, "latency_ms": steady, "stalled_latency_ms": stalled}

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, ValueError):
                self._send(proc, "quit")
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            stop(proc)

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def latency_summary(histogram: Mapping[float, int]) -> dict[str, float]:
    """p50, p99, p99.9 (ms) and the number of records of a latency histogram."""
    p = weighted_percentiles(histogram, (50, 99, 99.9))
    return {"p50": p[50], "p99": p[99], "p999": p[99.9], "samples": sum(histogram.values())}
