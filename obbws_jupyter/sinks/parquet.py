"""The Parquet sink: a connection's records as hive-partitioned Parquet files, and reading them.

``conn.add_sink("parquet:///abs/dir")`` (or ``parquet://./relative/dir``, resolved against the
current directory when the sink is built) writes every record to::

    <dir>/date=YYYY-MM-DD/symbol=<symbol>/part-<name>-<first id>-<random>.parquet

- ``date=`` is the day of the record's ``date`` in the connection's ``tz`` (its
  ``received_at`` when the record has no ``date``): a trading day as the desk counts it.
  ``symbol=`` is the record's symbol, percent-encoded (``EUR/USD`` -> ``EUR%2FUSD``, what
  hive readers decode); ``__HIVE_DEFAULT_PARTITION__`` when it has none.
- Every file holds every column (``id``, ``received_at``, then the provider's fields) with the
  results table's types: BIGINT, DOUBLE, VARCHAR, BOOLEAN, and timestamps tz-aware (UTC
  instants, microseconds rounded as DuckDB rounds them, the connection's ``tz`` in the Arrow
  schema). A file is readable on its own; the directories are for pruning and for humans.
  The directory's ``date`` (a DATE) would shadow the record's timestamp column of the same
  name, so read with hive partitioning off, as :func:`read` and the ``conn.query`` view do.
- Rows are gathered in memory per partition and written as one file when the partition has
  ``roll_rows`` rows, when all partitions together hold ``roll_bytes`` bytes (Arrow size;
  the file is smaller, compressed), when its oldest row is ``roll_seconds`` old, on
  :meth:`ParquetSink.flush` and on close. A file is written as ``.<name>.tmp`` beside its
  final name, fsync'ed, then renamed: a reader never sees a partial file (readers skip
  dot-files and ``*.tmp``).

Health: ``rows_written`` counts rows in finished files; ``rows_pending`` the rows waiting in
the backlog and in memory, and ``lag_seconds`` the age of the oldest of them (up to
``roll_seconds`` by design). A failed write (disk full, folder removed, read-only) keeps the
rows, shows ``state="retrying"`` and the error, and is retried with the base's backoff;
while it fails no new rows are taken into memory, so the base's bounded backlog (and its
drop policy) is what holds them.

Reading back: ``conn.query(sql)`` sees each Parquet sink of the connection as a view, named
``parquet`` (``parquet_2``, ... for more; option ``view=`` names it), over
``read_parquet('<dir>/**/*.parquet')`` inside the query sandbox, which may read those
directories and nothing else. :func:`read` returns a directory's rows as a DataFrame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from obbws_jupyter.exceptions import InvalidParameterError, ObbwsTimeoutError
from obbws_jupyter.protocol import Field, FieldType
from obbws_jupyter.sinks._base import Batch, BatchingSink, SinkContext, SinkHealth

__all__ = [
    "DEFAULT_ROLL_BYTES",
    "DEFAULT_ROLL_ROWS",
    "DEFAULT_ROLL_SECONDS",
    "ParquetSink",
    "read",
]

log = logging.getLogger("obbws_jupyter.sinks.parquet")

DEFAULT_ROLL_ROWS = 1_000_000  # ~20-40 MB of Parquet for a quote/trade record
DEFAULT_ROLL_BYTES = 64 * 2**20  # Arrow bytes held in memory, all partitions together
DEFAULT_ROLL_SECONDS = 60.0  # data becomes visible at least once a minute
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "none")
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # what hive writers use for a missing value
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")
_VIEW_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_NANOSECONDS = pa.timestamp("ns", tz="UTC")
_ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.FLOAT: pa.float64(),
    FieldType.INT: pa.int64(),
    FieldType.BOOL: pa.bool_(),
}


# -- URL and options ----------------------------------------------------------------------------


def directory_of(url: str) -> pathlib.Path:
    """The directory a ``parquet://`` URL names: ``parquet:///abs/dir`` or
    ``parquet://./relative/dir`` (resolved against the current directory)."""
    prefix = "parquet://"
    if not isinstance(url, str) or not url.lower().startswith(prefix):
        raise InvalidParameterError(f"a Parquet sink URL starts with parquet://, got {url!r}.")
    path = url[len(prefix) :]
    if not (path.startswith("/") or path.startswith("./") or path.startswith("../")):
        raise InvalidParameterError(
            f"{url!r}: a parquet:// URL names a local directory: parquet:///absolute/dir "
            "(three slashes) or parquet://./relative/dir."
        )
    if "\x00" in path or _GLOB_CHARS.search(path):
        raise InvalidParameterError(
            f"{url!r}: the directory must not contain a NUL byte or the glob characters "
            "* ? [ ] { } (conn.query reads it with a glob); choose another directory."
        )
    directory = pathlib.Path(os.path.abspath(path))
    if directory == pathlib.Path(directory.anchor):
        raise InvalidParameterError(f"{url!r}: give a directory of its own, not the root.")
    if directory.exists() and not directory.is_dir():
        raise InvalidParameterError(
            f"{url!r}: {directory} exists and is not a directory; give a directory."
        )
    return directory


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(
            f"Parquet sink option {name} must be an int >= 1, got {value!r}."
        )
    return value


