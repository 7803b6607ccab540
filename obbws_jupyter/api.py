"""The twelve endpoints of the OpenBB WebSockets Toolkit, as module functions by ``name``.

Each function acts on this process's registry (:func:`~obbws_jupyter.default_registry`):
dropping the Python variable does not stop a stream; :func:`get_client` /
:func:`get_client_status` find it again and only :func:`kill` (or process exit) ends it. When a
connection was created with ``auth_token``, every endpoint call on it must pass the same token
(compared in constant time). The functions are thin: the behaviour lives in
:class:`~obbws_jupyter.Registry`, whose methods of the same names they call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from obbws_jupyter._connections import default_registry
from obbws_jupyter._options import ClientOptions
from obbws_jupyter.client import DEFAULT_BROADCAST_PORT, WebSocketClient
from obbws_jupyter.connection import Connection
from obbws_jupyter.models import WebSocketConnectionStatus
from obbws_jupyter.sinks import Sink

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
    options: ClientOptions | None = None,
    provider_params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Connection:
    """Open a named connection to ``provider`` and return its :class:`Connection` at once
    (after authentication). Provider parameters (``symbol``, ``asset_type``, ``feed``, ``api_key``,
    ...) go in ``kwargs``; so do the client options (``tz``, ``record_file``, ``max_reconnects``,
    ``stale_timeout``, ``connect_timeout``: see :class:`~obbws_jupyter.ClientOptions`), or
    all at once as ``options=ClientOptions(...)``. A provider parameter whose name is also a
    client option's goes in ``provider_params={...}`` (as a keyword it is refused as
    ambiguous). Every argument is checked before anything starts.

    ``if_exists`` says what to do when ``name`` is taken: ``"error"`` (OpenBB's behaviour)
    raises NameInUseError; ``"replace"`` kills the old connection first (so re-running a notebook
    cell works); ``"reuse"`` returns the existing connection when it was created with the same
    provider and parameters, and raises NameInUseError naming the differences otherwise.

    ``sinks`` sends the records to more destinations too (see :mod:`obbws_jupyter.sinks`):
    URLs (``"nats://127.0.0.1:4222"``), ``{"url": ..., **options}`` dicts, or Sink objects.
    """
    return default_registry().create_connection(
        provider,
        name,
        auth_token=auth_token,
        results_file=results_file,
        save_results=save_results,
        table_name=table_name,
        limit=limit,
        sleep_time=sleep_time,
        broadcast_host=broadcast_host,
        broadcast_port=broadcast_port,
        start_broadcast=start_broadcast,
        connect_kwargs=connect_kwargs,
        if_exists=if_exists,
        sinks=sinks,
        options=options,
        provider_params=provider_params,
        **kwargs,
    )


def get_client(name: str, auth_token: str | None = None) -> WebSocketClient:
    """The live :class:`WebSocketClient` behind a named connection."""
    return default_registry().get_client(name, auth_token)


def get_client_status(
    name: str = "all", auth_token: str | None = None
) -> list[WebSocketConnectionStatus]:
    """Status of one connection, or of ``"all"`` (those without a token, or whose token is
    ``auth_token``). For "all" the list is a :class:`~obbws_jupyter.models.StatusList` whose
    ``hidden`` says how many connections were left out because of their ``auth_token``."""
    return default_registry().get_client_status(name, auth_token)


def get_results(name: str, auth_token: str | None = None) -> pd.DataFrame:
    """Every stored record of the connection, oldest first, as a typed DataFrame."""
    return default_registry().get_results(name, auth_token)


def clear_results(name: str, auth_token: str | None = None) -> str:
    """Delete the stored records (the stream goes on; ids keep growing)."""
    return default_registry().clear_results(name, auth_token)


def subscribe(
    name: str, symbol: str | list[str], auth_token: str | None = None
) -> WebSocketConnectionStatus:
    """Subscribe the running connection to more symbols (comma-separated or a list)."""
    return default_registry().subscribe(name, symbol, auth_token)


def unsubscribe(
    name: str, symbol: str | list[str], auth_token: str | None = None
) -> WebSocketConnectionStatus:
    """Unsubscribe the running connection from symbols."""
    return default_registry().unsubscribe(name, symbol, auth_token)


def stop_connection(name: str, auth_token: str | None = None) -> WebSocketConnectionStatus:
    """Stop the provider stream; stored rows and the broadcast server stay."""
    return default_registry().stop_connection(name, auth_token)


def restart_connection(name: str, auth_token: str | None = None) -> WebSocketConnectionStatus:
    """Reconnect a stopped stream with its current symbols, into the same results table."""
    return default_registry().restart_connection(name, auth_token)


def start_broadcasting(
    name: str,
    auth_token: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_BROADCAST_PORT,
    **server_kwargs: Any,
) -> WebSocketConnectionStatus:
    """Serve the connection's records on ``ws://host:port`` (see ``obbws_jupyter.listen``)."""
    return default_registry().start_broadcasting(name, auth_token, host, port, **server_kwargs)


def stop_broadcasting(name: str, auth_token: str | None = None) -> WebSocketConnectionStatus | str:
    """Stop the broadcast server. A connection whose provider stream is stopped too is removed
    (OpenBB's behaviour) and a message says so."""
    return default_registry().stop_broadcasting(name, auth_token)


def kill(name: str, auth_token: str | None = None) -> str:
    """Stop everything of a connection, delete its temporary results file, forget the name.

    Returns ``"Client NAME killed."``; if received rows could not be written (the results
    file was failing), the text says how many were lost (a RuntimeWarning says it too).
    Called from a record hook or a ``listen()`` callback (the loop thread), the name is
    forgotten at once and the teardown finishes in the background."""
    return default_registry().kill(name, auth_token)


def _names() -> list[str]:
    """The registered names (kept for code written before the registry: use
    ``default_registry().names()``)."""
    return default_registry().names()
