"""Every route of the HTTP API, driven with an HTTP client against the app: the lifecycle of
a demo connection, the envelope, results paging and formats, and a listener of a broadcast
started through the API."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import obbws_jupyter as obbws
from obbws_jupyter import _api as api
from obbws_jupyter.listen import listen
from tests.conftest import TIMEOUT
from tests.http.conftest import route, waiter
from tests.integration.test_endpoints import SEED_KEYS

pytestmark = pytest.mark.integration

ENDPOINTS = sorted(set(api.__all__) - {"get_client"})  # get_client stays Python-only


def _get(http: TestClient, endpoint: str, **params: Any) -> Any:
    response = http.get(route(endpoint), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_openapi_documents_every_endpoint_but_get_client(http: TestClient) -> None:
    """The OpenAPI document has the eleven endpoints (GET), POST create_connection and the
    event stream, each described, with examples; get_client stays Python-only."""
    doc = http.get("/openapi.json").json()
    paths = doc["paths"]
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == sorted([*ENDPOINTS, "stream"])
    assert all(p.startswith("/api/v1/websockets/") for p in paths)
    assert "post" in paths[route("create_connection")]
    for path, methods in paths.items():
        for operation in methods.values():
            assert operation["description"], path
            assert {"400", "401", "403", "404", "409"} <= set(operation["responses"]), path
    params = {p["name"]: p for p in paths[route("create_connection")]["get"]["parameters"]}
    assert params["provider"]["schema"].get("examples") or params["provider"].get("examples")
    assert {"limit", "save_results", "connect_kwargs", "symbol", "auth_token"} <= set(params)


def test_create_returns_the_status_in_the_openbb_envelope(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """GET create_connection answers {"results": status, "provider": "demo", ...}; the
    connection is the one the Python API sees."""
    body = http.get(
        route("create_connection"),
        params={"provider": "demo", "name": "h", "symbol": "btcusd", "rate": 300},
    ).json()
    assert set(body) == {"results", "provider", "warnings", "extra"}
    assert body["provider"] == "demo" and body["warnings"] is None
    status = body["results"]
    assert list(status)[: len(SEED_KEYS)] == SEED_KEYS
    assert status["is_running"] and status["subscribed_symbols"] == "BTCUSD"
    assert obbws.get_client_status("h")[0].is_running


def test_post_create_takes_a_json_body_with_typed_values(http: TestClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """POST create_connection: limit null keeps every row, connect_kwargs as an object,
    provider parameters beside the standard ones."""
    body = {
        "provider": "demo",
        "name": "p",
        "symbol": ["btcusd", "ethusd"],
        "limit": None,
        "connect_kwargs": {"ping_interval": 5},
        "rate": 100,
        "results_file": str(tmp_path / "p.duckdb"),
        "save_results": "True",
    }
    response = http.post(route("create_connection"), json=body)
    assert response.status_code == 200, response.text
    status = response.json()["results"]
    assert status["limit"] is None and status["save_results"] is True
    assert status["subscribed_symbols"] == "BTCUSD,ETHUSD"
    _get(http, "kill", name="p")
    assert (tmp_path / "p.duckdb").exists()  # save_results kept it


def test_text_flags_as_openbb_sends_them(http: TestClient, create, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """limit="None", save_results="True", start_broadcast="True" and connect_kwargs as a
    JSON string work in the query string."""
    status = create(
        "t",
        limit="None",
        save_results="True",
        results_file=str(tmp_path / "t.duckdb"),
        start_broadcast="True",
        broadcast_port=0,
        connect_kwargs='{"ping_interval": 10}',
    )
    assert status["limit"] is None and status["save_results"] is True
    assert status["is_broadcasting"] and status["broadcast_address"].startswith("ws://127.0.0.1:")


def test_results_page_by_limit_offset_and_since_id(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """limit/offset/since_id select by id, oldest first; extra has count and last_id."""
    create("r")
    assert waiter("r").wait(40)
    _get(http, "stop_connection", name="r")  # a fixed table from here on
    everything = _get(http, "get_results", name="r")
    ids = [r["id"] for r in everything["results"]]
    assert ids == sorted(ids) and len(ids) >= 40
    assert everything["extra"] == {"count": len(ids), "last_id": ids[-1]}
    assert everything["provider"] == "demo"
    page = _get(http, "get_results", name="r", limit=5, offset=3)
    assert [r["id"] for r in page["results"]] == ids[3:8]
    newer = _get(http, "get_results", name="r", since_id=ids[9], limit="None")
    assert [r["id"] for r in newer["results"]] == ids[10:]
    assert _get(http, "get_results", name="r", since_id=ids[-1])["results"] == []
    record = everything["results"][0]
    assert list(record)[:4] == ["id", "received_at", "date", "symbol"]
    assert record["date"][10] == "T" and record["date"][-6] in "+-"  # ISO 8601 with offset


def test_results_json_matches_the_python_results(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """The JSON records are the rows of get_results(), dates at microsecond precision."""
    create("m")
    assert waiter("m").wait(10)
    _get(http, "stop_connection", name="m")
    frame = obbws.get_results("m")
    records = _get(http, "get_results", name="m")["results"]
    assert [r["id"] for r in records] == frame["id"].tolist()
    assert [r["price"] for r in records] == frame["price"].tolist()
    assert records[0]["date"] == frame["date"].iloc[0].isoformat(timespec="microseconds")


def test_results_as_csv_and_parquet(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """format=csv and format=parquet carry the same rows as JSON (CSV dates as in JSON,
    Parquet dates typed and tz-aware)."""
    create("f")
    assert waiter("f").wait(10)
    _get(http, "stop_connection", name="f")
    records = _get(http, "get_results", name="f", limit=7)["results"]
    response = http.get(route("get_results"), params={"name": "f", "limit": 7, "format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["id"]) for r in rows] == [r["id"] for r in records]
    assert [r["date"] for r in rows] == [r["date"] for r in records]
    response = http.get(route("get_results"), params={"name": "f", "limit": 7, "format": "parquet"})
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    assert table.column("id").to_pylist() == [r["id"] for r in records]
    assert str(table.schema.field("date").type.tz) == "America/New_York"


def test_empty_results_in_each_format(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """A table with no rows gives [] in JSON, a header in CSV and an empty Parquet file."""
    create("e")
    _get(http, "stop_connection", name="e")
    _get(http, "clear_results", name="e")
    assert _get(http, "get_results", name="e")["results"] == []
    text = http.get(route("get_results"), params={"name": "e", "format": "csv"}).text
    assert text.splitlines() == ["id,received_at,date,symbol,type,exchange,price,size"]
    content = http.get(route("get_results"), params={"name": "e", "format": "parquet"}).content
    assert pq.read_table(io.BytesIO(content)).num_rows == 0


def test_lifecycle_subscribe_stop_restart_clear_kill(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """The rest of the lifecycle through the API, each route answering the status or its
    message as the Python endpoint does."""
    create("l", symbol="btcusd")
    count = waiter("l")
    status = _get(http, "subscribe", name="l", symbol="ethusd")["results"]
    assert status["subscribed_symbols"] == "BTCUSD,ETHUSD"
    assert count.wait_symbol("ETHUSD")
    status = _get(http, "unsubscribe", name="l", symbol="ethusd")["results"]
    assert status["subscribed_symbols"] == "BTCUSD"
    assert _get(http, "stop_connection", name="l")["results"]["is_running"] is False
    assert _get(http, "restart_connection", name="l")["results"]["is_running"] is True
    assert count.wait_more(5)
    message = _get(http, "clear_results", name="l")["results"]
    assert message.endswith("results cleared from l.")
    statuses = _get(http, "get_client_status")["results"]
    assert [s["name"] for s in statuses] == ["l"]
    assert _get(http, "kill", name="l")["results"] == "Client l killed."
    assert http.get(route("get_client_status"), params={"name": "l"}).status_code == 404


def test_broadcast_started_through_the_api_reaches_a_listener(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """start_broadcasting over HTTP serves ws:// records that obbws_jupyter.listen reads;
    stop_broadcasting then ends it (and removes a stopped connection, as OpenBB does)."""
    create("b")
    status = _get(http, "start_broadcasting", name="b", port=0)["results"]
    address = status["broadcast_address"]
    assert status["is_broadcasting"] and address.startswith("ws://127.0.0.1:")
    listener = listen(address, block=False)
    try:
        assert listener.wait(10, timeout=TIMEOUT)
        record = next(iter(listener.records))
        assert {"id", "received_at", "date", "symbol", "price"} <= set(record)
    finally:
        listener.stop()
    assert _get(http, "stop_broadcasting", name="b")["results"]["is_broadcasting"] is False
    _get(http, "start_broadcasting", name="b", port=0)
    _get(http, "stop_connection", name="b")
    message = _get(http, "stop_broadcasting", name="b")["results"]
    assert message == "Client b stopped broadcasting and was not running, client removed."


def test_connections_from_python_are_served_too(http: TestClient) -> None:
    """A connection made in Python (a notebook) is driven over HTTP, and the other way round."""
    conn = obbws.create_connection(provider="demo", name="nb", symbol="btcusd", rate=300)
    assert _get(http, "get_client_status", name="nb")["results"][0]["name"] == "nb"
    _get(http, "stop_connection", name="nb")
    assert conn.status.is_running is False
    assert json.loads(conn.status.model_dump_json())["name"] == "nb"


def test_file_name_of_a_download_is_sanitized(http: TestClient) -> None:
    """A connection name with quotes or line breaks never reaches a response header as is."""
    obbws.create_connection(provider="demo", name='we"ird\r\nX-Evil: 1', symbol="btcusd", rate=50)
    response = http.get(
        route("get_results"), params={"name": 'we"ird\r\nX-Evil: 1', "format": "csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="we_ird__X-Evil__1.csv"'
    assert "x-evil" not in response.headers
