"""The demo market server with every event stamped with its send time, for latency figures.

``python benchmarks/_stamped_server.py --rate 10000 [--tick 0.005]`` prints its URL and serves
the demo protocol at ``--rate`` events/s per connection, one frame per ``--tick`` seconds.
Each event's ``t`` is the wall-clock time (ns since the epoch) at which its frame was made,
just before it is sent; the demo session keeps ns timestamps as they are (``date``), the
store and the broadcast keep microseconds, so a listener on the same machine gets the
send -> receipt latency of every record from its ``date`` (same clock: same machine).
"""

from __future__ import annotations

import argparse
import time

import orjson

from obbws_jupyter.fakes._base import FakeClient, Frame, run_cli
from obbws_jupyter.offline.demo_server import DemoServer


class StampedDemoServer(DemoServer):
    """A :class:`DemoServer` whose events carry their send time in ns (``t``)."""

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        frames = []
        for frame in super().make_frames(client, n, t_ms, span_ms):
            events = orjson.loads(frame)
            now = time.time_ns()
            for event in events:
                event["t"] = now
            frames.append(orjson.dumps(events).decode())
        return frames


def _build(args: argparse.Namespace, api_key: str | None) -> StampedDemoServer:
    return StampedDemoServer(
        host=args.host, port=args.port, api_key=api_key, rate=args.rate, tick_interval=args.tick
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tick", type=float, default=0.005, help="seconds between frames")


if __name__ == "__main__":
    run_cli(_build, "_stamped_server.py", __doc__.splitlines()[0], None, _extra)
