"""The live chart's own buffer: per-symbol columns over a rolling window, bounded in memory.

Narrow interface (a record sink)::

    buffer = ChartBuffer(fields, kind=None, window="5min", interval="5s", tz="UTC")
    client.add_record_hook(buffer.add)   # on the loop thread, once per read: cheap per record
    snap = buffer.snapshot(since=seen)   # any thread: the series changed since version `seen`

Kinds (see :mod:`obbws_jupyter._fieldmap`): ``"line"`` keeps (t, price) points, ``"band"``
(t, bid, ask) points, ``"candles"`` bars (start, open, high, low, close, volume) built from
trades (or the bid/ask midpoint, or the feed's own bars) in ``interval`` buckets aligned on the
wall clock of ``tz`` exactly as :func:`obbws_jupyter._bars.ohlc` aligns them.

Window. A number of points keeps the newest N points (bars) per symbol. A duration keeps what
lies within that time of the newest record (stream time, so replays work): points are then
thinned into ``window / max_points`` bins, each holding the bin's last value, so a 20k events/s
feed and a 2 events/s feed both hold at most ``max_points`` points per symbol. At most
``max_symbols`` symbols are kept (the first ones seen, unless ``symbols`` names them). Memory is
therefore bounded by ``max_symbols * max(max_points, window points)`` entries.

Times are ``int`` ns UTC, as in records (``date``, else ``received_at``). A late record whose
bin is older than its symbol's newest bin is dropped from lines and bands; a late trade still
updates the older candle it belongs to while that candle is in the buffer.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from obbws_jupyter._bars import parse_duration, parse_window
from obbws_jupyter._fieldmap import (
    KINDS,
    NOT_TRADE_TYPES,
    PriceSource,
    Roles,
    default_kind,
    price_source,
    resolve_roles,
)
from obbws_jupyter._validate import check_positive
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.protocol import Record

__all__ = ["COLUMNS", "ChartBuffer", "Snapshot"]

COLUMNS: dict[str, tuple[str, ...]] = {
    "line": ("t", "price"),
    "band": ("t", "bid", "ask"),
    "candles": ("t", "open", "high", "low", "close", "volume"),
}
_NAN = math.nan
Extract = Callable[[Record], tuple[float, ...] | None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Series changed since a version: ``series[symbol][column]`` are numpy arrays (``t`` int64
    ns UTC, values float64), oldest first. ``symbols`` lists every series, in arrival order."""

    kind: str
    version: int
    symbols: tuple[str, ...]
    series: dict[str, dict[str, np.ndarray]]


class _Series:
    """One symbol's columns. Points: ``keys`` are time bins (when thinning), ``cols`` are t and
    the values. Candles: ``keys`` are bar starts, ``cols`` open, high, low, close, volume,
    first_t, last_t (first/last trade time, to keep open/close right for late trades)."""

    __slots__ = ("cols", "keys", "version")

    def __init__(self, ncols: int, maxlen: int) -> None:
        self.keys: deque[int] = deque(maxlen=maxlen)
        self.cols: list[deque[Any]] = [deque(maxlen=maxlen) for _ in range(ncols)]
        self.version = 0

    def __len__(self) -> int:
        return len(self.cols[0])

    def popleft(self) -> None:
        if self.keys:
            self.keys.popleft()
        for col in self.cols:
            col.popleft()


