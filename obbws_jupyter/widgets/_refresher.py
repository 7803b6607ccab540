"""One daemon thread (``obbws-widgets``) that drives every live view of the process.

Each registered item has ``tick(now) -> next_due``: the thread calls every item's ``tick``
(which returns at once when nothing is due) and sleeps until the earliest next due time, or
until :meth:`Refresher.wake`. A view decides in
its ``tick`` whether to send anything (only while a frontend shows it); the thread itself only
schedules. Work here never runs on the stream's loop thread, so a refresh cannot delay ingest,
and never on the kernel's main thread, so it runs while a cell is busy.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

__all__ = ["Refresher", "Tickable", "refresher"]

log = logging.getLogger("obbws_jupyter.widgets")

IDLE_WAIT = 1.0  # seconds between ticks when no item asks for sooner


class Tickable(Protocol):
    def tick(self, now: float) -> float:
        """Do what is due at monotonic time ``now``; return when to be called next."""
        ...


class Refresher:
    """Schedules :class:`Tickable` items on one thread (started on first use)."""

    def __init__(self) -> None:
        self._items: list[Tickable] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.cpu_seconds = 0.0  # CPU time of this thread (for benchmarks)

    def add(self, item: Tickable) -> None:
        with self._lock:
            if item not in self._items:
                self._items.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="obbws-widgets", daemon=True)
                self._thread.start()
        self._wake.set()

    def remove(self, item: Tickable) -> None:
        with self._lock:
            if item in self._items:
                self._items.remove(item)

    def wake(self) -> None:
        """Tick every item now (after a user action, a new view...)."""
        self._wake.set()

    def __contains__(self, item: object) -> bool:
        with self._lock:
            return item in self._items

    def _run(self) -> None:
        while True:
            started = time.thread_time()
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                items = list(self._items)
            next_wake = now + IDLE_WAIT
            for item in items:  # an item that is not due returns at once
                next_wake = min(next_wake, self._tick(item, now))
            self.cpu_seconds += time.thread_time() - started
            self._wake.wait(max(0.005, next_wake - time.monotonic()))

    @staticmethod
    def _tick(item: Tickable, now: float) -> float:
        try:
            return item.tick(now)
        except Exception:  # one broken view must not stop the others
            log.exception("a live view failed to refresh")
            return now + IDLE_WAIT


refresher = Refresher()
