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
- It is a :class:`~obbws_jupyter.sinks.Sink` too: ``write(batch)`` feeds a frame's
  :class:`~obbws_jupyter.sinks.Batch`. ``follow`` attaches it through the client's record
  hooks, themselves one internal sink of the connection, fed the same batch as the store.

``feed`` and ``snapshot`` may run on different threads at once: one lock guards the state and
``snapshot`` holds it only to copy. The records are shared with the store and the broadcast
(read-only by convention), so the tail keeps references instead of copies.

Per symbol it keeps the count (seeded with the stored count per symbol when the tail starts
following), the first value seen (seeded from the first stored row of that symbol, so "change"
is since the oldest stored row: the connection's start unless ``limit`` has trimmed it), the
last price (or bid/ask for quotes), the decimals its values need, and a sparkline ring buffer
sampled at the snapshot cadence while records arrive. The events/s rate is counted in
quarter-second buckets as records are fed, so it is the current rate whenever a snapshot is
taken (a view that was hidden for a minute does not see an average over that minute).
This module imports no widget library.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from obbws_jupyter.protocol import Field, FieldType, Record
from obbws_jupyter.sinks._base import Batch, Sink, SinkHealth

__all__ = ["LiveTail", "Seed", "decimals", "stored_seed"]

log = logging.getLogger("obbws_jupyter.tail")

MAX_ROWS = 1000  # the widget's table shows at most this many rows (payload budget aside)
MAX_DECIMALS = 8  # a value needing more is shown with this many (continuous values, not ticks)
BUCKETS_PER_SECOND = 4  # resolution of the events/s counter


class _Followable(Protocol):
    """The part of ``WebSocketClient`` the tail uses (kept duck-typed: no import cycle)."""

    @property
    def fields(self) -> tuple[Any, ...]: ...

    def add_record_hook(self, hook: Any) -> None: ...
    def remove_record_hook(self, hook: Any) -> None: ...


@dataclass
class Seed:
    """What a tail starts from: stored ``records`` (oldest first, shaped like live records),
    the stored row ``counts`` per symbol (None: count the records given), and ``upto``, the
    highest id the seed covers (live records up to it are already in it)."""

    records: list[Record] = field(default_factory=list)
    counts: dict[str, int] | None = None
    upto: int | None = None


SeedSource: TypeAlias = Seed | Iterable[Record] | Callable[[], Seed | Iterable[Record]]


def stored_seed(client: Any, rows: int) -> Seed:
    """The seed of a live view of ``client``: the first stored row of each symbol (for
    "change since the start") with the stored row count of each symbol, in one grouped read
    through the client's query path, plus the newest ``rows`` rows. Read once when a view
    starts; an empty seed when nothing can be read."""
    from obbws_jupyter.exceptions import ObbwsError

    names = ["id", "received_at", *(f.name for f in client.fields)]
    try:
        if "symbol" not in names:
            newest = list(client.store.last_records(rows))
            return Seed(newest, upto=int(newest[-1]["id"]) if newest else None)
        timestamps = {"received_at"} | {
            f.name for f in client.fields if f.type is FieldType.TIMESTAMP
        }
        select = ", ".join(
            f'epoch_ns("{n}") AS "{n}"' if n in timestamps else f'"{n}"' for n in names
        )
        # window functions run before QUALIFY: the counts and the max id cover every row
        frame = client.query(
            f"SELECT {select}, count(*) OVER (PARTITION BY symbol) AS __n, "
            f'max(id) OVER () AS __upto FROM "{client.table_name}" '
            "QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY id) = 1 ORDER BY id"
        )
        newest = client.store.last_records(rows)
    except (ObbwsError, OSError) as exc:
        log.debug("%s: no stored rows to seed the live view: %s", client.name, exc)
        return Seed()
    counts: dict[str, int] = {}
    upto: int | None = None
    firsts = []
    for row in frame.astype(object).to_dict("records"):
        counts[row.get("symbol") or ""] = int(row.pop("__n"))
        upto = int(row.pop("__upto"))
        firsts.append({k: v for k, v in row.items() if v is not None and v == v})  # no NaN
    # rows committed after the grouped read arrive as live records: leave them out here
    by_id = {int(r["id"]): r for r in [*firsts, *newest] if upto is not None and r["id"] <= upto}
    return Seed([by_id[i] for i in sorted(by_id)], counts, upto)


class _Symbol:
    __slots__ = ("ask", "bid", "count", "decimals", "first", "last", "spark")

    def __init__(self, spark_points: int) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.bid: float | None = None
        self.ask: float | None = None
        self.decimals = 0
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


def decimals(value: Any, at_least: int = 0) -> int:
    """The fewest decimals (from ``at_least`` up to :data:`MAX_DECIMALS`) that show ``value``
    without dropping a digit of its tick: 5 for 1.07987, 2 for 64993.07, 0 for 1.0. Float
    noise (3499.9500000000003) does not count; ints, None and NaN need none."""
    if not isinstance(value, float) or not math.isfinite(value):
        return at_least
    tolerance = abs(value) * 1e-12
    for places in range(at_least, MAX_DECIMALS + 1):
        if abs(round(value, places) - value) <= tolerance:
            return places
    return MAX_DECIMALS


def _key(symbol: str) -> str:
    """A symbol compared case- and separator-blind ("btc-usd" matches "BTCUSD")."""
    return "".join(ch for ch in symbol.upper() if ch.isalnum())


class LiveTail(Sink):
    """Newest ``rows`` records plus per-symbol aggregates (see the module docstring).
    ``clock`` (monotonic seconds) is there for tests."""

    kind = "tail"

    def __init__(
        self,
        fields: Sequence[Field],
        *,
        rows: int = 50,
        spark_points: int = 60,
        sample_every: float = 0.25,
        rate_window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("tail://")
        self.fields = tuple(fields)
        self.columns = ["id", "received_at", *(f.name for f in self.fields)]
        self.types = ["int", "timestamp", *(str(f.type) for f in self.fields)]
        self._ts_columns = frozenset(
            name for name, kind in zip(self.columns, self.types, strict=True) if kind == "timestamp"
        )
        self._float_columns = [
            name for name, kind in zip(self.columns, self.types, strict=True) if kind == "float"
        ]
        # per float column and symbol, the decimals seen: only ever grows (it is the tick)
        self._decimals: dict[str, dict[str, int]] = {name: {} for name in self._float_columns}
        self.mode, self.value_field = value_mode(self.fields)
        self.spark_points = spark_points
        self.sample_every = sample_every
        self.rate_window = rate_window
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: deque[Record] = deque(maxlen=max(1, min(int(rows), MAX_ROWS)))
        self._symbols: dict[str, _Symbol] = {}
        self._total = 0
        # events/s: records per quarter second, counted as they are fed
        self._window_buckets = max(1, round(rate_window * BUCKETS_PER_SECOND))
        self._buckets: deque[tuple[int, int]] = deque(maxlen=self._window_buckets + 1)
        self._bucket = -1
        self._bucket_count = 0
        self._fed = False  # live records arrived since the last sparkline sample
        self._last_sample = -math.inf
        self._held: list[list[Record]] | None = None  # live frames that arrive while seeding
        self._client: _Followable | None = None
        self._closed = False

    # -- wiring ---------------------------------------------------------------------------------

    def follow(self, client: _Followable, seed: SeedSource = ()) -> LiveTail:
        """Start taking ``client``'s records. ``seed`` (a :class:`Seed`, stored rows oldest
        first, or a callable returning either) is read after the hook is attached, so nothing
        is missed: frames that arrive meanwhile are held, then added, minus the records the
        seed already holds (ids up to ``Seed.upto``)."""
        with self._lock:
            self._held = []
        self._client = client
        client.add_record_hook(self.feed)
        got: Seed | Iterable[Record] = ()
        try:
            got = seed() if callable(seed) else seed
            self.seed(got)
        finally:
            upto = got.upto if isinstance(got, Seed) else None
            with self._lock:
                held, self._held = self._held or [], None
                for frame in held:
                    if upto is not None:
                        frame = [r for r in frame if r.get("id", upto + 1) > upto]
                    self._ingest(frame, live=True)
        return self

    def close(self, timeout: float = 10.0) -> int:
        """Stop following the client; idempotent. Nothing is pending: returns 0."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            client.remove_record_hook(self.feed)
        return 0

    def write(self, batch: Batch) -> None:
        """The Sink form of :meth:`feed`: one frame's batch."""
        self.feed(batch.rows())

    def health(self) -> SinkHealth:
        return SinkHealth(
            url=self.url,
            kind=self.kind,
            state="closed" if self._closed else "ok",
            rows_written=self._total,
        )

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

    def seed(self, seed: Seed | Iterable[Record]) -> None:
        """Like :meth:`feed` for history: not in the events/s rate or the live total; with
        ``Seed.counts`` the per-symbol counts are the stored ones."""
        if not isinstance(seed, Seed):
            seed = Seed(list(seed))
        with self._lock:
            self._ingest(seed.records, live=False)
            for symbol, count in (seed.counts or {}).items():
                stats = self._symbols.get(symbol)
                if stats is None:
                    stats = self._symbols[symbol] = _Symbol(self.spark_points)
                stats.count = count
            for stats in self._symbols.values():  # the sparkline starts where history ends
                if stats.last is not None and not stats.spark:
                    stats.spark.append(stats.last)

    def feed(self, records: list[Record]) -> None:
        """One frame's records (called on the loop thread): cheap, never raises for a record
        that lacks fields."""
        if self._closed:
            return
        with self._lock:
            if self._held is not None:
                self._held.append(records)
            else:
                self._ingest(records, live=True)

    def _ingest(self, records: list[Record], live: bool) -> None:
        # called with the lock held
        field = self.value_field
        quotes = self.mode == "quote"
        spark_points = self.spark_points
        self._rows.extend(records)
        if live and records:
            self._count(len(records))
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

    def _count(self, n: int) -> None:
        self._total += n
        self._fed = True
        key = int(self._clock() * BUCKETS_PER_SECOND)
        if key != self._bucket:
            if self._bucket_count:
                self._buckets.append((self._bucket, self._bucket_count))
            self._bucket, self._bucket_count = key, 0
        self._bucket_count += n

    # -- the refresh side -------------------------------------------------------------------------

    def snapshot(
        self,
        rows: int | None = None,
        max_symbols: int = 50,
        only: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """A JSON-ready view of the tail: ``rows`` (columnar, newest first, timestamps as int ms
        since the epoch), ``decimals`` (per float column and symbol, the finest tick seen),
        ``symbols``
        (the ``max_symbols`` most active, by name; with ``only``, the subscribed symbols
        among them unless none matches), ``rate`` (events/s over the last ``rate_window``
        seconds) and ``total`` (live records fed)."""
        now = self._clock()
        with self._lock:
            n = len(self._rows) if rows is None else max(0, min(rows, len(self._rows)))
            newest = list(itertools.islice(reversed(self._rows), n))
            total = self._total
            rate = self._rate(now)
            self._sample(now)
            symbols = [
                _symbol_view(name, stats, self.mode == "quote")
                for name, stats in _most_active(_subscribed(self._symbols, only), max_symbols)
            ]
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": self._columnar(newest),
            "decimals": self._column_decimals(newest),
            "symbols": symbols,
            "mode": self.mode,
            "value_field": self.value_field,
            "rate": rate,
            "total": total,
        }

    def _sample(self, now: float) -> None:
        # one sparkline point per refresh while records arrive, whatever the feed rate;
        # none while the stream is stopped (time passes, the data does not)
        if not self._fed or now - self._last_sample < 0.8 * self.sample_every:
            return
        self._last_sample = now
        self._fed = False
        for stats in self._symbols.values():
            if stats.last is not None:
                stats.spark.append(stats.last)

    def _rate(self, now: float) -> float:
        # complete buckets of the last rate_window seconds (the current one is still filling)
        end = int(now * BUCKETS_PER_SECOND)
        start = end - self._window_buckets
        count = sum(n for key, n in self._buckets if start <= key < end)
        if start <= self._bucket < end:
            count += self._bucket_count
        return round(count / (self._window_buckets / BUCKETS_PER_SECOND), 1)

    def _column_decimals(self, newest: list[Record]) -> dict[str, dict[str, int]]:
        # per symbol: a yen pair and a euro pair in one bid column have different ticks
        out: dict[str, dict[str, int]] = {}
        for name in self._float_columns:
            seen = self._decimals[name]
            for record in newest:
                symbol = record.get("symbol") or ""
                seen[symbol] = decimals(record.get(name), seen.get(symbol, 0))
            out[name] = dict(seen)
        return out

    def _columnar(self, newest: list[Record]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for name in self.columns:
            values = [r.get(name) for r in newest]
            if name in self._ts_columns:
                values = [None if v is None else v // 1_000_000 for v in values]
            out[name] = values
        return out


def _subscribed(symbols: dict[str, _Symbol], only: Collection[str] | None) -> dict[str, _Symbol]:
    if only is None:
        return symbols
    keys = {_key(s) for s in only}
    if not keys:  # every symbol unsubscribed: nothing is live
        return {}
    if "" in keys:  # "*": every symbol
        return symbols
    chosen = {name: stats for name, stats in symbols.items() if _key(name) in keys}
    return chosen or symbols


def _most_active(symbols: dict[str, _Symbol], limit: int) -> list[tuple[str, _Symbol]]:
    items = list(symbols.items())
    if len(items) > limit:
        items.sort(key=lambda item: item[1].count, reverse=True)
        items = items[:limit]
    items.sort(key=lambda item: item[0])
    return items


def _symbol_view(name: str, stats: _Symbol, quotes: bool) -> dict[str, Any]:
    places = stats.decimals  # the tick seen so far: only ever grows
    for value in (stats.bid, stats.ask) if quotes else (stats.last,):
        places = decimals(value, places)
    stats.decimals = places
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
        "decimals": places,
        # a mid's change may need one place more than the quotes (a half tick)
        "change_decimals": min(decimals(change, places), places + 1),
        "spark": list(stats.spark),
    }
