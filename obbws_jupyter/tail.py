"""``LiveTail``: the newest rows and per-symbol aggregates of one stream, kept in memory for live
views (the connection widget), so a view never flushes or queries DuckDB to refresh.

Contract (narrow on purpose: the sinks issue turns this into one sink among others):

- ``feed(records)`` takes one frame's records, as ``WebSocketClient.add_record_hook`` delivers
  them on the loop thread (provider fields + ``id`` + ``received_at``; timestamps int ns UTC).
  It must stay cheap: a deque extend plus a few dict operations per record.
- ``snapshot()`` returns a JSON-ready dict (columnar rows newest first, per-symbol aggregates,
  events/s) for a view; it runs on the refresh thread at the view's cadence.
- ``close()`` stops following the client; later ``feed`` calls (one already in flight on the
  loop thread) are ignored.

``feed`` and ``snapshot`` may run on different threads at once: one lock guards the state and
``snapshot`` holds it only to copy. The records are shared with the store and the broadcast
(read-only by convention), so the tail keeps references instead of copies.

Per symbol it keeps the count, the first value seen (seeded from the stored rows when the tail
starts following, so "change" is since the oldest stored row of that symbol: the connection's
start unless ``limit`` has trimmed it), the last price (or bid/ask for quotes), and a sparkline
ring buffer sampled at the snapshot cadence. This module imports no widget library.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from obbws_jupyter.protocol import Field, FieldType, Record

__all__ = ["LiveTail", "stored_seed"]

log = logging.getLogger("obbws_jupyter.tail")

MAX_ROWS = 1000  # the widget's table shows at most this many rows (payload budget aside)


class _Followable(Protocol):
    """The part of ``WebSocketClient`` the tail uses (kept duck-typed: no import cycle)."""

    @property
    def fields(self) -> tuple[Any, ...]: ...

    def add_record_hook(self, hook: Any) -> None: ...
    def remove_record_hook(self, hook: Any) -> None: ...


def stored_seed(client: Any, rows: int) -> list[Record]:
    """Stored rows to seed a tail with, oldest first, shaped like live records: the first
    stored row of each symbol (for "change since the start") and the newest ``rows`` rows.
    One flush and two reads, once when a view starts; [] when nothing can be read."""
    from obbws_jupyter.exceptions import ObbwsError

    try:
        newest = client.store.last_records(rows)
        names = ["id", "received_at", *(f.name for f in client.fields)]
        if "symbol" not in names:
            return list(newest)
        timestamps = {"received_at"} | {
            f.name for f in client.fields if f.type is FieldType.TIMESTAMP
        }
        select = ", ".join(
            f'epoch_ns("{n}") AS "{n}"' if n in timestamps else f'"{n}"' for n in names
        )
        table = f'"{client.table_name}"'
        frame = client.query(
            f"SELECT {select} FROM {table} WHERE id IN "
            f"(SELECT min(id) FROM {table} GROUP BY symbol) ORDER BY id"
        )
    except (ObbwsError, OSError) as exc:
        log.debug("%s: no stored rows to seed the live view: %s", client.name, exc)
        return []
    firsts = [
        {k: v for k, v in row.items() if v is not None and v == v}  # drop None and NaN
        for row in frame.astype(object).to_dict("records")
    ]
    by_id = {int(r["id"]): r for r in [*firsts, *newest]}
    return [by_id[i] for i in sorted(by_id)]


class _Symbol:
    __slots__ = ("ask", "bid", "count", "first", "last", "spark")

    def __init__(self, spark_points: int) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.bid: float | None = None
        self.ask: float | None = None
        self.spark: deque[float] = deque(maxlen=spark_points)


def value_mode(fields: Sequence[Field]) -> tuple[str, str | None]:
    """Which field gives a symbol's "price": ``("price", name)`` for trades and aggregates,
    ``("quote", None)`` for bid/ask feeds (the mid is used), ``("none", None)`` otherwise."""
    names = {f.name for f in fields}
    for candidate in ("price", "close", "last", "value"):
        if candidate in names:
            return "price", candidate
    if {"bid", "ask"} <= names:
        return "quote", None
    floats = [f.name for f in fields if f.type is FieldType.FLOAT]
    return ("price", floats[0]) if floats else ("none", None)


class LiveTail:
    """Newest ``rows`` records plus per-symbol aggregates (see the module docstring)."""

    def __init__(
        self,
        fields: Sequence[Field],
        *,
        rows: int = 50,
        spark_points: int = 60,
        sample_every: float = 0.25,
        rate_window: float = 2.0,
    ) -> None:
        self.fields = tuple(fields)
        self.columns = ["id", "received_at", *(f.name for f in self.fields)]
        self.types = ["int", "timestamp", *(str(f.type) for f in self.fields)]
        self._ts_columns = frozenset(
            name for name, kind in zip(self.columns, self.types, strict=True) if kind == "timestamp"
        )
        self.mode, self.value_field = value_mode(self.fields)
        self.spark_points = spark_points
        self.sample_every = sample_every
        self.rate_window = rate_window
        self._lock = threading.Lock()
        self._rows: deque[Record] = deque(maxlen=max(1, min(int(rows), MAX_ROWS)))
        self._symbols: dict[str, _Symbol] = {}
        self._total = 0
        self._rates: deque[tuple[float, int]] = deque()
        self._last_sample = 0.0
        self._client: _Followable | None = None
        self._closed = False

    # -- wiring ---------------------------------------------------------------------------------

    def follow(self, client: _Followable, seed: Iterable[Record] = ()) -> LiveTail:
        """Start taking ``client``'s records; ``seed`` (stored rows, oldest first) fills the
        table and the first/last values before the live records arrive."""
        self.seed(seed)
        self._client = client
        client.add_record_hook(self.feed)
        return self

    def close(self) -> None:
        """Stop following the client; idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            client.remove_record_hook(self.feed)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def rows(self) -> int:
        return self._rows.maxlen or 0

    def resize(self, rows: int) -> None:
        """Keep ``rows`` newest records from now on (the newest held ones are kept)."""
        rows = max(1, min(int(rows), MAX_ROWS))
        with self._lock:
            self._rows = deque(self._rows, maxlen=rows)

    # -- the hot path (loop thread) -------------------------------------------------------------

    def seed(self, records: Iterable[Record]) -> None:
        """Like :meth:`feed` for history: counted per symbol, not in the events/s rate."""
        records = list(records)
        if records:
            self._ingest(records)
            with self._lock:
                self._total -= len(records)

    def feed(self, records: list[Record]) -> None:
        """One frame's records (called on the loop thread): cheap, never raises for a record
        that lacks fields."""
        if not self._closed:
            self._ingest(records)

    def _ingest(self, records: list[Record]) -> None:
        field = self.value_field
        quotes = self.mode == "quote"
        spark_points = self.spark_points
        with self._lock:
            self._rows.extend(records)
            self._total += len(records)
            symbols = self._symbols
            for record in records:
                symbol = record.get("symbol") or ""
                stats = symbols.get(symbol)
                if stats is None:
                    stats = symbols[symbol] = _Symbol(spark_points)
                stats.count += 1
                if quotes:
                    bid, ask = record.get("bid"), record.get("ask")
                    if bid is None or ask is None:
                        continue
                    stats.bid, stats.ask = bid, ask
                    value = (bid + ask) / 2
                elif field is None or (value := record.get(field)) is None:
                    continue
                if stats.first is None:
                    stats.first = value
                stats.last = value

    # -- the refresh side -------------------------------------------------------------------------

    def snapshot(self, rows: int | None = None, max_symbols: int = 50) -> dict[str, Any]:
        """A JSON-ready view of the tail: ``rows`` (columnar, newest first, timestamps as int ms
        since the epoch), ``symbols`` (the ``max_symbols`` most active, by name), ``rate``
        (events/s over the last ``rate_window`` seconds) and ``total`` (records fed)."""
        now = time.monotonic()
        with self._lock:
            n = len(self._rows) if rows is None else max(0, min(rows, len(self._rows)))
            newest = list(itertools.islice(reversed(self._rows), n))
            total = self._total
            self._sample(now)
            symbols = [
                _symbol_view(name, stats)
                for name, stats in _most_active(self._symbols, max_symbols)
            ]
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": self._columnar(newest),
            "symbols": symbols,
            "mode": self.mode,
            "value_field": self.value_field,
            "rate": self._rate(now, total),
            "total": total,
        }

    def _sample(self, now: float) -> None:
        # the sparkline gets one point per refresh, whatever the feed rate
        if now - self._last_sample < 0.8 * self.sample_every:
            return
        self._last_sample = now
        for stats in self._symbols.values():
            if stats.last is not None:
                stats.spark.append(stats.last)

    def _rate(self, now: float, total: int) -> float:
        rates = self._rates
        rates.append((now, total))
        while len(rates) > 2 and now - rates[1][0] >= self.rate_window:
            rates.popleft()
        t0, n0 = rates[0]
        return round((total - n0) / (now - t0), 1) if now > t0 else 0.0

    def _columnar(self, newest: list[Record]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for name in self.columns:
            values = [r.get(name) for r in newest]
            if name in self._ts_columns:
                values = [None if v is None else v // 1_000_000 for v in values]
            out[name] = values
        return out


def _most_active(symbols: dict[str, _Symbol], limit: int) -> list[tuple[str, _Symbol]]:
    items = list(symbols.items())
    if len(items) > limit:
        items.sort(key=lambda item: item[1].count, reverse=True)
        items = items[:limit]
    items.sort(key=lambda item: item[0])
    return items


def _symbol_view(name: str, stats: _Symbol) -> dict[str, Any]:
    change = None
    if stats.first is not None and stats.last is not None:
        change = stats.last - stats.first
    return {
        "symbol": name,
        "count": stats.count,
        "last": stats.last,
        "bid": stats.bid,
        "ask": stats.ask,
        "first": stats.first,
        "change": change,
        "change_pct": (change / stats.first * 100) if change is not None and stats.first else None,
        "spark": list(stats.spark),
    }
