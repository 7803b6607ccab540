"""Sinks: where a connection's records go besides its DuckDB results file.

``conn.add_sink(url, **options)`` (or ``create_connection(..., sinks=[url, ...])``) picks the
sink by the URL's scheme; ``conn.sinks`` and ``status.sinks`` show each one's health, and
``conn.remove_sink(url)`` closes it. A sink that is slow or down never slows the stream or the
other sinks: it keeps a bounded backlog, retries with backoff and counts what it drops.

======================  =========================================================
URL                     sink
======================  =========================================================
``nats://host:port``    NATS JetStream (``obbws_jupyter.sinks.nats``)
``redis://host:port/0`` Redis Streams (``obbws_jupyter.sinks.redis``)
``parquet:///path/dir`` hive-partitioned Parquet files (``obbws_jupyter.sinks.parquet``)
======================  =========================================================

A sink class can also be given directly (``conn.add_sink(MySink(...))``), and a package adds
a scheme with :func:`register_sink`. The interface and the batching bases are in
:mod:`obbws_jupyter.sinks._base` (re-exported here).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.sinks._base import (
    AsyncBatchingSink,
    Batch,
    BatchingSink,
    Sink,
    SinkContext,
    SinkHealth,
)
from obbws_jupyter.sinks._process import ProcessSink

__all__ = [
    "AsyncBatchingSink",
    "Batch",
    "BatchingSink",
    "ProcessSink",
    "Sink",
    "SinkContext",
    "SinkHealth",
    "close_sinks",
    "known_schemes",
    "register_sink",
    "sink_from_url",
]

log = logging.getLogger("obbws_jupyter.sinks")

SinkFactory = Callable[..., Sink]

# scheme -> "module:attribute" (imported on first use: a sink's client library is optional)
_SCHEMES: dict[str, str | SinkFactory] = {
    "nats": "obbws_jupyter.sinks.nats:NatsSink",
    "redis": "obbws_jupyter.sinks.redis:RedisSink",
    "rediss": "obbws_jupyter.sinks.redis:RedisSink",
    "parquet": "obbws_jupyter.sinks.parquet:ParquetSink",
}
# schemes whose sinks run in a child process unless process=False is given (see docs/sinks.md)
PROCESS_DEFAULT: dict[str, bool] = {"nats": True, "redis": True, "rediss": True}
# the extra of pyproject.toml that installs a scheme's client library
_EXTRAS = {"nats": "nats", "redis": "redis", "rediss": "redis"}
_lock = threading.Lock()


def register_sink(scheme: str, factory: SinkFactory, *, replace: bool = False) -> None:
    """Make ``factory(url, **options)`` the sink of URLs with ``scheme``."""
    key = scheme.lower().rstrip(":/")
    with _lock:
        if key in _SCHEMES and not replace:
            raise ValueError(f"a sink is already registered for {key}://")
        _SCHEMES[key] = factory


def known_schemes() -> list[str]:
    with _lock:
        return sorted(_SCHEMES)


def sink_from_url(url: str, *, process: bool | None = None, **options: Any) -> Sink:
    """The sink for ``url`` (by its scheme), built with ``options``. ``process=True`` runs
    it in a child process (:class:`~obbws_jupyter.sinks._process.ProcessSink`, which also
    takes ``nice``); None picks the scheme's default (:data:`PROCESS_DEFAULT`)."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidParameterError(
            f"a sink is named by a URL such as nats://127.0.0.1:4222, redis://127.0.0.1:6379/0 "
            f"or parquet:///path/to/dir; got {url!r}."
        )
    scheme = urlsplit(url).scheme.lower()
    with _lock:
        target = _SCHEMES.get(scheme)
    if target is None:
        raise InvalidParameterError(
            f"no sink for {scheme}:// URLs; known schemes: "
            f"{', '.join(s + '://' for s in known_schemes())}."
        )
    factory = _load(scheme, target) if isinstance(target, str) else target
    if process is None:
        process = PROCESS_DEFAULT.get(scheme, False)
    if not isinstance(process, bool):
        raise InvalidParameterError(
            f"sink option process must be True (run the sink in a child process) or False, "
            f"got {process!r}."
        )
    if process:
        return ProcessSink(url, target, **options)
    if "nice" in options:
        raise InvalidParameterError(
            "sink option nice sets the CPU priority of a sink's process: pass process=True too."
        )
    return factory(url, **options)


def _load(scheme: str, target: str) -> SinkFactory:
    module_name, _, attribute = target.partition(":")
    module = import_engine(scheme, module_name, f"the {scheme}:// sink")
    factory: SinkFactory = getattr(module, attribute)
    return factory


def import_engine(scheme: str, module_name: str, use: str) -> ModuleType:
    """Import the module serving ``scheme`` (a sink, or ``listen()``'s reader); a missing
    client library raises InvalidParameterError naming the extra that installs it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(scheme)
        hint = f' (pip install "obbws-jupyter[{extra}]")' if extra else ""
        raise InvalidParameterError(
            f"{use} needs a library that is not installed: {exc.name}{hint}."
        ) from None


def close_sinks(sinks: list[Sink], timeout: float = 10.0, owner: str = "") -> int:
    """Close ``sinks`` at once, each in its own thread, all within one deadline (a sink
    whose server is down waits up to ``timeout`` for it: one after the other, N of them
    would take N times that). Returns the rows they could not deliver (a sink still closing
    at the deadline goes on in the background, its rows not counted here)."""
    lost: list[int] = []

    def close(sink: Sink) -> None:
        try:
            n = sink.close(timeout)
        except Exception:
            log.exception("%s: closing sink %s failed", owner, sink.display_url)
            return
        if n:
            log.warning("%s: sink %s closed with %d rows undelivered", owner, sink.display_url, n)
        lost.append(n)

    threads = [
        threading.Thread(target=close, args=(sink,), name=f"obbws-close-{sink.kind}", daemon=True)
        for sink in sinks
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 5.0  # a close may take its timeout and a bit
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(lost)
