"""Parse speed of every provider session: records/s through ``session.receive`` on realistic
frames, single-event and batched, no sockets.

Each fake server module (``obbws_jupyter.fakes.<provider>``, and the demo server) that defines
``PROVIDER_NAME``, ``BENCH_CASES`` (case name -> provider parameters) and
``sample_frames(params, n_events, per_frame)`` (frames exactly as that server sends them) is
measured; a new provider joins by defining them (and ``BATCHED = False`` if it sends one event
per frame). Targets on the 2-core reference machine
(issue #6): at least 300k records/s with batched frames and 100k frames/s with single-event
frames.

Usage: ``python benchmarks/provider_parse.py [--events 100000] [--batch 50] [--runs 5]
[--provider NAME]``. Prints one table row per provider, case and frame size (medians).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import statistics
import time
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import obbws_jupyter.fakes
from obbws_jupyter.protocol import Frame, get_provider

PLACEHOLDER_KEY = "bench-key"


def bench_modules() -> Iterator[ModuleType]:
    """The demo server, then every fake server module that offers sample frames."""
    yield importlib.import_module("obbws_jupyter.offline.demo_server")
    for info in sorted(pkgutil.iter_modules(obbws_jupyter.fakes.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"obbws_jupyter.fakes.{info.name}")
            if hasattr(module, "sample_frames"):
                yield module


def new_session(provider: str, params: dict[str, Any]) -> Any:
    spec = get_provider(provider)
    given = dict(params)
    for p in spec.params:
        if p.secret and p.name not in given:
            given[p.name] = PLACEHOLDER_KEY
    session = spec.session_class(spec.resolve(given, {}))
    session.connection_made()
    session.data_to_send()
    return session


def run_once(provider: str, params: dict[str, Any], frames: Sequence[Frame]) -> tuple[int, float]:
    session = new_session(provider, params)
    receive = session.receive
    records = 0
    start = time.perf_counter()
    for frame in frames:
        records += len(receive(frame))
    elapsed = time.perf_counter() - start
    bad = [e for e in session.events_received() if type(e).__name__ == "MalformedFrame"]
    if bad:
        raise SystemExit(f"{provider}: sample frames were reported malformed: {bad[0]}")
    return records, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50, help="events per batched frame")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--provider", default=None)
    args = parser.parse_args()
    header = (
        f"{'provider':<10} {'case':<22} {'events/frame':>12} {'records/s':>12} {'frames/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for module in bench_modules():
        provider = module.PROVIDER_NAME
        if args.provider and provider != args.provider:
            continue
        for case, params in module.BENCH_CASES.items():
            # a provider that never batches (BATCHED = False) has only the single-event figure
            sizes = (1, args.batch) if getattr(module, "BATCHED", True) else (1,)
            for per_frame in sizes:
                n = args.events if per_frame > 1 else args.events // 5
                frames = module.sample_frames(params, n, per_frame)
                results = [run_once(provider, params, frames) for _ in range(args.runs)]
                records = results[0][0]
                elapsed = statistics.median(r[1] for r in results)
                print(
                    f"{provider:<10} {case:<22} {per_frame:>12} {records / elapsed:>12,.0f} "
                    f"{len(frames) / elapsed:>12,.0f}"
                )


if __name__ == "__main__":
    main()
