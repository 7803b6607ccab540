"""Errors and access control of the HTTP API: each status with a JSON detail, a connection's
auth_token (query or bearer), the server's API key, and no secret in any answer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from obbws_jupyter import _api as api
from obbws_jupyter.exceptions import (
    BroadcastError,
    ObbwsTimeoutError,
    ProviderConnectionError,
)
from obbws_jupyter.offline.demo_server import start_demo_server
from obbws_jupyter.rest import create_app
from tests.http.conftest import route

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-value"
KEY = "server-api-key-0123456789"


def _status(response: Any, expected: int) -> str:
    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


def test_bad_input_is_400_with_the_problem_named(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """Unknown provider, bad limit, bad JSON, unknown provider parameter, a client-only
    option, a bad format and a missing parameter all answer 400 naming the problem."""
    base = {"provider": "demo", "name": "x", "symbol": "btcusd"}
    get = http.get
    unknown = _status(get(route("create_connection"), params={**base, "provider": "nope"}), 400)
    assert "installed providers: " in unknown and "demo" in unknown
    assert "limit" in _status(get(route("create_connection"), params={**base, "limit": "0"}), 400)
    assert "connect_kwargs" in _status(
        get(route("create_connection"), params={**base, "connect_kwargs": "{bad"}), 400
    )
    assert "unknown parameter" in _status(
        get(route("create_connection"), params={**base, "colour": "red"}), 400
    )
    assert "cannot be set through the HTTP API" in _status(
        get(route("create_connection"), params={**base, "flush_interval": "1"}), 400
    )
    assert "name" in _status(get(route("create_connection"), params={"provider": "demo"}), 400)
    create("x")
    assert "format" in _status(
        get(route("get_results"), params={"name": "x", "format": "xml"}), 400
    )
    assert "limit" in _status(get(route("get_results"), params={"name": "x", "limit": "-1"}), 400)
    assert "offset" in _status(get(route("get_results"), params={"name": "x", "offset": "-1"}), 400)
    assert "already subscribed" in _status(
        get(route("subscribe"), params={"name": "x", "symbol": "btcusd"}), 400
    )


def test_unknown_name_is_404_and_duplicate_name_409(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """An unknown connection is 404 on every route; create_connection with a name in use
    is 409; stop_broadcasting when not broadcasting and subscribe when stopped are 409."""
    assert _status(http.get(route("kill"), params={"name": "ghost"}), 404)
    create("d")
    for endpoint in ("get_results", "clear_results", "stop_connection", "stream", "kill"):
        assert "ghost" in _status(http.get(route(endpoint), params={"name": "ghost"}), 404)
    assert "already connected" in _status(
        http.get(
            route("create_connection"), params={"provider": "demo", "name": "d", "symbol": "x"}
        ),
        409,
    )
    assert "not broadcasting" in _status(
        http.get(route("stop_broadcasting"), params={"name": "d"}), 409
    )
    http.get(route("stop_connection"), params={"name": "d"})
    assert "not running" in _status(
        http.get(route("subscribe"), params={"name": "d", "symbol": "solusd"}), 409
    )


def test_rejected_provider_credentials_are_502(http: TestClient) -> None:
    """A provider that refuses the API key answers 502, and the key is not in the body."""
    server = start_demo_server(api_key="right-key", rate=50)
    try:
        params = {"provider": "demo", "name": "k", "symbol": "btcusd", "url": server.url}
        detail = _status(
            http.get(route("create_connection"), params={**params, "api_key": "wrong-key-123"}), 502
        )
        assert "wrong-key-123" not in detail
        assert http.get(route("get_client_status"), params={"name": "k"}).status_code == 404
    finally:
        server.close()


class _Failing:
    """Endpoints whose every call raises the given exception (to check the status mapping)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.exc

        return fail


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ProviderConnectionError("provider unreachable"), 502),
        (BroadcastError("cannot bind"), 503),
        (ObbwsTimeoutError("connect did not finish within 15 s"), 504),
        (RuntimeError("boom at /secret/path"), 500),
    ],
)
def test_failures_map_to_statuses_without_tracebacks(exc: Exception, status: int) -> None:
    """Provider failures are 502, broadcast failures 503, timeouts 504; anything unexpected is
    a 500 naming only the exception type (no message, no traceback)."""
    with TestClient(create_app(_Failing(exc)), raise_server_exceptions=False) as http:  # type: ignore[arg-type]
        detail = _status(http.get(route("kill"), params={"name": "x"}), status)
    assert "Traceback" not in detail
    if status == 500:
        assert detail.startswith("Internal error (RuntimeError)") and "/secret" not in detail


