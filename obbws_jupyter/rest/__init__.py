"""The HTTP API: the endpoints of ``obbws_jupyter`` over HTTP, for curl, dashboards, other
languages and OpenBB clients.

Routes mirror OpenBB's ``/api/v1/websockets/<endpoint>`` (GET with a query string; also POST
with a JSON body for ``create_connection``): ``create_connection``, ``get_client_status``,
``get_results`` (``limit``, ``offset``, ``since_id``, ``format=json|csv|parquet``),
``clear_results``, ``subscribe``, ``unsubscribe``, ``stop_connection``,
``restart_connection``, ``start_broadcasting``, ``stop_broadcasting``, ``kill``, and
``stream`` (server-sent events of new records). ``get_client`` stays Python-only.

Bodies are OpenBB's envelope: ``{"results": ..., "provider": ..., "warnings": null,
"extra": {}}`` where ``results`` is the connection status, a list of statuses, the records,
or a message. Records carry ISO 8601 dates, exactly as the broadcast sends them. Errors are
``{"detail": "..."}`` with 400 (bad input), 401 (token missing), 403 (token wrong), 404
(unknown name), 409 (name in use, or wrong state), 502 (provider failed), 503 (broadcast
failed) or 504 (timeout).

A connection's ``auth_token`` travels as the query parameter ``auth_token`` or as
``Authorization: Bearer``. A server started with an API key wants it in ``X-API-Key`` (or as
the bearer token, the ``auth_token`` then going in the query) on every request.

Start it from a notebook with ``obbws_jupyter.serve_api(port=8000)`` (the same connections
as the notebook's) or from a shell with ``obbws serve``. Needs the ``api`` extra
(``pip install 'obbws-jupyter[api]'``).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The HTTP API needs FastAPI and uvicorn: pip install 'obbws-jupyter[api]'."
    ) from exc

from obbws_jupyter.rest._app import PREFIX, create_app
from obbws_jupyter.rest._seam import Endpoints, default_endpoints
from obbws_jupyter.rest._server import ApiServer, serve_api

__all__ = ["PREFIX", "ApiServer", "Endpoints", "create_app", "default_endpoints", "serve_api"]
