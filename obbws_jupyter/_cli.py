"""The ``obbws`` command: ``obbws demo``, ``obbws listen URL``, ``obbws providers``,
``obbws serve``.

Secrets are read from the environment (``OBBWS_AUTH_TOKEN``, ``OBBWS_API_KEY`` or the variable
named by ``--api-key-env``) so they need not appear in argv. Errors are said in command-line
terms (``--port 0``, ``--api-key-env``), not in the Python parameters' names.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

__all__ = ["main"]

DESCRIPTION = """\
Live market-data websocket streams from the command line: run a demo stream with a broadcast
(obbws demo), print what a broadcast or a sink's NATS / Redis stream sends (obbws listen URL),
list the installed providers (obbws providers), or serve the HTTP API (obbws serve). Secrets
come from the environment (OBBWS_AUTH_TOKEN, OBBWS_API_KEY, or the variable named by
--api-key-env), never from argv."""


def _providers(_: argparse.Namespace) -> int:
    from obbws_jupyter._registry import available_providers, get_provider

    for name in available_providers():
        spec = get_provider(name)
        print(f"{name}: {spec.description}")
        for p in spec.params:
            bits = [p.type.__name__]
            if p.choices:
                bits.append("one of " + "|".join(map(str, p.choices)))
            if not p.required and p.default is not None and not p.secret:
                bits.append(f"default {p.default!r}")
            if p.required:
                bits.append("required")
            if p.secret:
                bits.append("secret")
            if p.env:
                bits.append(f"env {p.env}")
            if p.openbb_setting:
                bits.append(f"OpenBB setting {p.openbb_setting}")
            print(f"    {p.name:<12} {', '.join(bits)}  {p.description}")
    return 0


# `obbws listen` flags passed on to listen() for a nats:// or redis:// URL
ENGINE_OPTIONS = ("subject", "stream", "name", "key")


def _listen(args: argparse.Namespace) -> int:
    from obbws_jupyter.exceptions import ObbwsError
    from obbws_jupyter.listen import listen

    token = args.auth_token or os.environ.get("OBBWS_AUTH_TOKEN") or None
    # only the engine options given: listen() refuses those the URL's engine does not take
    engine = {k: v for k in ENGINE_OPTIONS if (v := getattr(args, k)) is not None}
    try:
        listen(
            args.url,
            token,
            block=True,
            max_records=args.max_records,
            replay=args.replay,
            **engine,
        )
    except ObbwsError as exc:
        print(f"obbws listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    import obbws_jupyter as obbws
    from obbws_jupyter._wire import DEFAULT_PORT
    from obbws_jupyter.exceptions import ObbwsError, PortInUseError

    token = os.environ.get("OBBWS_AUTH_TOKEN") or None
    try:
        conn = obbws.create_connection(
            provider="demo",
            name=args.name,
            symbol=args.symbol,
            asset_type=args.asset_type,
            feed=args.feed,
            rate=args.rate,
            auth_token=token,
            start_broadcast=True,
            **({"broadcast_port": args.port} if args.port is not None else {}),
        )
    except PortInUseError:
        busy = (
            f"port {args.port} is"
            if args.port is not None
            else f"the default port {DEFAULT_PORT} and the ones after it are all"
        )
        print(
            f"obbws demo: {busy} in use; use --port 0 for any free port, or another --port.",
            file=sys.stderr,
        )
        return 1
    except ObbwsError as exc:
        print(f"obbws demo: {exc}", file=sys.stderr)
        return 1
    status = conn.status
    print(f"demo {args.name!r}: {status.subscribed_symbols} ({args.asset_type}/{args.feed})")
    print(f"broadcasting on {status.broadcast_address}  (obbws listen {status.broadcast_address})")
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    # SIGTERM (kill PID, timeout, container stop) cleans up like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(args.interval):
            s = conn.status
            print(
                f"state={s.state} records={s.records_received} stored={s.records_stored} "
                f"listeners={s.listeners} reconnects={s.reconnects} malformed={s.malformed_frames}",
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        print(conn.kill(), flush=True)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from obbws_jupyter.exceptions import ObbwsError
    from obbws_jupyter.rest import serve_api
    from obbws_jupyter.rest._security import is_loopback
    from obbws_jupyter.rest._server import API_KEY_ENV

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env) or None
        if api_key is None:
            print(f"obbws serve: the variable {args.api_key_env} is not set.", file=sys.stderr)
            return 1
    elif not os.environ.get(API_KEY_ENV) and not is_loopback(args.host):
        print(
            f"obbws serve: refusing to serve on {args.host} without an API key: anyone who can "
            f"reach this machine could drive your connections. Set {API_KEY_ENV} (or put the "
            "key in another variable and pass --api-key-env VAR), or serve on --host 127.0.0.1.",
            file=sys.stderr,
        )
        return 1
    try:
        server = serve_api(args.host, args.port, api_key)
    except ObbwsError as exc:
        print(f"obbws serve: {exc}", file=sys.stderr)
        return 1
    key = " (API key required)" if server.api_key_required else ""
    print(f"serving the HTTP API on {server.url}{key}; docs: {server.url}/docs", flush=True)
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0) and server.running:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print("stopped.", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obbws", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("providers", help="list installed providers and their parameters")
    p.set_defaults(func=_providers)

    p = sub.add_parser(
        "listen",
        help="print the records a broadcast server (or a sink's NATS / Redis stream) sends",
    )
    p.add_argument(
        "url",
        help="ws://127.0.0.1:6666 (a broadcast), nats://HOST:4222 (JetStream; --subject) or "
        "redis://HOST:6379/0 (Redis Streams; --name or --key)",
    )
    p.add_argument(
        "--auth-token",
        default=None,
        help="the connection's auth token (safer: set OBBWS_AUTH_TOKEN instead)",
    )
    p.add_argument("--max-records", type=int, default=None, help="stop after N records")
    p.add_argument("--replay", type=int, default=None, help="first send the last N stored")
    p.add_argument("--subject", default=None, help="nats:// only: default 'obbws.>' (all)")
    p.add_argument("--stream", default=None, help="nats:// only: read this JetStream stream")
    p.add_argument("--name", default=None, help="redis:// only: the connection's name")
    p.add_argument("--key", default=None, help="redis:// only: the stream key (obbws:<name>)")
    p.set_defaults(func=_listen)

    p = sub.add_parser("demo", help="run a demo connection with a broadcast until Ctrl-C")
    p.add_argument("--name", default="demo")
    p.add_argument("--symbol", default="btcusd,ethusd,solusd")
    p.add_argument("--asset-type", default="crypto", choices=["stock", "crypto", "fx"])
    p.add_argument("--feed", default="trade", choices=["trade", "quote"])
    p.add_argument("--rate", type=float, default=200.0, help="events per second")
    p.add_argument(
        "--port", type=int, default=None, help="broadcast port (default 6666); 0 picks a free one"
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between summaries")
    p.set_defaults(func=_demo)

    p = sub.add_parser("serve", help="serve the HTTP API (needs the 'api' extra) until Ctrl-C")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    p.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free port")
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the API key (default: OBBWS_API_KEY); "
        "required to listen beyond loopback",
    )
    p.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
