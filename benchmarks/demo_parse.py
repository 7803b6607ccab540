"""Throughput of ``DemoSession.receive`` (records/s) on pre-generated frames of 100 events.

Usage: ``python benchmarks/demo_parse.py [--frames 2000] [--feed trade|quote] [--runs 5]``.
Prints the median of ``--runs`` runs. No sockets: this measures the parser alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from obbws_jupyter.offline.market import Market
from obbws_providers.demo import PROVIDER, DemoSession

EVENTS_PER_FRAME = 100


def make_frames(feed: str, count: int) -> list[str]:
    market = Market(seed=42)
    kind = "T" if feed == "trade" else "Q"
    channels = market.channels(kind, "*", "crypto")
    t_ms = 1_700_000_000_000
    frames = []
    for i in range(count):
        events = market.events(channels, EVENTS_PER_FRAME, t_ms + 15 * i, 15.0)
        frames.append(json.dumps(events, separators=(",", ":")))
    return frames


def run_once(feed: str, frames: list[str]) -> float:
    session = DemoSession(PROVIDER.resolve({"symbol": "*", "feed": feed}, {}))
    session.connection_made()
    receive = session.receive
    records = 0
    start = time.perf_counter()
    for frame in frames:
        records += len(receive(frame))
    elapsed = time.perf_counter() - start
    assert records == len(frames) * EVENTS_PER_FRAME, records
    return records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--feed", choices=("trade", "quote"), default=None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for feed in [args.feed] if args.feed else ["trade", "quote"]:
        frames = make_frames(feed, args.frames)
        rates = [run_once(feed, frames) for _ in range(args.runs)]
        print(
            f"demo_parse feed={feed}: {statistics.median(rates):,.0f} records/s "
            f"(median of {args.runs} runs, {args.frames} frames x {EVENTS_PER_FRAME} events)"
        )


if __name__ == "__main__":
    main()
