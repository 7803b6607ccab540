"""Every exception obbws-jupyter raises on purpose derives from :class:`ObbwsError`.

The tree::

    ObbwsError
    ├── ConfigurationError (ValueError)       bad arguments, caught before anything starts
    │   ├── UnknownProviderError              no provider registered under that name
    │   ├── InvalidParameterError             a parameter has the wrong type or value
    │   └── SymbolError                       a symbol the provider cannot subscribe to
    ├── ConnectionNameError (KeyError-free)   registry problems
    │   ├── NameInUseError                    create_connection with a name already registered
    │   └── UnknownConnectionError            an endpoint named a connection that does not exist
    ├── UnauthorizedError (PermissionError)   missing or wrong ``auth_token`` for a connection
    ├── ProviderError                         the provider side failed
    │   ├── ProviderAuthError                 the provider rejected the credentials
    │   ├── ProviderConnectionError           the provider could not be reached / stream gave up
    │   └── NotRunningError                   the provider stream is stopped
    ├── BroadcastError                        the local broadcast server failed
    │   ├── PortInUseError (OSError)          an explicitly requested port is taken
    │   └── NotBroadcastingError              stop_broadcasting on a connection that is not
    ├── StoreError                            the DuckDB results file
    │   └── SchemaMismatchError               an existing table does not match the provider
    ├── ObbwsTimeoutError (TimeoutError)      a call did not finish in time
    └── WrongThreadError (RuntimeError)       a blocking call made on the obbws loop thread

Messages say what was wrong and what to do about it. They never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "BroadcastError",
    "ConfigurationError",
    "ConnectionNameError",
    "InvalidParameterError",
    "NameInUseError",
    "NotBroadcastingError",
    "NotRunningError",
    "ObbwsError",
    "ObbwsTimeoutError",
    "PortInUseError",
    "ProviderAuthError",
    "ProviderConnectionError",
    "ProviderError",
    "SchemaMismatchError",
    "StoreError",
    "SymbolError",
    "UnauthorizedError",
    "UnknownConnectionError",
    "UnknownProviderError",
    "WrongThreadError",
]


class ObbwsError(Exception):
    """Root of every error raised by obbws-jupyter."""


class ConfigurationError(ObbwsError, ValueError):
    """An argument is invalid; nothing was started or written."""


class UnknownProviderError(ConfigurationError):
    """No provider is registered under the requested name."""


class InvalidParameterError(ConfigurationError):
    """A parameter has the wrong type or an unsupported value."""


class SymbolError(ConfigurationError):
    """A symbol is not valid for this provider, asset type or feed."""


class ConnectionNameError(ObbwsError):
    """A problem with the registry of named connections."""


class NameInUseError(ConnectionNameError):
    """A connection with this name is already registered."""


class UnknownConnectionError(ConnectionNameError):
    """No connection is registered under this name."""


class UnauthorizedError(ObbwsError, PermissionError):
    """The connection's ``auth_token`` is missing or wrong."""


class ProviderError(ObbwsError):
    """The provider side of a connection failed."""


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (API key)."""


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or the stream gave up reconnecting."""


class NotRunningError(ProviderError):
    """The provider stream of this connection is not running."""


class BroadcastError(ObbwsError):
    """The local broadcast server failed."""


class PortInUseError(BroadcastError, OSError):
    """The requested broadcast port is already taken."""


class NotBroadcastingError(BroadcastError):
    """The connection is not broadcasting."""


class StoreError(ObbwsError):
    """The DuckDB results file could not be used."""


class SchemaMismatchError(StoreError):
    """An existing results table has columns that do not match the provider's records."""


class ObbwsTimeoutError(ObbwsError, TimeoutError):
    """An operation on the background loop did not finish in time."""


class WrongThreadError(ObbwsError, RuntimeError):
    """A blocking call was made on the obbws loop thread (inside a record hook or a background
    ``listen()`` callback), where waiting for the loop would deadlock it."""
