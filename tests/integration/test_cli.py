"""The ``obbws`` command: providers, demo (with clean shutdown) and listen."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

import obbws_jupyter as obbws
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration

OBBWS = [sys.executable, "-m", "obbws_jupyter._cli"]


def test_providers_lists_all_eight_with_parameters() -> None:
    """`obbws providers` names each of the eight providers, their parameters and where a key
    may come from (argument, environment, OpenBB settings)."""
    out = subprocess.run([*OBBWS, "providers"], capture_output=True, text=True, check=True)
    names = re.findall(r"^(\w+): ", out.stdout, re.M)
    expected = ["binance", "coinbase", "demo", "fmp", "intrinio", "polygon", "replay", "tiingo"]
    assert names == expected
    assert "asset_type" in out.stdout and "secret" in out.stdout
    assert "env POLYGON_API_KEY, OpenBB setting polygon_api_key" in out.stdout


def test_demo_streams_and_cleans_up_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`obbws demo` broadcasts, prints summaries, and on SIGTERM kills its connection."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [*OBBWS, "demo", "--port", "0", "--rate", "100", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "broadcasting on ws://127.0.0.1:" in lines[1]
        assert lines[3].startswith("state=running")
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Client demo killed." in rest
    assert proc.returncode == 0
    assert not list(tmp_path.glob("obbws-*"))  # the temp results dir is gone


def test_listen_prints_json_lines_from_a_broadcast() -> None:
    """`obbws listen URL --max-records N` prints N JSON records and exits 0."""
    conn = obbws.create_connection(
        provider="demo", name="cli", symbol="btcusd", rate=500, auth_token="cli-tok"
    )
    conn.start_broadcasting(port=0)
    address = conn.status.broadcast_address
    env = dict(os.environ, OBBWS_AUTH_TOKEN="cli-tok")
    out = subprocess.run(
        [*OBBWS, "listen", address, "--max-records", "5"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 5 and all(r["symbol"] == "BTCUSD" for r in records)
    refused = subprocess.run(
        [*OBBWS, "listen", address, "--max-records", "1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={k: v for k, v in os.environ.items() if k != "OBBWS_AUTH_TOKEN"},
    )
    assert refused.returncode == 1 and "auth" in refused.stderr.lower()
    assert "cli-tok" not in refused.stderr


def test_errors_are_said_in_command_line_terms() -> None:
    """A busy --port suggests --port 0 (not port=0); serving beyond loopback without a key
    points to --api-key-env (not api_key=...); --help shows no reST markup."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = subprocess.run(
            [*OBBWS, "demo", "--port", str(port)], capture_output=True, text=True, timeout=TIMEOUT
        )
    assert demo.returncode == 1
    assert demo.stderr.strip() == (
        f"obbws demo: port {port} is in use; use --port 0 for any free port, or another --port."
    )
    env = {k: v for k, v in os.environ.items() if k != "OBBWS_API_KEY"}
    serve = subprocess.run(
        [*OBBWS, "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert serve.returncode == 1
    assert "--api-key-env VAR" in serve.stderr and "api_key=" not in serve.stderr
    assert "--host 127.0.0.1" in serve.stderr
    helped = subprocess.run([*OBBWS, "--help"], capture_output=True, text=True, check=True)
    assert "``" not in helped.stdout and "obbws demo" in helped.stdout


def test_python_m_obbws_jupyter_is_the_obbws_command() -> None:
    """`python -m obbws_jupyter` runs the same command as the `obbws` script (for a venv whose
    scripts folder is not on PATH), listen's engine flags included."""
    out = subprocess.run(
        [sys.executable, "-m", "obbws_jupyter", "listen", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: obbws listen")
    assert "--subject" in out.stdout and "--name" in out.stdout
