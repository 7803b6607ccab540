"""Shared test helpers: one timing unit, a clean registry per test, record waiters."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

# One timing unit for every wait, scaled for slow machines: OBBWS_TEST_TIMEOUT_SCALE=3.
TIMEOUT = 10.0 * float(os.environ.get("OBBWS_TEST_TIMEOUT_SCALE", "1"))


class RecordWaiter:
    """Counts records as the client receives them (a record hook on the loop thread), so a test
    waits on a condition instead of sleeping."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.count = 0
        self.symbols: set[str] = set()
        self._cond = threading.Condition()
        self._client = client
        client.add_record_hook(self._hook)

    def _hook(self, records: list[dict]) -> None:
        with self._cond:
            self.count += len(records)
            for r in records:
                self.symbols.add(r.get("symbol"))
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = TIMEOUT) -> bool:
        """Wait until ``n`` records in total have arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)

    def wait_more(self, n: int, timeout: float = TIMEOUT) -> bool:
        with self._cond:
            target = self.count + n
            return self._cond.wait_for(lambda: self.count >= target, timeout)

    def wait_symbol(self, symbol: str, timeout: float = TIMEOUT) -> bool:
        with self._cond:
            self.symbols.discard(symbol)
            return self._cond.wait_for(lambda: symbol in self.symbols, timeout)

    def close(self) -> None:
        self._client.remove_record_hook(self._hook)


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll a condition on state another thread owns (status counters) until it holds or
    ``timeout`` passes; for state with an event or a waiter, wait on that instead."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def kill_all() -> None:
    from obbws_jupyter import default_registry

    default_registry().kill_all()


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    """Every test starts and ends with no registered connection."""
    yield
    kill_all()


@pytest.fixture
def demo_server():  # type: ignore[no-untyped-def]
    """A demo provider server on 127.0.0.1:0 with test controls (no API key check)."""
    from obbws_jupyter.offline.demo_server import start_demo_server

    handle = start_demo_server(rate=500.0, heartbeat_interval=0.2)
    yield handle
    kill_all()  # before the server goes, so no client sees a drop
    handle.close()
