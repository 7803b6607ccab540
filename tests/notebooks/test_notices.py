"""Background failures show in the next cell of a real kernel, once each, as one line with what
to do (a stream that gave up; a default broadcast port that moved); outside IPython nothing
is registered or written."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from tests.conftest import TIMEOUT

pytestmark = pytest.mark.notebook

SETUP = """
import socket
import obbws_jupyter as obbws
from obbws_jupyter._util import DefaultPort
from obbws_jupyter.offline.demo_server import start_demo_server
server = start_demo_server(rate=200.0, heartbeat_interval=0.2)
conn = obbws.create_connection(provider="demo", name="fragile", symbol="btcusd", url=server.url,
                               max_reconnects=1, reconnect_base=0.5, reconnect_cap=0.5)
conn.wait(3)
"""


def _run(kc: Any, code: str) -> tuple[str, str]:
    """Run ``code`` in the kernel; return (stdout, stderr) of that cell, raising on an error."""
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out[msg["content"]["name"]].append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=6 * TIMEOUT, output_hook=hook)
    assert reply["content"]["status"] == "ok"
    return "".join(out["stdout"]), "".join(out["stderr"])


@pytest.fixture
def kernel() -> Any:
    """A fresh python3 kernel with a demo connection whose server the test can stop."""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        _run(kc, SETUP)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_stream_that_gives_up_is_announced_once_in_the_next_cell(kernel: Any) -> None:
    """The give-up happens between cells; the next cell's output says so in one line with
    what to do, later cells do not repeat it, and the connection's repr carries it."""
    _, quiet = _run(kernel, "server.close()")  # the give-up comes 0.5 s later, in the background
    assert "obbws:" not in quiet
    _, err = _run(kernel, "print(conn.get_client().wait_stopped(timeout=30))")
    notice = [line for line in err.splitlines() if line.startswith("obbws:")]
    assert len(notice) == 1, err
    assert notice[0].startswith("obbws: stream 'fragile' failed: gave up after 1 reconnect")
    assert "restart_connection()" in notice[0] and notice[0].count("fragile") == 1
    _, again = _run(kernel, "print('next')")
    assert "obbws:" not in again
    shown, _ = _run(kernel, "print(repr(conn))")
    assert "state='failed'" in shown and "notice=\"stream 'fragile' failed: gave up" in shown


def test_a_default_port_that_moved_is_announced_in_that_cell(kernel: Any) -> None:
    """A busy default broadcast port moves to the next free one, and the cell says where."""
    code = (
        "busy = socket.socket(); busy.bind(('127.0.0.1', 0)); busy.listen()\n"
        "port = busy.getsockname()[1]\n"
        "print(conn.start_broadcasting(port=DefaultPort(port)).broadcast_address, port)"
    )
    out, err = _run(kernel, code)
    address, port = out.split()
    assert not address.endswith(f":{port}")
    assert err.strip() == (
        f"obbws: 'fragile' broadcasts on {address}: port {port} was busy. "
        "Pass port=0 for any free port, or choose one."
    )
    _, again = _run(kernel, "print(1)")
    assert "obbws:" not in again


def test_outside_ipython_nothing_is_registered_or_written() -> None:
    """In a plain script a failing stream writes nothing to stderr and registers no hook."""
    script = SETUP + (
        "server.close()\nconn.get_client().wait_stopped(timeout=30)\n"
        "from obbws_jupyter import _notices\n"
        "print(conn.status.state, _notices._shell, sorted(_notices._watched))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=6 * TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["failed", "None", "[]"]
    assert "obbws:" not in done.stderr


def test_errors_keep_their_colour_in_a_kernel(kernel: Any) -> None:
    """In a Jupyter kernel (default colours) the short error is coloured as IPython's own
    tracebacks are; %colors nocolor turns it plain."""
    tracebacks: list[list[str]] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "error":
            tracebacks.append(msg["content"]["traceback"])

    for code in ("obbws.create_connection('nope', 'x')", "%colors nocolor\nobbws.get_client('x')"):
        kernel.execute_interactive(code, timeout=6 * TIMEOUT, output_hook=hook)
    coloured, plain = tracebacks
    assert coloured[0].startswith("\x1b[0;31mUnknownProviderError\x1b[0m: Unknown provider")
    assert plain[0] == "UnknownConnectionError: Client x not connected."
