"""HTTP statuses for the library's exceptions, and the handlers that answer with them.

Every error body is JSON ``{"detail": "<message>"}``; the message is the exception's own,
which never holds a secret. Anything unexpected is a 500 whose detail names the exception
type only: the traceback goes to the server log, never into a response.

==========================================  ======  =========================================
exception                                   status  meaning
==========================================  ======  =========================================
ConfigurationError (bad argument)           400     fix the request
request validation (wrong type, missing)    400     fix the request
UnauthorizedError, no token given           401     send the connection's ``auth_token``
UnauthorizedError, wrong token              403     the token does not match
UnknownConnectionError                      404     no connection by that name
NameInUseError                              409     pick another name, or kill the old one
NotRunningError, NotBroadcastingError       409     the connection is not in that state
PortInUseError, StoreError                  409     the port / results file is taken or unusable
ProviderAuthError, ProviderConnectionError  502     the provider refused or cannot be reached
BroadcastError (other)                      503     the broadcast server could not start
ObbwsTimeoutError                           504     the provider did not answer in time
==========================================  ======  =========================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from obbws_jupyter.exceptions import (
    BroadcastError,
    ConfigurationError,
    NameInUseError,
    NotBroadcastingError,
    NotRunningError,
    ObbwsError,
    ObbwsTimeoutError,
    PortInUseError,
    ProviderError,
    StoreError,
    UnauthorizedError,
    UnknownConnectionError,
)

__all__ = ["ERROR_RESPONSES", "ApiError", "ErrorBody", "install_handlers", "status_for"]

log = logging.getLogger("obbws_jupyter.rest")

# Most specific first: the first class that matches decides.
_STATUSES: tuple[tuple[type[ObbwsError], int], ...] = (
    (ConfigurationError, 400),
    (UnknownConnectionError, 404),
    (NameInUseError, 409),
    (NotRunningError, 409),
    (NotBroadcastingError, 409),
    (PortInUseError, 409),
    (StoreError, 409),
    (ProviderError, 502),
    (BroadcastError, 503),
    (ObbwsTimeoutError, 504),
)


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str


class ApiError(Exception):
    """An HTTP error raised by the HTTP layer itself (API key, unknown format, ...)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def status_for(exc: ObbwsError, token_given: bool) -> int:
    """The HTTP status for a library exception (``token_given``: the request carried an
    ``auth_token``, which tells a missing token (401) from a wrong one (403))."""
    if isinstance(exc, UnauthorizedError):
        return 403 if token_given else 401
    for cls, status in _STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


def _describe(text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


#: The error statuses every route may answer with, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _describe("Bad input: a parameter is missing, of the wrong type or invalid."),
    401: _describe("The connection has an auth_token (or the server an API key): send it."),
    403: _describe("The auth_token (or API key) sent does not match."),
    404: _describe("No connection by that name."),
    409: _describe("Name in use, or the connection/port/results file is not in that state."),
    502: _describe("The provider refused the credentials or could not be reached."),
    503: _describe("The broadcast server could not be started."),
    504: _describe("The provider did not answer in time."),
}


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _on_obbws_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ObbwsError)
    token_given = bool(getattr(request.state, "auth_token_given", False))
    status = status_for(exc, token_given)
    if status == 500:
        log.error("%s %s failed: %r", request.method, request.url.path, exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _json(status, str(exc), headers)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.detail, exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default (422) echoes the input, which may be a secret: name the problem only.
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return _json(400, "Invalid request: " + "; ".join(problems) + ".")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=exc)
    return _json(500, f"Internal error ({type(exc).__name__}); the server log has the details.")


def install_handlers(app: FastAPI) -> None:
    """Answer every error with its status and a JSON ``detail``."""
    app.add_exception_handler(ObbwsError, _on_obbws_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
