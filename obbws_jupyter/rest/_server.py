"""Running the HTTP API in this process: :func:`serve_api` and the :class:`ApiServer` handle.

The server is uvicorn on its own daemon thread (``obbws-http``) and its own asyncio loop:
HTTP traffic never runs on the obbws loop that ingests the streams, while every route calls
the same endpoints, registry and obbws loop as the notebook. The socket is bound before the
thread starts, so a busy port or a bad host fails at once with a clear error; port 0 picks a
free port (``server.url`` tells which).

Listening on anything but loopback needs an API key (``api_key=`` or the environment
variable ``OBBWS_API_KEY``): without one the call is refused before anything binds.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import socket
import threading
import weakref
from typing import Any

import uvicorn

from obbws_jupyter._util import SecretFilter
from obbws_jupyter._validate import check_port
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsTimeoutError, PortInUseError
from obbws_jupyter.rest._app import create_app
from obbws_jupyter.rest._seam import Endpoints
from obbws_jupyter.rest._security import is_loopback
from obbws_jupyter.rest._sse import Feeds

__all__ = ["API_KEY_ENV", "ApiServer", "serve_api"]

log = logging.getLogger("obbws_jupyter.rest")

API_KEY_ENV = "OBBWS_API_KEY"
START_TIMEOUT = 15.0
_live: weakref.WeakSet[ApiServer] = weakref.WeakSet()


def _check_api_key(api_key: Any, host: str) -> str | None:
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is not None and (
        not isinstance(api_key, str) or not api_key.strip() or api_key != api_key.strip()
    ):
        raise InvalidParameterError(
            "api_key must be a non-empty string without surrounding spaces (or None)."
        )
    if api_key is None and not is_loopback(host):
        raise InvalidParameterError(
            f"Refusing to serve the HTTP API on {host!r} without an API key: anyone who can "
            f"reach this machine could drive your connections. Pass api_key=..., set "
            f"{API_KEY_ENV}, or bind to 127.0.0.1."
        )
    return api_key


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidParameterError(f"host {host!r} cannot be resolved: {exc.strerror}.") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"Port {port} on {host} is in use: pass another port, or port=0 for a free one."
            ) from None
        raise InvalidParameterError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, telling a thread when it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready.set()


class ApiServer:
    """A running HTTP API: ``.url``, ``.stop()``; also a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        api_key: str | None,
        endpoints: Endpoints | None = None,
        **app_options: Any,
    ) -> None:
        self.host = host
        self._api_key = api_key
        self.app = create_app(endpoints, api_key=api_key, **app_options)
        self._feeds: Feeds = self.app.state.feeds
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # leave logging to the application (no handlers installed)
            access_log=True,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        ready = threading.Event()
        self._server = _Server(config, ready)
        self._thread = threading.Thread(target=self._run, name="obbws-http", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or not self._thread.is_alive():
            self.stop()
            raise ObbwsTimeoutError(f"The HTTP API did not start within {START_TIMEOUT} s.")
        _live.add(self)
        log.info("HTTP API serving on %s", self.url)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException:  # a dying server thread is logged, never raised into nowhere
            log.exception("The HTTP API server stopped with an error")

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def api_key_required(self) -> bool:
        return self._api_key is not None

    def stop(self, timeout: float = 10.0) -> None:
        """End the event streams, stop the server and free the port (idempotent)."""
        self._feeds.close_all()
        self._server.should_exit = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._socket.close()
        _live.discard(self)
        if self._thread.is_alive():
            log.warning("The HTTP API server did not stop within %.1f s", timeout)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"ApiServer(url={self.url!r}, running={self.running}, "
            f"api_key_required={self.api_key_required})"
        )


def serve_api(
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    *,
    endpoints: Endpoints | None = None,
    **app_options: Any,
) -> ApiServer:
    """Serve the HTTP API from this process (a notebook, a script) and return at once.

    The routes drive this process's connections, the same the notebook sees. ``port=0``
    picks a free port. ``api_key`` (default: the environment variable ``OBBWS_API_KEY``)
    is then required on every request; without one, only loopback hosts are allowed.
    Returns an :class:`ApiServer`: ``server.url``, ``server.stop()``.
    """
    if not isinstance(host, str) or not host.strip():
        raise InvalidParameterError(f"host must be a host name or address, got {host!r}.")
    port = check_port(port)
    key = _check_api_key(api_key, host)
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretFilter) for f in logger.filters):
            logger.addFilter(SecretFilter())  # tokens in query strings are masked in the logs
    return ApiServer(host, int(port), key, endpoints, **app_options)


def _stop_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop(timeout=3.0)


atexit.register(_stop_all)