class ChartBuffer:
    """Bounded per-symbol chart series fed by record frames (see the module docstring)."""

    def __init__(
        self,
        fields: Iterable[str],
        *,
        kind: str | None = None,
        window: Any = "5min",
        interval: Any = "5s",
        price: str | None = None,
        symbols: Iterable[str] | None = None,
        max_points: int = 500,
        max_symbols: int = 8,
        tz: str = "UTC",
    ) -> None:
        self.roles: Roles = resolve_roles(fields)
        self.price = price
        self.window_ns, self.window_points = parse_window(window)
        self.interval_ns = parse_duration("interval", interval)
        self.max_points = int(check_positive("max_points", max_points, whole=True))
        self.max_symbols = int(check_positive("max_symbols", max_symbols, whole=True))
        self._zone = zoneinfo.ZoneInfo(tz)
        self.wanted = tuple(symbols) if symbols is not None else ()
        self._wanted = frozenset(self.wanted) if symbols is not None else None
        self._kind: str | None = None
        self._extract: Extract | None = None
        if kind is None:
            kind = default_kind(self.roles)
        elif kind not in KINDS:
            raise InvalidParameterError(f"kind={kind!r} is invalid: use one of {', '.join(KINDS)}.")
        if kind is not None:
            self._set_kind(kind)
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._ignored: set[str] = set()
        self._newest = 0
        self.version = 0
        self.records = 0  # records taken into a series

    # -- setup -------------------------------------------------------------------------------

    @property
    def kind(self) -> str | None:
        """``"line"``, ``"band"`` or ``"candles"``; None until an ambiguous feed's first data."""
        return self._kind

    def _set_kind(self, kind: str) -> None:
        self._extract = _extractor(kind, self.roles, self.price)
        if kind == "candles":
            self._bin_ns = 0
            self._maxlen = self.window_points or min(
                self.max_points, (self.window_ns or 0) // self.interval_ns + 2
            )
        elif self.window_points:
            self._bin_ns, self._maxlen = 0, self.window_points
        else:
            self._bin_ns = max(1, (self.window_ns or 0) // self.max_points)
            self._maxlen = self.max_points + 2  # the partial bins at both ends
        self._kind = kind

    def _decide(self, records: Sequence[Record]) -> None:
        """Ambiguous feed (trade price and bid/ask): a line if trades arrive, else a band."""
        price, bid, ask = self.roles.price, self.roles.bid, self.roles.ask
        if any(r.get(price or "") is not None for r in records):
            self._set_kind("line")
        elif any(r.get(bid or "") is not None and r.get(ask or "") is not None for r in records):
            self._set_kind("band")

    # -- the sink ----------------------------------------------------------------------------

    def add(self, records: Sequence[Record]) -> None:
        """Take one frame's records (the client's record hook; on the loop thread)."""
        with self._lock:
            if self._kind is None:
                self._decide(records)
                if self._kind is None:
                    return
            extract = self._extract
            assert extract is not None
            add = self._add_bar if self._kind == "candles" else self._add_point
            series, newest, taken = self._series, self._newest, 0
            for record in records:
                values = extract(record)
                if values is None:
                    continue
                t = record.get("date") or record.get("received_at")
                if t is None:
                    continue
                symbol = record.get("symbol")
                s = series.get(symbol)  # type: ignore[arg-type]
                if s is None:
                    s = self._open(symbol)
                    if s is None:
                        continue
                if add(s, t, values):
                    s.version = self.version + 1
                    taken += 1
                    if t > newest:
                        newest = t
            if taken:
                self.version += 1
                self.records += taken
                self._newest = newest

    def _open(self, symbol: Any) -> _Series | None:
        """A new series for ``symbol``, or None when it is filtered out or over max_symbols."""
        if not isinstance(symbol, str) or symbol in self._ignored:
            return None
        wanted = self._wanted
        if (wanted is not None and symbol not in wanted) or len(self._series) >= self.max_symbols:
            self._ignored.add(symbol)
            return None
        ncols = 7 if self._kind == "candles" else len(COLUMNS[self._kind or "line"])
        s = self._series[symbol] = _Series(ncols, self._maxlen)
        return s

    def _add_point(self, s: _Series, t: int, values: tuple[float, ...]) -> bool:
        cols = s.cols
        if self._bin_ns:
            key = t // self._bin_ns
            keys = s.keys
            if keys and key <= keys[-1]:
                if key < keys[-1]:
                    return False  # late record for an older bin
                cols[0][-1] = t
                for i, v in enumerate(values, 1):
                    cols[i][-1] = v
                return True
            keys.append(key)
        cols[0].append(t)
        for i, v in enumerate(values, 1):
            cols[i].append(v)
        return True

    def _add_bar(self, s: _Series, t: int, bar: tuple[float, ...]) -> bool:
        keys = s.keys
        if keys and keys[-1] <= t < keys[-1] + self.interval_ns:  # the usual case
            _merge(s.cols, len(keys) - 1, t, bar)
            return True
        start = self._bucket(t)
        j = len(keys) - 1
        while j >= 0 and keys[j] > start:  # a late trade: find its bar, newest first
            j -= 1
        if j >= 0 and keys[j] == start:
            _merge(s.cols, j, t, bar)
            return True
        if j == len(keys) - 1:  # a new bar after the newest
            keys.append(start)
            for col, value in zip(s.cols, (*bar, t, t), strict=True):
                col.append(value)
            return True
        if len(keys) == keys.maxlen:
            return False  # older than a full buffer keeps
        keys.insert(j + 1, start)  # a gap, or before the oldest bar
        for col, value in zip(s.cols, (*bar, t, t), strict=True):
            col.insert(j + 1, value)
        return True

    def _bucket(self, t: int) -> int:
        """Start (ns UTC) of the ``interval`` bar holding ``t``, aligned on the wall clock."""
        stamp = dt.datetime.fromtimestamp(t / 1e9, self._zone)
        offset = stamp.utcoffset()
        off = int(offset.total_seconds() * 1e9) if offset is not None else 0
        iv = self.interval_ns
        return (t + off) // iv * iv - off

    def clear(self) -> None:
        """Forget every series (the kind and the settings stay)."""
        with self._lock:
            self._series.clear()
            self._ignored.clear()
            self._newest = 0
            self.version += 1

    # -- the reader side ---------------------------------------------------------------------

    def snapshot(self, since: int = -1) -> Snapshot | None:
        """Trim to the window, then the series changed after version ``since`` (None when
        nothing changed or the kind is not decided yet)."""
        with self._lock:
            kind = self._kind
            if kind is None or self.version <= since:
                return None
            self._trim()
            changed = {
                symbol: ([list(col) for col in s.cols], list(s.keys))
                for symbol, s in self._series.items()
                if s.version > since
            }
            version, symbols = self.version, tuple(self._series)
        names = COLUMNS[kind]
        series = {}
        for symbol, (cols, keys) in changed.items():
            if kind == "candles":
                arrays = {"t": np.array(keys, dtype=np.int64)}
                for name, col in zip(names[1:], cols[:5], strict=True):
                    arrays[name] = np.array(col, dtype=np.float64)
            else:
                arrays = {"t": np.array(cols[0], dtype=np.int64)}
                for name, col in zip(names[1:], cols[1:], strict=True):
                    arrays[name] = np.array(col, dtype=np.float64)
            series[symbol] = arrays
        return Snapshot(kind, version, symbols, series)

    def _trim(self) -> None:
        """Drop what lies before the time window (points windows are bounded by maxlen)."""
        if not self.window_ns:
            return
        cutoff = self._newest - self.window_ns
        candles = self._kind == "candles"
        span = self.interval_ns if candles else 1  # a bar stays while its end is in the window
        for s in self._series.values():
            first = s.keys if candles else s.cols[0]
            trimmed = False
            while first and first[0] + span <= cutoff:
                s.popleft()
                trimmed = True
            if trimmed:
                s.version = self.version

    @property
    def symbols(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._series)

    @property
    def ignored_symbols(self) -> frozenset[str]:
        """Symbols seen but not kept (filtered out, or beyond ``max_symbols``)."""
        with self._lock:
            return frozenset(self._ignored)

    def points(self) -> int:
        """Entries held over all series (the memory bound's unit)."""
        with self._lock:
            return sum(len(s) for s in self._series.values())


def _merge(cols: list[deque[Any]], i: int, t: int, bar: tuple[float, ...]) -> None:
    """Fold a trade (or a bar) at time ``t`` into candle ``i``: open/close by time, then by
    arrival for equal times (as ``ORDER BY date, id`` in the OHLC query)."""
    o, h, lo, c, v = bar
    if t < cols[5][i]:
        cols[0][i], cols[5][i] = o, t
    if t >= cols[6][i]:
        cols[3][i], cols[6][i] = c, t
    if h > cols[1][i]:
        cols[1][i] = h
    if lo < cols[2][i]:
        cols[2][i] = lo
    cols[4][i] += v


def _extractor(kind: str, roles: Roles, price: str | None) -> Extract:
    """A function from a record to the values the kind keeps (None: not for this chart)."""
    if kind == "band":
        if not roles.has_quotes:
            raise InvalidParameterError(
                f"kind='band' needs bid and ask fields; this feed has {roles.describe()}."
            )
        return _quote_values(roles.bid or "", roles.ask or "")
    source = price_source(roles, price, bars=kind == "candles")
    if source.mode == "bars":
        return _bar_values(roles)
    value = _price_value(source, roles)
    if kind == "line":
        return value
    size = source.size

    def trade_bar(record: Record) -> tuple[float, ...] | None:
        got = value(record)
        if got is None:
            return None
        p = got[0]
        v = (record.get(size) or 0.0) if size else _NAN
        return (p, p, p, p, v)

    return trade_bar


def _price_value(source: PriceSource, roles: Roles) -> Extract:
    if source.mode == "mid":
        bid, ask = roles.bid or "", roles.ask or ""

        def mid(record: Record) -> tuple[float, ...] | None:
            b, a = record.get(bid), record.get(ask)
            return None if b is None or a is None else ((b + a) / 2,)

        return mid
    field, skip = source.field or "", source.skip_quote_types

    def price(record: Record) -> tuple[float, ...] | None:
        p = record.get(field)
        if p is None or (skip and record.get("type") in NOT_TRADE_TYPES):
            return None
        return (p,)

    return price


def _quote_values(bid: str, ask: str) -> Extract:
    def quote(record: Record) -> tuple[float, ...] | None:
        b, a = record.get(bid), record.get(ask)
        return None if b is None or a is None else (b, a)

    return quote


def _bar_values(roles: Roles) -> Extract:
    o, h, lo, c, vol = (
        roles.open or "",
        roles.high or "",
        roles.low or "",
        roles.close or "",
        roles.volume,
    )

    def bar(record: Record) -> tuple[float, ...] | None:
        values = (record.get(o), record.get(h), record.get(lo), record.get(c))
        if None in values:
            return None
        v = (record.get(vol) or 0.0) if vol else _NAN
        return (*values, v)  # type: ignore[return-value]

    return bar