def _check_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86_400:
        raise InvalidParameterError(
            f"Parquet sink option roll_seconds must be seconds in (0, 86400], got {value!r}."
        )
    return float(value)


def _check_compression(value: Any) -> str:
    if value not in COMPRESSIONS:
        raise InvalidParameterError(
            f"Parquet sink option compression must be one of {', '.join(COMPRESSIONS)}, "
            f"got {value!r}."
        )
    return str(value)


def _check_view(value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and _VIEW_NAME.match(value)):
        raise InvalidParameterError(
            f"Parquet sink option view must be an SQL name (a letter or underscore, then up to "
            f"62 letters, digits or underscores), got {value!r}."
        )
    return value


# -- rows to Arrow ------------------------------------------------------------------------------


def arrow_schema(fields: Sequence[Field], tz: str) -> pa.Schema:
    """The files' schema: ``id``, ``received_at``, then the fields, typed as the results table."""
    stamp = pa.timestamp("us", tz=tz)
    columns = [pa.field("id", pa.int64(), nullable=False), pa.field("received_at", stamp)]
    for f in fields:
        if f.name not in ("id", "received_at"):
            kind = stamp if f.type is FieldType.TIMESTAMP else _ARROW_TYPES[f.type]
            columns.append(pa.field(f.name, kind))
    return pa.schema(columns)


