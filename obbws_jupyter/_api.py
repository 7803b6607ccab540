"""The twelve endpoints of the OpenBB WebSockets Toolkit, as module functions by ``name``.

Each is the method of the same name of this process's registry
(:func:`~obbws_jupyter.default_registry`, a :class:`~obbws_jupyter.Registry`): dropping the
Python variable does not stop a stream; :func:`get_client` / :func:`get_client_status` find it
again and only :func:`kill` (or process exit) ends it. When a connection was created with
``auth_token``, every endpoint call on it must pass the same token (compared in constant time).
"""

from __future__ import annotations

from obbws_jupyter._connections import default_registry

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

_registry = default_registry()  # one per process: these names stay bound to it

clear_results = _registry.clear_results
create_connection = _registry.create_connection
get_client = _registry.get_client
get_client_status = _registry.get_client_status
get_results = _registry.get_results
kill = _registry.kill
restart_connection = _registry.restart_connection
start_broadcasting = _registry.start_broadcasting
stop_broadcasting = _registry.stop_broadcasting
stop_connection = _registry.stop_connection
subscribe = _registry.subscribe
unsubscribe = _registry.unsubscribe


def _names() -> list[str]:
    """The registered names (kept for code written before the registry: use
    ``default_registry().names()``)."""
    return _registry.names()
