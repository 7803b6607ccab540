"""The background event loop: one daemon thread (``obbws-loop``) per process runs one asyncio
loop for every provider stream and broadcast server.

Synchronous code (a notebook cell, a script, any thread) submits coroutines with :func:`run`,
which waits with a timeout and never touches the caller's own loop, so it works unchanged
inside a running Jupyter kernel. Calling :func:`run` from the loop thread itself would
deadlock and raises instead.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from obbws_jupyter.exceptions import InvalidParameterError, ObbwsTimeoutError, WrongThreadError

__all__ = [
    "DEFAULT_TIMEOUT",
    "TIMEOUT_ENV",
    "default_timeout",
    "get_loop",
    "in_loop_thread",
    "run",
    "shutdown",
    "submit",
]

T = TypeVar("T")
log = logging.getLogger("obbws_jupyter.runtime")

TIMEOUT_ENV = "OBBWS_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds run() waits when $OBBWS_TIMEOUT is not set
THREAD_NAME = "obbws-loop"

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """Return the background loop, starting its thread on first use (and after a fork)."""
    global _loop, _thread, _pid
    loop = _loop
    if loop is not None and _pid == os.getpid() and not loop.is_closed():
        return loop
    with _lock:
        if _loop is not None and _pid == os.getpid() and not _loop.is_closed():
            return _loop
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def _main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    _cancel_all(loop)
                loop.close()

        thread = threading.Thread(target=_main, name=THREAD_NAME, daemon=True)
        thread.start()
        started.wait()
        _loop, _thread, _pid = loop, thread, os.getpid()
        return loop


class _Default:
    """The default of ``run(timeout=...)``: :func:`default_timeout` at the time of the call."""

    def __repr__(self) -> str:
        return f"${TIMEOUT_ENV} or {DEFAULT_TIMEOUT:g}"


_DEFAULT = _Default()


def default_timeout() -> float:
    """Seconds :func:`run` waits by default: ``$OBBWS_TIMEOUT``, read at each call (so it can
    be changed in a running kernel), else 30. A value that is not seconds > 0 is refused."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise InvalidParameterError(
            f"{TIMEOUT_ENV}={text!r} is invalid: set it to a number of seconds > 0 (such as "
            f"60), or unset it for {DEFAULT_TIMEOUT:g}."
        )
    return value


def in_loop_thread() -> bool:
    """True when called from the background loop's own thread."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the background loop and return a concurrent Future at once."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | _Default | None = _DEFAULT) -> T:
    """Run ``coro`` on the background loop and wait for its result.

    Raises :class:`ObbwsTimeoutError` (after cancelling the coroutine) when it takes longer than
    ``timeout`` seconds (default: :func:`default_timeout`; None waits for ever); a
    coroutine's own error (its own, more precise timeout included) is
    raised as it is. Called on the loop thread it raises :class:`WrongThreadError` at once
    (waiting there would deadlock). A KeyboardInterrupt while waiting — even one that lands
    while the coroutine is being handed to the loop — cancels the coroutine and waits for its
    clean-up, so an interrupted cell never leaves a half-finished operation running.
    """
    if in_loop_thread():
        coro.close()
        raise WrongThreadError(
            "obbws_jupyter.runtime.run() was called from the obbws-loop thread (a record hook "
            "or a listen() callback); await the coroutine instead, or call from another thread."
        )
    if isinstance(timeout, _Default):
        try:
            timeout = default_timeout()
        except InvalidParameterError:
            coro.close()
            raise
    call = _Call(coro, get_loop())
    try:
        call.start()
        return call.future.result(timeout)
    except concurrent.futures.TimeoutError:
        if call.future.done():  # the coroutine's own TimeoutError: keep its message
            raise
        call.cancel_and_wait()
        name = getattr(coro, "__qualname__", "operation")
        raise ObbwsTimeoutError(
            f"{name} did not finish within {timeout:g} s; it was cancelled. "
            "Check the provider/network, or pass a larger timeout."
        ) from None
    except KeyboardInterrupt:
        call.cancel_and_wait()
        raise


class _Call:
    """One coroutine handed to the loop, cancellable from any thread at any moment.

    The task is created by a loop callback and a cancellation is another loop callback queued
    after it, so the cancel always finds the task (or knows it was never scheduled)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.coro = coro
        self.loop = loop
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.finished = threading.Event()
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def start(self) -> None:
        self.loop.call_soon_threadsafe(self._create)

    def _create(self) -> None:
        self.task = self.loop.create_task(self.coro)
        self.task.add_done_callback(self._done)
        if self.cancelled:
            self.task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self.future.cancel()
        elif task.exception() is not None:
            self.future.set_exception(task.exception())
        else:
            self.future.set_result(task.result())
        self.finished.set()

    def _cancel(self) -> None:
        if self.task is None:  # the hand-over never reached the loop
            self.coro.close()
            self.finished.set()
        elif not self.task.done():
            self.task.cancel()

    def cancel_and_wait(self, wait: float = 5.0) -> None:
        self.cancelled = True
        try:
            self.loop.call_soon_threadsafe(self._cancel)
        except RuntimeError:  # the loop is closed: nothing runs any more
            return
        if not self.finished.wait(wait):
            log.warning("a cancelled operation did not finish its clean-up within %.1f s", wait)


def call_soon(callback: Callable[..., Any], *args: Any) -> None:
    """Run a plain callback on the loop thread (thread-safe)."""
    get_loop().call_soon_threadsafe(callback, *args)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


def shutdown(timeout: float = 5.0) -> None:
    """Stop the loop thread (cancelling what still runs). Safe to call more than once."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop, _thread = None, None
    if loop is None or thread is None or _pid != os.getpid():
        return
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
    if thread is not threading.current_thread():
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the obbws-loop thread did not stop within %.1f s", timeout)


# Registered at import, before any client registers its own hook, so it runs last (LIFO).
atexit.register(shutdown)
