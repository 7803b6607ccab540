"""Every exception obbws-jupyter raises on purpose derives from :class:`ObbwsError`.

The tree::

    ObbwsError
    ├── ConfigurationError (ValueError)       bad arguments, caught before anything starts
    │   ├── UnknownProviderError              no provider registered under that name
    │   ├── InvalidParameterError             a parameter has the wrong type or value
    │   │   └── MissingCredentialsError       no API key given, in the environment or OpenBB's file
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

In IPython/Jupyter an ``ObbwsError`` renders as its one message plus a hint
(``_render_traceback_``) instead of a long traceback through library internals; ``%tb`` right
after shows the full traceback, and the ``obbws_jupyter.errors`` logger gets it at DEBUG. The
two lines are coloured as IPython colours its own tracebacks: not with ``--colors=NoColor``,
and in a terminal IPython not when the output is not a terminal (piped, redirected).
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import ClassVar

__all__ = [
    "BroadcastError",
    "ConfigurationError",
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
    "SchemaMismatchError",
    "StoreError",
    "SymbolError",
    "UnauthorizedError",
    "UnknownConnectionError",
    "UnknownProviderError",
    "WrongThreadError",
]


log = logging.getLogger("obbws_jupyter.errors")

_RED, _RESET, _DIM = "\x1b[0;31m", "\x1b[0m", "\x1b[2m"
_TB_HINT = "%tb shows the full traceback."


class ObbwsError(Exception):
    """Root of every error raised by obbws-jupyter."""

    #: one line after the message in IPython: what to try next (subclasses refine it)
    hint: ClassVar[str] = ""

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: the message and a hint the first time; the full traceback when
        shown again (``%tb`` re-renders the same exception object)."""
        if getattr(self, "_obbws_rendered", False):
            return _full_traceback(self)
        self._obbws_rendered = True
        log.debug("%s", type(self).__name__, exc_info=(type(self), self, self.__traceback__))
        hint = f"{self.hint} " if self.hint else ""
        red, dim, reset = (_RED, _DIM, _RESET) if _colour() else ("", "", "")
        return [f"{red}{type(self).__name__}{reset}: {self}", f"{dim}{hint}{_TB_HINT}{reset}"]


def _colour() -> bool:
    """Whether IPython would colour a traceback here: never with its NoColor scheme; in a
    Jupyter kernel yes (the frontend renders ANSI); in a terminal only on a TTY."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    if str(getattr(shell, "colors", "")).lower() == "nocolor":
        return False
    if getattr(shell, "kernel", None) is not None:
        return True
    stdout = sys.stdout
    return bool(getattr(stdout, "isatty", None) and stdout.isatty())


def _full_traceback(error: BaseException) -> list[str]:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return list(
                shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)
            )
    except Exception:  # no IPython, or its formatter failed: the plain traceback will do
        pass
    return "".join(traceback.format_exception(error)).splitlines()


class ConfigurationError(ObbwsError, ValueError):
    """An argument is invalid; nothing was started or written."""


class UnknownProviderError(ConfigurationError):
    """No provider is registered under the requested name."""

    hint = "`obbws providers` lists the installed providers and their parameters."


class InvalidParameterError(ConfigurationError):
    """A parameter has the wrong type or an unsupported value."""


class MissingCredentialsError(InvalidParameterError):
    """A provider needs credentials and none were found (the message names where to put them)."""


class SymbolError(ConfigurationError):
    """A symbol is not valid for this provider, asset type or feed."""


class ConnectionNameError(ObbwsError):
    """A problem with the registry of named connections."""


class NameInUseError(ConnectionNameError):
    """A connection with this name is already registered (the message says what to do)."""


class UnknownConnectionError(ConnectionNameError):
    """No connection is registered under this name."""

    hint = 'obbws.get_client_status("all") lists the open connections.'


class UnauthorizedError(ObbwsError, PermissionError):
    """The connection's ``auth_token`` is missing or wrong."""

    hint = "Pass the connection's auth_token=... to this call."


class ProviderError(ObbwsError):
    """The provider side of a connection failed."""


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (API key)."""


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or the stream gave up reconnecting."""


class NotRunningError(ProviderError):
    """The provider stream of this connection is not running."""

    hint = "conn.restart_connection() starts the stream again."


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
