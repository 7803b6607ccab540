"""Who may call the API: the server's API key, and how a connection's ``auth_token`` travels.

Two secrets, kept apart:

- the **API key** guards the whole server (every route, the OpenAPI document too). It is
  required whenever the server listens on anything but loopback. Send it as the header
  ``X-API-Key: KEY`` (or ``Authorization: Bearer KEY``). Missing: 401; wrong: 403.
- a connection's **auth_token** guards that connection. Send it as the query parameter
  ``auth_token=TOKEN`` or as ``Authorization: Bearer TOKEN``; the endpoint checks it.

When the server has an API key and the request has no ``X-API-Key`` header, the bearer header
is the API key, so the ``auth_token`` then travels as the query parameter. Both comparisons
are constant-time; neither secret is logged (uvicorn's logs get the same masking filter as
the rest of the library).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ApiKeyMiddleware", "auth_token", "bearer", "is_loopback"]

_BEARER_IS_API_KEY = "obbws_bearer_is_api_key"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer(headers: Any) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if any."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def auth_token(
    request: Request,
    auth_token: Annotated[
        str | None,
        Query(
            description="The connection's auth_token, if it was created with one (or send "
            "it as `Authorization: Bearer TOKEN`).",
        ),
    ] = None,
) -> str | None:
    """The ``auth_token`` of the request: the query parameter, else the bearer header (unless
    the bearer header carried the server's API key). Checked by the endpoint, not here."""
    token = auth_token
    if token is None and not request.scope.get("state", {}).get(_BEARER_IS_API_KEY):
        token = bearer(request.headers)
    request.state.auth_token_given = token is not None
    return token


class ApiKeyMiddleware:
    """Refuse every HTTP request without the server's API key (401) or with a wrong one (403)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-api-key")
        if given is None:
            given = bearer(headers)
            if given is not None:
                scope.setdefault("state", {})[_BEARER_IS_API_KEY] = True
        if given is None:
            await _refuse(send, 401, "This server needs an API key: send the header X-API-Key.")
        elif not same_secret(given, self.api_key):
            await _refuse(send, 403, "The API key sent does not match this server's.")
        else:
            await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="obbws"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
