"""Fixtures of the HTTP API tests: the app on this process's connections, and a helper that
creates demo connections through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from obbws_jupyter import _api as endpoints
from obbws_jupyter.rest import PREFIX, create_app
from tests.conftest import RecordWaiter


@pytest.fixture
def http() -> Iterator[TestClient]:
    """A client of the HTTP API (in process), on the same connections as the Python API."""
    with TestClient(create_app(sse_keepalive=0.2)) as client:
        yield client


def route(endpoint: str) -> str:
    return f"{PREFIX}/{endpoint}"


@pytest.fixture
def create(http: TestClient) -> Callable[..., dict[str, Any]]:
    """Create a demo connection with GET create_connection; returns the status (asserting 200)."""

    def make(name: str = "h", **params: Any) -> dict[str, Any]:
        params.setdefault("symbol", "btcusd,ethusd")
        params.setdefault("rate", 500)
        response = http.get(
            route("create_connection"), params={"provider": "demo", "name": name, **params}
        )
        assert response.status_code == 200, response.text
        return response.json()["results"]

    return make


def waiter(name: str, token: str | None = None) -> RecordWaiter:
    """Counts the records of a connection as they arrive (no sleeping)."""
    return RecordWaiter(endpoints.get_client(name, token))
