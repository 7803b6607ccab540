"""A sink run in a child process: ingestion pays a cheap hand-off, the OS shares the CPU.

``conn.add_sink(url, process=True)`` (``nice=10`` by default) wraps the sink that ``url``
names in a :class:`ProcessSink`. Its contract, beyond :class:`~obbws_jupyter.sinks.Sink`'s:

- **The same sink, elsewhere.** The child (a fresh interpreter: ``python -c`` importing this
  module, never a fork of a kernel full of threads) builds the very sink class the URL names,
  with the same options, and opens it with the connection's :class:`SinkContext`. The URL,
  its password and the options travel over the child's stdin pipe, never in its argv.
- **A hand-off that never blocks the stream.** The sink takes frames as the store does
  (:attr:`Sink.takes_frames`): :meth:`ProcessSink.write_frame` (loop thread, O(1)) queues the
  frame's dicts, unstamped and unchecked, in a small bounded backlog (the same
  :class:`_Backlog` and ``drop`` policy as every batching sink, at most ``HANDOFF_PENDING``
  rows: dicts kept alive cost the garbage collector). Only when the pipe can take more does the
  loop turn queued rows into a message: the store's fit check (records the store rejects are
  left out), then ``orjson`` of the dicts with each frame's first id, length and received_at
  (pickle when a value is not plain JSON), written without blocking. A child that falls
  behind leaves the pipe full, and the backlog drops rows (counted) instead of slowing
  ingestion: rows are checked and serialised only once the child can read them. The child
  reads on only while its sink holds less than two deliveries (or, while its destination is
  down, less than ``max_pending``: the outage budget stays in the child).
- **Health crosses back.** The child reports its sink's :class:`SinkHealth` every
  ``HEALTH_EVERY`` seconds on its stdout pipe; :meth:`ProcessSink.health` adds the parent's
  own backlog (pending, dropped, lag) and the rows lost with a crashed child.
- **flush() and close() round-trip.** Both hand over everything queued, then a command that
  the child answers once its sink has flushed (or closed: the answer carries the rows it could
  not deliver); ``close()`` returns every row not delivered, the parent's and the child's.
- **Crashes.** A child that exits is reported (``state="failed"``, ``last_error`` saying how
  it ended); the rows it held are counted as dropped, and a new child is started after a
  backoff (``retry_base`` / ``retry_cap``), fed from where the old one stopped.
- **Never orphaned.** The child reads its stdin until EOF: when the parent exits or dies, the
  pipe closes, the child closes its sink (delivering what it can within a few seconds) and
  exits. It ignores SIGINT (a Ctrl-C in the terminal is the parent's business) and lowers its
  own CPU priority (``nice``), so at full speed the OS gives the stream's process the core.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from obbws_jupyter import runtime
from obbws_jupyter._util import backoff, mask_secrets
from obbws_jupyter.exceptions import (
    ConfigurationError,
    InvalidParameterError,
    ObbwsTimeoutError,
    WrongThreadError,
)
from obbws_jupyter.protocol import Field, Record
from obbws_jupyter.sinks._base import (
    Batch,
    Sink,
    SinkContext,
    SinkHealth,
    _Backlog,
    _Frames,
)

try:
    import fcntl
except ImportError:  # Windows: the pipe keeps its default size
    fcntl = None  # type: ignore[assignment]

__all__ = ["ProcessSink", "child_main"]

log = logging.getLogger("obbws_jupyter.sinks.process")

HEADER = struct.Struct(">cI")  # message kind, payload length
SPEC, JSON_ROWS, PICKLED_ROWS, FLUSH, CLOSE = b"S", b"J", b"P", b"F", b"C"
HANDOFF_ROWS = 2_000  # rows per message at most (and when that many wait, hand over at once)
HANDOFF_PENDING = 2 * HANDOFF_ROWS  # rows the parent keeps waiting for the pipe at most
HANDOFF_EVERY = 0.005  # seconds a smaller batch waits before it is handed over
HEALTH_EVERY = 0.25  # seconds between the child's health reports
PIPE_BYTES = 1 << 20  # the pipe's capacity asked for (Linux; the default is 64 KiB)
CLOSE_GRACE = 2.0  # seconds close() waits beyond the child's own close timeout
CLOSE_ON_EOF = 5.0  # seconds the child's sink gets to deliver what it holds when orphaned
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
_CHILD = "from obbws_jupyter.sinks._process import child_main; child_main()"


def check_nice(nice: Any) -> int:
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise InvalidParameterError(
            f"sink option nice must be an int from 0 (the parent's priority) to 19 (the lowest), "
            f"got {nice!r}."
        )
    return nice


def _not_json(value: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(value).__name__}")


def encode_payload(payload: dict[str, Any]) -> tuple[bytes, bytes]:
    """(kind, bytes) of one hand-off: orjson when every value is plain JSON (the common
    case, about 200 ns a row), pickle otherwise (datetimes, numpy scalars, big ints)."""
    try:
        return JSON_ROWS, orjson.dumps(payload, default=_not_json, option=_JSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return PICKLED_ROWS, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def _payload(batch: Batch, all_fit: Callable[[Any], bool]) -> dict[str, Any]:
    """A batch as plain data: coalesced frames as their dicts (not stamped) with each frame's
    first id, length and received_at; any other batch, or frames holding a record the store
    rejects (the same check the store runs: both leave out the same records), as stamped
    rows. Only rows the child is about to read are checked here: at full speed, a fraction."""
    rows = batch.raw_rows
    if isinstance(batch, _Frames) and rows is not None:
        if all_fit(rows):
            return {
                "rows": rows,
                "firsts": batch.firsts,
                "counts": batch.counts,
                "times": batch.times,
            }
        return {"rows": [row for row in batch.rows() if all_fit((row,))]}
    return {"rows": batch.rows()}


def _batch(payload: dict[str, Any], fields: tuple[Field, ...]) -> Batch:
    """The child's batch of a payload."""
    rows = payload["rows"]
    if "firsts" not in payload:
        return Batch(fields, rows=rows)
    return _Frames.of(fields, rows, payload["firsts"], payload["counts"], payload["times"])