def _rounded_to_us(nanoseconds: pa.Array, kind: pa.DataType) -> pa.Array:
    """Nanosecond timestamps -> microsecond ones, rounded half away from zero as DuckDB rounds
    them into TIMESTAMPTZ, so the files and the results table agree."""
    raw = nanoseconds.cast(pa.int64())
    ns = raw.fill_null(0).to_numpy(zero_copy_only=False)
    us = np.where(ns >= 0, (ns + 500) // 1000, -((-ns + 500) // 1000))
    return pa.array(us, pa.int64(), mask=raw.is_null().to_numpy(zero_copy_only=False)).cast(kind)


def _nanosecond_struct(schema: pa.Schema) -> pa.StructType:
    """The schema as one struct, timestamps in UTC nanoseconds: pyarrow converts record dicts
    to it in one C++ pass (ints, floats and datetimes as timestamps; naive ones as UTC, as the
    store takes them; missing keys as nulls, unknown keys ignored)."""
    return pa.struct(
        [f.with_type(_NANOSECONDS) if pa.types.is_timestamp(f.type) else f for f in schema]
    )


def to_table(batches: Sequence[Batch], schema: pa.Schema) -> pa.Table:
    """One Arrow table of ``batches``' rows, typed by ``schema``."""
    rows: list[Any] = []
    for batch in batches:
        rows.extend(batch.rows())  # free for the client's batches: they are built from rows
    struct = pa.array(rows, type=_nanosecond_struct(schema))
    arrays = [
        _rounded_to_us(struct.field(i), f.type)
        if pa.types.is_timestamp(f.type)
        else struct.field(i)
        for i, f in enumerate(schema)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def partition_keys(table: pa.Table) -> pa.Array:
    """Each row's partition, ``date=YYYY-MM-DD/symbol=<quoted>``, as an Arrow string array.
    Each distinct day and symbol (a batch has few) is formatted once, then spread to the rows."""
    stamp = table.column("received_at")
    if "date" in table.column_names and pa.types.is_timestamp(table.schema.field("date").type):
        stamp = pc.coalesce(table.column("date"), stamp)
    local_days = pc.cast(pc.local_timestamp(stamp), pa.date32())  # the day in the column's tz
    days = pc.dictionary_encode(local_days.combine_chunks())
    day_names = pa.array([f"date={d.isoformat()}" for d in days.dictionary.to_pylist()])
    day_keys = pc.take(day_names, days.indices)
    if "symbol" in table.column_names:
        symbols = pc.dictionary_encode(table.column("symbol").combine_chunks())
        quoted = pa.array(
            [f"symbol={quote(str(s), safe='')}" for s in symbols.dictionary.to_pylist()]
        )
        symbol_keys = pc.fill_null(pc.take(quoted, symbols.indices), f"symbol={NULL_PARTITION}")
    else:
        symbol_keys = pa.array([f"symbol={NULL_PARTITION}"] * table.num_rows, pa.string())
    return pc.binary_join_element_wise(day_keys, symbol_keys, "/")


def split_by_partition(table: pa.Table) -> dict[str, pa.Table]:
    """``table``'s rows grouped by partition, each group in its original order."""
    if table.num_rows == 0:
        return {}
    encoded = pc.dictionary_encode(partition_keys(table))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices
    if len(encoded.dictionary) == 1:
        return {encoded.dictionary[0].as_py(): table}
    order = pc.sort_indices(codes)  # stable: rows keep their order inside a partition
    ordered = table.take(order)
    counts = np.bincount(codes.to_numpy(), minlength=len(encoded.dictionary))
    groups: dict[str, pa.Table] = {}
    offset = 0
    for code, count in enumerate(counts):
        if count:
            groups[encoded.dictionary[code].as_py()] = ordered.slice(offset, int(count))
            offset += int(count)
    return groups


# -- the sink -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """Rows of one partition waiting for their file."""

    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    since: float = field(default_factory=time.monotonic)


class ParquetSink(BatchingSink):
    """Hive-partitioned Parquet files in one directory (see the module docstring).

    Options: ``roll_rows`` (rows per file, default 1,000,000), ``roll_bytes`` (Arrow bytes
    held in memory before every partition is written, default 64 MiB), ``roll_seconds``
    (age of a partition's oldest row before its file is written, default 60),
    ``compression`` ("zstd", "snappy", "gzip", "lz4", "none"), ``view`` (the name
    ``conn.query`` reads it by), and the batching options of :class:`BatchingSink`.
    """

    kind = "parquet"

    def __init__(
        self,
        url: str,
        *,
        roll_rows: int = DEFAULT_ROLL_ROWS,
        roll_bytes: int = DEFAULT_ROLL_BYTES,
        roll_seconds: float = DEFAULT_ROLL_SECONDS,
        compression: str = "zstd",
        view: str | None = None,
        **options: Any,
    ) -> None:
        self.directory = directory_of(url)
        self.roll_rows = _check_count("roll_rows", roll_rows)
        self.roll_bytes = _check_count("roll_bytes", roll_bytes)
        self.roll_seconds = _check_seconds(roll_seconds)
        self.compression = _check_compression(compression)
        self.view = _check_view(view)
        unknown = set(options) - {
            "max_pending",
            "batch_rows",
            "flush_interval",
            "drop",
            "retry_base",
            "retry_cap",
        }
        if unknown:
            raise InvalidParameterError(
                f"unknown Parquet sink option(s): {', '.join(sorted(unknown))}; the options are "
                "roll_rows, roll_bytes, roll_seconds, compression, view, max_pending, "
                "batch_rows, flush_interval, drop, retry_base, retry_cap."
            )
        super().__init__(url, **options)
        self.schema: pa.Schema | None = None
        self._parts: dict[str, _Part] = {}
        self._buffered = 0  # rows in self._parts (read by health() from other threads)
        self._oldest: float | None = None
        self._in_files = 0
        self.files_written = 0
        self._roll_wanted = 0  # flush() asks for a roll of everything: generation numbers
        self._rolled = 0
        self._roll_done = threading.Condition()
        self._retry_at = 0.0
        self._lost_at_close = 0

    def open(self, context: SinkContext) -> None:
        self.schema = arrow_schema(context.fields, context.tz)
        self._file_prefix = "part-" + _UNSAFE_NAME.sub("_", context.name)[:60]
        super().open(context)

    def query_view(self) -> tuple[str, str] | None:
        """(view name, directory): ``conn.query`` reads this sink's files as that view."""
        return (self.view or "parquet", str(self.directory))

    # -- health and flush ---------------------------------------------------------------------

    def health(self) -> SinkHealth:
        base = super().health()
        buffered, oldest = self._buffered, self._oldest
        lag = base.lag_seconds
        if buffered and oldest is not None:
            lag = max(lag or 0.0, time.monotonic() - oldest)
        return dataclasses.replace(
            base,
            rows_written=self._in_files,
            rows_pending=base.rows_pending + buffered,
            lag_seconds=lag,
        )

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every row written before is in a finished file (a roll of every
        partition); ObbwsTimeoutError if that cannot happen within ``timeout``."""
        deadline = time.monotonic() + timeout
        super().flush(timeout)
        with self._roll_done:
            self._roll_wanted += 1
            wanted = self._roll_wanted
        self._wake.set()
        with self._roll_done:
            while self._rolled < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped.is_set():
                    health = self.health()
                    raise ObbwsTimeoutError(
                        f"sink {self.display_url}: {health.rows_pending} rows not in files "
                        f"after {timeout:g} s (state {health.state}"
                        + (f", last error: {health.last_error})" if health.last_error else ")")
                    )
                self._roll_done.wait(min(remaining, 0.5))

    def close(self, timeout: float = 10.0) -> int:
        lost = super().close(timeout)
        if self._lost_at_close:
            with self._lock:
                self._backlog.dropped += self._lost_at_close
            lost += self._lost_at_close
            self._lost_at_close = 0
        return lost

    # -- the worker thread --------------------------------------------------------------------

    def setup(self) -> None:
        # Nothing to open: the directory is made at the first write, so a folder that cannot
        # be made yet is a retried failure shown in the status, not a refused sink.
        pass

    def deliver(self, batches: list[Batch]) -> None:
        assert self.schema is not None
        table = to_table(batches, self.schema)
        for key, rows in split_by_partition(table).items():
            part = self._parts.get(key)
            if part is None:
                part = self._parts[key] = _Part()
            part.tables.append(rows)
            part.rows += rows.num_rows
            part.nbytes += rows.nbytes
        self._note_buffer()

    def _deliver_pending(self) -> None:
        # Roll first: while files cannot be written, rows stay in the base's bounded backlog
        # (which applies the drop policy) instead of piling up in memory here.
        if not self._roll(time.monotonic()):
            return
        super()._deliver_pending()
        if self._parts and self._due(time.monotonic()):
            self._roll(time.monotonic())

    def teardown(self) -> None:
        with self._roll_done:
            self._roll_wanted += 1
        if not self._roll(time.monotonic(), retry_wait=False):
            self._lost_at_close = self._buffered
            log.warning(
                "sink %s: %d rows could not be written at close",
                self.display_url,
                self._buffered,
            )

    # -- rolling ------------------------------------------------------------------------------

    def _due(self, now: float) -> dict[str, bool]:
        """The partitions to write now, each with whether all its rows go (True) or only
        whole files of ``roll_rows`` (False: the rest waits for more rows)."""
        with self._roll_done:
            everything = self._roll_wanted > self._rolled
        if everything or sum(p.nbytes for p in self._parts.values()) >= self.roll_bytes:
            return dict.fromkeys(self._parts, True)
        due: dict[str, bool] = {}
        for key, part in self._parts.items():
            if now - part.since >= self.roll_seconds:
                due[key] = True
            elif part.rows >= self.roll_rows:
                due[key] = False
        return due

    def _roll(self, now: float, retry_wait: bool = True) -> bool:
        """Write the partitions that are due; False when a write failed (then retried later,
        after the backoff, with the rows kept)."""
        if retry_wait and now < self._retry_at:
            return False
        with self._roll_done:
            wanted = self._roll_wanted
        try:
            for key, whole in self._due(now).items():
                self._write_part(key, whole)
        except Exception as exc:
            self._retry_at = time.monotonic() + self._failed([], exc)
            return False
        finally:
            self._note_buffer()
        if self._state == "retrying":
            self._succeeded([])
            log.info("sink %s: writing files works again", self.display_url)
        with self._roll_done:
            self._rolled = max(self._rolled, wanted)
            self._roll_done.notify_all()
        return True

    def _write_part(self, key: str, whole: bool) -> None:
        part = self._parts[key]
        table = pa.concat_tables(part.tables) if len(part.tables) > 1 else part.tables[0]
        folder = self.directory / key
        while table.num_rows and (whole or table.num_rows >= self.roll_rows):
            chunk = table.slice(0, self.roll_rows)
            self._write_file(folder, chunk)
            # what is written leaves the buffer at once: a failure later in this part keeps
            # only the rows not yet in a file, so nothing is written twice
            table = table.slice(chunk.num_rows)
            part.tables, part.rows, part.nbytes = [table], table.num_rows, table.nbytes
            self._in_files += chunk.num_rows
        if not table.num_rows:
            del self._parts[key]
        else:  # the rest keeps its age: it is written within roll_seconds all the same
            part.tables = [table.combine_chunks()]  # frees the written rows' buffers

    def _write_file(self, folder: pathlib.Path, table: pa.Table) -> None:
        first_id = int(table.column("id")[0].as_py())
        name = f"{self._file_prefix}-{first_id:012d}-{uuid.uuid4().hex[:8]}.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.tmp"
        compression = None if self.compression == "none" else self.compression
        try:
            with open(temporary, "wb") as out:
                pq.write_table(table, out, compression=compression)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        self.files_written += 1

    def _note_buffer(self) -> None:
        self._buffered = sum(p.rows for p in self._parts.values())
        self._oldest = min((p.since for p in self._parts.values()), default=None)


# -- reading ------------------------------------------------------------------------------------


def read(directory: str | os.PathLike[str], tz: str | None = None) -> pd.DataFrame:
    """Every row of the Parquet files under ``directory`` (a path, or the sink's
    ``parquet://`` URL), oldest first (by ``id``); timestamps tz-aware in ``tz`` (default: as
    stored, the connection's)."""
    if isinstance(directory, str) and directory.lower().startswith("parquet://"):
        directory = directory_of(directory)
    root = pathlib.Path(directory).expanduser()
    if not root.is_dir():
        raise InvalidParameterError(f"read(): {root} is not a directory of Parquet files.")
    dataset = pds.dataset(
        root,
        format="parquet",
        partitioning=None,  # every file holds every column (the directories' date is a DATE)
        exclude_invalid_files=False,
        ignore_prefixes=[".", "_"],
    )
    files = [f for f in dataset.files if f.endswith(".parquet")]
    if not files:
        return pd.DataFrame()
    table = pds.dataset(files, format="parquet").to_table()
    if "id" in table.column_names:
        table = table.sort_by("id")
    if tz is not None:
        table = table.cast(
            pa.schema(
                [
                    f.with_type(pa.timestamp(f.type.unit, tz=tz))
                    if pa.types.is_timestamp(f.type)
                    else f
                    for f in table.schema
                ]
            )
        )
    return table.to_pandas()
