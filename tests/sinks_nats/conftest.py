"""A real nats-server with JetStream for the NATS sink tests: a free loopback port, a temporary
store directory, stopped afterwards; ``restart`` / ``stop`` / ``start`` for the outage tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TIMEOUT, wait_until

pytestmark = pytest.mark.integration


def nats_server_binary() -> str:
    """nats-server from PATH or the sbin directories Debian installs it to."""
    found = shutil.which("nats-server") or shutil.which(
        "nats-server", path="/usr/sbin:/usr/local/sbin"
    )
    if found is None:
        raise RuntimeError("nats-server is not installed: run `make engine-deps`.")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    """True once the server sends its INFO line on a fresh TCP connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


class NatsServer:
    """One nats-server process; ``stop()`` and ``start()`` keep its port and store directory."""

    def __init__(
        self,
        store: Path,
        *,
        token: str | None = None,
        jetstream: bool = True,
        max_payload: int | None = None,
    ) -> None:
        self.store = store
        self.port = free_port()
        self.token = token
        self.jetstream = jetstream
        self.max_payload = max_payload
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            argv += ["-js", "-sd", str(self.store)]
        lines = []
        if self.token is not None:  # through a config file, so it is in no process's argv
            lines.append(f'authorization {{ token: "{self.token}" }}')
        if self.max_payload is not None:
            lines.append(f"max_payload: {self.max_payload}")
        if lines:
            config = self.store.parent / "nats.conf"
            config.write_text("\n".join(lines) + "\n")
            argv += ["-c", str(config)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: _answers(self.port), TIMEOUT):
            self.stop()
            raise RuntimeError(f"nats-server did not answer on port {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()  # nats-server flushes its store and exits on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(TIMEOUT)
        if process.poll() is None:  # stuck: never leave it behind
            process.kill()
            process.wait(TIMEOUT)

    def stream_state(self, name: str) -> Any:
        """The stream's state (messages, first/last sequence)."""
        return jetstream(self.url, lambda js: js.stream_info(name), self.token).state

    def stream_config(self, name: str) -> Any:
        return jetstream(self.url, lambda js: js.stream_info(name), self.token).config


def jetstream(url: str, call: Callable[[Any], Awaitable[Any]], token: str | None = None) -> Any:
    """``await call(js)`` with a JetStream context of a fresh nats-py client of the test's own
    (in a private loop); its result."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=TIMEOUT, token=token)
        try:
            return await call(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream nats-server on a free loopback port with a temporary store directory."""
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    from tests.conftest import kill_all

    kill_all()  # sinks close while their server is still there
    server.stop()
