"""The background loop: timeouts, Ctrl-C, interpreter exit, and the client without a registry."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import ObbwsTimeoutError
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration


def _interrupt_main() -> None:
    """What Ctrl-C / "interrupt kernel" does: SIGINT to the main thread."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # type: ignore[arg-type]


def test_run_times_out_and_cancels_the_coroutine() -> None:
    """A coroutine that outlives its timeout is cancelled and ObbwsTimeoutError raised."""
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(ObbwsTimeoutError, match="did not finish"):
        runtime.run(forever(), timeout=0.2)
    assert cancelled.wait(TIMEOUT)


def test_run_from_the_loop_thread_refuses_instead_of_deadlocking() -> None:
    """Calling run() on the loop thread raises at once rather than hanging."""

    async def nested() -> str:
        async def inner() -> int:
            return 1

        try:
            runtime.run(inner())
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "await the coroutine" in runtime.run(nested())


def test_keyboard_interrupt_cancels_the_waited_coroutine() -> None:
    """Ctrl-C while a cell waits cancels the background coroutine: nothing half-done stays."""
    cancelled = threading.Event()
    started = threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    timer = threading.Thread(target=lambda: started.wait(TIMEOUT) and _interrupt_main())
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        runtime.run(slow(), timeout=TIMEOUT)
    timer.join()
    assert cancelled.wait(TIMEOUT)


def test_interrupted_create_connection_leaves_nothing_behind() -> None:
    """Ctrl-C during a slow handshake: no registered name, no store thread, no temp dir."""
    mute = socket.socket()  # accepts TCP but never answers the websocket handshake
    mute.bind(("127.0.0.1", 0))
    mute.listen()
    port = mute.getsockname()[1]
    before = {t.name for t in threading.enumerate()}
    accepted = threading.Event()

    def interrupt_after_accept() -> None:
        conn, _ = mute.accept()
        accepted.set()
        _interrupt_main()
        conn.close()

    helper = threading.Thread(target=interrupt_after_accept, daemon=True)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            obbws.create_connection(
                provider="demo", name="intr", symbol="btcusd", url=f"ws://127.0.0.1:{port}"
            )
    finally:
        mute.close()
    assert accepted.is_set()
    assert obbws.default_registry().names() == []
    leftover = {t.name for t in threading.enumerate()} - before
    assert not any(name.startswith("obbws-store") for name in leftover)


SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from pathlib import Path
    from obbws_jupyter.client import WebSocketClient

    client = WebSocketClient("demo", symbol="btcusd,ethusd", rate=2000)
    client.connect()
    seen = threading.Event()
    client.add_record_hook(lambda recs: seen.set() if client.status().records_received > 50
                           else None)
    assert seen.wait(10), "no data"
    address = client.start_broadcasting(port=0)
    df = client.get_results()
    print("ROWS", len(df) > 0, "DIR", Path(client.results_file).parent, "ADDR", address)
    if sys.argv[1] == "close":
        client.close()
    # with "exit" the interpreter exits with everything still running
    """
)


@pytest.mark.parametrize("how", ["close", "exit"])
def test_standalone_client_in_a_script_cleans_up(how: str, tmp_path: Path) -> None:
    """WebSocketClient works in a plain script; close() or mere exit leaves no temp dir."""
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), how], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("ROWS"))
    _, ok, _, directory, _, address = line.split()
    assert ok == "True"
    assert not Path(directory).exists()
    port = int(address.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "Traceback" not in out.stderr
