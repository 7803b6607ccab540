"""``get_results`` over HTTP: pages of stored records by id, streamed as JSON, CSV or Parquet.

Records are read oldest first in chunks of :data:`CHUNK` rows by id (``WHERE id > last``), so
a large table streams with bounded memory, and rows trimmed by ``limit`` or added meanwhile
never shift a page. ``since_id`` keeps records with ``id > since_id`` (ids grow monotonically,
also across ``clear_results``), ``offset`` skips rows after that, ``limit`` caps the count.

One wire form per record everywhere: JSON records are encoded by the broadcast's
:class:`~obbws_jupyter._broadcast.RecordEncoder` (ISO 8601 dates with offset, in the
connection's time zone; NaN as null); CSV has the same columns and date strings; Parquet
keeps the typed columns (dates as tz-aware timestamps).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from obbws_jupyter._store import quote_identifier
from obbws_jupyter._wire import RecordEncoder
from obbws_jupyter.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from obbws_jupyter.client import WebSocketClient

__all__ = ["CHUNK", "FORMATS", "MAX_INT", "Page", "parse_page_limit"]

CHUNK = 5000
MAX_INT = 2**62  # ids, offsets and counts beyond this are refused before reaching DuckDB
FORMATS = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def parse_page_limit(limit: str | None) -> int | None:
    """``limit`` of get_results: a whole number >= 0, or None / "None" for every record."""
    if limit is None or limit.strip().lower() in ("none", "null", ""):
        return None
    text = limit.strip()
    if text.isdigit() and int(text) <= MAX_INT:
        return int(text)
    raise InvalidParameterError(
        f"limit={limit!r} is invalid: use a whole number >= 0 (records returned), "
        "or None for every record."
    )


class Page:
    """One request's records: reads the first chunk at once (so errors get their status
    before the response starts), then the rest lazily while streaming."""

    def __init__(
        self,
        client: WebSocketClient,
        since_id: int | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> None:
        self.client = client
        self.encoder = RecordEncoder(client.fields, client.tz)
        self._sql = (
            f"SELECT * FROM {quote_identifier(client.table_name)} "
            "WHERE id > ? ORDER BY id LIMIT ? OFFSET ?"
        )
        self._after = -MAX_INT if since_id is None else since_id
        self._remaining = limit
        self._first = self._read(offset)
        self.count = 0
        self.last_id: int | None = None

    def _read(self, skip: int) -> pd.DataFrame:
        size = CHUNK if self._remaining is None else min(CHUNK, self._remaining)
        if size == 0:
            return pd.DataFrame()
        frame = self.client.query(self._sql, [self._after, size, skip])
        if self._remaining is not None:
            self._remaining -= len(frame)
        if len(frame):
            self._after = int(frame["id"].iloc[-1])
        if len(frame) < size:
            self._remaining = 0  # the table has no more rows
        return frame

    def frames(self) -> Iterator[pd.DataFrame]:
        """The chunks, oldest first (counting rows and the last id as they go)."""
        frame = self._first
        while len(frame):
            self.count += len(frame)
            self.last_id = int(frame["id"].iloc[-1])
            yield frame
            frame = self._read(0)

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        """The records chunk by chunk, as dicts of Python values (dates tz-aware, None)."""
        for frame in self.frames():
            yield pa.Table.from_pandas(frame, preserve_index=False).to_pylist()

    # -- bodies --------------------------------------------------------------------------------

    def json_body(self, provider: str | None) -> Iterator[bytes]:
        """``{"results": [...], "provider": ..., "warnings": null, "extra": {...}}``, streamed;
        ``extra`` closes the body with ``count`` and ``last_id`` (the next ``since_id``)."""
        yield b'{"results":['
        encode = self.encoder.encode
        separator = b""
        for rows in self.chunks():
            yield separator + ",".join(encode(row) for row in rows).encode()
            separator = b","
        tail = {
            "provider": provider,
            "warnings": None,
            "extra": {"count": self.count, "last_id": self.last_id},
        }
        yield b"]," + json.dumps(tail, separators=(",", ":")).encode()[1:]

    def csv_body(self) -> Iterator[bytes]:
        """A header line, then one line per record; dates as in the JSON form."""
        keys = self.encoder.keys
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(keys)
        for rows in self.chunks():
            for row in rows:
                values = json.loads(self.encoder.encode(row))
                writer.writerow(["" if values.get(k) is None else values[k] for k in keys])
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode()

    def parquet_body(self) -> Iterator[bytes]:
        """A Parquet file (one row group per chunk), spooled to disk past 32 MiB, then sent."""
        with tempfile.SpooledTemporaryFile(max_size=32 * 2**20) as sink:
            writer: pq.ParquetWriter | None = None
            for frame in self.frames():
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(sink, table.schema)
                writer.write_table(table.cast(writer.schema))
            if writer is None:  # no rows: an empty file with the table's columns
                empty = self.client.query(
                    f"SELECT * FROM {quote_identifier(self.client.table_name)} LIMIT 0"
                )
                writer = pq.ParquetWriter(
                    sink, pa.Table.from_pandas(empty, preserve_index=False).schema
                )
            writer.close()
            sink.seek(0)
            while chunk := sink.read(2**20):
                yield chunk
