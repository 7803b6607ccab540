"""The FastAPI application: the endpoints under ``/api/v1/websockets/``.

Each route takes the endpoint's parameters (OpenBB's names, defaults and text flags such as
``limit=None`` or ``save_results=True``), calls that endpoint on the :class:`Endpoints`
object given to :func:`create_app` (by default this process's registry), and
answers OpenBB's envelope ``{"results": ..., "provider": ..., "warnings": null, "extra": {}}``.
Routes are plain ``def`` functions: FastAPI runs them in its thread pool, so an endpoint that
waits for the provider never blocks the HTTP server's loop.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse

from obbws_jupyter import __version__
from obbws_jupyter._options import ClientOptions
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.models import WebSocketConnectionStatus
from obbws_jupyter.rest._errors import ERROR_RESPONSES, install_handlers
from obbws_jupyter.rest._models import CreateConnectionBody, Envelope, Record, envelope
from obbws_jupyter.rest._results import FORMATS, MAX_INT, Page, parse_page_limit
from obbws_jupyter.rest._seam import Endpoints, default_endpoints
from obbws_jupyter.rest._security import ApiKeyMiddleware, auth_token
from obbws_jupyter.rest._sse import Feeds, event_stream

__all__ = ["PREFIX", "create_app", "create_from_params"]

PREFIX = "/api/v1/websockets"

Token = Annotated[str | None, Depends(auth_token)]
Name = Annotated[
    str,
    Query(description="The connection's name (as given to create_connection).", examples=["demo"]),
]
Symbols = Annotated[
    list[str],
    Query(description="Symbols, comma-separated (or the parameter repeated).", examples=["ethusd"]),
]
StatusEnvelope = Envelope[WebSocketConnectionStatus]
MessageEnvelope = Envelope[str]

# Client options settable over HTTP (typed); the client's other options are refused. So are
# sinks: a sink URL would let an HTTP caller write files anywhere the server may, or make it
# dial any host (add them from Python: conn.add_sink).
CLIENT_OPTIONS = ("tz", "connect_timeout", "max_reconnects", "stale_timeout")
_PYTHON_ONLY = {"options", "provider_params", "sinks"}
_CLIENT_ONLY = (ClientOptions.names() | _PYTHON_ONLY) - set(CLIENT_OPTIONS)
_STANDARD = frozenset(CreateConnectionBody.model_fields)


def _provider_params(given: dict[str, Any]) -> dict[str, Any]:
    """Parameters beyond the standard ones go to the provider; client-only options cannot be
    set over HTTP (they take objects or paths on the server)."""
    refused = sorted(k for k in given if k in _CLIENT_ONLY)
    if refused:
        raise InvalidParameterError(
            f"{', '.join(refused)} cannot be set through the HTTP API; "
            "create the connection from Python for that."
        )
    return given


def _join(symbols: list[str] | str | None) -> str | None:
    if symbols is None or isinstance(symbols, str):
        return symbols
    return ",".join(symbols)


def _status_envelope(endpoints: Endpoints, name: str, token: str | None) -> dict[str, Any]:
    return envelope(endpoints.get_client_status(name, token)[0])


def create_from_params(
    endpoints: Endpoints, given: dict[str, Any], token: str | None
) -> dict[str, Any]:
    """create_connection from request parameters (standard, client and provider ones
    mixed, as a query string or a JSON body brings them); returns the status envelope."""
    if "symbol" in given:
        given["symbol"] = _join(given["symbol"])
    provider, name = given.pop("provider"), given.pop("name")
    given.pop("auth_token", None)
    if given.get("broadcast_port") is None:
        given.pop("broadcast_port", None)  # the default port may move to the next free one
    params = _provider_params({k: v for k, v in given.items() if k not in _STANDARD})
    standard = {k: v for k, v in given.items() if k in _STANDARD}
    endpoints.create_connection(provider, name, auth_token=token, **standard, **params)
    return _status_envelope(endpoints, name, token)


def _routes(endpoints: Endpoints, feeds: Feeds, keepalive: float) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["websockets"], responses=ERROR_RESPONSES)

    @router.get(
        "/create_connection", response_model=StatusEnvelope, operation_id="create_connection"
    )
    def create_connection(
        request: Request,
        provider: Annotated[str, Query(description="Provider name, e.g. demo.", examples=["demo"])],
        name: Annotated[
            str, Query(description="Your name for the connection (unique).", examples=["demo"])
        ],
        token: Token,
        results_file: Annotated[
            str | None, Query(description="DuckDB file for the records; a temp file if absent.")
        ] = None,
        save_results: Annotated[bool, Query(description="Keep results_file after kill.")] = False,
        table_name: Annotated[str, Query(description="Table of the results file.")] = "records",
        limit: Annotated[
            str,
            Query(
                description="Rows kept (newest); None keeps every row.", examples=["1000", "None"]
            ),
        ] = "1000",
        sleep_time: Annotated[
            float, Query(description="Refresh interval of live views, seconds.", gt=0)
        ] = 0.25,
        broadcast_host: Annotated[str, Query(description="Host of the broadcast server.")] = (
            "127.0.0.1"
        ),
        broadcast_port: Annotated[
            int | None,
            Query(
                description="Port of the broadcast server; if absent 6666, or the next free port.",
                ge=0,
                le=65535,
            ),
        ] = None,
        start_broadcast: Annotated[bool, Query(description="Start broadcasting at once.")] = False,
        connect_kwargs: Annotated[
            str | None,
            Query(
                description="Options for websockets.connect, as a JSON object.",
                examples=['{"ping_interval": 10}'],
            ),
        ] = None,
        symbol: Annotated[
            list[str] | None,
            Query(description="Symbols, comma-separated.", examples=["btcusd,ethusd"]),
        ] = None,
        asset_type: Annotated[
            str | None, Query(description="Provider asset type.", examples=["crypto"])
        ] = None,
        feed: Annotated[str | None, Query(description="Provider feed.", examples=["trade"])] = None,
        tz: Annotated[str | None, Query(description="Time zone of dates.")] = None,
        connect_timeout: Annotated[
            float | None, Query(description="Seconds to connect (default 15).", gt=0)
        ] = None,
        max_reconnects: Annotated[
            int | None, Query(description="Reconnect attempts (default 10).", ge=0, le=MAX_INT)
        ] = None,
        stale_timeout: Annotated[
            float | None, Query(description="Seconds without data = dead stream.", gt=0)
        ] = None,
    ) -> Any:
        """Open a named connection to a provider (``obbws_jupyter.create_connection``).

        Query parameters not listed here are provider parameters (``rate`` of the demo
        provider, ...), checked by the provider. Credentials are better left to the
        environment or OpenBB's user settings than put in a URL."""
        given = {
            "provider": provider,
            "name": name,
            "results_file": results_file,
            "save_results": save_results,
            "table_name": table_name,
            "limit": limit,
            "sleep_time": sleep_time,
            "broadcast_host": broadcast_host,
            "broadcast_port": broadcast_port,
            "start_broadcast": start_broadcast,
            "connect_kwargs": connect_kwargs,
            "symbol": symbol,
            "asset_type": asset_type,
            "feed": feed,
            "tz": tz,
            "connect_timeout": connect_timeout,
            "max_reconnects": max_reconnects,
            "stale_timeout": stale_timeout,
        }
        given = {k: v for k, v in given.items() if v is not None}  # absent: the default applies
        for key in request.query_params:
            if key not in given and key != "auth_token":
                given[key] = request.query_params[key]
        return create_from_params(endpoints, given, token)

    @router.post(
        "/create_connection", response_model=StatusEnvelope, operation_id="create_connection_post"
    )
    def create_connection_post(body: Annotated[CreateConnectionBody, Body()], token: Token) -> Any:
        """``create_connection`` with a JSON body (the same keys; values keep their JSON
        types, so ``limit`` may be null and ``connect_kwargs`` an object)."""
        given = body.model_dump(include=body.model_fields_set)
        given.update(body.model_extra or {})
        if body.auth_token is not None:
            token = body.auth_token
        given["provider"], given["name"] = body.provider, body.name
        return create_from_params(endpoints, given, token)

    @router.get(
        "/get_client_status",
        response_model=Envelope[list[WebSocketConnectionStatus]],
        operation_id="get_client_status",
    )
    def get_client_status(
        token: Token,
        name: Annotated[
            str, Query(description="A connection's name, or all.", examples=["all"])
        ] = "all",
    ) -> Any:
        """Status of one connection, or of all (those without a token, or with this one)."""
        return envelope(endpoints.get_client_status(name, token))

    @router.get(
        "/get_results",
        response_model=None,
        operation_id="get_results",
        responses={
            200: {
                "model": Envelope[list[Record]],
                "description": "The records, oldest first (JSON); or a CSV or Parquet file.",
                "content": {FORMATS["csv"]: {}, FORMATS["parquet"]: {}},
            }
        },
    )
    def get_results(
        name: Name,
        token: Token,
        limit: Annotated[
            str | None,
            Query(description="At most this many records; None for all.", examples=["100"]),
        ] = None,
        offset: Annotated[int, Query(description="Skip this many records.", ge=0, le=MAX_INT)] = 0,
        since_id: Annotated[
            int | None,
            Query(
                description="Only records with a larger id (poll with the last id seen).",
                ge=-MAX_INT,
                le=MAX_INT,
            ),
        ] = None,
        format: Annotated[
            Literal["json", "csv", "parquet"], Query(description="Body format.")
        ] = "json",
    ) -> StreamingResponse:
        """The stored records, oldest first: JSON envelope, CSV or Parquet, streamed."""
        count = parse_page_limit(limit)
        client = endpoints.get_client(name, token)
        page = Page(client, since_id=since_id, offset=offset, limit=count)
        body: Iterator[bytes]
        headers = {}
        if format == "json":
            body = page.json_body(client.provider)
        else:
            body = page.csv_body() if format == "csv" else page.parquet_body()
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100]  # never a header injection
            headers["Content-Disposition"] = f'attachment; filename="{stem}.{format}"'
        return StreamingResponse(body, media_type=FORMATS[format], headers=headers or None)

    @router.get("/clear_results", response_model=MessageEnvelope, operation_id="clear_results")
    def clear_results(name: Name, token: Token) -> Any:
        """Delete the stored records (the stream goes on; ids keep growing)."""
        return envelope(endpoints.clear_results(name, token))

    @router.get("/subscribe", response_model=StatusEnvelope, operation_id="subscribe")
    def subscribe(name: Name, symbol: Symbols, token: Token) -> Any:
        """Subscribe the running connection to more symbols."""
        return envelope(endpoints.subscribe(name, ",".join(symbol), token))

    @router.get("/unsubscribe", response_model=StatusEnvelope, operation_id="unsubscribe")
    def unsubscribe(name: Name, symbol: Symbols, token: Token) -> Any:
        """Unsubscribe the running connection from symbols."""
        return envelope(endpoints.unsubscribe(name, ",".join(symbol), token))

    @router.get("/stop_connection", response_model=StatusEnvelope, operation_id="stop_connection")
    def stop_connection(name: Name, token: Token) -> Any:
        """Stop the provider stream; stored rows and the broadcast server stay."""
        return envelope(endpoints.stop_connection(name, token))

    @router.get(
        "/restart_connection", response_model=StatusEnvelope, operation_id="restart_connection"
    )
    def restart_connection(name: Name, token: Token) -> Any:
        """Reconnect a stopped stream with its current symbols, into the same table."""
        return envelope(endpoints.restart_connection(name, token))

    @router.get(
        "/start_broadcasting", response_model=StatusEnvelope, operation_id="start_broadcasting"
    )
    def start_broadcasting(
        name: Name,
        token: Token,
        host: Annotated[str, Query(description="Host to serve on.")] = "127.0.0.1",
        port: Annotated[
            int | None,
            Query(description="Port; if absent 6666, or the next free port.", ge=0, le=65535),
        ] = None,
    ) -> Any:
        """Serve the connection's records on ``ws://host:port`` (``obbws listen``)."""
        if port is None:
            return envelope(endpoints.start_broadcasting(name, token, host))
        return envelope(endpoints.start_broadcasting(name, token, host, port))

    @router.get(
        "/stop_broadcasting",
        response_model=Envelope[WebSocketConnectionStatus | str],
        operation_id="stop_broadcasting",
    )
    def stop_broadcasting(name: Name, token: Token) -> Any:
        """Stop the broadcast server (a connection whose stream is stopped too is removed)."""
        return envelope(endpoints.stop_broadcasting(name, token))

    @router.get("/kill", response_model=MessageEnvelope, operation_id="kill")
    def kill(name: Name, token: Token) -> Any:
        """Stop everything of a connection, delete its temporary results file, forget it."""
        return envelope(endpoints.kill(name, token))

    @router.get(
        "/stream",
        response_model=None,
        operation_id="stream",
        responses={
            200: {"description": "Server-sent events", "content": {"text/event-stream": {}}}
        },
    )
    def stream(
        name: Name,
        token: Token,
        since_id: Annotated[
            int | None,
            Query(
                description="First send stored records with a larger id.", ge=-MAX_INT, le=MAX_INT
            ),
        ] = None,
        last_event_id: Annotated[int | None, Header(ge=-MAX_INT, le=MAX_INT)] = None,
    ) -> StreamingResponse:
        """New records as server-sent events (for clients without websockets)."""
        client = endpoints.get_client(name, token)
        start = since_id if since_id is not None else last_event_id
        return StreamingResponse(
            event_stream(feeds, client, start, keepalive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


def create_app(
    endpoints: Endpoints | None = None,
    *,
    api_key: str | None = None,
    sse_keepalive: float = 15.0,
    sse_max_queue: int = 10_000,
) -> FastAPI:
    """The HTTP API over ``endpoints`` (default: this process's connections).

    ``api_key``: when set, every request must carry it (``X-API-Key`` or bearer).
    ``sse_keepalive``: seconds between keep-alive comments of an idle event stream;
    ``sse_max_queue``: records an event-stream client may fall behind before it is dropped.
    """
    from obbws_jupyter import rest

    feeds = Feeds(sse_max_queue)
    app = FastAPI(
        title="obbws-jupyter HTTP API",
        version=__version__,
        description=rest.__doc__ or "",
        openapi_tags=[{"name": "websockets", "description": "The endpoints, by connection name."}],
    )
    app.state.feeds = feeds
    chosen = endpoints if endpoints is not None else default_endpoints()
    app.include_router(_routes(chosen, feeds, sse_keepalive))
    install_handlers(app)
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app