def message(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class _Child:
    """One child process and what the parent knows of it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.fd = proc.stdin.fileno()
        self.stdout: IO[bytes] = proc.stdout
        self.health: dict[str, Any] = {}
        self.sent = 0  # rows fully written into its pipe
        self.alive = True


class ProcessSink(Sink):
    """Runs the sink ``factory(url, **options)`` in a child process (see the module
    docstring). ``nice`` (0-19, default 10) lowers the child's CPU priority; ``max_pending``
    and ``drop`` bound the parent's backlog (and the child sink's own), ``retry_base`` /
    ``retry_cap`` pace restarts of a crashed child."""

    takes_frames = True

    def __init__(
        self,
        url: str,
        factory: str | Callable[..., Sink],
        *,
        nice: int = 10,
        **options: Any,
    ) -> None:
        built = _resolve(factory)
        options = {**getattr(built, "child_options", {}), **options}
        template = built(url, **options)  # the options are checked here, at once
        try:  # the child gets them by pickle: a class by its name, values as they are
            pickle.dumps((factory, options))
        except Exception as exc:
            raise InvalidParameterError(
                f"process=True runs the sink in a child process, which gets its class and "
                f"options by pickle: {type(exc).__name__}: {exc}. Use a sink class defined in "
                "an importable module, and plain option values."
            ) from None
        super().__init__(template.url)
        vars(self)["kind"] = template.kind  # the wrapped sink's kind (a class attribute there)
        self._template = template
        self._factory = factory
        self._options = options
        self.nice = check_nice(nice)
        self.retry_base = float(options.get("retry_base", 0.2))
        self.retry_cap = float(options.get("retry_cap", 10.0))
        # The parent holds little: rows kept alive here are dicts the garbage collector walks
        # and the cache misses (20,000 of them cost the stream's process 15-23% more CPU per
        # record, 4,000 of them 5-7%); the child's sink keeps the long backlog (max_pending).
        self.max_pending = int(options.get("max_pending", 200_000))
        self._backlog = _Backlog(
            min(self.max_pending, HANDOFF_PENDING), options.get("drop", "oldest"), coalesce=True
        )
        self._lock = self._backlog.lock
        self._out: deque[tuple[bytes, int]] = deque()  # messages (and rows in each) to write
        self._out_offset = 0  # bytes of the first message already written
        self._armed = False  # the loop watches the pipe for room
        self._timer: Any = None
        self._poll: Any = None  # where the loop cannot watch the pipe: the next look at it
        self._child: _Child | None = None
        self._state = "opening"
        self._last_error: str | None = None
        self._failures = 0
        self._closing = False
        self._stopped = threading.Event()
        self._lost = 0  # rows lost with children that exited (counted as dropped)
        self._done_written = 0  # rows written by children that exited
        self._done_dropped = 0  # rows those children dropped
        self._replies: dict[int, dict[str, Any]] = {}
        self._replied = threading.Condition(self._lock)
        self._seq = 0
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it starts or while it is restarted)."""
        child = self._child
        return child.proc.pid if child is not None and child.alive else None

    def query_view(self) -> tuple[str, str] | None:
        return self._template.query_view()

    # -- Sink ------------------------------------------------------------------------------

    def open(self, context: SinkContext) -> None:
        from obbws_jupyter._store import _compile_fit_check  # (the child never imports DuckDB)

        super().open(context)
        self._all_fit = _compile_fit_check(context.fields)
        self._spec = pickle.dumps(
            {
                "factory": self._factory,
                "url": self.url,
                "options": self._options,
                "context": dataclasses.replace(context, encoder=None),
                "nice": self.nice,
                "path": sys.path,
            }
        )
        try:
            child = self._spawn()
        except OSError as exc:
            raise ConfigurationError(
                f"sink {self.display_url}: could not start its process ({exc}); pass "
                "process=False to run it in this one."
            ) from None
        self._reader = threading.Thread(
            target=self._read_health, name=f"obbws-sink-process-{self.kind}", daemon=True
        )
        runtime.get_loop()  # the loop the hand-off runs on
        self._attach(child)
        self._reader.start()

    def write(self, batch: Batch) -> None:
        if not batch.n or self._closing:
            return
        with self._lock:
            self._backlog.add(batch)  # a stamped batch joins the frames (see write_frame)
            ready = self._backlog.rows >= HANDOFF_ROWS
        self._queued(ready)

    def write_frame(self, records: list[Record], first_id: int, received_at: int) -> None:
        if not records or self._closing:
            return
        assert self.context is not None
        with self._lock:
            self._backlog.add_frame(records, first_id, received_at, self.context.fields)
            ready = self._backlog.rows >= HANDOFF_ROWS
        self._queued(ready)

    def _queued(self, ready: bool) -> None:
        if self._armed:  # the pipe is full: the loop hands over once it has room
            return
        if ready:
            self._pump()
        elif self._timer is None:
            self._timer = runtime.get_loop().call_later(HANDOFF_EVERY, self._on_timer)

    def flush(self, timeout: float = 10.0) -> None:
        reply = self._round_trip(FLUSH, timeout)
        if reply.get("error"):
            raise ObbwsTimeoutError(f"sink {self.display_url}: {reply['error']}")

    def close(self, timeout: float = 10.0) -> int:
        if self._closing:
            return 0
        before = self.health().rows_dropped
        self._closing = True
        child = self._child
        if child is not None and child.alive:
            try:  # the child closes its sink: what it could not deliver counts as dropped
                self._round_trip(CLOSE, timeout, grace=CLOSE_GRACE)
            except (ObbwsTimeoutError, WrongThreadError) as exc:
                log.warning("sink %s: closing its process: %s", self.display_url, exc)
        self._stopped.set()
        unsent = 0
        with contextlib.suppress(Exception):
            unsent = runtime.run(self._unsend(), timeout=5)
        if child is not None:
            _end(child.proc, timeout=2.0)
        with self._lock:
            self._lost += unsent
            if child is not None:  # rows it never confirmed are not delivered
                in_flight = self._in_flight_locked()
                self._lost += in_flight
                child.sent -= in_flight
            self._backlog.abandon()
            self._state = "closed"
        lost = self.health().rows_dropped - before
        if lost:
            log.warning("sink %s: closed with %d rows undelivered", self.display_url, lost)
        return lost

    def health(self) -> SinkHealth:
        with self._lock:
            child = self._child
            seen = child.health if child is not None else {}
            backlog = self._backlog
            lags = [lag for lag in (backlog.lag(), seen.get("lag_seconds")) if lag is not None]
            error = self._last_error or seen.get("last_error")
            state = self._state_locked()
            return SinkHealth(
                url=self.display_url,
                kind=self.kind,
                state=state,
                rows_written=self._done_written + seen.get("rows_written", 0),
                rows_dropped=(
                    backlog.dropped + self._lost + self._done_dropped + seen.get("rows_dropped", 0)
                ),
                rows_pending=backlog.rows + self._in_flight_locked(),
                lag_seconds=max(lags) if lags else None,
                last_error=error,
            )

    # -- the hand-off (loop thread) ----------------------------------------------------------

    def _on_timer(self) -> None:
        self._timer = None
        if not self._armed:
            self._pump()

    def _pump(self) -> None:
        """Write queued messages into the pipe until it is full, turning queued rows into
        messages only as the pipe takes them; then watch the pipe for room."""
        child = self._child
        if child is None or not child.alive:
            return
        while True:
            if not self._out and not self._next_message():
                self._disarm()
                return
            data, rows = self._out[0]
            try:
                written = os.write(child.fd, memoryview(data)[self._out_offset :])
            except BlockingIOError:
                written = 0
            except OSError:  # the child is gone: the reader thread restarts it
                self._disarm()
                return
            self._out_offset += written
            if self._out_offset < len(data):
                self._arm(child.fd)
                return
            self._out.popleft()
            self._out_offset = 0
            child.sent += rows

    def _next_message(self, everything: bool = False) -> bool:
        """Queue the next waiting rows as messages (one per batch: the frames coalesce into
        chunks of up to 8,192 rows); False when none wait."""
        with self._lock:
            batches = self._backlog.take(self._backlog.rows if everything else HANDOFF_ROWS)
        for batch in batches:
            payload = _payload(batch, self._all_fit)
            self._out.append((message(*encode_payload(payload)), batch.n))
        return bool(batches)

    async def _unsend(self) -> int:
        """At close: stop writing; how many rows were in messages never (fully) sent."""
        self._disarm()
        unsent = sum(rows for _, rows in self._out)
        self._out.clear()
        return unsent

    def _arm(self, fd: int) -> None:
        if self._armed:
            return
        self._armed = True
        loop = runtime.get_loop()
        try:
            loop.add_writer(fd, self._pump)
        except NotImplementedError:  # a loop that watches no pipes (Windows): look again soon
            self._poll = loop.call_later(HANDOFF_EVERY, self._repump)

    def _repump(self) -> None:
        self._poll = None
        self._armed = False
        self._pump()

    def _disarm(self, child: _Child | None = None) -> None:
        child = child or self._child
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        elif self._armed and child is not None:
            with contextlib.suppress(Exception):
                runtime.get_loop().remove_writer(child.fd)
        self._armed = False

    def _command(self, kind: bytes, seq: int, timeout: float) -> None:
        """Queue a command after everything written so far (loop thread)."""
        while self._next_message(everything=True):
            pass
        payload = orjson.dumps({"seq": seq, "timeout": timeout})
        self._out.append((message(kind, payload), 0))
        if not self._armed:
            self._pump()

    def _round_trip(self, kind: bytes, timeout: float, grace: float = 0.0) -> dict[str, Any]:
        """Send a command after everything queued; its answer. The child gets ``timeout``, the
        wait here ``grace`` more (its answer takes a moment to cross)."""
        if runtime.in_loop_thread():
            raise WrongThreadError(
                f"sink {self.display_url}: flush() and close() wait for the sink's process, so "
                "they cannot be called from the loop thread (a record hook or a listen() callback)."
            )
        deadline = time.monotonic() + timeout + grace
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._replies[seq] = {}  # waiting: an answer fills it
        runtime.call_soon(self._command, kind, seq, timeout)
        with self._replied:
            try:
                while not self._replies[seq]:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ObbwsTimeoutError(
                            f"sink {self.display_url}: its process did not answer within "
                            f"{timeout:g} s ({self._backlog.rows + self._in_flight_locked()} "
                            f"rows pending, state {self._state_locked()}"
                            + (f", last error: {self._last_error})" if self._last_error else ")")
                        )
                    self._replied.wait(min(remaining, 0.5))
                return self._replies[seq]
            finally:
                del self._replies[seq]

    def _state_locked(self) -> str:
        child = self._child
        if self._state != "ok" or child is None:
            return self._state
        return str(child.health.get("state", "opening"))

    def _in_flight_locked(self) -> int:
        """Rows in the pipe or in the child's sink, not yet written or dropped there."""
        child = self._child
        if child is None:
            return 0
        seen = child.health
        settled = seen.get("rows_written", 0) + seen.get("rows_dropped", 0)
        return max(0, child.sent - settled)

    # -- the child's lifecycle (reader thread) -------------------------------------------------

    def _spawn(self) -> _Child:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(message(SPEC, self._spec))  # before the pipe goes non-blocking
        proc.stdin.flush()
        os.set_blocking(proc.stdin.fileno(), False)
        # Linux: room for a few messages in the pipe, so fewer wake-ups
        if fcntl is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):
                fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        log.info("sink %s: started its process (pid %d)", self.display_url, proc.pid)
        return _Child(proc)

    def _attach(self, child: _Child) -> None:
        with self._lock:
            self._child = child
            if self._state != "closed":
                self._state = "ok"

        runtime.call_soon(self._pump)

    def _read_health(self) -> None:
        while True:
            child = self._child
            assert child is not None
            with contextlib.suppress(OSError, ValueError):  # ValueError: close() closed it
                for line in child.stdout:
                    self._on_line(child, line)
            code = child.proc.wait()
            self._child_exited(child, code)
            if self._stopped.is_set() or self._closing:
                return
            delay = backoff(self._failures, self.retry_base, self.retry_cap)
            if self._stopped.wait(delay) or self._closing:  # the backoff before a restart
                return
            try:
                new = self._spawn()
            except OSError as exc:
                with self._lock:
                    self._last_error = f"could not start the sink process: {exc}"
                continue
            self._attach(new)

    def _on_line(self, child: _Child, line: bytes) -> None:
        try:
            report = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        kind = report.pop("report", None)
        with self._lock:
            if kind == "health":
                child.health = report
                if report.get("state") in ("ok", "retrying"):
                    self._failures = 0
                    self._last_error = None
            elif kind == "reply":
                child.health = report.pop("health", child.health)
                if int(report["seq"]) in self._replies:  # someone still waits for it
                    self._replies[int(report["seq"])] = report
                self._replied.notify_all()

    def _child_exited(self, child: _Child, code: int) -> None:
        """Count what the child held as lost, wake whoever waits for its answers, and say how
        it ended (unless it ended as told, by close())."""
        with self._lock:
            child.alive = False
            seen = child.health
            lost = max(0, child.sent - seen.get("rows_written", 0) - seen.get("rows_dropped", 0))
            self._lost += lost
            self._done_written += seen.get("rows_written", 0)
            self._done_dropped += seen.get("rows_dropped", 0)
            child.health = {}
            child.sent = 0
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            error = f"the sink process (pid {child.proc.pid}) {how}; {lost} rows it held are lost"
            for seq, reply in self._replies.items():  # the waiters of its answers get none
                self._replies[seq] = reply or {"seq": seq, "error": error}
            self._replied.notify_all()
            if self._closing:
                return
            self._failures += 1
            self._state = "failed"
            self._last_error = mask_secrets(f"{error}; restarting it")
        log.warning("sink %s: %s", self.display_url, self._last_error)
        runtime.call_soon(self._forget, child)
        with contextlib.suppress(Exception):
            child.stdout.close()

    def _forget(self, child: _Child) -> None:
        """On the loop: stop watching the dead child's pipe; a message it got only part of
        goes again, whole, to the next child, and commands meant for it are dropped."""
        self._disarm(child)
        with contextlib.suppress(Exception):  # closed only once the loop no longer watches it
            assert child.proc.stdin is not None
            child.proc.stdin.close()
        self._out_offset = 0
        self._out = deque(item for item in self._out if item[1])


