"""The HTTP app and the registry: by default the process's registry (a notebook and curl see
the same connections), or an isolated Registry given to create_app; the Python-only options
objects cannot be smuggled in as query parameters."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import obbws_jupyter as obbws
from obbws_jupyter import Registry
from obbws_jupyter.rest import create_app, default_endpoints
from tests.http.conftest import route

pytestmark = pytest.mark.integration

BASE = {"provider": "demo", "symbol": "btcusd", "rate": 50}


def test_the_default_endpoints_are_the_default_registry() -> None:
    """default_endpoints() is obbws.default_registry(): one set of connections per process."""
    assert default_endpoints() is obbws.default_registry()


def test_a_connection_made_over_http_is_seen_from_python(http: TestClient) -> None:
    """create_connection over HTTP registers in the default registry; Python kills it."""
    response = http.get(route("create_connection"), params={**BASE, "name": "shared"})
    assert response.status_code == 200, response.text
    assert obbws.default_registry().names() == ["shared"]
    assert obbws.kill("shared") == "Client shared killed."
    assert http.get(route("get_client_status"), params={"name": "shared"}).status_code == 404


def test_an_app_over_its_own_registry_is_isolated() -> None:
    """create_app(Registry()) creates and lists its connections there, not in the default."""
    registry = Registry()
    try:
        with TestClient(create_app(registry)) as client:
            made = client.get(route("create_connection"), params={**BASE, "name": "iso"})
            assert made.status_code == 200, made.text
            listed = client.get(route("get_client_status"), params={"name": "all"})
            assert [s["name"] for s in listed.json()["results"]] == ["iso"]
        assert registry.names() == ["iso"] and "iso" not in obbws.default_registry()
    finally:
        registry.kill_all()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("options", "x"),
        ("provider_params", "x"),
        ("record_file", "x"),
        ("http_client", "x"),
        ("sinks", "parquet:///tmp/obbws-http-sink"),  # a folder on the server, or any host
    ],
)
def test_python_only_options_are_refused_over_http(http: TestClient, key: str, value: str) -> None:
    """options=, provider_params=, sinks= and file/callable options answer 400 naming the
    key, and nothing is created."""
    response = http.get(route("create_connection"), params={**BASE, "name": "no", key: value})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert key in detail and "cannot be set through the HTTP API" in detail
    assert obbws.default_registry().names() == []
