"""The ``demo`` provider's market server: a real websocket server on 127.0.0.1 speaking the demo
wire protocol (Polygon-style, see ``docs/demo_protocol.md``) with simulated data
(:mod:`obbws_jupyter.offline.market`).

Three ways to use it:

- ``async``: ``server = await DemoServer(rate=500).start()`` ... ``await server.close()``, on
  any running loop (tests, the obbws background loop).
- sync (notebooks, tests): ``handle = start_demo_server(rate=500)`` runs it on the obbws
  background loop; ``handle.drop_connections()``, ``handle.pause()``, ``handle.close()``...
- another process (benchmarks): ``python -m obbws_jupyter.offline.demo_server --port 0
  --rate 50000`` prints its URL once listening and serves until Ctrl-C / SIGTERM;
  ``--firehose [--events-per-frame N]`` re-sends pre-generated frames of N events (default
  500) as fast as the client reads.

``serve(params)`` is the embedded-server factory of the demo provider (``ProviderSpec``).

It is a :class:`~obbws_jupyter.fakes.FakeServer` like every fake provider server, with the same
test controls: ``drop_connections`` (a provider-side drop, or a TCP reset), ``inject`` (raw,
possibly malformed frames), ``pause`` / ``resume`` (a connection that stays open but goes
silent: watchdog tests), ``freeze`` (silent and deaf: not even pings are answered),
``reset_connections`` (a TCP reset), ``stop_listening`` / ``start`` (the server goes away and
comes back on the same port), ``revoke_auth`` (the key stops being accepted), plus its own
``close_after_auth`` (every login is closed at once), ``wait_for`` / ``wait_connections``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from obbws_jupyter import runtime
from obbws_jupyter.fakes._base import (
    FIREHOSE_EVENTS,
    TICK_INTERVAL,
    FakeClient,
    FakeServer,
    Frame,
    ServerHandle,
    add_firehose_options,
    now_ms,
    run_cli,
)
from obbws_jupyter.offline.market import ASSET_TYPES, Channel

__all__ = [
    "BENCH_CASES",
    "PROVIDER_NAME",
    "DemoServer",
    "DemoServerHandle",
    "main",
    "sample_frames",
    "serve",
    "start_demo_server",
]

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9./:-]{0,19}$")
CHANNELS = ("T", "Q")
MAX_BATCH = 5000  # events per frame (~500 kB); a larger tick is split to stay under 1 MiB
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def _status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def _frame(*elements: Mapping[str, Any]) -> str:
    return _DUMPS(list(elements))


def _channels(client: FakeClient) -> list[Channel]:
    channels: list[Channel] = client.state.setdefault("channels", [])
    return channels


class DemoServer(FakeServer):
    """A demo market on ``ws://host:port/<asset_type>`` (asset_type: stock | crypto | fx).

    ``api_key=None`` accepts any key; otherwise the key is checked in constant time.
    ``rate`` is events per second per connection, spread over its subscriptions (0: no data,
    heartbeats only). ``seed`` makes the simulated prices reproducible (one market per server:
    a reconnecting client continues the same price paths). ``firehose`` (benchmarks) re-sends
    pre-generated frames of ``events_per_frame`` events as fast as the client reads.
    """

    provider = "demo"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        rate: float = 200.0,
        heartbeat_interval: float = 1.0,
        seed: int | None = None,
        tick_interval: float = TICK_INTERVAL,
        firehose: bool = False,
        events_per_frame: int = FIREHOSE_EVENTS,
    ) -> None:
        super().__init__(
            host,
            port,
            api_key=api_key,
            rate=rate,
            seed=seed,
            tick_interval=tick_interval,
            heartbeat_interval=heartbeat_interval,
            firehose=firehose,
            events_per_frame=events_per_frame,
        )
        self.subscribe_requests: list[str] = []
        self.unsubscribe_requests: list[str] = []
        self.close_after_auth = False  # fault: close every session right after its login

    @property
    def url(self) -> str:
        """Base URL, ``ws://host:port`` (append ``/stock``, ``/crypto`` or ``/fx``)."""
        return f"ws://{self.host}:{self.port}"

    def url_for(self, asset_type: str) -> str:
        """URL of one asset type's endpoint."""
        if asset_type not in ASSET_TYPES:
            raise ValueError(f"asset_type must be one of {', '.join(ASSET_TYPES)}")
        return f"{self.url}/{asset_type}"

    # -- protocol ----------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        asset_type = request.path.partition("?")[0].strip("/")
        if asset_type in ASSET_TYPES:
            return None
        return conn.respond(
            HTTPStatus.NOT_FOUND, f"unknown endpoint {request.path!r}; use /stock, /crypto or /fx\n"
        )

    async def on_open(self, client: FakeClient) -> None:
        client.state["asset_type"] = client.path.strip("/")
        await self.send(client, _frame(_status("connected", "obbws demo market")))

    async def on_message(self, client: FakeClient, message: Frame) -> None:
        try:
            request = json.loads(message)
            action = request["action"]
            params = request.get("params", "")
            if not isinstance(action, str) or not isinstance(params, str):
                raise TypeError("action and params must be strings")
        except (ValueError, TypeError, KeyError, AttributeError):
            await self._reply(
                client,
                _status("error", 'invalid message: expected {"action": ..., "params": "..."}'),
            )
            return
        if action == "auth":
            await self._auth(client, params)
        elif not client.authenticated:
            await self._reply(client, _status("error", "not authenticated: send auth first"))
        elif action in ("subscribe", "unsubscribe"):
            await self._subscription(client, action, params)
        else:
            await self._reply(client, _status("error", f"unknown action: {action[:40]}"))

    def ready(self, client: FakeClient) -> bool:
        return client.authenticated and bool(_channels(client))

    def make_frames(self, client: FakeClient, n: int, t_ms: int, span_ms: float) -> list[Frame]:
        channels = _channels(client)
        frames: list[Frame] = []
        done = 0
        while done < n:
            size = min(n - done, MAX_BATCH)
            start = t_ms + int(span_ms * done / n)
            frames.append(_DUMPS(self.market.events(channels, size, start, span_ms * size / n)))
            done += size
        return frames

    def heartbeat(self, client: FakeClient) -> Frame | None:
        return _frame({"ev": "heartbeat", "t": now_ms()})

    async def _reply(self, client: FakeClient, *elements: Mapping[str, Any]) -> None:
        await self.send(client, _frame(*elements))

    async def _auth(self, client: FakeClient, key: str) -> None:
        if client.authenticated:
            self.auth_attempts += 1
            await self._reply(client, _status("error", "already authenticated"))
            return
        if not self.check_key(key):
            await self._reply(client, _status("auth_failed", "authentication failed"))
            await client.conn.close(1008, "authentication failed")
            return
        client.authenticated = True
        await self._reply(client, _status("auth_success", "authenticated"))
        if self.close_after_auth:
            await client.conn.close(1000, "demo: closing after login")

    async def _subscription(self, client: FakeClient, action: str, params: str) -> None:
        (self.subscribe_requests if action == "subscribe" else self.unsubscribe_requests).append(
            params
        )
        valid: list[str] = []
        replies: list[dict[str, str]] = []
        for item in (p.strip() for p in params.split(",")):
            if not item:
                continue
            channel, dot, symbol = item.partition(".")
            if not dot or channel not in CHANNELS or not (symbol == "*" or SYMBOL_RE.match(symbol)):
                replies.append(_status("error", f"invalid symbol: {item[:40]}"))
                continue
            valid.append(f"{channel}.{symbol}")
        for key in valid:
            if action == "subscribe":
                client.subscriptions[key] = None
            else:
                client.subscriptions.pop(key, None)
        if valid:
            self._rebuild_channels(client)
            verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
            replies.append(_status("success", f"{verb}: {','.join(valid)}"))
        if replies:
            await self._reply(client, *replies)

    def _rebuild_channels(self, client: FakeClient) -> None:
        channels: dict[tuple[str, str], Channel] = {}
        asset_type = client.state["asset_type"]
        for key in client.subscriptions:
            kind, _, symbol = key.partition(".")
            for ch in self.market.channels(kind, symbol, asset_type):
                channels.setdefault((kind, ch[1].symbol), ch)
        client.state["channels"] = list(channels.values())


