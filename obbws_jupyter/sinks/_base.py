"""The sink seam: one small interface for everything that consumes a connection's records.

A connection's stream hands every record, once, to each of its sinks::

    sink.open(context)        # before the first write (raises a clear ObbwsError if it cannot)
    sink.write(batch)         # on the obbws loop thread, once per read: never blocks
    sink.flush(timeout)       # from any other thread: what was written before is settled
    sink.close(timeout)       # returns how many rows it could not deliver
    sink.health()             # SinkHealth: state, rows written / dropped / pending, lag, error

A :class:`Batch` holds one frame's records (ids and ``received_at`` assigned), by row or by
column, converted on demand and cached, so a sink that wants Arrow and one that wants JSON
both pay only for what they use. ``WebSocketClient`` builds one per frame with
:meth:`Batch.stamped` (O(1): the ids stay beside the dicts until someone asks for
:meth:`Batch.rows`) and hands it first to the DuckDB store, then, in order, to its internal
sinks (the broadcast, the record hooks, which feed the widget's live tail) and to the user's
sinks. The store's writer uses the same backlog as the bases below, coalescing frames.

Two bases carry the machinery that a sink should not write again:

- :class:`BatchingSink` (a worker thread: DuckDB, Parquet, files) and
- :class:`AsyncBatchingSink` (a task on the obbws loop: asyncio clients such as NATS, Redis).

Both keep a bounded backlog (``max_pending`` rows): a slow or dead destination never slows the
stream or the other sinks; beyond the bound the ``drop`` policy discards the oldest (or the
newest) rows and counts them. A failed write is retried with exponential backoff and jitter,
the rows kept in order; ``health().state`` says ``"retrying"`` and ``last_error`` why, both
cleared by the next success.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from obbws_jupyter import runtime
from obbws_jupyter._util import backoff, mask_secrets
from obbws_jupyter._wire import RecordEncoder
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsTimeoutError, WrongThreadError
from obbws_jupyter.protocol import Field, Record

__all__ = [
    "AsyncBatchingSink",
    "Batch",
    "BatchingSink",
    "Sink",
    "SinkContext",
    "SinkHealth",
]

log = logging.getLogger("obbws_jupyter.sinks")

BASE_COLUMNS = ("id", "received_at")
FRAMES_CHUNK = 8192  # rows a coalescing backlog merges into one _Frames before starting another
DROP_POLICIES = ("oldest", "newest")


class Batch:
    """The records of one frame (or several), ``id`` and ``received_at`` included.

    Built from rows (dicts, as provider sessions produce them) or from columns (lists of equal
    length, keyed by field name); :meth:`rows` and :meth:`columns` convert on first use and
    cache. Treat a batch and what it returns as read-only: every sink sees the same objects.
    """

    __slots__ = ("_columns", "_first", "_pending", "_received", "_rows", "fields", "n")

    def __init__(
        self,
        fields: Sequence[Field],
        *,
        rows: list[Record] | None = None,
        columns: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        if (rows is None) == (columns is None):
            raise ValueError("a Batch is built from rows or from columns")
        self.fields = tuple(fields)
        self._rows = rows
        self._columns: dict[str, Sequence[Any]] | None = (
            dict(columns) if columns is not None else None
        )
        self._first: int | None = None  # the first id of a stamped() batch
        self._received = 0  # and its received_at (ints: no tuple per frame to collect)
        self._pending = False  # stamped() ids not yet written into the dicts
        if rows is not None:
            self.n = len(rows)
        else:
            assert columns is not None
            self.n = len(columns["id"]) if "id" in columns else 0

    @classmethod
    def from_records(cls, records: list[Record], fields: Sequence[Field]) -> Batch:
        return cls(fields, rows=records)

    @classmethod
    def stamped(
        cls,
        records: list[Record],
        fields: tuple[Field, ...],
        first_id: int,
        received_at: int,
        *,
        written: bool = False,
    ) -> Batch:
        """A frame's records, ids ``first_id, first_id + 1, ...``, one ``received_at`` (int
        ns). Built in O(1) (it runs once per frame on the loop thread): the ids are written
        into the record dicts only when someone asks for :meth:`rows` (``written=True``: the
        caller already did), and a sink reading :meth:`column` or :meth:`gather` never pays
        a per-record loop for them."""
        batch = cls.__new__(cls)
        batch.fields = fields
        batch._rows = records
        batch._columns = None
        batch.n = len(records)
        batch._first = first_id
        batch._received = received_at
        batch._pending = not written
        return batch

    @staticmethod
    def gather(
        batches: Sequence[Batch],
    ) -> tuple[list[Record], list[int], list[int], list[int]] | None:
        """For sinks that convert in bulk (Arrow): the row dicts of every batch in one list,
        with each batch's first id, length and received_at (so the two base columns can be
        built without touching the dicts); None unless every batch came from
        :meth:`stamped`. The dicts may or may not hold ``id`` / ``received_at`` yet."""
        rows: list[Record] = []
        firsts: list[int] = []
        counts: list[int] = []
        times: list[int] = []
        for batch in batches:
            first = batch._first
            if first is None or batch._rows is None:
                return None
            rows += batch._rows
            if isinstance(batch, _Frames):
                firsts += batch.firsts
                counts += batch.counts
                times += batch.times
            else:
                firsts.append(first)
                counts.append(batch.n)
                times.append(batch._received)
        return rows, firsts, counts, times

    def has_column(self, name: str) -> bool:
        """True when :meth:`column` ``(name)`` is at hand without a per-record conversion."""
        if self._first is not None and name in BASE_COLUMNS:
            return True
        return self._columns is not None and name in self._columns

    @property
    def raw_rows(self) -> list[Record] | None:
        """The row dicts this batch was built from, as they are (without the ``id`` and
        ``received_at`` of a :meth:`stamped` batch unless :meth:`rows` added them); None for
        a batch built from columns."""
        return self._rows

    def tail(self, n: int) -> Batch:
        """A batch of the newest ``n`` records (all of them when ``n >= len(self)``)."""
        if n >= self.n:
            return self
        start = self.n - n
        if self._first is not None and self._rows is not None:
            rows = self._rows[start:]
            return Batch.stamped(rows, self.fields, self._first + start, self._received)
        if self._rows is not None:
            return Batch(self.fields, rows=self._rows[start:])
        return Batch(self.fields, columns={k: v[start:] for k, v in self.columns().items()})

    def head(self, n: int) -> Batch:
        """A batch of the oldest ``n`` records (all of them when ``n >= len(self)``)."""
        if n >= self.n:
            return self
        if self._first is not None and self._rows is not None:
            return Batch.stamped(self._rows[:n], self.fields, self._first, self._received)
        if self._rows is not None:
            return Batch(self.fields, rows=self._rows[:n])
        return Batch(self.fields, columns={k: v[:n] for k, v in self.columns().items()})

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"<Batch {self.n} records, ids {self.first_id}..{self.last_id}>"

    @property
    def names(self) -> tuple[str, ...]:
        """Every column name, in table order: ``id``, ``received_at``, then the fields."""
        return BASE_COLUMNS + tuple(f.name for f in self.fields if f.name not in BASE_COLUMNS)

    @property
    def first_id(self) -> int | None:
        if self._first is not None:
            return self._first if self.n else None
        return int(self.column("id")[0]) if self.n else None

    @property
    def last_id(self) -> int | None:
        if self._first is not None:
            return self._first + self.n - 1 if self.n else None
        return int(self.column("id")[-1]) if self.n else None

    def rows(self) -> list[Record]:
        """The records as dicts (missing values absent)."""
        if self._pending:
            self._apply_stamp()
            return self._rows  # type: ignore[return-value]
        if self._rows is None:
            assert self._columns is not None
            names = [n for n in self.names if n in self._columns]
            columns = [self._columns[n] for n in names]
            self._rows = [
                {k: v for k, v in zip(names, values, strict=True) if v is not None}
                for values in zip(*columns, strict=True)
            ]
        return self._rows

    def _apply_stamp(self) -> None:
        # Two threads may both get here: they write the same values, so that is harmless.
        assert self._rows is not None and self._first is not None
        next_id, received_at = self._first, self._received
        for record in self._rows:
            record["id"] = next_id
            record["received_at"] = received_at
            next_id += 1
        self._pending = False

    def column(self, name: str) -> Sequence[Any]:
        """One column (``None`` where a record lacks the field)."""
        if self._columns is not None and name in self._columns:
            return self._columns[name]
        if self._first is not None and name in BASE_COLUMNS:
            have = dict(self._columns or {})
            have["id"] = range(self._first, self._first + self.n)
            have["received_at"] = [self._received] * self.n
            self._columns = have
            return have[name]
        return self.columns()[name]

    def columns(self) -> dict[str, Sequence[Any]]:
        """Every column of :attr:`names`, each of length ``n`` (``None`` where missing)."""
        if self._first is not None:
            self.column("id")  # the base columns without reading the dicts
        have = self._columns
        if have is None or any(name not in have for name in self.names):
            rows = self.rows()
            have = dict(have or {})
            for name in self.names:
                if name not in have:
                    have[name] = [row.get(name) for row in rows]
            self._columns = have
        return have


class _Frames(Batch):
    """Consecutive :meth:`Batch.stamped` frames merged into one batch: their dicts in one
    list and, per frame, its first id, length and received_at. A backlog that coalesces
    (the store's) keeps one of these instead of one object per frame, so a frame leaves
    nothing behind for the garbage collector to walk while it waits for the writer."""

    __slots__ = ("counts", "firsts", "times")

    def __init__(self, fields: tuple[Field, ...], rows: list[Record]) -> None:
        super().__init__(fields, rows=rows)
        self.firsts: list[int] = []
        self.counts: list[int] = []
        self.times: list[int] = []

    @classmethod
    def of(
        cls,
        fields: tuple[Field, ...],
        rows: list[Record],
        firsts: list[int],
        counts: list[int],
        times: list[int],
    ) -> _Frames:
        """Frames rebuilt from their parts (rows not stamped; a sink process receives these)."""
        frames = cls(fields, rows)
        frames.firsts, frames.counts, frames.times = firsts, counts, times
        frames._first = firsts[0] if firsts else None
        frames._pending = True
        return frames

    @classmethod
    def starting(
        cls, rows: list[Record], first_id: int, received_at: int, fields: tuple[Field, ...]
    ) -> _Frames:
        """A chunk holding one frame (a copy of its list: later frames are appended to it)."""
        frames = cls(fields, list(rows))
        frames._first = first_id
        frames._pending = True
        frames.firsts.append(first_id)
        frames.counts.append(len(rows))
        frames.times.append(received_at)
        return frames

    @property
    def last_id(self) -> int | None:
        return self.firsts[-1] + self.counts[-1] - 1 if self.n else None

    def _runs(self) -> Iterator[tuple[int, int, int]]:
        return zip(self.firsts, self.counts, self.times, strict=True)

    def _apply_stamp(self) -> None:
        assert self._rows is not None
        rows = iter(self._rows)
        for first, count, received_at in self._runs():
            for next_id in range(first, first + count):
                record = next(rows)
                record["id"] = next_id
                record["received_at"] = received_at
        self._pending = False

    def column(self, name: str) -> Sequence[Any]:
        if name in BASE_COLUMNS and not (self._columns and name in self._columns):
            ids: list[int] = []
            received: list[int] = []
            for first, count, received_at in self._runs():
                ids += range(first, first + count)
                received += [received_at] * count
            self._columns = {**(self._columns or {}), "id": ids, "received_at": received}
        return super().column(name)

    def tail(self, n: int) -> Batch:
        if n >= self.n:
            return self
        assert self._rows is not None
        out = _Frames(self.fields, self._rows[self.n - n :])
        out._pending = True
        skip = self.n - n
        for first, count, received_at in self._runs():
            if skip >= count:
                skip -= count
                continue
            out.firsts.append(first + skip)
            out.counts.append(count - skip)
            out.times.append(received_at)
            skip = 0
        out._first = out.firsts[0]
        return out

    def head(self, n: int) -> Batch:
        if n >= self.n:
            return self
        assert self._rows is not None
        out = _Frames(self.fields, self._rows[:n])
        out._pending = True
        left = n
        for first, count, received_at in self._runs():
            if left <= 0:
                break
            out.firsts.append(first)
            out.counts.append(min(count, left))
            out.times.append(received_at)
            left -= count
        out._first = out.firsts[0]
        return out


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink knows about the connection it serves (given to :meth:`Sink.open`)."""

    name: str  # the connection's name
    provider: str
    fields: tuple[Field, ...]
    tz: str = "America/New_York"
    limit: int | None = 1000  # the connection's cap: sinks that keep history mirror it
    encoder: RecordEncoder | None = None  # the wire form of a record (one per connection)

    def record_encoder(self) -> RecordEncoder:
        return self.encoder or RecordEncoder(self.fields, self.tz)


@dataclass(frozen=True, slots=True)
class SinkHealth:
    """A sink's health, as the status shows it (``status.sinks``)."""

    url: str  # secrets masked
    kind: str
    state: str  # "opening" | "ok" | "retrying" | "closed" | "failed"
    rows_written: int = 0
    rows_dropped: int = 0
    rows_pending: int = 0
    lag_seconds: float | None = None  # age of the oldest record still waiting, if any
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sink(abc.ABC):
    """Consumes a connection's records (see the module docstring)."""

    kind: ClassVar[str] = "sink"
    #: True for a sink whose :meth:`write_frame` takes a frame's records as they arrive (not
    #: stamped, not checked against the columns): when every sink of a connection does, the
    #: stream hands them over in O(1) per frame, as it does to the store
    takes_frames: ClassVar[bool] = False
    #: options this sink takes by default when it runs in a child process (``process=True``),
    #: unless given: e.g. no cap on the CPU share it may take from its own process's loop
    child_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self.context: SinkContext | None = None

    @property
    def display_url(self) -> str:
        """The URL with any password or token masked (for status, logs and errors)."""
        return mask_secrets(self.url)

    def open(self, context: SinkContext) -> None:
        """Get ready for the connection's records; raise an ObbwsError saying what is wrong."""
        self.context = context

    @abc.abstractmethod
    def write(self, batch: Batch) -> None:
        """Take one frame's records. Runs on the loop thread: must not block or raise."""

    def write_frame(self, records: list[Record], first_id: int, received_at: int) -> None:
        """Take one frame's records, ids ``first_id, first_id + 1, ...`` and ``received_at``
        not yet written into the dicts; some may hold values the store rejects (it drops them
        when it writes, keeping their ids): a sink leaves those out the same way. Called on
        the loop thread, and only when :attr:`takes_frames` is True."""
        assert self.context is not None
        self.write(Batch.stamped(records, self.context.fields, first_id, received_at))

    def flush(self, timeout: float = 10.0) -> None:
        """Return once everything written before is delivered, dropped or rejected."""
        return None

    def close(self, timeout: float = 10.0) -> int:
        """Stop; deliver what can be delivered within ``timeout``; return rows not delivered."""
        return 0

    @abc.abstractmethod
    def health(self) -> SinkHealth:
        """A snapshot of the sink's state and counters."""

    def query_view(self) -> tuple[str, str] | None:
        """``(view name, directory)`` when ``conn.query`` may read this sink's Parquet files
        (as that view); None for a sink that keeps no files."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_url} {self.health().state}>"


# -- the batching machinery shared by the thread and the loop bases -------------------------


class _Backlog:
    """Batches waiting for delivery, bounded in rows, with the counters health reports.

    Shared by both batching bases and by the DuckDB store's writer. Beyond ``max_pending``
    rows the ``drop`` policy discards rows, counted in ``dropped`` (a loss): "oldest" cuts
    exactly the excess from the front, "newest" refuses a whole incoming batch. With ``keep``
    (a cap such as the store's ``limit``), only the newest ``keep`` rows are worth
    delivering at all: older ones are *superseded* (counted apart, not a loss: the cap would
    delete them). ``put_seq`` / ``done_seq`` count rows accepted / settled, so a flush waits
    for exactly what was written before it. Callers hold :attr:`lock` (``settled`` is its
    condition, notified whenever rows settle).
    """

    __slots__ = (
        "batches",
        "coalesce",
        "done_seq",
        "drop",
        "dropped",
        "head_skip",
        "keep",
        "lock",
        "max_pending",
        "put_seq",
        "rows",
        "settled",
        "since",
        "superseded",
        "written",
    )

    def __init__(
        self,
        max_pending: int,
        drop: str = "oldest",
        keep: int | None = None,
        coalesce: bool = False,
    ) -> None:
        self.max_pending = max_pending
        self.drop = drop
        self.keep = keep
        self.coalesce = coalesce  # merge consecutive stamped frames into one _Frames
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)
        # one entry per frame: the batch, and apart (floats are not tracked by the garbage
        # collector, a tuple per frame would be) the monotonic time it was queued, for lag
        self.batches: deque[Batch] = deque()
        self.since: deque[float] = deque()
        self.rows = 0
        self.put_seq = 0  # rows ever accepted (dropped ones included)
        self.done_seq = 0  # rows whose fate is settled (delivered, superseded or dropped)
        self.written = 0
        self.dropped = 0
        self.superseded = 0  # not yet taken by the writer (see take_superseded)
        # rows cut from the front batch but not yet sliced off it: a cut is O(1) per frame,
        # the slice (a copy) happens once, when the batch is taken
        self.head_skip = 0

    def add(self, batch: Batch) -> int:
        """Queue ``batch``; returns how many rows were dropped to stay in bounds."""
        if self.coalesce and batch._first is not None and batch._rows is not None:
            return self.add_frame(batch._rows, batch._first, batch._received, batch.fields)
        n = batch.n
        self.put_seq += n
        if self.drop == "newest" and self.rows + n > self.max_pending:
            self._discard(n)
            return n
        self.rows += n
        self.batches.append(batch)
        self.since.append(time.monotonic())
        return self._bound()

    def add_frame(
        self, rows: list[Record], first_id: int, received_at: int, fields: tuple[Field, ...]
    ) -> int:
        """Queue one frame's dicts, ids ``first_id...``, one ``received_at`` (what
        :meth:`Batch.stamped` holds, without building the batch): appended to the last
        :class:`_Frames` chunk. Once per frame on the loop thread, so the common path is
        inline. Returns how many rows were dropped to stay in bounds."""
        n = len(rows)
        self.put_seq += n
        if self.drop == "newest" and self.rows + n > self.max_pending:
            self._discard(n)
            return n
        self.rows += n
        last = self.batches[-1] if self.batches else None
        if last.__class__ is _Frames and last.n < FRAMES_CHUNK:
            last._rows += rows  # type: ignore[operator]
            last.firsts.append(first_id)
            last.counts.append(n)
            last.times.append(received_at)
            last.n += n
            last._pending = True
            last._columns = None
        else:
            self.batches.append(_Frames.starting(rows, first_id, received_at, fields))
            self.since.append(time.monotonic())
        return self._bound()

    def _bound(self) -> int:
        rows = self.rows
        if rows > self.max_pending:
            return self._trim()
        # Rows beyond ``keep`` are superseded in steps of ``keep // 4`` (and exactly at
        # take): one cut per many frames instead of one per frame.
        keep = self.keep
        if keep is not None and rows > keep + (keep >> 2):
            self._supersede()
        return 0

    def requeue(self, batches: list[Batch]) -> int:
        """Put back batches a failed delivery took, first in line; returns rows dropped."""
        now = time.monotonic()
        self._settle_head()
        for batch in reversed(batches):
            self.batches.appendleft(batch)
            self.since.appendleft(now)
            self.rows += batch.n
        if self.drop == "newest":  # the bound holds on retries too
            self._supersede()
            dropped = 0
            while self.rows > self.max_pending and self.batches:
                old = self.batches.pop()
                self.since.pop()
                self.rows -= old.n
                self._discard(old.n)
                dropped += old.n
            return dropped
        return self._trim()

    def _trim(self) -> int:
        self._supersede()
        if self.rows <= self.max_pending:
            return 0
        dropped = self._cut(self.rows - self.max_pending)
        self._discard(dropped)
        return dropped

    def _supersede(self) -> None:
        if self.keep is not None and self.rows > self.keep:
            cut = self._cut(self.rows - self.keep)
            self.superseded += cut
            self.done_seq += cut

    def _cut(self, excess: int) -> int:
        """Remove ``excess`` rows from the front (the last batch touched loses its first
        rows: counted in ``head_skip`` now, sliced off by :meth:`_settle_head`)."""
        cut_total = 0
        while excess > 0 and self.batches:
            left = self.batches[0].n - self.head_skip
            if left <= excess:
                self.batches.popleft()
                self.since.popleft()
                self.head_skip = 0
                cut = left
            else:
                self.head_skip += excess
                cut = excess
            excess -= cut
            cut_total += cut
        self.rows -= cut_total
        return cut_total

    def _settle_head(self) -> None:
        if self.head_skip and self.batches:
            oldest = self.batches[0]
            self.batches[0] = oldest.tail(oldest.n - self.head_skip)
        self.head_skip = 0

    def _discard(self, n: int) -> None:
        self.dropped += n
        self.done_seq += n
        self.settled.notify_all()

    def take(self, max_rows: int) -> list[Batch]:
        """Whole batches from the front, up to ``max_rows`` rows (at least one batch)."""
        self._supersede()
        self._settle_head()
        if max_rows >= self.rows:  # everything: swap the queue (one batch per frame: many)
            queued, self.batches = self.batches, deque()
            self.since = deque()
            self.rows = 0
            return list(queued)
        taken: list[Batch] = []
        count = 0
        while self.batches and (not taken or count + self.batches[0].n <= max_rows):
            batch = self.batches.popleft()
            self.since.popleft()
            taken.append(batch)
            count += batch.n
        self.rows -= count
        return taken

    def take_rows(self, n: int) -> list[Batch]:
        """Exactly the oldest ``n`` rows (everything when ``n >= rows``), the batch at the cut
        split in two: its head is taken, its tail stays first in line."""
        self._supersede()
        self._settle_head()
        if n >= self.rows:
            return self.take(n)
        taken: list[Batch] = []
        count = 0
        while count < n:
            batch = self.batches[0]
            need = n - count
            if batch.n <= need:
                self.batches.popleft()
                self.since.popleft()
                taken.append(batch)
                count += batch.n
            else:
                taken.append(batch.head(need))
                self.batches[0] = batch.tail(batch.n - need)
                count = n
        self.rows -= count
        return taken

    def take_superseded(self) -> int:
        """Rows superseded since the last call (the store counts them as written)."""
        superseded, self.superseded = self.superseded, 0
        return superseded

    def delivered(self, batches: list[Batch], rows: int | None = None) -> None:
        """``batches`` (``rows`` rows, when the caller counted them) are settled: delivered."""
        n = sum(b.n for b in batches) if rows is None else rows
        self.written += n
        self.done_seq += n
        self.settled.notify_all()

    def rejected(self, n: int) -> None:
        """``n`` rows taken are settled without delivery: refused as invalid (not a drop)."""
        self.done_seq += n
        self.settled.notify_all()

    def abandon(self) -> int:
        """At close: what is still pending is lost; count it and return how many rows."""
        lost = self.rows
        self.dropped += lost
        self.done_seq += lost
        self.batches.clear()
        self.since.clear()
        self.head_skip = 0
        self.rows = 0
        self.settled.notify_all()
        return lost

    def wait_settled(
        self,
        deadline: float,
        alive: Callable[[], bool] = lambda: True,
        target: int | None = None,
    ) -> bool:
        """Wait (holding :attr:`lock`) until every row accepted so far (or up to ``target``)
        is settled; False at ``deadline`` (monotonic) or once ``alive()`` says the deliverer
        died."""
        if target is None:
            target = self.put_seq
        while self.done_seq < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not alive():
                return False
            self.settled.wait(min(remaining, 0.5))
        return True

    def lag(self) -> float | None:
        return time.monotonic() - self.since[0] if self.since else None


def _check_options(max_pending: int, batch_rows: int, flush_interval: float, drop: str) -> None:
    for name, value in (("max_pending", max_pending), ("batch_rows", batch_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(f"sink option {name} must be an int >= 1, got {value!r}.")
    if not isinstance(flush_interval, (int, float)) or not 0 < flush_interval <= 60:
        raise InvalidParameterError(
            f"sink option flush_interval must be seconds in (0, 60], got {flush_interval!r}."
        )
    if drop not in DROP_POLICIES:
        raise InvalidParameterError(
            f"sink option drop must be one of {', '.join(DROP_POLICIES)}, got {drop!r}."
        )


def _option_names(cls: type) -> list[str]:
    """The keyword options a sink class takes: its own and every base's ``__init__``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                names.add(param.name)
    return sorted(names)


class _Batching(Sink):
    """What both batching bases share: options, the backlog and health."""

    def __init__(
        self,
        url: str,
        *,
        max_pending: int = 200_000,
        batch_rows: int = 10_000,
        flush_interval: float = 0.1,
        drop: str = "oldest",
        retry_base: float = 0.2,
        retry_cap: float = 10.0,
        **unknown: Any,
    ) -> None:
        super().__init__(url)
        if unknown:  # a typo must name itself, not surface as a TypeError from a private base
            raise InvalidParameterError(
                f"unknown option(s) for the {self.kind} sink: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(_option_names(type(self)))}."
            )
        _check_options(max_pending, batch_rows, flush_interval, drop)
        self.batch_rows = batch_rows
        self.flush_interval = float(flush_interval)
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._backlog = _Backlog(max_pending, drop)
        self._lock = self._backlog.lock
        self._settled = self._backlog.settled
        self._state = "opening"
        self._last_error: str | None = None
        self._failures = 0
        self._closing = False

    def health(self) -> SinkHealth:
        with self._lock:
            backlog = self._backlog
            return SinkHealth(
                url=self.display_url,
                kind=self.kind,
                state=self._state,
                rows_written=backlog.written,
                rows_dropped=backlog.dropped,
                rows_pending=backlog.rows,
                lag_seconds=backlog.lag(),
                last_error=self._last_error,
            )

    def _accept(self, batch: Batch) -> bool:
        """Queue ``batch``; True when enough rows wait to write at once."""
        if not batch.n or self._closing:
            return False
        with self._lock:
            self._backlog.add(batch)
            return self._backlog.rows >= self.batch_rows

    def _take(self) -> list[Batch]:
        with self._lock:
            return self._backlog.take(self.batch_rows)

    def _succeeded(self, batches: list[Batch]) -> None:
        with self._lock:
            self._backlog.delivered(batches)
            self._failures = 0
            self._state, self._last_error = "ok", None

    def _failed(self, batches: list[Batch], exc: BaseException) -> float:
        """Keep ``batches`` for the next try; return how long to wait before it."""
        with self._lock:
            self._backlog.requeue(batches)
            self._failures += 1
            self._state = "retrying"
            self._last_error = mask_secrets(f"{type(exc).__name__}: {exc}")[:500]
            self._settled.notify_all()
            failures = self._failures
        if failures == 1 or failures % 20 == 0:
            log.warning("sink %s: write failed (%s); retrying", self.display_url, self._last_error)
        return backoff(failures, self.retry_base, self.retry_cap)

    def _wait_settled(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._settled:
            if not self._backlog.wait_settled(deadline):
                raise ObbwsTimeoutError(
                    f"sink {self.display_url}: {self._backlog.rows} rows still pending after "
                    f"{timeout:g} s (state {self._state}"
                    + (f", last error: {self._last_error})" if self._last_error else ")")
                )

    def _abandon(self) -> int:
        """At close: what is still pending is lost; count it."""
        with self._lock:
            lost = self._backlog.abandon()
            self._state = "closed"
        if lost:
            log.warning("sink %s: closed with %d rows undelivered", self.display_url, lost)
        return lost


class BatchingSink(_Batching):
    """A sink whose deliveries run in a worker thread (blocking clients: DuckDB, files).

    Subclasses implement :meth:`deliver` (write a list of batches, raise on failure: they are
    retried) and may override :meth:`setup` / :meth:`teardown`, which run in the worker thread
    (so a client that must stay on one thread can). Options: ``max_pending`` rows waiting at
    most, ``batch_rows`` per delivery, ``flush_interval`` seconds between deliveries, ``drop``
    ("oldest" or "newest") beyond ``max_pending``, retry backoff ``retry_base``/``retry_cap``.
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._setup_error: BaseException | None = None
        self._ready = threading.Event()

    # hooks -----------------------------------------------------------------------------------

    def setup(self) -> None:
        """Open the destination (in the worker thread); raise to refuse the sink."""

    @abc.abstractmethod
    def deliver(self, batches: list[Batch]) -> None:
        """Write ``batches`` (in order) to the destination; raise to have them retried."""

    def teardown(self) -> None:
        """Close the destination (in the worker thread)."""

    # Sink ------------------------------------------------------------------------------------

    def open(self, context: SinkContext) -> None:
        super().open(context)
        name = f"obbws-sink-{self.kind}-{context.name}"
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._setup_error is not None:
            raise self._setup_error

    def write(self, batch: Batch) -> None:
        if self._accept(batch):
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        self._wake.set()
        self._wait_settled(timeout)

    def close(self, timeout: float = 10.0) -> int:
        if self._closing:
            return 0
        self._closing = True
        with contextlib.suppress(ObbwsTimeoutError):
            self.flush(timeout)
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._abandon()

    # the worker ------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self.setup()
        except BaseException as exc:
            self._setup_error = exc
            self._state = "failed"
            self._ready.set()
            return
        self._state = "ok"
        self._ready.set()
        try:
            while not self._stopped.is_set():
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                self._deliver_pending()
        finally:
            with contextlib.suppress(Exception):
                self.teardown()

    def _deliver_pending(self) -> None:
        while not self._stopped.is_set():
            batches = self._take()
            if not batches:
                return
            try:
                self.deliver(batches)
            except Exception as exc:
                delay = self._failed(batches, exc)
                self._stopped.wait(delay)
                return
            self._succeeded(batches)


class AsyncBatchingSink(_Batching):
    """A sink whose deliveries run as a task on the obbws loop (asyncio clients: NATS, Redis).

    Subclasses implement ``async`` :meth:`deliver`, and may override ``async`` :meth:`setup` /
    :meth:`teardown`. A slow or unreachable destination never blocks the loop: the task awaits
    it while the stream goes on, and the backlog is bounded as in :class:`BatchingSink`.
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # hooks -----------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Open the destination; raise to refuse the sink."""

    @abc.abstractmethod
    async def deliver(self, batches: list[Batch]) -> None:
        """Write ``batches`` (in order); raise to have them retried."""

    async def teardown(self) -> None:
        """Close the destination."""

    # Sink ------------------------------------------------------------------------------------

    def open(self, context: SinkContext) -> None:
        super().open(context)
        runtime.run(self._start(), timeout=30)

    async def _start(self) -> None:
        try:
            await self.setup()
        except BaseException:
            self._state = "failed"
            raise
        self._state = "ok"
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._main(), name=f"obbws-sink-{self.kind}"
        )

    def write(self, batch: Batch) -> None:
        if self._accept(batch) and self._wake is not None:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        if runtime.in_loop_thread():
            raise WrongThreadError(
                f"sink {self.display_url}: flush() waits for the obbws loop, so it cannot be "
                "called from the loop thread (a record hook or a listen() callback)."
            )
        # A round trip through the loop: batches handed over with call_soon() before this
        # call are queued by the time it returns, so the wait below covers them.
        runtime.run(self._poke(), timeout=timeout)
        self._wait_settled(timeout)

    async def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def close(self, timeout: float = 10.0) -> int:
        if self._closing:
            return 0
        self._closing = True
        with contextlib.suppress(ObbwsTimeoutError, WrongThreadError):
            self.flush(timeout)
        with contextlib.suppress(Exception):
            runtime.run(self._stop(), timeout=timeout + 5)
        return self._abandon()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.teardown()

    async def _main(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.flush_interval)
            wake.clear()
            while batches := self._take():
                try:
                    await self.deliver(batches)
                except asyncio.CancelledError:
                    with self._lock:
                        self._backlog.requeue(batches)
                    raise
                except Exception as exc:
                    await asyncio.sleep(self._failed(batches, exc))
                    break
                self._succeeded(batches)
