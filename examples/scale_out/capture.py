"""One capture process of the scale-out example: one shard (a provider and its symbols) streamed
into DuckDB and published to NATS JetStream, until Ctrl-C / SIGTERM or --duration.

    python examples/scale_out/capture.py --name shard-a --provider demo --symbols btcusd \
        --nats nats://127.0.0.1:4222

Provider parameters go as --param key=value (e.g. --param asset_type=crypto, an API key from
the environment as the provider documents). Every shard needs its own --name: it is the second
token of the subjects (obbws.<name>.<symbol>) and of the default stream (OBBWS_<name>).
--stream NAME makes all shards share one stream instead. See docs/scale_out.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

import obbws_jupyter as obbws
from obbws_jupyter.sinks import sink_from_url


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="this shard's connection name")
    p.add_argument("--provider", default="demo")
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. btcusd,ethusd")
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="a NATS server of the cluster")
    p.add_argument("--stream", default=None, help="a stream shared by every shard (optional)")
    p.add_argument("--limit", type=int, default=100_000, help="rows kept, in DuckDB and stream")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--param", action="append", default=[], help="provider parameter key=value")
    return p.parse_args(argv)


def provider_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param takes key=value, got {pair!r}")
        try:
            params[key] = json.loads(value)  # numbers and booleans as such
        except ValueError:
            params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    options: dict[str, Any] = {"max_msgs": args.limit}
    if args.stream:
        options["stream"] = args.stream
    # opened before the stream starts, so every record captured is published (add_sink after
    # create_connection would miss the first ones); a server still down is retried, not fatal
    sink = sink_from_url(args.nats, **options)
    conn = obbws.create_connection(
        provider=args.provider,
        name=args.name,
        symbol=args.symbols,
        limit=args.limit,
        sinks=[sink],
        **provider_params(args.param),
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"capturing {args.name} ({args.provider}: {args.symbols}) -> {args.nats}", flush=True)
    stop.wait(args.duration)
    conn.stop_connection()
    received = conn.status.records_received
    lost = conn.remove_sink(sink.url)  # delivers what is still pending (up to 10 s)
    conn.kill()
    published = sink.health().rows_written
    print(f"{args.name}: {received} records captured, {published} published", flush=True)
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
