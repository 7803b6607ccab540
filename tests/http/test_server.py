"""serve_api and `obbws serve`: a real uvicorn on a free loopback port, in this process (the
notebook case) and from the shell; loopback only without an API key; secrets masked."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import httpx2 as httpx
import pytest

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import InvalidParameterError, PortInUseError
from obbws_jupyter.rest import PREFIX
from tests.conftest import TIMEOUT
from tests.http.conftest import waiter

pytestmark = pytest.mark.integration


def test_serve_api_drives_the_notebooks_connections(caplog) -> None:  # type: ignore[no-untyped-def]
    """serve_api(port=0) answers on a real socket for the connections of this process; the
    access log masks the auth_token; stop() frees the port."""
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    server = obbws.serve_api(port=0)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.running
        base = server.url + PREFIX
        created = httpx.get(
            f"{base}/create_connection",
            params={
                "provider": "demo",
                "name": "srv",
                "symbol": "btcusd",
                "rate": 300,
                "auth_token": "tok-999",
            },
            timeout=TIMEOUT,
        )
        assert created.status_code == 200, created.text
        assert obbws.get_client_status("srv", "tok-999")[0].is_running  # the same registry
        assert waiter("srv", "tok-999").wait(5)
        results = httpx.get(
            f"{base}/get_results",
            params={"name": "srv"},
            headers={"Authorization": "Bearer tok-999"},
            timeout=TIMEOUT,
        ).json()
        assert len(results["results"]) >= 5
        killed = httpx.get(f"{base}/kill", params={"name": "srv", "auth_token": "tok-999"})
        assert killed.json()["results"] == "Client srv killed."
    finally:
        server.stop()
    assert not server.running
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "uvicorn.access")
    assert "create_connection" in logged and "tok-999" not in logged
    with socket.create_server(("127.0.0.1", server.port)):
        pass  # the port is free again


def test_stop_ends_open_event_streams() -> None:
    """stop() closes an open event stream with an "end" event instead of waiting for it."""
    obbws.create_connection(provider="demo", name="es", symbol="btcusd", rate=200)
    server = obbws.serve_api(port=0)
    lines: list[str] = []
    with httpx.stream(
        "GET", server.url + PREFIX + "/stream", params={"name": "es"}, timeout=TIMEOUT
    ) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data:") and server.running:
                server.stop()
            if line == "event: end":
                break
    assert "event: end" in lines and not server.running


def test_non_loopback_without_api_key_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Binding beyond loopback without an API key raises before anything binds; a key from
    OBBWS_API_KEY is then required by the server."""
    monkeypatch.delenv("OBBWS_API_KEY", raising=False)
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.invalid"):
        with pytest.raises(InvalidParameterError, match="without an API key"):
            obbws.serve_api(host=host, port=0)
    monkeypatch.setenv("OBBWS_API_KEY", "env-key-abcdef")
    with obbws.serve_api(port=0) as server:
        assert server.api_key_required and "env-key" not in repr(server)
        assert httpx.get(server.url + "/openapi.json").status_code == 401
        ok = httpx.get(server.url + "/openapi.json", headers={"X-API-Key": "env-key-abcdef"})
        assert ok.status_code == 200


def test_a_busy_port_is_a_clear_error() -> None:
    """A port in use raises PortInUseError at once."""
    with (
        socket.create_server(("127.0.0.1", 0)) as taken,
        pytest.raises(PortInUseError, match="in use"),
    ):
        obbws.serve_api(port=taken.getsockname()[1])


def test_obbws_serve_from_a_shell(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`obbws serve --port 0` prints its URL, serves, and stops cleanly on SIGTERM; the API
    key comes from the variable --api-key-env names (never argv)."""
    env = dict(os.environ, TMPDIR=str(tmp_path), MY_KEY="shell-key-12345")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obbws_jupyter._cli",
            "serve",
            "--port",
            "0",
            "--api-key-env",
            "MY_KEY",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "(API key required)" in first
        url = first.split(" on ", 1)[1].split()[0]
        headers = {"X-API-Key": "shell-key-12345"}
        params = {"provider": "demo", "name": "sh", "symbol": "btcusd", "rate": 50}
        created = httpx.get(
            url + PREFIX + "/create_connection", params=params, headers=headers, timeout=TIMEOUT
        )
        assert created.status_code == 200, created.text
        assert httpx.get(url + PREFIX + "/kill", params={"name": "sh"}).status_code == 401
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped." in out and "shell-key" not in out + err
    assert json.loads(created.text)["results"]["name"] == "sh"


def test_obbws_serve_refuses_all_interfaces_without_a_key(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`obbws serve --host 0.0.0.0` without a key exits 1 with the reason."""
    env = {k: v for k, v in os.environ.items() if k != "OBBWS_API_KEY"}
    out = subprocess.run(
        [sys.executable, "-m", "obbws_jupyter._cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT * 3,
    )
    assert out.returncode == 1 and "without an API key" in out.stderr
