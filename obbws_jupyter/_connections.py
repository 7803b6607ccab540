"""The registry of named connections, and the endpoints that act on them by name.

A :class:`Registry` maps names to live :class:`~obbws_jupyter.client.WebSocketClient` objects.
Its methods are the twelve endpoints of the OpenBB WebSockets Toolkit (``create_connection``,
``get_results``, ``kill``, ...), plus the plain container operations (``add``, ``get``,
``find``, ``remove``, ``names``, ``kill_all``). Everything is thread-safe: a name is reserved
while its connection is being created, so two concurrent ``create_connection`` calls with one
name give one connection and one :class:`~obbws_jupyter.exceptions.NameInUseError`.

One registry serves each process: :func:`default_registry`. The module functions
(``obbws_jupyter.create_connection`` ...), the :class:`~obbws_jupyter.Connection` objects and
the HTTP API all act on it, so a notebook and ``curl`` see the same connections. A separate
``Registry()`` is an isolated set of names (for tests, or an app serving its own set);
interpreter exit closes the clients of every registry.

When a connection was created with ``auth_token``, every endpoint call on it must pass the
same token (compared in constant time).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from obbws_jupyter import runtime
from obbws_jupyter._connection import Connection
from obbws_jupyter._options import ClientOptions, split_options
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

__all__ = ["IF_EXISTS", "Registry", "default_registry"]

log = logging.getLogger("obbws_jupyter.api")

IF_EXISTS = ("error", "replace", "reuse")
# create_connection's own arguments that are client options, with their defaults: an
# argument left at its default defers to an explicit options=ClientOptions(...)
_STANDARD_DEFAULTS: dict[str, Any] = {
    "results_file": None,
    "save_results": False,
    "table_name": "records",
    "limit": 1000,
    "sleep_time": 0.25,
    "connect_kwargs": None,
}


class Registry:
    """Named connections of one process (or of one isolated set): the endpoints by name."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._clients: dict[str, WebSocketClient] = {}
        self._reserved: set[str] = set()
        # what each connection was created with, for create_connection(..., if_exists="reuse")
        self._signatures: dict[str, dict[str, Any]] = {}

    # -- the container ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The registered names, in the order they were added."""
        with self._lock:
            return list(self._clients)

    def clients(self) -> list[WebSocketClient]:
        """The registered clients (a snapshot), in the order they were added."""
        with self._lock:
            return list(self._clients.values())

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._clients

    def __repr__(self) -> str:
        return f"Registry(names={self.names()!r})"

    def find(self, name: str) -> WebSocketClient | None:
        """The client registered as ``name``, or None; no token check (for the library's own
        views: notices, dashboards). Endpoints use :meth:`get`."""
        with self._lock:
            return self._clients.get(name) if isinstance(name, str) else None

    def get(self, name: str, auth_token: str | None = None) -> WebSocketClient:
        """The client registered as ``name``, after checking ``auth_token`` against it.
        Raises UnknownConnectionError or UnauthorizedError."""
        client = self.find(name)
        if client is None:
            raise UnknownConnectionError(f"Client {name} not connected.")
        if not client.check_token(auth_token):
            if auth_token is None:
                raise UnauthorizedError(f"Client authorization token is required for {name}.")
            raise UnauthorizedError(f"Invalid client authorization token for {name}.")
        return client

    def add(self, client: WebSocketClient, signature: Mapping[str, Any] | None = None) -> None:
        """Register ``client`` under its name (running or not; ``connection(name)`` gives its
        handle). NameInUseError when the name is taken or being created by another call.
        ``signature`` is what ``if_exists="reuse"`` compares (default: nothing)."""
        with self._lock:
            self._refuse_taken(client.name)
            self._clients[client.name] = client
            self._signatures[client.name] = dict(signature or {})

    def remove(self, name: str, client: WebSocketClient | None = None) -> int:
        """Forget ``name`` and close its client (only if it still is ``client``, when given).
        Returns how many received rows could not be written (see ``WebSocketClient.close``);
        0 when the name is not registered."""
        with self._lock:
            current = self._clients.get(name)
            if current is None or (client is not None and current is not client):
                return 0
            del self._clients[name]
            self._signatures.pop(name, None)
        return current.close()

    def kill_all(self) -> int:
        """Remove and close every connection (no token check: the process owner's call);
        returns how many were closed."""
        names = self.names()
        for name in names:
            self.remove(name)
        return len(names)

    def connection(self, name: str, auth_token: str | None = None) -> Connection:
        """A :class:`Connection` handle on the registered ``name`` (the token is checked)."""
        self.get(name, auth_token)
        return Connection(name, auth_token, registry=self)

    @contextlib.contextmanager
    def _reserve(self, name: str) -> Iterator[None]:
        """Hold ``name`` while its connection is created (a concurrent create is refused)."""
        with self._lock:
            self._refuse_taken(name)
            self._reserved.add(name)
        try:
            yield
        finally:
            with self._lock:
                self._reserved.discard(name)

    def _refuse_taken(self, name: str) -> None:
        existing = self._clients.get(name)
        if existing is not None:
            _refuse_name(name, existing)
        if name in self._reserved:
            raise NameInUseError(f"Client {name} is being created by another call.")

    # -- the endpoints ------------------------------------------------------------------------

    def create_connection(
        self,
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
        """Open a named connection to ``provider`` and return its :class:`Connection` at
        once (after authentication). Provider parameters (``symbol``, ``asset_type``, ``feed``,
        ``api_key``, ...) go in ``kwargs``; so do the client options (``tz``, ``record_file``,
        ``max_reconnects``, ``stale_timeout``, ``connect_timeout``: see
        :class:`~obbws_jupyter.ClientOptions`), or all at once as ``options=ClientOptions(...)``.
        A provider parameter whose name is also a client option's goes in
        ``provider_params={...}`` (as a keyword it is refused as ambiguous). Every argument is
        checked before anything starts.

        ``if_exists`` says what to do when ``name`` is taken: ``"error"`` (OpenBB's behaviour)
        raises NameInUseError; ``"replace"`` kills the old connection first (so re-running a
        notebook cell works); ``"reuse"`` returns the existing connection when it was created
        with the same provider and parameters, and raises NameInUseError naming the
        differences otherwise.

        ``sinks`` sends the records to more destinations too (see :mod:`obbws_jupyter.sinks`):
        URLs (``"nats://127.0.0.1:4222"``), ``{"url": ..., **options}`` dicts, or Sink objects.
        """
        name = check_name(name)
        auth_token = check_token(auth_token)
        if if_exists not in IF_EXISTS:
            raise InvalidParameterError(
                f"if_exists={if_exists!r} is invalid; use one of {', '.join(map(repr, IF_EXISTS))}."
            )
        standard = {
            "results_file": results_file,
            "save_results": save_results,
            "table_name": table_name,
            "limit": limit,
            "sleep_time": sleep_time,
            "connect_kwargs": connect_kwargs,
        }
        spec = get_provider(provider)
        opts, params = _options_and_params(spec, standard, kwargs, options, provider_params)
        signature = _signature(spec, params, opts, auth_token)
        if not isinstance(broadcast_host, str) or not broadcast_host:
            raise InvalidParameterError(
                f"broadcast_host must be a host name or address, got {broadcast_host!r}."
            )
        broadcast_port = check_port(broadcast_port, "broadcast_port")
        start_broadcast = check_bool("start_broadcast", start_broadcast)
        wanted_sinks = _build_sinks(sinks)
        if if_exists == "reuse" and name in self:
            return self._reuse(name, signature)
        if if_exists == "replace" and name in self:
            self.kill(name, auth_token)
        with self._reserve(name):
            client = WebSocketClient(
                provider, name, auth_token=auth_token, options=opts, provider_params=params
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
            with self._lock:
                self._clients[name] = client
                self._signatures[name] = signature
        return Connection(name, auth_token, registry=self)

    def _reuse(self, name: str, signature: dict[str, Any]) -> Connection:
        self.get(name, signature.get("auth_token"))  # the token is checked before anything is said
        with self._lock:
            existing = self._signatures.get(name, {})
        differ = sorted(
            k for k in signature.keys() | existing.keys() if signature.get(k) != existing.get(k)
        )
        if differ:
            verb = "differs" if len(differ) == 1 else "differ"
            raise NameInUseError(
                f"Client {name} exists with other parameters ({', '.join(differ)} {verb}), so "
                "if_exists='reuse' cannot return it; use if_exists='replace' or another name."
            )
        return Connection(name, signature.get("auth_token"), registry=self)

    def get_client(self, name: str, auth_token: str | None = None) -> WebSocketClient:
        """The live :class:`WebSocketClient` behind a named connection."""
        return self.get(name, auth_token)

    def get_client_status(
        self, name: str = "all", auth_token: str | None = None
    ) -> list[WebSocketConnectionStatus]:
        """Status of one connection, or of ``"all"`` (those without a token, or whose token is
        ``auth_token``); for "all" a :class:`~obbws_jupyter.models.StatusList` whose ``hidden``
        says how many connections were left out because of their ``auth_token``."""
        if name != "all":
            return StatusList([self.get(name, auth_token).status()])
        clients = self.clients()
        if not clients:
            raise UnknownConnectionError("No active connections.")
        visible = [c for c in clients if c.check_token(auth_token)]
        result = StatusList([c.status() for c in visible], hidden=len(clients) - len(visible))
        if result.hidden:
            log.info("get_client_status('all'): %s", result.hidden_note)
        return result

    def get_results(self, name: str, auth_token: str | None = None) -> pd.DataFrame:
        """Every stored record of the connection, oldest first, as a typed DataFrame."""
        return self.get(name, auth_token).get_results()

    def clear_results(self, name: str, auth_token: str | None = None) -> str:
        """Delete the stored records (the stream goes on; ids keep growing)."""
        count = self.get(name, auth_token).clear_results()
        return f"{count} results cleared from {name}."

    def subscribe(
        self, name: str, symbol: str | list[str], auth_token: str | None = None
    ) -> WebSocketConnectionStatus:
        """Subscribe the running connection to more symbols (comma-separated or a list)."""
        client = self.get(name, auth_token)
        client.subscribe(symbol)
        return client.status()

    def unsubscribe(
        self, name: str, symbol: str | list[str], auth_token: str | None = None
    ) -> WebSocketConnectionStatus:
        """Unsubscribe the running connection from symbols."""
        client = self.get(name, auth_token)
        client.unsubscribe(symbol)
        return client.status()

    def stop_connection(
        self, name: str, auth_token: str | None = None
    ) -> WebSocketConnectionStatus:
        """Stop the provider stream; stored rows and the broadcast server stay."""
        client = self.get(name, auth_token)
        client.disconnect()
        return client.status()

    def restart_connection(
        self, name: str, auth_token: str | None = None
    ) -> WebSocketConnectionStatus:
        """Reconnect a stopped stream with its current symbols, into the same results table."""
        if name not in self:
            raise UnknownConnectionError(f"No active client named, {name}. Use create_connection.")
        client = self.get(name, auth_token)
        client.connect()
        return client.status()

    def start_broadcasting(
        self,
        name: str,
        auth_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_BROADCAST_PORT,
        **server_kwargs: Any,
    ) -> WebSocketConnectionStatus:
        """Serve the connection's records on ``ws://host:port`` (see ``obbws_jupyter.listen``)."""
        client = self.get(name, auth_token)
        client.start_broadcasting(host, port, **server_kwargs)
        return client.status()

    def stop_broadcasting(
        self, name: str, auth_token: str | None = None
    ) -> WebSocketConnectionStatus | str:
        """Stop the broadcast server. A connection whose provider stream is stopped too is
        removed (OpenBB's behaviour) and a message says so."""
        client = self.get(name, auth_token)
        if not client.is_broadcasting:
            raise NotBroadcastingError(f"Client {name} not broadcasting.")
        client.stop_broadcasting()
        if not client.is_running:
            self.remove(name, client)
            return f"Client {name} stopped broadcasting and was not running, client removed."
        return client.status()

    def kill(self, name: str, auth_token: str | None = None) -> str:
        """Stop everything of a connection, delete its temporary results file, forget the name.

        Returns ``"Client NAME killed."``; if received rows could not be written (the results
        file was failing), the text says how many were lost (a RuntimeWarning says it too), and
        how many rows its sinks still held and could not deliver (closed together, within one
        10 s deadline).
        Called from a record hook or a ``listen()`` callback (the loop thread), the name is
        forgotten at once and the teardown finishes in the background."""
        if not self.names():
            raise UnknownConnectionError("No connections to kill.")
        client = self.get(name, auth_token)
        if runtime.in_loop_thread():
            self.remove(name, client)
            return f"Client {name} killed (the teardown finishes in the background)."
        lost = self.remove(name, client)
        text = f"Client {name} killed."
        if lost:
            text += (
                f" {lost} received rows could not be written to {client.results_file} and are lost."
            )
        if client.sink_rows_undelivered:
            text += (
                f" Its sinks could not deliver {client.sink_rows_undelivered} rows (dropped; "
                "see the log)."
            )
        return text


_DEFAULT = Registry()


def default_registry() -> Registry:
    """The registry of this process: the one the module functions, the Connection objects
    and the HTTP API share."""
    return _DEFAULT


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


def _options_and_params(
    spec: Any,
    standard: dict[str, Any],
    kwargs: dict[str, Any],
    options: ClientOptions | None,
    provider_params: Mapping[str, Any] | None,
) -> tuple[ClientOptions, dict[str, Any]]:
    """The client options and the provider parameters of one create_connection call. The
    standard arguments count as given unless they are at their defaults (then an explicit
    ``options`` object decides)."""
    given = {k: v for k, v in standard.items() if options is None or not _is_default(k, v)}
    declared = [p.name for p in spec.params]
    return split_options({**given, **kwargs}, options, provider_params, declared)


def _is_default(key: str, value: Any) -> bool:
    default = _STANDARD_DEFAULTS[key]
    return value is default or (type(value) is type(default) and value == default)


def _signature(
    spec: Any, params: dict[str, Any], options: ClientOptions, auth_token: str | None
) -> dict[str, Any]:
    """What makes two create_connection calls "the same connection": the provider, its
    resolved parameters (symbols normalized, as a set) and the client options. Resolving
    also checks the provider parameters before anything starts."""
    resolved = spec.resolve(params, os.environ)
    session = spec.session_class(resolved)
    resolved["symbol"] = frozenset(session.symbols)
    return {"provider": spec.name, "auth_token": auth_token, **resolved, **options.as_dict()}


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
