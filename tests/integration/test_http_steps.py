"""HTTP steps before connecting (a token exchange), performed by the driver for a sans-I/O
session, against the demo server and a local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter._stream import urllib_client
from obbws_jupyter.exceptions import ProviderAuthError
from obbws_jupyter.protocol import (
    AuthFailed,
    HttpRequest,
    HttpResponse,
    _lookup,
    available_providers,
)
from obbws_providers import demo
from tests.conftest import TIMEOUT, RecordWaiter

pytestmark = pytest.mark.integration


class TokenSession(demo.DemoSession):
    """The demo protocol, but the URL carries a token traded for the key over HTTP."""

    def http_requests(self) -> list[HttpRequest]:
        return [HttpRequest(f"http://auth.invalid/auth?api_key={self.params['api_key']}")]

    def http_response(self, request: HttpRequest, response: HttpResponse) -> None:
        if response.status != 200:
            self._emit(AuthFailed(f"token request refused with HTTP {response.status}"))
        self.token = response.text

    def url(self) -> str:
        return f"{super().url()}?token={getattr(self, 'token', 'none')}"


class FakeAuth:
    """An injectable HTTP client: answers token requests and counts them."""

    def __init__(self, good_key: str) -> None:
        self.good_key = good_key
        self.requests: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        if request.url.endswith(f"api_key={self.good_key}"):
            return HttpResponse(200, f"tok{len(self.requests)}".encode())
        return HttpResponse(401, b"Unauthorized")


@pytest.fixture
def tokened(monkeypatch: pytest.MonkeyPatch) -> None:
    available_providers()
    spec = replace(demo.PROVIDER, name="tokened", session_class=TokenSession, embedded_server=None)
    monkeypatch.setitem(_lookup._specs, "tokened", spec)


def test_token_is_fetched_before_every_connection(demo_server: Any, tokened: None) -> None:
    """The driver performs the session's HTTP step before the first connection and again
    before each reconnect, and connects to the URL built from the answer."""
    auth = FakeAuth("sekret")
    conn = obbws.create_connection(
        provider="tokened",
        name="tok",
        symbol="btcusd",
        url=demo_server.url,
        api_key="sekret",
        http_client=auth,
        reconnect_base=0.01,
    )
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(1)
    assert len(auth.requests) == 1
    assert "token=tok1" in conn.get_client()._driver.url
    assert "tok1" not in str(conn.status.url)  # the token is masked in the status
    demo_server.drop_connections()
    assert waiter.wait_more(1, TIMEOUT)
    assert len(auth.requests) == 2
    assert "token=tok2" in conn.get_client()._driver.url


def test_refused_token_request_is_a_credentials_error(demo_server: Any, tokened: None) -> None:
    """A 401 from the token step raises ProviderAuthError from create_connection, without the
    key in the message, and nothing stays registered."""
    with pytest.raises(ProviderAuthError) as info:
        obbws.create_connection(
            provider="tokened",
            name="tok-bad",
            symbol="btcusd",
            url=demo_server.url,
            api_key="wrong-key-123",
            http_client=FakeAuth("sekret"),
        )
    assert "wrong-key-123" not in str(info.value)
    assert "HTTP 401" in str(info.value)
    with pytest.raises(obbws.ObbwsError):
        obbws.get_client("tok-bad")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.endswith("api_key=good")
        body = b"a-token" if ok else b"Unauthorized"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_default_http_client_returns_statuses(http_server: str) -> None:
    """The stdlib client returns 200 and 401 answers (it never raises for a status)."""
    ok = runtime.run(urllib_client(HttpRequest(f"{http_server}/auth?api_key=good")))
    refused = runtime.run(urllib_client(HttpRequest(f"{http_server}/auth?api_key=bad")))
    assert (ok.status, ok.text) == (200, "a-token")
    assert (refused.status, refused.text) == (401, "Unauthorized")
