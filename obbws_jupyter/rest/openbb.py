"""The OpenBB Platform plug-in: ``obb.websockets.*`` and OpenBB's ``/api/v1/websockets/*``.

Installed with the ``openbb`` extra, the entry point ``websockets`` of the group
``openbb_core_extension`` exposes :data:`router`, an openbb-core ``Router``. OpenBB builds
``obb.websockets`` (and its REST routes) from it, so::

    from openbb import obb
    obb.websockets.create_connection(provider="demo", name="demo", symbol="btcusd")
    obb.websockets.get_results("demo").to_df()
    obb.websockets.kill("demo")

Each command calls the endpoint of the same name through the same :class:`Endpoints` seam as
our own HTTP API, in a worker thread (an endpoint waits for the provider; OpenBB's API loop
must not), and returns what OpenBB's toolkit returns: an ``OBBject`` whose ``results`` is
the connection status, the list of statuses, the records, or a message. Errors become
OpenBB's: ``UnauthorizedError`` for a token problem, ``EmptyDataError`` when there are no
records yet, ``OpenBBError`` (with our message) for the rest.

This module does not use ``from __future__ import annotations``: openbb-core reads each
command's annotations as objects to build its API and its Python package.
"""

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from openbb_core.app.model.abstract.error import OpenBBError
from openbb_core.app.model.obbject import OBBject
from openbb_core.app.router import Router
from openbb_core.provider.abstract.data import Data
from openbb_core.provider.utils.errors import EmptyDataError
from openbb_core.provider.utils.errors import UnauthorizedError as OpenBBUnauthorizedError

from obbws_jupyter.exceptions import ObbwsError, UnauthorizedError
from obbws_jupyter.models import WebSocketConnectionStatus
from obbws_jupyter.rest._app import create_from_params
from obbws_jupyter.rest._seam import Endpoints, default_endpoints

__all__ = ["router"]

T = TypeVar("T")

router = Router(prefix="", description="Live market-data websocket streams (obbws-jupyter).")

#: Which endpoints the commands call; tests may point it elsewhere.
ENDPOINTS: Callable[[], Endpoints] = default_endpoints


async def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run the endpoint ``name`` in a worker thread; our errors become OpenBB's."""
    return await _in_thread(getattr(ENDPOINTS(), name), *args, **kwargs)


async def _in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(partial(function, *args, **kwargs))
    except UnauthorizedError as exc:
        raise OpenBBUnauthorizedError(str(exc)) from exc
    except ObbwsError as exc:
        raise OpenBBError(str(exc)) from exc


def _status(status: WebSocketConnectionStatus) -> OBBject[WebSocketConnectionStatus]:
    return OBBject(results=status, provider=status.provider or None)


@router.command(methods=["GET"])
async def create_connection(
    name: str,
    provider: str | None = None,
    auth_token: str | None = None,
    results_file: str | None = None,
    save_results: bool = False,
    table_name: str = "records",
    limit: int | str | None = 1000,
    sleep_time: float = 0.25,
    broadcast_host: str = "127.0.0.1",
    broadcast_port: int | None = None,
    start_broadcast: bool = False,
    connect_kwargs: str | None = None,
    symbol: str | None = None,
    asset_type: str | None = None,
    feed: str | None = None,
    **kwargs: Any,
) -> OBBject[WebSocketConnectionStatus]:
    """Open a named connection to an obbws-jupyter provider (demo, replay, ...): ``provider``
    is required (OpenBB's builder puts it last, hence its None default).

    The stream runs in the background and is stored in DuckDB; ``limit`` rows are kept
    (None keeps all). Other keyword arguments are provider parameters.
    """
    # None means "not given", except for limit, where it keeps every row (as in Python)
    given = {k: v for k, v in locals().items() if k != "kwargs" and (v is not None or k == "limit")}
    given.update(kwargs)
    # the same path as the HTTP API's create_connection (provider parameters, default port)
    body = await _in_thread(create_from_params, ENDPOINTS(), given, auth_token)
    return _status(body["results"])


@router.command(methods=["GET"])
async def get_results(name: str, auth_token: str | None = None) -> OBBject[list[Data]]:
    """Every stored record of the connection, oldest first (dates tz-aware)."""
    frame = await _call("get_results", name, auth_token)
    if frame.empty:
        raise EmptyDataError(f"No results recorded for client {name}.")
    records = [Data.model_validate(row) for row in frame.to_dict("records")]
    statuses = await _call("get_client_status", name, auth_token)
    return OBBject(results=records, provider=statuses[0].provider or None)


@router.command(methods=["GET"])
async def clear_results(name: str, auth_token: str | None = None) -> OBBject[str]:
    """Delete the stored records (the stream goes on; ids keep growing)."""
    return OBBject(results=await _call("clear_results", name, auth_token))


@router.command(methods=["GET"])
async def subscribe(
    name: str, symbol: str, auth_token: str | None = None
) -> OBBject[WebSocketConnectionStatus]:
    """Subscribe the running connection to more symbols (comma-separated)."""
    return _status(await _call("subscribe", name, symbol, auth_token))


@router.command(methods=["GET"])
async def unsubscribe(
    name: str, symbol: str, auth_token: str | None = None
) -> OBBject[WebSocketConnectionStatus]:
    """Unsubscribe the running connection from symbols."""
    return _status(await _call("unsubscribe", name, symbol, auth_token))


@router.command(methods=["GET"])
async def get_client_status(
    name: str = "all", auth_token: str | None = None
) -> OBBject[list[WebSocketConnectionStatus]]:
    """Status of one connection, or of all."""
    statuses = await _call("get_client_status", name, auth_token)
    return OBBject(results=statuses)


@router.command(methods=["GET"])
async def stop_connection(
    name: str, auth_token: str | None = None
) -> OBBject[WebSocketConnectionStatus]:
    """Stop the provider stream; stored rows and the broadcast server stay."""
    return _status(await _call("stop_connection", name, auth_token))


@router.command(methods=["GET"])
async def restart_connection(
    name: str, auth_token: str | None = None
) -> OBBject[WebSocketConnectionStatus]:
    """Reconnect a stopped stream with its current symbols."""
    return _status(await _call("restart_connection", name, auth_token))


@router.command(methods=["GET"])
async def start_broadcasting(
    name: str,
    auth_token: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> OBBject[WebSocketConnectionStatus]:
    """Serve the connection's records on ws://host:port."""
    extra = (port,) if port is not None else ()
    return _status(await _call("start_broadcasting", name, auth_token, host, *extra))


@router.command(methods=["GET"])
async def stop_broadcasting(
    name: str, auth_token: str | None = None
) -> OBBject[WebSocketConnectionStatus | str]:
    """Stop the broadcast server (a connection that is stopped too is removed)."""
    result = await _call("stop_broadcasting", name, auth_token)
    provider = result.provider if isinstance(result, WebSocketConnectionStatus) else None
    return OBBject(results=result, provider=provider or None)


@router.command(methods=["GET"])
async def kill(name: str, auth_token: str | None = None) -> OBBject[str]:
    """Stop everything of a connection and forget it."""
    return OBBject(results=await _call("kill", name, auth_token))
