"""A real redis-server for the Redis sink tests: a free loopback port, a temporary data
directory, and stop/start of the same server (same port, same data) mid-stream."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import TIMEOUT, kill_all


def redis_server_binary() -> str:
    """redis-server from PATH or the usual system folders (``make engine-deps`` installs it)."""
    for candidate in (
        shutil.which("redis-server"),
        "/usr/bin/redis-server",
        "/usr/sbin/redis-server",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("redis-server is not installed: run `make engine-deps`")


def finish(conn: Any) -> None:
    """Stop a connection's stream and wait until every sink has settled what it was given."""
    conn.stop_connection()
    for sink in conn.get_client()._sink_list:
        sink.flush(TIMEOUT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1:``port`` with its data in ``directory``.

    ``appendonly`` keeps every write across :meth:`stop` / :meth:`start` (the restart tests);
    ``password`` turns on ``requirepass``; ``tls`` (a folder holding ``ca.pem``, ``server.pem``
    and ``server.key``) serves TLS only, on the same port. RDB snapshots are off.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        tls: Path | None = None,
    ):
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'ca.pem'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.tls:
            return redis.Redis.from_url(self.url)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
            "--tls-cert-file", str(self.tls / "server.pem"),
            "--tls-key-file", str(self.tls / "server.key"),
            "--tls-ca-cert-file", str(self.tls / "ca.pem"),
        ]  # fmt: skip

    def start(self) -> None:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
        argv += ["--appendonly", "yes" if self.appendonly else "no", "--loglevel", "warning"]
        argv += ["--appendfsync", "always"] if self.appendonly else []
        if self.password:
            argv += ["--requirepass", self.password]  # argv of a test server only
        argv += self._tls_args()  # the last --port wins
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        client = self.client()
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"redis-server exited: {err[-500:]}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.02)  # polling the server's readiness, with a deadline
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(TIMEOUT)
        if proc.poll() is None:  # it did not stop: no flush to wait for any more
            proc.kill()
            proc.wait(TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()


def _running(server: RedisServer) -> Iterator[RedisServer]:
    server.start()
    yield server
    kill_all()  # before the server goes: closing sinks deliver what they still hold
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server (no persistence) for one test."""
    yield from _running(RedisServer(tmp_path))


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with the append-only file on (fsync always): its data survives a
    stop/start, which the restart tests do."""
    yield from _running(RedisServer(tmp_path, appendonly=True))


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that requires a password."""
    yield from _running(RedisServer(tmp_path, password="s3cret-redis-pw"))


def make_certificates(folder: Path) -> Path:
    """A throw-away CA and a server certificate for 127.0.0.1 (made here with openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make the TLS test certificates")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=obbws test CA",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip
    return folder


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that speaks TLS only (rediss://), with a CA made for the test."""
    certs = tmp_path / "certs"
    certs.mkdir()
    yield from _running(RedisServer(tmp_path, tls=make_certificates(certs)))