def _resolve(factory: str | Callable[..., Sink]) -> Callable[..., Sink]:
    if not isinstance(factory, str):
        return factory
    import importlib

    module_name, _, attribute = factory.partition(":")
    built: Callable[..., Sink] = getattr(importlib.import_module(module_name), attribute)
    return built


def _end(proc: subprocess.Popen[bytes], timeout: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


# -- the child ---------------------------------------------------------------------------------


class _Reports:
    """The child's side of its stdout pipe: one JSON line per report (any thread)."""

    def __init__(self, out: IO[bytes], sink: Sink) -> None:
        self.out = out
        self.sink = sink
        self.lock = threading.Lock()

    def send(self, report: dict[str, Any]) -> None:
        line = orjson.dumps(report) + b"\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()

    def health(self) -> dict[str, Any]:
        return self.sink.health().as_dict()

    def every(self, seconds: float, stop: threading.Event) -> None:
        while not stop.wait(seconds):  # the reporting cadence
            try:
                self.send({"report": "health", **self.health()})
            except (OSError, ValueError):  # the parent is gone
                return


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def child_main() -> None:
    """The child process: read the spec, run the sink, feed it until the parent goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")  # the reports' pipe; print() in a sink goes to stderr
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    header = _read_exactly(stdin, HEADER.size)
    if header is None:
        return
    _, size = HEADER.unpack(header)
    spec = pickle.loads(_read_exactly(stdin, size) or b"")
    sys.path[:] = list(dict.fromkeys([*sys.path, *spec["path"]]))
    if spec["nice"] and hasattr(os, "nice"):
        os.nice(spec["nice"])
    context: SinkContext = spec["context"]
    sink = _resolve(spec["factory"])(spec["url"], **spec["options"])
    reports = _Reports(out, sink)
    try:
        sink.open(context)
    except Exception as exc:
        error = mask_secrets(f"{type(exc).__name__}: {exc}")[:500]
        reports.send(
            {"report": "health", **reports.health(), "state": "failed", "last_error": error}
        )
        sys.exit(3)
    stop = threading.Event()
    threading.Thread(target=reports.every, args=(HEALTH_EVERY, stop), daemon=True).start()
    try:
        _serve(stdin, sink, context, reports)
    finally:
        stop.set()


def _serve(stdin: IO[bytes], sink: Sink, context: SinkContext, reports: _Reports) -> None:
    fields = context.fields
    loop = runtime.get_loop()
    while True:
        _wait_for_room(sink)
        header = _read_exactly(stdin, HEADER.size)
        if header is None:  # EOF: the parent closed the pipe or died
            sink.close(CLOSE_ON_EOF)
            return
        kind, size = HEADER.unpack(header)
        payload = _read_exactly(stdin, size)
        if payload is None:
            sink.close(CLOSE_ON_EOF)
            return
        if kind in (JSON_ROWS, PICKLED_ROWS):
            data = orjson.loads(payload) if kind == JSON_ROWS else pickle.loads(payload)
            loop.call_soon_threadsafe(sink.write, _batch(data, fields))
            continue
        command = orjson.loads(payload)
        runtime.run(_settle(), timeout=command["timeout"])  # the writes queued before it
        if kind == FLUSH:
            error = None
            try:
                sink.flush(command["timeout"])
            except Exception as exc:
                error = mask_secrets(str(exc))[:500]
            reports.send({"report": "reply", "seq": command["seq"], "error": error,
                          "health": reports.health()})  # fmt: skip
        elif kind == CLOSE:
            lost = sink.close(command["timeout"])
            reports.send({"report": "reply", "seq": command["seq"], "lost": lost,
                          "health": reports.health()})  # fmt: skip
            return


def _wait_for_room(sink: Sink) -> None:
    """Read on only once the sink holds less than two deliveries' worth. A sink that cannot
    keep up then leaves the pipe full, and the parent drops rows before it turns them into
    messages (the cheap place), instead of this process decoding rows only to drop them."""
    backlog = getattr(sink, "_backlog", None)
    if not isinstance(backlog, _Backlog):
        return
    ahead = min(2 * max(int(getattr(sink, "batch_rows", 0)), HANDOFF_ROWS), backlog.max_pending)
    with backlog.settled:
        # a destination that is down: hold up to max_pending here (its outage budget)
        while backlog.rows >= (backlog.max_pending if _retrying(sink) else ahead):
            backlog.settled.wait(0.1)


def _retrying(sink: Sink) -> bool:
    return getattr(sink, "_state", None) == "retrying"


async def _settle() -> None:
    """Nothing: awaiting it through the loop runs the callbacks queued before it."""