# -- sample frames for the parse benchmark (benchmarks/provider_parse.py) ---------------------

PROVIDER_NAME = "demo"
#: parse-benchmark cases: name -> provider parameters
BENCH_CASES: dict[str, dict[str, Any]] = {
    "crypto trade": {"symbol": "*", "asset_type": "crypto", "feed": "trade"},
    "stock quote": {"symbol": "*", "asset_type": "stock", "feed": "quote"},
}


def sample_frames(
    params: Mapping[str, Any], n_events: int, per_frame: int, seed: int = 42
) -> list[Frame]:
    """Data frames exactly as this server sends them: ``n_events`` events for ``params``'
    symbols and feed, ``per_frame`` per frame."""
    market = DemoServer(seed=seed).market
    kind = "T" if params.get("feed", "trade") == "trade" else "Q"
    channels = market.channels(kind, str(params.get("symbol", "*")), params["asset_type"])
    t_ms = 1_700_000_000_000
    return [
        _DUMPS(market.events(channels, per_frame, t_ms + i, 1.0))
        for i in range(max(1, n_events // per_frame))
    ]


async def serve(params: Mapping[str, Any]) -> DemoServer:
    """Embedded-server factory of the ``demo`` provider: 127.0.0.1, a free port, the
    connection's ``rate``, any API key accepted."""
    rate = params.get("rate")
    return await DemoServer(rate=200.0 if rate is None else rate).start()


class DemoServerHandle(ServerHandle):
    """A :class:`DemoServer` running on the obbws background loop, driven from sync code."""

    server: DemoServer

    def url_for(self, asset_type: str) -> str:
        return self.server.url_for(asset_type)

    @property
    def subscribe_requests(self) -> list[str]:
        return list(self.server.subscribe_requests)

    def set_close_after_auth(self, on: bool) -> None:
        """Fault: close every session right after its login (``True``) or stop doing so."""
        self.server.close_after_auth = on


def start_demo_server(**kwargs: Any) -> DemoServerHandle:
    """Start a :class:`DemoServer` (same keyword arguments) on the obbws background loop."""
    server = DemoServer(**kwargs)
    runtime.run(server.start())
    return DemoServerHandle(server)


def _build(args: argparse.Namespace, api_key: str | None) -> DemoServer:
    return DemoServer(
        host=args.host,
        port=args.port,
        api_key=api_key,
        rate=args.rate,
        heartbeat_interval=args.heartbeat,
        seed=args.seed,
        firehose=args.firehose,
        events_per_frame=args.events_per_frame,
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds")
    add_firehose_options(parser)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m obbws_jupyter.offline.demo_server --port P --rate R [--api-key-env VAR]``"""
    run_cli(
        _build,
        "python -m obbws_jupyter.offline.demo_server",
        "Serve the obbws demo market until Ctrl-C; prints its base URL.",
        argv,
        _extra,
    )


if __name__ == "__main__":
    main()
