"""The reader of the scale-out example: every shard's records from NATS JetStream, from any
machine, as one JSON line per record (the broadcast's form).

    python examples/scale_out/reader.py --nats nats://127.0.0.1:4222 --subject 'obbws.>' \
        --replay 100

--subject narrows it: 'obbws.shard-a.>' (one shard), 'obbws.*.BTCUSD' (one symbol in every
shard). Records come in order within each shard. --wait waits for the first capture to
create its stream. See docs/scale_out.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from obbws_jupyter.exceptions import BroadcastError
from obbws_jupyter.listen import listen


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="a NATS server of the cluster")
    p.add_argument("--subject", default="obbws.>")
    p.add_argument("--replay", type=int, default=None, help="the last N stored of each shard")
    p.add_argument("--max-records", type=int, default=None, help="stop after this many")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a stream")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            # blocking: prints one JSON line per record until --max-records or Ctrl-C
            listen(
                args.nats,
                subject=args.subject,
                replay=args.replay,
                max_records=args.max_records,
                block=True,
            )
            return 0
        except BroadcastError as exc:
            if "no JetStream stream" not in str(exc) or time.monotonic() > deadline:
                print(f"reader: {exc}", file=sys.stderr)
                return 1
            time.sleep(0.5)  # no capture has published yet: look again


if __name__ == "__main__":
    sys.exit(main())