def test_auth_token_by_query_or_bearer_missing_401_wrong_403(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """A token-protected connection refuses a call without token (401, WWW-Authenticate) or
    with a wrong one (403), on every route; the query parameter and the bearer header work."""
    create("a", auth_token=TOKEN)
    assert api.get_client("a", TOKEN).auth_required
    for endpoint in ("get_results", "clear_results", "stop_connection", "stream", "kill"):
        response = http.get(route(endpoint), params={"name": "a"})
        _status(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        detail = _status(http.get(route(endpoint), params={"name": "a", "auth_token": "nope"}), 403)
        assert TOKEN not in detail and "nope" not in detail
        detail = _status(
            http.get(route(endpoint), params={"name": "a"}, headers={"Authorization": "Bearer x"}),
            403,
        )
    ok = http.get(route("get_client_status"), params={"name": "a", "auth_token": TOKEN})
    assert ok.status_code == 200 and TOKEN not in ok.text
    ok = http.get(
        route("get_client_status"),
        params={"name": "a"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert ok.status_code == 200
    assert http.get(route("get_client_status")).json()["results"] == []  # "all" hides it
    assert http.get(route("kill"), params={"name": "a", "auth_token": TOKEN}).status_code == 200


def test_create_with_bearer_sets_the_connection_token(http: TestClient) -> None:
    """The bearer header of create_connection becomes the new connection's auth_token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    params = {"provider": "demo", "name": "bt", "symbol": "btcusd", "rate": 50}
    body = http.get(route("create_connection"), params=params, headers=headers).json()
    assert body["results"]["auth_required"] is True and TOKEN not in str(body)
    assert http.get(route("kill"), params={"name": "bt"}).status_code == 401
    assert http.get(route("kill"), params={"name": "bt"}, headers=headers).status_code == 200


def test_api_key_guards_every_route_apart_from_auth_token(create) -> None:  # type: ignore[no-untyped-def]
    """With an API key every request (the OpenAPI document too) needs it: missing 401, wrong
    403; X-API-Key leaves the bearer for the auth_token, a bearer API key leaves the query."""
    create("g", auth_token=TOKEN)
    with TestClient(create_app(api_key=KEY)) as http:
        for path in ("/openapi.json", "/docs", route("get_client_status")):
            _status(http.get(path), 401)
            _status(http.get(path, headers={"X-API-Key": "wrong"}), 403)
        assert http.get("/openapi.json", headers={"X-API-Key": KEY}).status_code == 200
        both = {"X-API-Key": KEY, "Authorization": f"Bearer {TOKEN}"}
        assert (
            http.get(route("get_client_status"), params={"name": "g"}, headers=both).status_code
            == 200
        )
        bearer_key = {"Authorization": f"Bearer {KEY}"}
        response = http.get(route("get_client_status"), params={"name": "g"}, headers=bearer_key)
        assert response.status_code == 401  # the bearer was the API key: no auth_token left
        response = http.get(
            route("get_client_status"),
            params={"name": "g", "auth_token": TOKEN},
            headers=bearer_key,
        )
        assert response.status_code == 200 and KEY not in response.text
