"""The twelve endpoints of the OpenBB WebSockets Toolkit, as module functions by ``name``.

Connections live in a per-process registry: dropping the Python variable does not stop a
stream; :func:`get_client` / :func:`get_client_status` find it again and only :func:`kill` (or
process exit) ends it. When a connection was created with ``auth_token``, every endpoint call on
it must pass the same token (compared in constant time).
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from obbws_jupyter import runtime
from obbws_jupyter._registry import get_provider
from obbws_jupyter._validate import check_bool, check_name, check_port, check_token
from obbws_jupyter.client import DEFAULT_BROADCAST_PORT, WebSocketClient
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    NameInUseError,
    NotBroadcastingError,
    UnauthorizedError,
    UnknownConnectionError,
)
from obbws_jupyter.models import StatusList, WebSocketConnectionStatus
from obbws_jupyter.sinks import Sink, sink_from_url

if TYPE_CHECKING:
    from obbws_jupyter.connection import Connection

__all__ = [
    "clear_results",
    "create_connection",
    "get_client",
    "get_client_status",
    "get_results",
    "kill",
    "restart_connection",
    "start_broadcasting",
    "stop_broadcasting",
    "stop_connection",
    "subscribe",
    "unsubscribe",
]

log = logging.getLogger("obbws_jupyter.api")

_lock = threading.RLock()
_clients: dict[str, WebSocketClient] = {}
_reserved: set[str] = set()
# what each connection was created with, for create_connection(..., if_exists="reuse")
_signatures: dict[str, dict[str, Any]] = {}

IF_EXISTS = ("error", "replace", "reuse")
_CLIENT_OPTIONS = frozenset(
    name
    for name, p in inspect.signature(WebSocketClient.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def _lookup(name: str, auth_token: str | None) -> WebSocketClient:
    with _lock:
        client = _clients.get(name) if isinstance(name, str) else None
    if client is None:
        raise UnknownConnectionError(f"Client {name} not connected.")
    if not client.check_token(auth_token):
        if auth_token is None:
            raise UnauthorizedError(f"Client authorization token is required for {name}.")
        raise UnauthorizedError(f"Invalid client authorization token for {name}.")
    return client


def create_connection(
    provider: str,
    name: str,
    auth_token: str | None = None,
    results_file: str | None = None,
    save_results: bool = False,
    table_name: str = "records",
    limit: int | None = 1000,
    sleep_time: float = 0.25,
    broadcast_host: str = "127.0.0.1",
    broadcast_port: int = DEFAULT_BROADCAST_PORT,
    start_broadcast: bool = False,
    connect_kwargs: dict[str, Any] | str | None = None,
    if_exists: str = "error",
    sinks: Sequence[str | Sink | Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> Connection:
    """Open a named connection to ``provider`` and return its :class:`Connection` at once
    (after authentication). Provider parameters (``symbol``, ``asset_type``, ``feed``, ``api_key``,
    ...) go in ``kwargs``; so do the client options (``tz``, ``record_file``, ``max_reconnects``,
    ``stale_timeout``, ``connect_timeout``). Every argument is checked before anything starts.

    ``if_exists`` says what to do when ``name`` is taken: ``"error"`` (OpenBB's behaviour)
    raises NameInUseError; ``"replace"`` kills the old connection first (so re-running a notebook
    cell works); ``"reuse"`` returns the existing connection when it was created with the same
    provider and parameters, and raises NameInUseError naming the differences otherwise.

    ``sinks`` sends the records to more destinations too (see :mod:`obbws_jupyter.sinks`):
    URLs (``"nats://127.0.0.1:4222"``), ``{"url": ..., **options}`` dicts, or Sink objects.
    """
    from obbws_jupyter.connection import Connection

    name = check_name(name)
    auth_token = check_token(auth_token)
    if if_exists not in IF_EXISTS:
        raise InvalidParameterError(
            f"if_exists={if_exists!r} is invalid; use one of {', '.join(map(repr, IF_EXISTS))}."
        )
    signature = _signature(
        provider,
        kwargs,
        auth_token=auth_token,
        results_file=results_file,
        table_name=table_name,
        limit=limit,
        sleep_time=sleep_time,
    )
    if not isinstance(broadcast_host, str) or not broadcast_host:
        raise InvalidParameterError(
            f"broadcast_host must be a host name or address, got {broadcast_host!r}."
        )
    broadcast_port = check_port(broadcast_port, "broadcast_port")
    start_broadcast = check_bool("start_broadcast", start_broadcast)
    wanted_sinks = _build_sinks(sinks)
    if if_exists == "reuse" and name in _names():
        return _reuse(name, signature)
    if if_exists == "replace" and name in _names():
        kill(name, auth_token)
    with _lock:
        existing = _clients.get(name)
        if existing is not None:
            _refuse_name(name, existing)
        if name in _reserved:
            raise NameInUseError(f"Client {name} is being created by another call.")
        _reserved.add(name)
    try:
        client = WebSocketClient(
            provider,
            name,
            auth_token=auth_token,
            results_file=results_file,
            save_results=save_results,
            table_name=table_name,
            limit=limit,
            sleep_time=sleep_time,
            connect_kwargs=connect_kwargs,
            **kwargs,
        )
        try:
            for sink in wanted_sinks:  # before the stream starts: they get every record
                client.add_sink(sink)
            client.connect()
            if start_broadcast:
                client.start_broadcasting(broadcast_host, broadcast_port)
        except BaseException:
            client.close()
            raise
        with _lock:
            _clients[name] = client
            _signatures[name] = signature
    finally:
        with _lock:
            _reserved.discard(name)
    return Connection(name, auth_token)


def _build_sinks(sinks: Any) -> list[Sink]:
    """``sinks`` as Sink objects, built (not opened) before anything starts."""
    if sinks is None:
        return []
    if isinstance(sinks, (str, Mapping, Sink)):
        sinks = [sinks]
    built: list[Sink] = []
    for item in sinks:
        if isinstance(item, Sink):
            built.append(item)
        elif isinstance(item, str):
            built.append(sink_from_url(item))
        elif isinstance(item, Mapping) and isinstance(item.get("url"), str):
            options = {k: v for k, v in item.items() if k != "url"}
            built.append(sink_from_url(item["url"], **options))
        else:
            raise InvalidParameterError(
                "sinks takes sink URLs, {'url': ..., **options} dicts or Sink objects; "
                f"got {item!r}."
            )
    return built


def _refuse_name(name: str, existing: WebSocketClient) -> None:
    if existing.is_running or existing.is_broadcasting:
        address = existing.broadcast_address
        broadcasting = f" Broadcasting to: {address}." if address else ""
        raise NameInUseError(
            f"Client {name} already connected!{broadcasting} Use another name, kill({name!r}) "
            "first, or pass if_exists='replace' (if_exists='reuse' returns it as it is)."
        )
    raise NameInUseError(
        f"Client {name} already connected but not running. Use restart_connection"
        f"({name!r}) or kill({name!r}) first, or pass if_exists='replace'."
    )


def _signature(provider: str, kwargs: dict[str, Any], **options: Any) -> dict[str, Any]:
    """What makes two create_connection calls "the same connection": the provider, its
    resolved parameters (symbols normalized, as a set) and the options that shape the stream.
    Resolving also checks the provider parameters before anything starts."""
    spec = get_provider(provider)
    given = {k: v for k, v in kwargs.items() if k not in _CLIENT_OPTIONS}
    params = spec.resolve(given, os.environ)
    session = spec.session_class(params)
    params["symbol"] = frozenset(session.symbols)
    client_options = {k: v for k, v in kwargs.items() if k in _CLIENT_OPTIONS}
    return {"provider": spec.name, **params, **options, **client_options}


def _reuse(name: str, signature: dict[str, Any]) -> Connection:
    from obbws_jupyter.connection import Connection

    _lookup(name, signature.get("auth_token"))  # the token is checked before anything is said
    with _lock:
        existing = _signatures.get(name, {})
    differ = sorted(
        k for k in signature.keys() | existing.keys() if signature.get(k) != existing.get(k)
    )
    if differ:
        verb = "differs" if len(differ) == 1 else "differ"
        raise NameInUseError(
            f"Client {name} exists with other parameters ({', '.join(differ)} {verb}), so "
            "if_exists='reuse' cannot return it; use if_exists='replace' or another name."
        )
    return Connection(name, signature.get("auth_token"))


def get_client(name: str, auth_token: str | None = None) -> WebSocketClient:
    """The live :class:`WebSocketClient` behind a named connection."""
    return _lookup(name, auth_token)


def get_client_status(
    name: str = "all", auth_token: str | None = None
) -> list[WebSocketConnectionStatus]:
    """Status of one connection, or of ``"all"`` (those without a token, or whose token is
    ``auth_token``). For "all" the list is a :class:`~obbws_jupyter.models.StatusList` whose
    ``hidden`` says how many connections were left out because of their ``auth_token``."""
    if name != "all":
        return StatusList([_lookup(name, auth_token).status()])
    with _lock:
        clients = list(_clients.values())
    if not clients:
        raise UnknownConnectionError("No active connections.")
    visible = [c for c in clients if c.check_token(auth_token)]
    result = StatusList([c.status() for c in visible], hidden=len(clients) - len(visible))
    if result.hidden:
        log.info("get_client_status('all'): %s", result.hidden_note)
    return result


def get_results(name: str, auth_token: str | None = None) -> pd.DataFrame:
    """Every stored record of the connection, oldest first, as a typed DataFrame."""
    return _lookup(name, auth_token).get_results()


def clear_results(name: str, auth_token: str | None = None) -> str:
    """Delete the stored records (the stream goes on; ids keep growing)."""
    count = _lookup(name, auth_token).clear_results()
    return f"{count} results cleared from {name}."


def subscribe(name: str, symbol: str | list[str], auth_token: str | None = None) -> Any:
    """Subscribe the running connection to more symbols (comma-separated or a list)."""
    client = _lookup(name, auth_token)
    client.subscribe(symbol)
    return client.status()


def unsubscribe(name: str, symbol: str | list[str], auth_token: str | None = None) -> Any:
    """Unsubscribe the running connection from symbols."""
    client = _lookup(name, auth_token)
    client.unsubscribe(symbol)
    return client.status()


def stop_connection(name: str, auth_token: str | None = None) -> WebSocketConnectionStatus:
    """Stop the provider stream; stored rows and the broadcast server stay."""
    client = _lookup(name, auth_token)
    client.disconnect()
    return client.status()


def restart_connection(name: str, auth_token: str | None = None) -> WebSocketConnectionStatus:
    """Reconnect a stopped stream with its current symbols, into the same results table."""
    with _lock:
        known = name in _clients
    if not known:
        raise UnknownConnectionError(f"No active client named, {name}. Use create_connection.")
    client = _lookup(name, auth_token)
    client.connect()
    return client.status()


def start_broadcasting(
    name: str,
    auth_token: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_BROADCAST_PORT,
    **server_kwargs: Any,
) -> WebSocketConnectionStatus:
    """Serve the connection's records on ``ws://host:port`` (see ``obbws_jupyter.listen``)."""
    client = _lookup(name, auth_token)
    client.start_broadcasting(host, port, **server_kwargs)
    return client.status()


def stop_broadcasting(name: str, auth_token: str | None = None) -> WebSocketConnectionStatus | str:
    """Stop the broadcast server. A connection whose provider stream is stopped too is removed
    (OpenBB's behaviour) and a message says so."""
    client = _lookup(name, auth_token)
    if not client.is_broadcasting:
        raise NotBroadcastingError(f"Client {name} not broadcasting.")
    client.stop_broadcasting()
    if not client.is_running:
        _remove(name, client)
        return f"Client {name} stopped broadcasting and was not running, client removed."
    return client.status()


def kill(name: str, auth_token: str | None = None) -> str:
    """Stop everything of a connection, delete its temporary results file, forget the name.

    Returns ``"Client NAME killed."``; if received rows could not be written (the results
    file was failing), the text says how many were lost (a RuntimeWarning says it too).
    Called from a record hook or a ``listen()`` callback (the loop thread), the name is
    forgotten at once and the teardown finishes in the background."""
    with _lock:
        empty = not _clients
    if empty:
        raise UnknownConnectionError("No connections to kill.")
    client = _lookup(name, auth_token)
    if runtime.in_loop_thread():
        _remove(name, client)
        return f"Client {name} killed (the teardown finishes in the background)."
    lost = _remove(name, client)
    if lost:
        return (
            f"Client {name} killed. {lost} received rows could not be written to "
            f"{client.results_file} and are lost."
        )
    return f"Client {name} killed."


def _remove(name: str, client: WebSocketClient) -> int:
    with _lock:
        if _clients.get(name) is client:
            del _clients[name]
            _signatures.pop(name, None)
    return client.close()


def _names() -> list[str]:
    with _lock:
        return list(_clients)
