"""A ResultsStore in a child process, driven by JSON lines on stdin (one reply line each).

The storage fault tests need faults that act on a whole process (RLIMIT_FSIZE, SIGKILL), so
the store under test runs here. Commands: ``open``, ``put``, ``flush``, ``stats``,
``rlimit``, ``checkpoint``, ``stream`` and ``close``; see :func:`handle`. Records are the
synthetic rows of ``tests.unit.test_store``.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from typing import Any

from obbws_jupyter._store import ResultsStore
from tests.unit.test_store import FIELDS, records

_state: dict[str, Any] = {"store": None, "put": 0}


def _store() -> ResultsStore:
    store = _state["store"]
    assert store is not None, "open first"
    return store


def _put(n: int) -> None:
    _store().put(records(_state["put"] + 1, n))
    _state["put"] += n


def handle(cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "open":
        _state["store"] = ResultsStore(
            FIELDS,
            results_file=cmd["path"],
            limit=cmd.get("limit"),
            save_results=True,
            flush_interval=cmd.get("flush_interval", 0.05),
            name="worker",
        )
        _state["put"] = _store().next_id - 1
        return {"next_id": _store().next_id}
    if op == "put":
        _put(int(cmd["n"]))
        return {"put": _state["put"]}
    if op == "flush":
        try:
            _store().flush(timeout=cmd.get("timeout", 10.0))
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}
    if op == "stats":
        stats = _store().stats
        return {"put": _state["put"], **{k: v for k, v in stats.items() if k != "last_flush_ms"}}
    if op == "rlimit":
        size = cmd["bytes"]
        limit = resource.RLIM_INFINITY if size is None else int(size)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        return {"ok": True}
    if op == "checkpoint":  # what DuckDB does by itself once the WAL is large
        try:
            _store()._con.execute("CHECKPOINT")
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}
    if op == "stream":  # put and flush forever, acknowledging each flushed total
        while True:
            _put(int(cmd["n"]))
            _store().flush(timeout=60)
            print(json.dumps({"acked": _state["put"]}), flush=True)
    if op == "close":
        lost = _store().close()
        return {"lost": lost, "put": _state["put"]}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails (EFBIG)
    for line in sys.stdin:
        try:
            reply = handle(json.loads(line))
        except Exception as exc:
            reply = {"exception": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply, default=str), flush=True)


if __name__ == "__main__":
    main()
