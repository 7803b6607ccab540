"""The one place where the HTTP layer meets the endpoints: an ``Endpoints`` object.

Every route calls a function of this object by the endpoint's name, with the endpoint's own
parameters; the endpoint does the checking (``auth_token``, names, arguments). The default is
this process's :class:`~obbws_jupyter.Registry` (:func:`~obbws_jupyter.default_registry`), the
one the module functions and the ``Connection`` objects use, so a notebook and the HTTP API
drive the same connections; ``create_app(Registry())`` serves an isolated set instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from obbws_jupyter.client import WebSocketClient
    from obbws_jupyter.models import WebSocketConnectionStatus

__all__ = ["Endpoints", "default_endpoints"]


class Endpoints(Protocol):
    """The endpoint functions the routes call (a ``Registry`` has them all)."""

    def create_connection(self, provider: str, name: str, **kwargs: Any) -> Any: ...

    def get_client(self, name: str, auth_token: str | None = None) -> WebSocketClient: ...

    def get_client_status(
        self, name: str = "all", auth_token: str | None = None
    ) -> list[WebSocketConnectionStatus]: ...

    def get_results(self, name: str, auth_token: str | None = None) -> pd.DataFrame: ...

    def clear_results(self, name: str, auth_token: str | None = None) -> str: ...

    def subscribe(self, name: str, symbol: str, auth_token: str | None = None) -> Any: ...

    def unsubscribe(self, name: str, symbol: str, auth_token: str | None = None) -> Any: ...

    def stop_connection(
        self, name: str, auth_token: str | None = None
    ) -> WebSocketConnectionStatus: ...

    def restart_connection(
        self, name: str, auth_token: str | None = None
    ) -> WebSocketConnectionStatus: ...

    def start_broadcasting(
        self, name: str, auth_token: str | None = None, *args: Any, **kwargs: Any
    ) -> WebSocketConnectionStatus: ...

    def stop_broadcasting(
        self, name: str, auth_token: str | None = None
    ) -> WebSocketConnectionStatus | str: ...

    def kill(self, name: str, auth_token: str | None = None) -> str: ...


def default_endpoints() -> Endpoints:
    """The process-wide endpoints: :func:`obbws_jupyter.default_registry`."""
    from obbws_jupyter._connections import default_registry

    return default_registry()
