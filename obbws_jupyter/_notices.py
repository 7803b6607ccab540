"""Failures that happen in the background, shown where the user is looking: the output of the
cell they run next.

Two things can go wrong while no widget shows a connection: its stream gives up reconnecting
(state "failed"), or ``start_broadcasting`` found the default port busy and moved to the next
free one. Background threads never print (their output would land in whatever cell runs, and
library code logs instead: the ``obbws_jupyter`` logger has a NullHandler). So, inside IPython
only, the first :class:`~obbws_jupyter._connection.Connection` made in the kernel registers a
``pre_run_cell`` and a ``post_run_cell`` hook. They run on the kernel's main thread as a cell
starts and ends, look at the connections of this kernel (the registry, so those created
here), and write each new notice once, as one line saying what happened and what to do, to
that cell's stderr. Outside IPython nothing is registered and nothing is written.
:func:`notices` gives the same lines to ``Connection.__repr__``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["failure_text", "notices", "watch"]

_lock = threading.Lock()
# (registry, name) of the connections made in this kernel
_watched: set[tuple[Any, str]] = set()
_shown: set[tuple[Any, ...]] = set()  # notices already written (once each)
_shell: Any = None  # the IPython shell the hooks are registered with


def failure_text(
    name: str, error: str | None, retry: str = "restart_connection() tries again."
) -> str:
    """Why a stream failed, in one line: without the connection's name in front (it is said
    next to it), ending with one way to try again (``retry``) unless it already says one."""
    text = " ".join((error or "the stream failed").split())
    while text.startswith(f"{name}: "):
        text = text[len(name) + 2 :]
    if "restart" not in text.lower():
        text = f"{text.rstrip('.')}. {retry}"
    return text


def notices(client: Any) -> list[tuple[tuple[Any, ...], str]]:
    """The current notices of ``client`` as (key, text): the key says when a notice is new
    (a second failure after a restart is a new one)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    name = client.name
    if client.state == "failed":
        status = client.status()
        key = ("failed", id(client), status.connected_at, status.reconnects, status.last_error)
        out.append((key, f"stream {name!r} failed: {failure_text(name, status.last_error)}"))
    server: Any = getattr(client, "_broadcast", None)  # the one place the asked port is known
    if (
        server is not None
        and server.is_serving
        and server.port_fallback
        and server.requested_port not in (0, server.port)
    ):
        out.append(
            (
                ("port", id(server)),
                f"{name!r} broadcasts on {server.address}: port {server.requested_port} was "
                "busy. Pass port=0 for any free port, or choose one.",
            )
        )
    return out


def watch(name: str, registry: Any) -> None:
    """Remember a connection made in this kernel (its name in ``registry``); the first call
    inside IPython registers the cell hooks. A no-op outside IPython."""
    global _shell
    shell = _ipython()
    if shell is None:
        return
    with _lock:
        _watched.add((registry, name))
        if _shell is shell:
            return
        _shell = shell
    shell.events.register("pre_run_cell", _flush)
    shell.events.register("post_run_cell", _flush)


def _ipython() -> Any:
    ipython = sys.modules.get("IPython")  # never imported here: only when IPython runs
    return ipython.get_ipython() if ipython is not None else None


def _flush(*_event: Any) -> None:
    """Write the notices not written yet (a cell hook: main thread, inside the cell)."""
    lines = []
    with _lock:
        watched = sorted(_watched, key=lambda item: item[1])
    for registry, name in watched:
        client = registry.find(name)
        if client is None:
            continue
        try:
            found = notices(client)
        except Exception:  # a connection being killed meanwhile: next time
            continue
        for key, text in found:
            with _lock:
                if key in _shown:
                    continue
                _shown.add(key)
            lines.append(f"obbws: {text}\n")
    if lines:
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
