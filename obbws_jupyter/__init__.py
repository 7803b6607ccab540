"""obbws-jupyter: live market-data websocket streams in a notebook cell.

    import obbws_jupyter as obbws
    conn = obbws.create_connection(provider="demo", name="demo", symbol="btcusd")
    conn.get_results()

The public names load lazily, so importing a submodule (``obbws_jupyter.protocol``, which the
providers use) pulls in no socket, database or widget library.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Warnings logged on the background threads (reconnects, give-ups) must not reach Python's
# last-resort stderr handler, which prints them into whichever cell happens to run. They go
# to the widget's log panel; an application that configures logging still receives them all.
logging.getLogger("obbws_jupyter").addHandler(logging.NullHandler())

_EXPORTS = {
    "BroadcastError": "obbws_jupyter.exceptions",
    "ClientOptions": "obbws_jupyter._options",
    "ConfigurationError": "obbws_jupyter.exceptions",
    "Connection": "obbws_jupyter._connection",
    "ConnectionNameError": "obbws_jupyter.exceptions",
    "InvalidParameterError": "obbws_jupyter.exceptions",
    "MissingCredentialsError": "obbws_jupyter.exceptions",
    "NameInUseError": "obbws_jupyter.exceptions",
    "NotBroadcastingError": "obbws_jupyter.exceptions",
    "NotRunningError": "obbws_jupyter.exceptions",
    "ObbwsError": "obbws_jupyter.exceptions",
    "ObbwsTimeoutError": "obbws_jupyter.exceptions",
    "PortInUseError": "obbws_jupyter.exceptions",
    "ProviderAuthError": "obbws_jupyter.exceptions",
    "ProviderConnectionError": "obbws_jupyter.exceptions",
    "ProviderError": "obbws_jupyter.exceptions",
    "Registry": "obbws_jupyter._connections",
    "SchemaMismatchError": "obbws_jupyter.exceptions",
    "StoreError": "obbws_jupyter.exceptions",
    "StreamState": "obbws_jupyter.models",
    "SymbolError": "obbws_jupyter.exceptions",
    "UnauthorizedError": "obbws_jupyter.exceptions",
    "UnknownConnectionError": "obbws_jupyter.exceptions",
    "UnknownProviderError": "obbws_jupyter.exceptions",
    "WebSocketClient": "obbws_jupyter.client",
    "WebSocketConnectionStatus": "obbws_jupyter.models",
    "WrongThreadError": "obbws_jupyter.exceptions",
    "available_providers": "obbws_jupyter._registry",
    "clear_results": "obbws_jupyter._api",
    "create_connection": "obbws_jupyter._api",
    "dashboard": "obbws_jupyter.widgets",
    "default_registry": "obbws_jupyter._connections",
    "get_client": "obbws_jupyter._api",
    "get_client_status": "obbws_jupyter._api",
    "get_provider": "obbws_jupyter._registry",
    "get_results": "obbws_jupyter._api",
    "kill": "obbws_jupyter._api",
    "listen": "obbws_jupyter.listen",
    "register_provider": "obbws_jupyter._registry",
    "restart_connection": "obbws_jupyter._api",
    "serve_api": "obbws_jupyter.rest",
    "start_broadcasting": "obbws_jupyter._api",
    "stop_broadcasting": "obbws_jupyter._api",
    "stop_connection": "obbws_jupyter._api",
    "subscribe": "obbws_jupyter._api",
    "unsubscribe": "obbws_jupyter._api",
}

__all__ = [
    "BroadcastError",
    "ClientOptions",
    "ConfigurationError",
    "Connection",
    "ConnectionNameError",
    "InvalidParameterError",
    "MissingCredentialsError",
    "NameInUseError",
    "NotBroadcastingError",
    "NotRunningError",
    "ObbwsError",
    "ObbwsTimeoutError",
    "PortInUseError",
    "ProviderAuthError",
    "ProviderConnectionError",
    "ProviderError",
    "Registry",
    "SchemaMismatchError",
    "StoreError",
    "StreamState",
    "SymbolError",
    "UnauthorizedError",
    "UnknownConnectionError",
    "UnknownProviderError",
    "WebSocketClient",
    "WebSocketConnectionStatus",
    "WrongThreadError",
    "__version__",
    "available_providers",
    "clear_results",
    "create_connection",
    "dashboard",
    "default_registry",
    "get_client",
    "get_client_status",
    "get_provider",
    "get_results",
    "kill",
    "listen",
    "register_provider",
    "restart_connection",
    "serve_api",
    "start_broadcasting",
    "stop_broadcasting",
    "stop_connection",
    "subscribe",
    "unsubscribe",
]

if TYPE_CHECKING:
    from obbws_jupyter._api import (
        clear_results,
        create_connection,
        get_client,
        get_client_status,
        get_results,
        kill,
        restart_connection,
        start_broadcasting,
        stop_broadcasting,
        stop_connection,
        subscribe,
        unsubscribe,
    )
    from obbws_jupyter._connection import Connection
    from obbws_jupyter._connections import Registry, default_registry
    from obbws_jupyter._options import ClientOptions
    from obbws_jupyter._registry import available_providers, get_provider, register_provider
    from obbws_jupyter.client import WebSocketClient
    from obbws_jupyter.exceptions import (
        BroadcastError,
        ConfigurationError,
        ConnectionNameError,
        InvalidParameterError,
        MissingCredentialsError,
        NameInUseError,
        NotBroadcastingError,
        NotRunningError,
        ObbwsError,
        ObbwsTimeoutError,
        PortInUseError,
        ProviderAuthError,
        ProviderConnectionError,
        ProviderError,
        SchemaMismatchError,
        StoreError,
        SymbolError,
        UnauthorizedError,
        UnknownConnectionError,
        UnknownProviderError,
        WrongThreadError,
    )
    from obbws_jupyter.listen import listen
    from obbws_jupyter.models import StreamState, WebSocketConnectionStatus
    from obbws_jupyter.rest import serve_api
    from obbws_jupyter.widgets import dashboard


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'obbws_jupyter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
