"""DuckDB results file of one connection: a batched writer thread, the ``limit`` cap, reads.

This is the only module that imports :mod:`duckdb`. One :class:`ResultsStore` owns one DuckDB
connection to one file and one table::

    store = ResultsStore(session.fields, limit=1000)
    records = store.accept(records)  # from the asyncio loop: rows the store would reject go
    store.put(batch)                 # O(1) per frame (a Batch or a list), never touches DuckDB
    store.read()                     # pandas DataFrame, oldest first, tz-aware in store.tz
    lost = store.close()             # flush, stop the writer, delete the temp file unless saved

Threads. ``put`` appends the frame's :class:`~obbws_jupyter.sinks.Batch` to a bounded backlog
(the sinks' ``_Backlog``, shared with every batching sink) and returns; a daemon writer
thread (``obbws-store-<name>``) takes the whole backlog every ``flush_interval`` seconds
(sooner when someone calls :meth:`ResultsStore.flush`), builds one Arrow table from it (the
record dicts of all batches in one C++ pass, ids and ``received_at`` from the batches'
columns) and writes it with ``INSERT ... SELECT``, followed in the same transaction by the
``limit`` cap (``DELETE ... WHERE id <= max_id - limit``), so a committed table never holds
more than ``limit`` rows. At high rates it writes whole DuckDB row groups instead
(:data:`ROW_GROUP_ROWS`, as soon as one is waiting; below one, it waits while the rate
fills one within ``coalesce_lag`` seconds of the oldest waiting row, see :func:`rows_due`):
DuckDB writes such a commit once, compressed, straight into the file, where a smaller one
goes to the WAL and is rewritten at the next checkpoint. The reader side runs on fresh
cursors of the store's connection: one DuckDB connection cannot be used from two threads at
once.

Failures. A failed write keeps its rows (first in line) and is retried with exponential
backoff; the store's ``state`` is then ``"retrying"`` and ``last_error`` says why. A fatal
DuckDB error ("database has been invalidated", e.g. after a checkpoint that found the disk
full) closes and reopens the database before the next try; DuckDB's WAL brings back every
committed row. A results file deleted from outside is noticed within a second and re-created
from the rows the open connection still reads. Once a write succeeds again, ``state`` is
``"ok"`` and ``last_error`` is cleared. While writes fail the backlog stays bounded: with a
``limit`` only the newest ``limit`` rows wait (older ones would be capped anyway: not a loss);
beyond ``max_pending`` rows the oldest are dropped and counted in ``stats["dropped"]``.
:meth:`ResultsStore.close` returns (and logs) how many rows it could not write.

Safety. The connection is opened with DuckDB's external access off, extension autoinstall and
autoload off and its configuration locked, so nothing run through it reads or writes other
files, installs code or reaches the network. :meth:`ResultsStore.query` runs the user's SQL in
a separate in-memory DuckDB with the same lock-down, holding a snapshot of this store's table
only: another table of the same file is not readable. Its one opening: the directories of the
connection's Parquet sinks, given to ``query(parquet_views=...)``, readable as views (DuckDB's
``allowed_directories``, set before the lock-down; nothing beside them). It has a timeout
and Ctrl-C (a kernel interrupt) cancels it. :meth:`ResultsStore.export` writes Parquet/CSV
with pyarrow's writers. Files are written in the storage format of DuckDB v1.3, which every
DuckDB >= 1.3 opens.

Records are the dicts a provider session produces, plus ``id`` (monotonic, assigned by the
caller from :attr:`ResultsStore.next_id`) and ``received_at``; timestamps are ``int``
nanoseconds since the epoch, UTC. DuckDB's ``TIMESTAMPTZ`` keeps microseconds: nanosecond
digits are rounded away on insert.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from obbws_jupyter._util import clip
from obbws_jupyter._validate import check_limit, check_path, check_positive, check_tz
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    ObbwsTimeoutError,
    SchemaMismatchError,
    StoreError,
)
from obbws_jupyter.protocol import Field, FieldType, Record
from obbws_jupyter.sinks._base import Batch, Sink, SinkHealth, _Backlog

__all__ = ["ResultsStore", "StoreSink", "sweep_orphan_temp_dirs"]

logger = logging.getLogger("obbws_jupyter.store")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_IDENTIFIER_RULE = (
    "a letter or underscore followed by up to 62 letters, digits or underscores "
    "(regex ^[A-Za-z_][A-Za-z0-9_]{0,62}$)"
)

_SQL_TYPES: dict[FieldType, str] = {
    FieldType.TIMESTAMP: "TIMESTAMPTZ",
    FieldType.STRING: "VARCHAR",
    FieldType.FLOAT: "DOUBLE",
    FieldType.INT: "BIGINT",
    FieldType.BOOL: "BOOLEAN",
}
# What DuckDB reports in duckdb_columns() for each declared type.
_REPORTED_TYPES = {
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
    "VARCHAR": "VARCHAR",
    "DOUBLE": "DOUBLE",
    "BIGINT": "BIGINT",
    "BOOLEAN": "BOOLEAN",
}
_ARROW_TIMESTAMP = pa.timestamp("ns", tz="UTC")
_ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.TIMESTAMP: _ARROW_TIMESTAMP,
    FieldType.STRING: pa.string(),
    FieldType.FLOAT: pa.float64(),
    FieldType.INT: pa.int64(),
    FieldType.BOOL: pa.bool_(),
}
_BASE_COLUMNS: tuple[tuple[str, FieldType], ...] = (
    ("id", FieldType.INT),
    ("received_at", FieldType.TIMESTAMP),
)
_BATCH_VIEW = "__obbws_batch"
_EXPORT_FORMATS = {".parquet": "parquet", ".csv": "csv"}
_MAX_RETRY_DELAY = 5.0
_TAKE_ALL = 2**62  # the writer takes everything pending at once
# DuckDB's row group. A commit of at least this many rows is written straight into the file,
# compressed, and the WAL records only where (DuckDB's "optimistic write"); a smaller one is
# written to the WAL first and compressed again at the next checkpoint. Measured with demo rows
# (DuckDB 2.0.1, one core): 1.33 us/row in commits of 20,000 rows, 0.60 in whole row groups.
ROW_GROUP_ROWS = 122_880
COALESCE_LAG = 2.0  # seconds the oldest row may wait while the writer fills a row group
_CLOSE_TIMEOUT = 5.0  # how long close() lets the writer finish before counting the rest lost
_FILE_CHECK_INTERVAL = 0.5  # seconds between checks that the results file is still there
DEFAULT_MAX_PENDING = 250_000  # rows waiting for the writer (~150 MB of record dicts)
DEFAULT_QUERY_TIMEOUT = 60.0
MIRROR_IDLE = 60.0  # seconds without a query before query()'s copy of the table is dropped
_INT64 = 2**63

# Every DuckDB database this module opens is locked down: no file access beyond its own file,
# no extension installed or loaded behind our back, no Python object scanned by name, and
# nothing of this can be switched back on by SQL.
_Config = dict[str, str | bool | int | float | list[str]]
_LOCKED_DOWN: _Config = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}
# Files readable by DuckDB 1.3 and later (DuckDB 2.x would write storage version 69, which no
# 1.x release opens). v1.3 rather than v1.2: its string compression (DICT_FSST) makes DuckDB's
# part of an insert of demo rows 0.56 -> 0.42 us/row (same file size; measured on DuckDB 2.0.1).
STORAGE_COMPATIBILITY = "v1.3.0"
_FILE_CONFIG: _Config = {**_LOCKED_DOWN, "storage_compatibility_version": STORAGE_COMPATIBILITY}

_OPEN_STORES: weakref.WeakSet[ResultsStore] = weakref.WeakSet()
_RECOVERY_LOCK = threading.Lock()  # one re-creation/reopen of a shared file at a time


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def rows_due(rows: int, age: float, lag: float, batch_rows: int) -> tuple[int, float]:
    """The writer's choice with ``rows`` pending, the oldest queued ``age`` seconds ago:
    (rows to write now, 0.0), or (0, seconds to wait) to let a row group of DuckDB fill.

    Whole row groups are written as soon as they are there (the rest waits for the next
    write), so that at high rates most rows are written once into the file instead of into
    the WAL and again, compressed, at the next checkpoint. Below a row group, waiting pays
    only when the rate so far (``rows / age``) fills one before the oldest row is ``lag``
    seconds old; otherwise (low rates, or ``batch_rows`` reached) everything is written now,
    as without coalescing."""
    if rows >= ROW_GROUP_ROWS:
        return rows - rows % ROW_GROUP_ROWS, 0.0
    wait = lag - age
    if rows >= batch_rows or wait <= 0 or rows * lag < ROW_GROUP_ROWS * age:
        return _TAKE_ALL, 0.0
    return 0, wait


def _is_fatal(exc: BaseException) -> bool:
    """A DuckDB error after which this connection is useless until the database is reopened."""
    if isinstance(exc, (duckdb.FatalException, duckdb.ConnectionException)):
        return True
    return "invalidated" in str(exc) or "connection closed" in str(exc).lower()


# -- validation ------------------------------------------------------------------------------


def _check_table_name(table_name: object) -> str:
    if not isinstance(table_name, str) or not _IDENTIFIER.match(table_name):
        raise InvalidParameterError(
            f"table_name={table_name!r} is not a valid table name: use {_IDENTIFIER_RULE}."
        )
    return table_name


def _check_fields(fields: Sequence[Field]) -> tuple[Field, ...]:
    checked = tuple(fields)
    seen = {name for name, _ in _BASE_COLUMNS}
    for f in checked:
        if not isinstance(f, Field) or not isinstance(f.type, FieldType):
            raise InvalidParameterError(f"fields must be protocol.Field objects, got {f!r}.")
        if f.name in seen or not _IDENTIFIER.match(f.name):
            raise InvalidParameterError(
                f"field name {f.name!r} is invalid or repeated: use {_IDENTIFIER_RULE}, "
                "unique, and not 'id' or 'received_at'."
            )
        seen.add(f.name)
    return checked


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(f"{name}={value!r} is invalid: use a whole number >= 0.")
    return value


# What a column accepts. Stricter than pyarrow where pyarrow would silently change a value
# (1.5 into an INT column is truncated): a value accepted here always converts.
def _fits_int(v: Any) -> bool:
    if type(v) is int:
        return -_INT64 <= v < _INT64
    return type(v) is float and v.is_integer() and -_INT64 <= v < _INT64


def _fits_float(v: Any) -> bool:
    return type(v) is float or (type(v) is int and -_INT64 <= v < _INT64)


def _fits_string(v: Any) -> bool:
    if type(v) is not str:
        return False
    if v.isascii():
        return True
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800" escapes produce them)
        return False
    return True


def _fits_timestamp(v: Any) -> bool:
    if type(v) is int:
        return -_INT64 <= v < _INT64
    from datetime import datetime

    return isinstance(v, datetime) or (type(v) is float and -_INT64 < v < _INT64)


def _fits_bool(v: Any) -> bool:
    return type(v) is bool


_FITS: dict[FieldType, Callable[[Any], bool]] = {
    FieldType.INT: _fits_int,
    FieldType.FLOAT: _fits_float,
    FieldType.STRING: _fits_string,
    FieldType.TIMESTAMP: _fits_timestamp,
    FieldType.BOOL: _fits_bool,
}
# The common case of each type, checked inline before calling the full rule.
_FAST_EXPR: dict[FieldType, str] = {
    FieldType.INT: "(type(v) is int and -M <= v < M)",
    FieldType.FLOAT: "type(v) is float",
    FieldType.STRING: "(type(v) is str and v.isascii())",
    FieldType.TIMESTAMP: "(type(v) is int and -M <= v < M)",
    FieldType.BOOL: "type(v) is bool",
}


def _compile_fit_check(fields: Sequence[Field]) -> Callable[[list[Record]], bool]:
    """``all_fit(records)``: True when every value of every record fits its column.

    Generated once per schema, like dataclasses generates ``__init__``: one straight line per
    field instead of a loop over (name, rule) pairs makes this hot-path check about three times
    faster (0.4 us per demo record). Field names are validated identifiers."""
    lines = ["def all_fit(records):", "    for r in records:", "        g = r.get"]
    scope: dict[str, Any] = {"M": _INT64}
    for i, f in enumerate(fields):
        scope[f"fits{i}"] = _FITS[f.type]
        lines.append(
            f"        if not ((v := g({f.name!r})) is None or {_FAST_EXPR[f.type]} "
            f"or fits{i}(v)): return False"
        )
    lines.append("    return True")
    exec("\n".join(lines), scope)
    checker: Callable[[list[Record]], bool] = scope["all_fit"]
    return checker


# -- the store -------------------------------------------------------------------------------


class ResultsStore:
    """One DuckDB table of records, written by a background thread, capped at ``limit`` rows.

    ``results_file=None`` keeps the data in a private temporary directory that :meth:`close`
    removes (unless ``save_results``: a saved temporary directory is named
    ``obbws-saved-<pid>-*`` and no later process ever sweeps it). A given file is created
    when missing (and then deleted on close unless ``save_results``) or reused when it
    exists: an existing table must have exactly the expected columns, otherwise
    :class:`SchemaMismatchError`, and must not hold more rows than ``limit`` (the cap would
    delete the oldest: :class:`InvalidParameterError`, pass ``limit=None`` or a larger one).
    Nothing existing is ever overwritten, trimmed or dropped, and a pre-existing file is never
    deleted. Closing a store that created a file which also holds other tables (another
    connection's) removes only its own table.
    """

    def __init__(
        self,
        fields: Sequence[Field],
        *,
        results_file: str | os.PathLike[str] | None = None,
        table_name: str = "records",
        limit: int | None = 1000,
        tz: str = "America/New_York",
        save_results: bool = False,
        flush_interval: float = 0.1,
        batch_rows: int = ROW_GROUP_ROWS,
        max_pending: int = DEFAULT_MAX_PENDING,
        name: str = "",
        coalesce_lag: float = COALESCE_LAG,
    ) -> None:
        self.table_name = _check_table_name(table_name)
        self.limit = check_limit(limit)
        self.tz = check_tz(tz)
        self.fields = _check_fields(fields)
        self.flush_interval = float(check_positive("flush_interval", flush_interval, whole=False))
        self.batch_rows = int(check_positive("batch_rows", batch_rows, whole=True))
        self.max_pending = int(check_positive("max_pending", max_pending, whole=True))
        self.save_results = bool(save_results)
        self.name = name
        # Row groups are worth waiting for when the backlog can hold two and the cap keeps one.
        self._coalesce = self.max_pending >= 2 * ROW_GROUP_ROWS and (
            self.limit is None or self.limit >= ROW_GROUP_ROWS
        )
        lag = check_positive("coalesce_lag", coalesce_lag, whole=False)
        self._lag = max(self.flush_interval, float(lag))
        self._flush_wanted = False

        self._table = quote_identifier(self.table_name)
        self._columns = [(n, t) for n, t in _BASE_COLUMNS] + [(f.name, f.type) for f in self.fields]
        self._arrow_schema = pa.schema([(n, _ARROW_TYPES[t]) for n, t in self._columns])
        self._arrow_struct = pa.struct(list(self._arrow_schema))
        # the provider fields only: a frame's ids and received_at travel beside its dicts
        self._field_struct = pa.struct(list(self._arrow_schema)[len(_BASE_COLUMNS) :])
        self._all_fit = _compile_fit_check(self.fields)
        self._checks = tuple((f.name, _FITS[f.type], f.type.value) for f in self.fields)

        self._temp_dir: pathlib.Path | None = None
        self.path, self.created = self._resolve_path(results_file)
        self._con = self._open()
        try:
            self.next_id, self._rows_in_table = self._prepare_table()
        except BaseException:
            self._con.close()
            self._discard_if_created()
            raise
        self._file_id = _file_id(self.path)

        self._backlog = _Backlog(self.max_pending, "oldest", keep=self.limit, coalesce=True)
        self._wake = threading.Event()
        self._write_lock = threading.Lock()  # writer transactions vs clear() and recovery
        self._con_lock = threading.Lock()  # cursor creation vs close() and reopening
        self._cursors_done = threading.Condition(self._con_lock)
        self._open_cursors = 0
        self._stats_lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._needs_reopen = False
        self._in_flight = 0  # rows the writer holds right now
        self._next_file_check = 0.0
        self._last_log: dict[str, float] = {}
        self._stats: dict[str, Any] = {
            "state": "ok",
            "rows_written": 0,
            "rows_in_table": self._rows_in_table,
            "batches": 0,
            "rejected": 0,
            "errors": 0,
            "last_error": None,
            "last_flush_ms": None,
        }
        self._mirror = _Mirror(self)
        self._writer = threading.Thread(target=self._run, name=f"obbws-store-{name}", daemon=True)
        self._writer.start()
        _OPEN_STORES.add(self)

    # -- opening -----------------------------------------------------------------------------

    def _resolve_path(
        self, results_file: str | os.PathLike[str] | None
    ) -> tuple[pathlib.Path, bool]:
        if results_file is None:
            sweep_orphan_temp_dirs()
            kind = "obbws-saved" if self.save_results else "obbws"
            self._temp_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-"))
            return self._temp_dir / "results.duckdb", True
        try:
            path = check_path("results_file", results_file)
        except InvalidParameterError as exc:
            raise StoreError(str(exc)) from None
        if path.is_dir():
            raise StoreError(f"results_file {str(path)!r} is a directory: give a file path.")
        if not path.parent.is_dir():
            raise StoreError(
                f"results_file {str(path)!r}: the directory {str(path.parent)!r} does not "
                "exist; create it first or choose another path."
            )
        for other in list(_OPEN_STORES):
            if other.path == path and other.table_name.lower() == self.table_name.lower():
                raise StoreError(
                    f"table {self.table_name!r} in {str(path)!r} is in use by the open store "
                    f"{other.name!r}: pass another table_name or results_file, or close it first."
                )
        return path, not path.exists()

    def _open(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.path), config=_FILE_CONFIG)
        except duckdb.Error as exc:
            self._discard_if_created()
            raise self._open_error(exc) from None

    def _open_error(self, exc: duckdb.Error) -> StoreError:
        holder = re.search(r"Conflicting lock is held in .*?\(PID (\d+)\)", str(exc))
        if holder:
            return StoreError(
                f"results_file {str(self.path)!r} is open in another process (PID "
                f"{holder.group(1)}); a live results file belongs to one process. Use "
                "another results_file, or read that process's data through its broadcast "
                "or an export (conn.export('x.parquet'))."
            )
        if "different configuration" in str(exc):
            return StoreError(
                f"results_file {str(self.path)!r} is already open in this process through "
                "another DuckDB connection (duckdb.connect); close that connection first."
            )
        if self.created:
            return StoreError(f"cannot create the results file {str(self.path)!r}: {exc}")
        return StoreError(
            f"cannot open results_file {str(self.path)!r} as a DuckDB database: {exc}. "
            "It was not modified; choose another results_file (a DuckDB file or a new path)."
        )

    def _prepare_table(self) -> tuple[int, int]:
        """Create the table, or check the existing one; return (next id, rows in the table)."""
        existing = self._existing_columns(self._con)
        expected = [(n, _REPORTED_TYPES[_SQL_TYPES[t]]) for n, t in self._columns]
        if existing is None:
            try:
                self._create_table(self._con)
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot create table {self.table_name!r} in {str(self.path)!r}: {exc}"
                ) from None
            return 1, 0
        if existing != expected:
            raise SchemaMismatchError(
                f"table {self.table_name!r} in {str(self.path)!r} has columns "
                f"{_describe(existing)}, but this stream needs {_describe(expected)}. "
                "Nothing was changed: pass another table_name or results_file."
            )
        row = self._con.execute(
            f"SELECT coalesce(max(id), 0) + 1, count(*) FROM {self._table}"
        ).fetchall()
        next_id, rows = int(row[0][0]), int(row[0][1])
        if self.limit is not None and rows > self.limit:
            raise InvalidParameterError(
                f"limit={self.limit} is smaller than the {rows} rows already in table "
                f"{self.table_name!r} of {str(self.path)!r}: the cap would delete the oldest "
                f"{rows - self.limit}. Nothing was changed. Pass limit=None to keep every row "
                f"(or limit>={rows}), or another results_file/table_name."
            )
        return next_id, rows

    def _create_table(self, con: duckdb.DuckDBPyConnection) -> None:
        columns = ", ".join(f"{quote_identifier(n)} {_SQL_TYPES[t]}" for n, t in self._columns)
        con.execute(f"CREATE TABLE {self._table} ({columns})")

    def _existing_columns(self, con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]] | None:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND lower(table_name) = lower(?)",
            [self.table_name],
        ).fetchall()
        if not tables:
            return None
        rows = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "AND table_name = ? ORDER BY column_index",
            [tables[0][0]],
        ).fetchall()
        return [(str(n), str(t)) for n, t in rows]

    # -- public state ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot: state ("ok", "retrying" while writes fail, "closed"), rows_written
        (records committed; with a limit, rows superseded by newer ones count as written: the
        cap would have deleted them), rows_in_table (kept up to date by the writer, no query),
        batches, dropped (backlog overflow: lost), rejected (values that do not fit the
        columns), errors (failed writes and file incidents), last_error (cleared once writes
        succeed again), last_flush_ms (duration of the last batch write), pending (rows
        waiting)."""
        with self._stats_lock:
            snapshot = dict(self._stats)
        snapshot["pending"] = self._backlog.rows
        snapshot["dropped"] = self._backlog.dropped
        return snapshot

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<ResultsStore {self.name!r} {state} path={str(self.path)!r} "
            f"table={self.table_name!r} limit={self.limit}>"
        )

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the writer side ---------------------------------------------------------------------

    def accept(self, records: list[Record]) -> list[Record]:
        """The records whose values fit the columns, in order (the same list when all do).
        The others are rejected: counted in ``stats["rejected"]`` and logged, never stored.
        Call it before handing records to anyone else, so that nothing the store rejects is
        broadcast either. Cheap: type checks only."""
        if self._all_fit(records):
            return records
        bad: list[tuple[int, str]] = []
        for i, record in enumerate(records):
            get = record.get
            for name, fits, kind in self._checks:
                value = get(name)
                if value is None or fits(value):
                    continue
                bad.append((i, f"{name}={value!r:.80} is not a valid {kind}"))
                break
        if not bad:
            return records
        skip = {i for i, _ in bad}
        self._note_rejected(len(bad), f"{bad[0][1]} in {records[bad[0][0]]!r:.200}")
        return [r for i, r in enumerate(records) if i not in skip]

    def put(self, records: list[Record] | Batch) -> None:
        """Queue records (a list of dicts with ``id`` and ``received_at``, or a
        :class:`~obbws_jupyter.sinks.Batch`) for the writer thread. O(1) per call, whatever
        the number of records: the batch is handed over as it is, and converted by the
        writer. Takes ownership of the list (do not mutate it afterwards). See the module
        docstring for the backlog bound."""
        if self._closed:
            raise StoreError("store is closed")
        batch = records if isinstance(records, Batch) else Batch(self.fields, rows=records)
        if not batch.n:
            return
        backlog = self._backlog
        with backlog.lock:
            dropped = backlog.add(batch)
            full = backlog.rows >= self.batch_rows
        self._queued(full, dropped)

    def put_frame(self, records: list[Record], first_id: int, received_at: int) -> None:
        """:meth:`put` of ``Batch.stamped(records, fields, first_id, received_at)`` without
        building the batch: what ``WebSocketClient`` does when the store is its only sink.
        O(1) per frame; the dicts are not touched."""
        if self._closed:
            raise StoreError("store is closed")
        backlog = self._backlog
        with backlog.lock:
            dropped = backlog.add_frame(records, first_id, received_at, self.fields)
            full = backlog.rows >= self.batch_rows
        self._queued(full, dropped)

    def _queued(self, full: bool, dropped: int) -> None:
        if full:
            self._wake.set()
        if dropped:
            self._warn_dropped(dropped)

    def _warn_dropped(self, dropped: int) -> None:
        if self._should_log("dropped"):
            logger.warning(
                "store %r: the writer cannot keep up; dropped the %d oldest pending rows "
                "(%d in total) to stay under max_pending=%d",
                self.name,
                dropped,
                self._backlog.dropped,
                self.max_pending,
            )

    def _should_log(self, key: str, every: float = 1.0) -> bool:
        now = time.monotonic()
        if now - self._last_log.get(key, -every) < every:
            return False
        self._last_log[key] = now
        return True

    def _run(self) -> None:
        failures = 0
        final_tries = 0
        try:
            while True:
                # after a failed write, retry with exponential backoff (flush() wakes it)
                delay = min(self.flush_interval * 2 ** min(failures, 20), _MAX_RETRY_DELAY)
                while True:
                    self._wake.wait(delay)
                    self._wake.clear()
                    stopping = self._stopping
                    rows, delay = self._rows_due(stopping or failures > 0)
                    if rows:
                        break
                ok = self._write_once(rows)
                self._mirror.drop_if_idle()
                failures = 0 if ok else failures + 1
                if stopping:
                    if ok and not self._backlog.rows:
                        return
                    final_tries += 1
                    if final_tries >= 2:  # one more try (after a reopen) and then give up
                        return
                    self._wake.set()
        except Exception:  # a bug, not a write error: report it, never die silently
            logger.exception("store %r: the writer thread failed", self.name)

    def _rows_due(self, all_now: bool) -> tuple[int, float]:
        """How many pending rows to write now, or (0, seconds to wait): see :func:`rows_due`.
        ``all_now`` (stopping, retrying) and :meth:`flush` take everything."""
        backlog = self._backlog
        with backlog.lock:
            rows = backlog.rows
            oldest = backlog.since[0] if backlog.since else None
        if self._flush_wanted or all_now or not self._coalesce or oldest is None:
            self._flush_wanted = False
            return _TAKE_ALL, 0.0
        return rows_due(rows, time.monotonic() - oldest, self._lag, self.batch_rows)

    def _write_once(self, max_rows: int = _TAKE_ALL) -> bool:
        """Check the file, reopen if needed, then write the oldest ``max_rows`` pending rows
        (everything by default) as one batch. False if that failed (the rows are kept)."""
        try:
            self._check_file()
            if self._needs_reopen:
                self._reopen()
        except Exception as exc:
            self._write_failed([], exc)
            return False
        backlog = self._backlog
        with backlog.lock:
            batches = backlog.take_rows(max_rows)  # the cap already cut what it would delete
            superseded = backlog.take_superseded()
        if not batches:
            if superseded:
                self._wrote(0, 0, superseded, 0.0)
            return True
        taken = self._in_flight = sum(b.n for b in batches)
        try:
            table, batches, rejected = self._to_arrow(batches)
            started = time.perf_counter()
            try:
                deleted = 0
                if table.num_rows:
                    with self._write_lock, self._cursor(translate=False) as cursor:
                        deleted = self._insert(cursor, table) or 0
            except Exception as exc:
                self._write_failed(batches, exc, rejected)
                return False
            elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            self._wrote(table.num_rows, deleted, superseded, elapsed_ms)
        finally:
            self._in_flight = 0
        with backlog.lock:
            backlog.delivered(batches, taken - rejected)
            backlog.rejected(rejected)
        return True

    def _wrote(self, inserted: int, deleted: int, superseded: int, elapsed: float) -> None:
        """A batch was committed: count it; a store that was retrying has recovered (only a
        committed write proves it)."""
        with self._stats_lock:
            stats = self._stats
            recovered = stats["state"] == "retrying"
            stats["rows_written"] += inserted + superseded
            self._rows_in_table += inserted - deleted
            stats["rows_in_table"] = self._rows_in_table
            stats["batches"] += 1
            stats["last_flush_ms"] = elapsed
            if recovered:
                stats["state"] = "ok"
                stats["last_error"] = None
        if recovered:
            logger.warning("store %r: writing to %s works again", self.name, self.path)

    def _insert(self, cursor: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
        """Insert ``table`` and apply the cap in one transaction; returns the rows the cap
        deleted. The caller holds the write lock."""
        names = ", ".join(quote_identifier(n) for n, _ in self._columns)
        cursor.register(_BATCH_VIEW, table)
        try:
            cursor.execute("BEGIN TRANSACTION")
            try:
                cursor.execute(
                    f"INSERT INTO {self._table} ({names}) SELECT {names} FROM {_BATCH_VIEW}"
                )
                deleted = 0
                if self.limit is not None:
                    max_id = pc.max(table.column("id")).as_py()
                    deleted = cursor.execute(
                        f"DELETE FROM {self._table} WHERE id <= ?", [max_id - self.limit]
                    ).fetchall()[0][0]
                cursor.execute("COMMIT")
                return int(deleted)
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    cursor.execute("ROLLBACK")
                raise
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.unregister(_BATCH_VIEW)

    def _write_failed(self, keep: list[Batch], exc: Exception, rejected: int = 0) -> None:
        with self._backlog.lock:
            dropped = self._backlog.requeue(keep)
            self._backlog.rejected(rejected)
        fatal = _is_fatal(exc)
        if fatal:
            self._needs_reopen = True
        text = clip(f"{type(exc).__name__}: {exc}", 1000)
        with self._stats_lock:
            self._stats["errors"] += 1
            self._stats["last_error"] = text
            self._stats["state"] = "retrying"
        if self._should_log("write-error"):
            logger.error(
                "store %r: writing %d rows to %s failed (kept for the next try%s): %s",
                self.name,
                sum(b.n for b in keep),
                self.path,
                "; reopening the database" if fatal else "",
                clip(exc, 1000),
            )
        if dropped:
            self._warn_dropped(dropped)

    def _note_rejected(self, count: int, first_error: str) -> None:
        with self._stats_lock:
            self._stats["rejected"] += count
            self._stats["last_error"] = f"rejected {count} record(s): {first_error}"
        if self._should_log("rejected"):
            logger.error(
                "store %r: rejected %d record(s) whose values do not fit the columns: %s",
                self.name,
                count,
                first_error,
            )

    def _rows_to_table(self, rows: list[Record]) -> pa.Table:
        # One C++ pass over the dicts into a struct array, split into columns without a copy:
        # 15-35% faster than pa.Table.from_pylist (measured on 200k demo records). Missing keys
        # become NULL, unknown keys are ignored.
        batch = pa.RecordBatch.from_struct_array(pa.array(rows, type=self._arrow_struct))
        if batch.column(0).null_count:
            raise ValueError("a record has no 'id'")
        return pa.Table.from_batches([batch], schema=self._arrow_schema)

    def _stamped_to_table(
        self, rows: list[Record], firsts: list[int], counts: list[int], times: list[int]
    ) -> pa.Table:
        """Frames as ``WebSocketClient`` hands them over (see :meth:`Batch.gather`): the
        dicts of all frames in one C++ pass over the provider fields; ids and received_at
        from each frame's first id, length and time, vectorized (no per-record Python)."""
        fields = pa.RecordBatch.from_struct_array(pa.array(rows, type=self._field_struct))
        n = len(rows)
        if firsts and firsts[-1] + counts[-1] - firsts[0] == n:  # no gap (the usual case)
            ids = np.arange(firsts[0], firsts[0] + n, dtype=np.int64)
        else:
            lengths = np.asarray(counts, dtype=np.int64)
            starts = np.asarray(firsts, dtype=np.int64) - (np.cumsum(lengths) - lengths)
            ids = np.repeat(starts, lengths) + np.arange(n, dtype=np.int64)
        received = np.asarray(times, dtype=np.int64)
        if len(times) != n:  # frames of several records: one time per frame
            received = np.repeat(received, np.asarray(counts, dtype=np.int64))
        arrays = [pa.array(ids, pa.int64()), pa.array(received, _ARROW_TIMESTAMP)]
        return pa.Table.from_arrays([*arrays, *fields.columns], schema=self._arrow_schema)

    def _columns_to_table(self, batches: list[Batch]) -> pa.Table:
        """Batches given as columns (a columnar session): one array per column."""
        arrays = []
        for field in self._arrow_schema:
            values: list[Any] = []
            for batch in batches:
                values.extend(batch.column(field.name))
            arrays.append(pa.array(values, field.type))
        if arrays[0].null_count:
            raise ValueError("a record has no 'id'")
        return pa.Table.from_arrays(arrays, schema=self._arrow_schema)

    def _batches_to_table(self, batches: list[Batch]) -> pa.Table:
        parts = Batch.gather(batches)
        if parts is not None:
            return self._stamped_to_table(*parts)
        if all(b.raw_rows is None for b in batches):
            return self._columns_to_table(batches)
        if len(batches) == 1:
            return self._rows_to_table(batches[0].rows())
        rows: list[Record] = []
        for batch in batches:
            rows.extend(batch.rows())
        return self._rows_to_table(rows)

    def _to_arrow(self, batches: list[Batch]) -> tuple[pa.Table, list[Batch], int]:
        """Batches -> one Arrow table; rows whose values do not fit the columns are rejected
        (rows given straight to :meth:`put` without :meth:`accept`). Returns the table, the
        batches it holds (without the rejected rows) and how many rows were rejected."""
        try:
            return self._batches_to_table(batches), batches, 0
        except Exception:  # find the culprits below
            pass
        good: list[Record] = []
        rejected = 0
        first_error = ""
        for batch in batches:
            for row in batch.rows():
                try:
                    self._rows_to_table([row])
                except Exception as exc:
                    rejected += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc} in {row!r:.200}"
                else:
                    good.append(row)
        self._note_rejected(rejected, first_error)
        return self._rows_to_table(good), [Batch(self.fields, rows=good)], rejected

    # -- failures: the file, reopening -------------------------------------------------------

    def _check_file(self) -> None:
        """Notice a results file deleted (or replaced) from outside, at most twice a second."""
        now = time.monotonic()
        if now < self._next_file_check:
            return
        self._next_file_check = now + _FILE_CHECK_INTERVAL
        current = _file_id(self.path)
        if current == self._file_id:
            return
        with _RECOVERY_LOCK:
            if self._file_id == _file_id(self.path):  # a sibling store recovered it meanwhile
                return
            if current is not None:
                self._file_replaced()
                return
            _recreate_file(self)

    def _file_replaced(self) -> None:
        if self._should_log("replaced", 60.0):
            logger.error(
                "store %r: %s was replaced by another file from outside; rows go on being "
                "written to the original (no longer reachable by name) until close",
                self.name,
                self.path,
            )
        with self._stats_lock:
            self._stats["errors"] += 1
            self._stats["last_error"] = f"results file {self.path} was replaced from outside"
        self._file_id = _file_id(self.path)

    def _reopen(self) -> None:
        """Close and reopen the database after a fatal error (committed rows come back from
        the WAL). Every store on the same file must let go of the broken database first."""
        with _RECOVERY_LOCK:
            if not self._needs_reopen:
                return
            siblings = _stores_on(self.path)
            for store in siblings:
                store._drop_connection()
            try:
                for store in siblings:
                    store._connect_again()
            except Exception:
                for store in siblings:
                    store._needs_reopen = True
                raise
            logger.warning("store %r: reopened %s after a fatal error", self.name, self.path)

    def _drop_connection(self, write_locked: bool = False) -> None:
        """Close the connection once the cursors in use are closed (a cursor keeps DuckDB's
        database instance alive, and a reopen must get a fresh one)."""
        with contextlib.ExitStack() as stack:
            if not write_locked:
                stack.enter_context(self._write_lock)
            with self._con_lock:
                self._cursors_done.wait_for(lambda: self._open_cursors == 0, _CLOSE_TIMEOUT)
                with contextlib.suppress(duckdb.Error):
                    self._con.close()

    def _connect_again(self) -> None:
        if self._temp_dir is not None:
            self._temp_dir.mkdir(exist_ok=True)
        with self._con_lock:
            self._con = duckdb.connect(str(self.path), config=_FILE_CONFIG)
            rows = self._con.execute(f"SELECT count(*) FROM {self._table}").fetchall()
        self._file_id = _file_id(self.path)
        self._needs_reopen = False
        with self._stats_lock:
            self._rows_in_table = int(rows[0][0])
            self._stats["rows_in_table"] = self._rows_in_table

    # -- flushing ------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every record put before this call is committed (or dropped/rejected);
        raise :class:`ObbwsTimeoutError` after ``timeout`` seconds."""
        self._check_open()
        self._flush(timeout)

    def _flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        backlog = self._backlog
        with backlog.lock:
            target = backlog.put_seq
            if backlog.done_seq >= target:
                return
        self._next_file_check = 0.0  # rows a flush waits for land in the file, not a ghost
        self._flush_wanted = True  # everything now: no waiting for a row group to fill
        self._wake.set()
        with backlog.lock:
            settled = backlog.wait_settled(deadline, self._writer.is_alive, target)
        if not settled:
            error = self.stats["last_error"]
            hint = f"; last write error: {error}" if error else ""
            raise ObbwsTimeoutError(
                f"store {self.name!r}: records were not written within "
                f"{timeout:g} s ({self._backlog.rows} pending){hint}."
            )

    # -- the reader side ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    @contextlib.contextmanager
    def _cursor(self, translate: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh cursor of the store's connection, closed afterwards. With ``translate``,
        DuckDB errors leave as StoreError (readers never see a raw duckdb exception)."""
        with self._con_lock:
            if translate:
                self._check_open()
            try:
                cursor = self._con.cursor()
            except duckdb.Error as exc:
                if not translate:
                    raise
                raise self._read_error(exc) from None
            self._open_cursors += 1
        try:
            yield cursor
        except duckdb.Error as exc:
            if not translate:
                raise
            raise self._read_error(exc) from None
        finally:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
            with self._con_lock:
                self._open_cursors -= 1
                self._cursors_done.notify_all()

    def _read_error(self, exc: duckdb.Error) -> StoreError:
        if self._closed:
            return StoreError("store is closed")
        if _is_fatal(exc):
            self._needs_reopen = True
            self._wake.set()
            return StoreError(
                f"store {self.name!r}: the results database is being reopened after an error "
                f"({clip(exc, 300)}); try again in a moment."
            )
        return StoreError(f"store {self.name!r}: reading {self.path} failed: {clip(exc, 500)}")

    def _to_pandas(self, table: pa.Table) -> pd.DataFrame:
        return _in_zone(table, self.tz).to_pandas()

    def read(self, last: int | None = None) -> pd.DataFrame:
        """All committed rows (or the newest ``last``), oldest first: columns id, received_at,
        then the fields; timestamps tz-aware in ``self.tz``. Pending rows are not flushed."""
        self._check_open()
        if last is not None:
            _check_count("last", last)
        sql = f"SELECT * FROM {self._table} ORDER BY id"
        params: list[Any] = []
        if last is not None:
            sql = (
                f"SELECT * FROM (SELECT * FROM {self._table} ORDER BY id DESC LIMIT ?) ORDER BY id"
            )
            params = [last]
        with self._cursor() as cursor:
            table = cursor.sql(sql, params=params).to_arrow_table()
        return self._to_pandas(table)

    def count(self) -> int:
        """Number of committed rows (a query; ``stats["rows_in_table"]`` is free)."""
        with self._cursor() as cursor:
            return int(cursor.execute(f"SELECT count(*) FROM {self._table}").fetchall()[0][0])

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        timeout: float | None = DEFAULT_QUERY_TIMEOUT,
        parquet_views: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """Run one read-only SELECT over this store's table (referenced by its name) and
        return a DataFrame, timestamps tz-aware in ``self.tz``.

        ``parquet_views`` (view name -> directory) adds one view per directory over its
        Parquet files (``read_parquet('<dir>/**/*.parquet')``, hive partitioning off: every
        file holds every column); the sandbox may then read those directories, and only them.

        The SQL runs in a private in-memory DuckDB that holds a copy of this table and
        nothing else, with file access, extension loading and configuration changes off: it
        cannot read files, other tables or the network. Anything but one SELECT is refused,
        and every query is rolled back. After ``timeout`` seconds the query is cancelled
        (ObbwsTimeoutError); Ctrl-C or a kernel interrupt cancels it too. The copy is brought
        up to date incrementally at each query (only new rows travel) and dropped after a
        minute without queries, so its memory is held only while someone queries.
        """
        if not isinstance(sql, str):
            raise InvalidParameterError(f"query() takes SQL text, got {type(sql).__name__}.")
        if timeout is not None:
            timeout = check_positive("timeout", timeout)
        self._check_open()
        run = _SandboxQuery(self, sql, params, dict(parquet_views or {}))
        return self._to_pandas(run.wait(timeout))

    def last_records(self, n: int, before_id: int | None = None) -> list[Record]:
        """The newest ``n`` rows (with ``id < before_id`` if given), oldest first, shaped like
        the records given to :meth:`put`: timestamps as int ns UTC, None values omitted."""
        self._check_open()
        _check_count("n", n)
        if before_id is not None and (
            isinstance(before_id, bool) or not isinstance(before_id, int)
        ):
            raise InvalidParameterError(f"before_id={before_id!r} is invalid: use an int id.")
        if n == 0:
            return []
        names = [name for name, _ in self._columns]
        select = ", ".join(
            f"epoch_ns({quote_identifier(c)})" if t is FieldType.TIMESTAMP else quote_identifier(c)
            for c, t in self._columns
        )
        where = "WHERE id < ?" if before_id is not None else ""
        params = [before_id, n] if before_id is not None else [n]
        sql = f"SELECT {select} FROM {self._table} {where} ORDER BY id DESC LIMIT ?"
        with self._cursor() as cursor:
            rows = cursor.execute(sql, params).fetchall()
        rows.reverse()
        return [{k: v for k, v in zip(names, row, strict=True) if v is not None} for row in rows]

    # -- maintenance -------------------------------------------------------------------------

    def clear(self) -> int:
        """Flush, then delete every row; return how many were deleted. Ids keep growing."""
        self.flush()
        with self._write_lock, self._cursor() as cursor:
            count = int(cursor.execute(f"DELETE FROM {self._table}").fetchall()[0][0])
            with self._stats_lock:
                self._rows_in_table = 0
                self._stats["rows_in_table"] = 0
            return count

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> pathlib.Path:
        """Flush, then write the table (oldest first) to Parquet or CSV with pyarrow's writers
        (the database itself has no file access). The format comes from ``format`` or the
        suffix (.parquet / .csv); timestamps are in ``self.tz``. An existing regular file is
        replaced atomically (never the results file itself; a FIFO or device is refused).
        Returns the absolute path."""
        self._check_open()
        target = check_path("export path", path)
        kind = self._export_format(target, format)
        if target == self.path or target == self.path.with_name(self.path.name + ".wal"):
            raise InvalidParameterError(
                f"export() would overwrite the results file {str(target)!r}."
            )
        if target.is_dir() or not target.parent.is_dir():
            raise InvalidParameterError(
                f"export(): {str(target)!r} is a directory, or its directory does not exist."
            )
        self.flush()
        part = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with self._cursor() as cursor:
                relation = cursor.sql(f"SELECT * FROM {self._table} ORDER BY id")
                # DuckDB 2 names it to_arrow_reader (fetch_arrow_reader is deprecated); 1.2 has
                # only fetch_arrow_reader
                reader = getattr(relation, "to_arrow_reader", relation.fetch_arrow_reader)(65_536)
                _write_export(reader, part, kind, self.tz)
            os.replace(part, target)
        except OSError as exc:
            raise StoreError(f"export to {str(target)!r} failed: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
        return target

    @staticmethod
    def _export_format(target: pathlib.Path, format: str | None) -> str:
        if format is not None:
            kind = str(format).lower().lstrip(".")
            if kind not in _EXPORT_FORMATS.values():
                raise InvalidParameterError(
                    f"export format {format!r} is not supported: use 'parquet' or 'csv'."
                )
            return kind
        kind_or_none = _EXPORT_FORMATS.get(target.suffix.lower())
        if kind_or_none is None:
            raise InvalidParameterError(
                f"export(): cannot tell the format of {target.name!r}; use a .parquet or .csv "
                "suffix, or pass format='parquet' or format='csv'."
            )
        return kind_or_none

    # -- closing -----------------------------------------------------------------------------

    def close(self, delete: bool | None = None) -> int:
        """Write what is pending, stop the writer, close the database, then delete the results
        (the temp directory, or a file this store created; only this store's table when the
        file holds others) unless ``save_results``. ``delete=True`` or ``False`` overrides
        that choice. Returns the number of rows that could not be written (lost; also logged
        as an error): 0 unless writes were failing. Does not block for long (about
        ``_CLOSE_TIMEOUT`` seconds at most). Idempotent (later calls return 0)."""
        with self._con_lock:
            if self._closed:
                return 0
            self._closed = True
        _OPEN_STORES.discard(self)
        self._stopping = True
        self._wake.set()
        self._writer.join(_CLOSE_TIMEOUT)
        if self._writer.is_alive():  # stuck inside DuckDB (a slow disk): interrupt it
            with contextlib.suppress(duckdb.Error):
                self._con.interrupt()
            self._writer.join(1.0)
        lost = self._backlog.rows + self._in_flight
        if lost:
            logger.error(
                "store %r: closed with %d rows that could not be written to %s (last error: "
                "%s); they are lost",
                self.name,
                lost,
                self.path,
                self._stats["last_error"],
            )
        remove = delete if delete is not None else (self.created and not self.save_results)
        if remove and self._temp_dir is None:
            remove = self._drop_own_table_if_shared()
        with self._con_lock, contextlib.suppress(duckdb.Error):
            self._con.close()
        with self._mirror.lock:
            self._mirror.close()
        with self._stats_lock:
            self._stats["state"] = "closed"
        if remove:
            self._remove_files()
        return lost

    def _drop_own_table_if_shared(self) -> bool:
        """True when the whole file may go; otherwise (another table lives in it, or another
        open store uses it) drop only this store's table and keep the file."""
        shared = any(other.path == self.path for other in list(_OPEN_STORES))
        try:
            with self._con_lock:
                tables = self._con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = "
                    "current_database()"
                ).fetchall()
                others = [t for (t,) in tables if t.lower() != self.table_name.lower()]
                if not (shared or others):
                    return True
                self._con.execute(f"DROP TABLE IF EXISTS {self._table}")
                self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            logger.warning("store %r: could not drop table %s: %s", self.name, self._table, exc)
        logger.info("store %r: %s kept: other tables live in it", self.name, self.path)
        return False

    def _discard_if_created(self) -> None:
        if self.created:
            self._remove_files()

    def _remove_files(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            return
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class StoreSink(Sink):
    """A :class:`ResultsStore` as the first of a connection's internal sinks: ``write`` hands
    the frame's batch to :meth:`ResultsStore.put` (O(1)); health mirrors ``store.stats``.
    The connection closes the store itself (its close reports lost rows)."""

    kind = "duckdb"

    def __init__(self, store: ResultsStore) -> None:
        super().__init__(f"duckdb://{store.path}#{store.table_name}")
        self.store = store

    def write(self, batch: Batch) -> None:
        self.store.put(batch)

    def flush(self, timeout: float = 10.0) -> None:
        self.store.flush(timeout)

    def health(self) -> SinkHealth:
        stats = self.store.stats
        return SinkHealth(
            url=self.display_url,
            kind=self.kind,
            state=str(stats["state"]),
            rows_written=int(stats["rows_written"]),
            rows_dropped=int(stats["dropped"]),
            rows_pending=int(stats["pending"]),
            last_error=stats["last_error"],
        )


def _file_id(path: pathlib.Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _stores_on(path: pathlib.Path) -> list[ResultsStore]:
    return [s for s in list(_OPEN_STORES) if s.path == path]


def _recreate_file(finder: ResultsStore) -> None:
    """The results file was deleted from outside while open. DuckDB still reads the deleted
    file through the open connection: with every store on that file paused, copy each table
    into a new file next to it, let go of the old database, move the new file into place and
    reconnect. Caller holds _RECOVERY_LOCK."""
    stores = _stores_on(finder.path)
    if finder not in stores:
        stores.append(finder)
    fresh = finder.path.with_name(f".{finder.path.name}.{os.getpid()}.recovering")
    if finder._temp_dir is not None:
        finder._temp_dir.mkdir(exist_ok=True)
    with contextlib.ExitStack() as paused:
        for store in stores:
            paused.enter_context(store._write_lock)
        with finder._cursor(translate=False) as cursor:
            tables = cursor.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
            copies = {
                t: cursor.sql(f"SELECT * FROM {quote_identifier(t)}").to_arrow_table()
                for (t,) in tables
            }
        _write_database(fresh, copies, {s.table_name.lower(): s for s in stores})
        for store in stores:
            store._drop_connection(write_locked=True)
        wal = finder.path.with_name(finder.path.name + ".wal")
        with contextlib.suppress(FileNotFoundError):
            wal.unlink()  # the old database's log: its rows are in the copies
        os.replace(fresh, finder.path)
        for store in stores:
            store._needs_reopen = True  # reconnect below; on failure the writer retries
        for store in stores:
            store._connect_again()
    rows = sum(t.num_rows for t in copies.values())
    for store in stores:
        with store._stats_lock:
            store._stats["errors"] += 1
            store._stats["last_error"] = (
                f"results file {store.path} was deleted from outside; re-created it"
            )
    logger.warning(
        "store %r: %s was deleted from outside; re-created it with the %d rows the open "
        "database still held",
        finder.name,
        finder.path,
        rows,
    )


def _write_database(
    path: pathlib.Path, copies: Mapping[str, pa.Table], owners: Mapping[str, ResultsStore]
) -> None:
    """A new DuckDB file at ``path`` holding ``copies`` (our tables with their declared
    types, any other table as it came)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    con = duckdb.connect(str(path), config=_FILE_CONFIG)
    try:
        for table, data in copies.items():
            owner = owners.get(table.lower())
            con.register(_BATCH_VIEW, data)
            if owner is not None:
                owner._create_table(con)
                con.execute(f"INSERT INTO {quote_identifier(table)} SELECT * FROM {_BATCH_VIEW}")
            else:
                con.execute(
                    f"CREATE TABLE {quote_identifier(table)} AS SELECT * FROM {_BATCH_VIEW}"
                )
            con.unregister(_BATCH_VIEW)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _in_zone(table: pa.Table, tz: str) -> pa.Table:
    """``table`` with every tz-aware timestamp column in ``tz``."""
    fields = [
        f.with_type(pa.timestamp(f.type.unit, tz=tz))
        if pa.types.is_timestamp(f.type) and f.type.tz is not None
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _write_export(reader: pa.RecordBatchReader, part: pathlib.Path, kind: str, tz: str) -> None:
    writer: Any = None
    try:
        for batch in reader:
            table = _in_zone(pa.Table.from_batches([batch]), tz)
            if writer is None:
                writer = (
                    pq.ParquetWriter(part, table.schema)
                    if kind == "parquet"
                    else pa_csv.CSVWriter(part, table.schema)
                )
            writer.write_table(table)
        if writer is None:  # an empty table still gets its columns
            empty = _in_zone(reader.schema.empty_table(), tz)
            writer = (
                pq.ParquetWriter(part, empty.schema)
                if kind == "parquet"
                else pa_csv.CSVWriter(part, empty.schema)
            )
    finally:
        if writer is not None:
            writer.close()


class _Mirror:
    """The store's table copied into a private in-memory DuckDB (locked down like every
    database here), where query() runs the user's SQL: nothing but this table is there.

    Kept in step incrementally at each query: rows with ids above the last copied one are
    appended, rows below the table's smallest id (capped or cleared) deleted. Ids only grow
    and rows leave only oldest-first or all at once, so that is exact. Dropped after
    ``MIRROR_IDLE`` seconds without a query (the writer thread checks), so the copy's memory
    is only held while someone queries.
    """

    def __init__(self, store: ResultsStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.max_id = 0
        self.last_used = 0.0
        self.views: dict[str, str] = {}  # the Parquet views the copy was opened with
        self.view_files: dict[str, bool] = {}  # view -> made over files (True) or empty

    def cursor(
        self,
        on_source: Callable[[duckdb.DuckDBPyConnection | None], None],
        views: Mapping[str, str] | None = None,
        sql: str = "",
    ) -> Any:
        """Bring the copy up to date and return a cursor on it (``on_source`` is told the
        store cursor used meanwhile, so that it can be interrupted). ``views`` (name ->
        directory of Parquet files) are (re)made as views when ``sql`` names them (internal
        queries of the results table skip the folder walk); the copy may read those
        directories and nothing else (DuckDB's ``allowed_directories``, fixed when the copy
        is opened: a different set of directories opens a new copy)."""
        store = self.store
        views = dict(views or {})
        with self.lock:
            if self.con is not None and views != self.views:
                self.close()
            if self.con is None:
                self.con = _sandbox(sorted(set(views.values())))
                self.views = views
                self.view_files = {}
                store._create_table(self.con)
                self.max_id = 0
            with store._cursor() as source:
                on_source(source)
                low, high = source.execute(
                    f"SELECT min(id), max(id) FROM {store._table}"
                ).fetchall()[0]
                new = None
                if high is not None and high > self.max_id:
                    new = source.sql(
                        f"SELECT * FROM {store._table} WHERE id > ? ORDER BY id",
                        params=[self.max_id],
                    ).to_arrow_table()
            on_source(None)
            mirror = self.con
            mirror.execute(f"DELETE FROM {store._table} WHERE id < ?", [low or _INT64 - 1])
            if new is not None and new.num_rows:
                mirror.register(_BATCH_VIEW, new)
                mirror.execute(f"INSERT INTO {store._table} SELECT * FROM {_BATCH_VIEW}")
                mirror.unregister(_BATCH_VIEW)
                self.max_id = int(high)
            text = sql.lower()
            for name, directory in views.items():
                if name.lower() in text:
                    self.view_files[name] = _make_parquet_view(
                        mirror, name, directory, store._table, self.view_files.get(name)
                    )
            self.last_used = time.monotonic()
            return mirror.cursor()

    def drop_if_idle(self) -> None:
        if self.con is None or time.monotonic() - self.last_used < MIRROR_IDLE:
            return
        if self.lock.acquire(blocking=False):
            try:
                self.close()
            finally:
                self.lock.release()

    def close(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            with contextlib.suppress(duckdb.Error):
                con.close()


_LOCK_LAST = ("enable_external_access", "lock_configuration")  # set last, in this order
# DuckDB keeps its temp_directory readable with external access off, and an in-memory
# database's default is ".tmp" under the current directory: a folder of the user's that the
# sandbox must not read. No spill folder at all (a query too big for memory fails instead).
_NO_SPILL: _Config = {"temp_directory": ""}


def _sandbox(directories: Sequence[str]) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB, locked down; it may read ``directories`` (and only them:
    ``allowed_directories`` must be set before external access is switched off and the
    configuration locked)."""
    if not directories:
        return duckdb.connect(":memory:", config={**_LOCKED_DOWN, **_NO_SPILL})
    early = {k: v for k, v in _LOCKED_DOWN.items() if k not in _LOCK_LAST} | _NO_SPILL
    con = duckdb.connect(":memory:", config=early)
    try:
        allowed = [d.rstrip(os.sep) + os.sep for d in directories]
        con.execute("SET allowed_directories = ?", [allowed])
        for key in _LOCK_LAST:
            con.execute(f"SET {key} = ?", [_LOCKED_DOWN[key]])
    except BaseException:
        con.close()
        raise
    return con


def _make_parquet_view(
    con: duckdb.DuckDBPyConnection, name: str, directory: str, table: str, had_files: bool | None
) -> bool:
    """View ``name`` over the Parquet files under ``directory``; with no file there, an empty
    view with the results table's columns (read_parquet fails on an empty glob). The view's
    glob runs again at every query, so it is only (re)made when files appear or all go:
    ``had_files`` is what it was made for (None: not made yet). Returns whether files exist."""
    pattern = os.path.join(directory, "**", "*.parquet").replace("'", "''")
    (count,) = con.execute(f"SELECT count(*) FROM glob('{pattern}')").fetchall()[0]
    if had_files is not None and had_files == bool(count):
        return had_files
    source = (
        f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = false, union_by_name = true)"
        if count
        else f"SELECT * FROM {table} WHERE false"
    )
    con.execute(f"CREATE OR REPLACE VIEW {quote_identifier(name)} AS {source}")
    return bool(count)


