"""A kernel restart (or shutdown) with a live connection leaves no temp file or port behind."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.notebook

CODE = """
import json, threading
import obbws_jupyter as obbws
conn = obbws.create_connection(provider="demo", name="k", symbol="btcusd", rate=500)
conn.start_broadcasting(port=0)
client = conn.get_client()
arrived = threading.Event()
client.add_record_hook(lambda records: arrived.set())
assert arrived.wait(10)
print(json.dumps({"dir": str(__import__("pathlib").Path(client.results_file).parent),
                  "broadcast": conn.status.broadcast_address,
                  "provider": client._server.url}))
"""


def _execute(kc, code: str) -> str:  # type: ignore[no-untyped-def]
    """Run code in the kernel and return its stdout (raising on an error)."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    assert reply["content"]["status"] == "ok"
    return "".join(out)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.parametrize("action", ["restart", "shutdown"])
def test_kernel_restart_cleans_up_everything(action: str) -> None:
    """Restarting or shutting down the kernel deletes the temp results and frees the ports."""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        info = json.loads(_execute(kc, CODE).strip().splitlines()[-1])
        assert Path(info["dir"]).exists()
        if action == "restart":
            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=60)
            assert _execute(kc, "print(1 + 1)").strip() == "2"
        else:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        assert not Path(info["dir"]).exists()
        for url in (info["broadcast"], info["provider"]):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", _port(url))) != 0
    finally:
        if km.is_alive():
            kc.stop_channels()
            km.shutdown_kernel(now=True)