class _SandboxQuery:
    """One query() run in a worker thread, so the caller can time out or be interrupted
    (Ctrl-C) while DuckDB works: either way the DuckDB connections in use are interrupted."""

    def __init__(
        self,
        store: ResultsStore,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None,
        views: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.sql = sql
        self.params = params
        self.views = views
        self.done = threading.Event()
        self.result: pa.Table | None = None
        self.error: BaseException | None = None
        self.active: duckdb.DuckDBPyConnection | None = None  # the cursor working now
        self.cancelled = False
        self.thread = threading.Thread(target=self._work, name="obbws-query", daemon=True)

    def wait(self, timeout: float | None) -> pa.Table:
        self.thread.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.done.wait(0.05):
                if deadline is not None and time.monotonic() > deadline:
                    self._cancel()
                    raise ObbwsTimeoutError(
                        f"query() did not finish within {timeout:g} s; it was cancelled. "
                        "Narrow the query, or pass a larger timeout=."
                    )
        except KeyboardInterrupt:
            self._cancel()
            raise
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def _cancel(self) -> None:
        self.cancelled = True
        active = self.active
        if active is not None:
            with contextlib.suppress(Exception):
                active.interrupt()
        self.done.wait(5.0)

    def _work(self) -> None:
        try:
            self.result = self._run()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def _run(self) -> pa.Table:
        try:
            cursor = self.store._mirror.cursor(self._set_active, self.views, self.sql)
        except duckdb.Error as exc:  # the store closed (kill) or its copy was reopened meanwhile
            raise StoreError(
                f"query() could not start: {clip(exc, 500)} (was the connection killed?)"
            ) from None
        try:
            self.active = cursor
            _check_select(cursor, self.sql)
            if self.cancelled:
                raise StoreError("query() was cancelled")
            try:
                # a data-modifying CTE would change the copy: every query is rolled back
                cursor.execute("BEGIN TRANSACTION")
                return cursor.sql(self.sql, params=self.params).to_arrow_table()
            except duckdb.ProgrammingError as exc:
                raise InvalidParameterError(f"query() failed: {clip(exc, 2000)}") from None
            except duckdb.Error as exc:
                raise StoreError(f"query() failed: {clip(exc, 2000)}") from None
            finally:
                with contextlib.suppress(duckdb.Error):
                    cursor.execute("ROLLBACK")
        finally:
            self.active = None
            with contextlib.suppress(duckdb.Error):
                cursor.close()

    def _set_active(self, cursor: duckdb.DuckDBPyConnection | None) -> None:
        self.active = cursor


def _check_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidParameterError(f"query() could not parse the SQL: {exc}") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        got = ", ".join(kinds) if kinds else "no statement"
        raise InvalidParameterError(f"query() runs one read-only SELECT statement; got {got}.")


_TEMP_DIR = re.compile(r"^obbws-(\d+)-[A-Za-z0-9_]+$")
_swept = False


def sweep_orphan_temp_dirs(root: str | None = None) -> list[pathlib.Path]:
    """Delete temp result dirs left by processes that died without cleaning up (SIGKILL,
    a crashed kernel). Only ``obbws-<pid>-*`` dirs whose process is gone are touched (saved
    ones are ``obbws-saved-<pid>-*`` and never); runs once per process unless ``root`` is
    given (tests)."""
    global _swept
    if root is None:
        if _swept:
            return []
        _swept = True
    removed = []
    base = pathlib.Path(root or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            match = _TEMP_DIR.match(entry.name)
            if not match or not entry.is_dir() or _pid_alive(int(match.group(1))):
                continue
            if any(p.name not in {"results.duckdb", "results.duckdb.wal"} for p in entry.iterdir()):
                continue  # not laid out like ours: leave it alone
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            logger.info("removed %s, left behind by process %s", entry, match.group(1))
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(columns: Sequence[tuple[str, str]]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns) + ")"


@atexit.register
def _close_open_stores() -> None:
    """Backstop at interpreter exit: close (and clean up) stores nobody closed."""
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):
            store.close()
