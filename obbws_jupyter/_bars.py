"""OHLCV bars computed in DuckDB from the stored records, and the duration arguments of charts.

``ohlc(client, "1min")`` runs one SELECT through the client's read path (``client.query``):
the records are bucketed with ``time_bucket`` on the wall clock of the connection's ``tz``,
counted from 1970-01-01 local midnight (so "1d" bars start at local midnight, and every bar
boundary is the same one a live candle chart uses); open and close are the first and last
price ordered by (``date``, ``id``). The price comes from :func:`_fieldmap.price_source`: the
trade price of any provider, the bid/ask midpoint (``price="mid"``), a named field, or the
feed's own bars (aggregate feeds are re-bucketed: first open, max high, min low, last close,
summed volume).

Durations are given as text (``"500ms"``, ``"5s"``, ``"1min"``, ``"2h"``, ``"1d"``) or as a
``datetime.timedelta`` / ``pandas.Timedelta``; :data:`DURATION_FORMS` is what error messages
list.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from obbws_jupyter._fieldmap import PriceSource, Roles, price_source, resolve_roles
from obbws_jupyter.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from obbws_jupyter.client import WebSocketClient

__all__ = [
    "DURATION_FORMS",
    "MAX_WINDOW_POINTS",
    "OHLC_COLUMNS",
    "ohlc",
    "ohlc_sql",
    "parse_duration",
    "parse_since",
    "parse_window",
]

DURATION_FORMS = (
    "a number and a unit such as '500ms', '5s', '30sec', '1min' (or '1m'), '2h', '1d' "
    "(units: ms, s, min, h, d), or a datetime.timedelta / pandas.Timedelta"
)
MAX_WINDOW_POINTS = 100_000
OHLC_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume", "count")

_UNITS_NS = {
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "sec": 1_000_000_000,
    "second": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "minute": 60_000_000_000,
    "h": 3_600_000_000_000,
    "hr": 3_600_000_000_000,
    "hour": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "day": 86_400_000_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)
_MIN_DURATION_NS = 1_000_000  # 1 ms: bars are bucketed in whole microseconds by DuckDB


def _unit_ns(unit: str) -> int | None:
    """Nanoseconds of a unit name, singular or plural ("ms", "s", "mins", "hours"...)."""
    unit = unit.lower()
    return _UNITS_NS.get(unit) or (_UNITS_NS.get(unit[:-1]) if unit.endswith("s") else None)


def parse_duration(name: str, value: Any) -> int:
    """``value`` as a whole number of nanoseconds >= 1 ms, or InvalidParameterError."""
    ns: int | None = None
    if isinstance(value, dt.timedelta):  # pandas.Timedelta is one too
        ns = int(pd.Timedelta(value).value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        unit = _unit_ns(match.group(2)) if match else None
        if match and unit:
            ns = round(float(match.group(1)) * unit)
    if ns is None or ns < _MIN_DURATION_NS:
        raise InvalidParameterError(
            f"{name}={value!r} is not a valid duration: use {DURATION_FORMS}; at least 1 ms."
        )
    return ns


def parse_window(window: Any) -> tuple[int | None, int | None]:
    """A chart window: ``(time_ns, None)`` for a duration, ``(None, points)`` for a count."""
    if isinstance(window, int) and not isinstance(window, bool):
        if not 1 <= window <= MAX_WINDOW_POINTS:
            raise InvalidParameterError(
                f"window={window!r} points is out of range: use 1 to {MAX_WINDOW_POINTS} "
                "points, or a duration such as '5min'."
            )
        return None, window
    if isinstance(window, (str, dt.timedelta)):
        return parse_duration("window", window), None
    raise InvalidParameterError(
        f"window={window!r} is invalid: use a number of points (e.g. 500) or a duration, "
        f"{DURATION_FORMS}."
    )


def parse_since(since: Any, tz: str, now: pd.Timestamp | None = None) -> dt.datetime | None:
    """``since`` as an aware datetime: a duration means that long before now; a timestamp
    (text, datetime, pandas.Timestamp) without a zone is read in ``tz``."""
    if since is None:
        return None
    if isinstance(since, dt.timedelta) or (isinstance(since, str) and _DURATION.match(since)):
        ago = parse_duration("since", since)
        start = (now if now is not None else pd.Timestamp.now(tz="UTC")) - pd.Timedelta(ago)
        return start.to_pydatetime()
    try:
        stamp = pd.Timestamp(since)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if not isinstance(stamp, pd.Timestamp) or pd.isna(stamp):
        raise InvalidParameterError(
            f"since={since!r} is neither a timestamp (e.g. '2025-01-02 09:30', a datetime) nor "
            f"a duration ({DURATION_FORMS})."
        )
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(tz)
    return stamp.to_pydatetime()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _aggregates(source: PriceSource, roles: Roles) -> tuple[str, str]:
    """(select list of open..count, extra WHERE condition) for the price source."""
    order = 'ORDER BY r."date", r.id'
    if source.mode == "bars":
        o, h, lo, c = (_q(x or "") for x in (roles.open, roles.high, roles.low, roles.close))
        volume = f"sum(r.{_q(roles.volume)})" if roles.volume else "CAST(NULL AS DOUBLE)"
        select = (
            f"first(r.{o} {order}) AS open, max(r.{h}) AS high, min(r.{lo}) AS low, "
            f"last(r.{c} {order}) AS close, {volume} AS volume"
        )
        return select, f"r.{c} IS NOT NULL"
    if source.mode == "mid":
        value = f"(r.{_q(roles.bid or '')} + r.{_q(roles.ask or '')}) / 2"
        volume = "CAST(NULL AS DOUBLE)"
    else:
        value = f"r.{_q(source.field or '')}"
        volume = f"sum(r.{_q(source.size)})" if source.size else "CAST(NULL AS DOUBLE)"
    select = (
        f"first({value} {order}) AS open, max({value}) AS high, min({value}) AS low, "
        f"last({value} {order}) AS close, {volume} AS volume"
    )
    condition = f"{value} IS NOT NULL"
    if source.skip_quote_types:
        condition += " AND (r.type IS NULL OR r.type NOT IN ('bid', 'ask', 'quote'))"
    return select, condition


def ohlc_sql(table: str, roles: Roles, source: PriceSource, *, symbols: bool, since: bool) -> str:
    """The bars SELECT. Parameters, in order: tz, interval in microseconds, tz, then the
    symbol list (when ``symbols``) and the start time (when ``since``)."""
    select, condition = _aggregates(source, roles)
    where = [condition, 'r."date" IS NOT NULL']
    if symbols:
        where.append("list_contains(?::VARCHAR[], r.symbol)")
    if since:
        where.append('r."date" >= ?')
    bucket = (
        "timezone(?, time_bucket(to_microseconds(?::BIGINT), "
        "timezone(?, r.\"date\"), TIMESTAMP '1970-01-01'))"
    )
    return (
        f"SELECT r.symbol AS symbol, {bucket} AS date, {select}, count(*) AS count "
        f"FROM {_q(table)} AS r WHERE {' AND '.join(where)} "
        "GROUP BY ALL ORDER BY symbol, date"
    )


def ohlc(
    client: WebSocketClient,
    interval: Any = "1min",
    symbols: str | Iterable[str] | None = None,
    since: Any = None,
    price: str | None = None,
) -> pd.DataFrame:
    """OHLCV bars of the client's stored records; see the module docstring."""
    interval_ns = parse_duration("interval", interval)
    roles = resolve_roles(f.name for f in client.fields)
    if "date" not in roles.fields or "symbol" not in roles.fields:
        raise InvalidParameterError(
            f"ohlc() needs 'date' and 'symbol' fields; this feed has {roles.describe()}."
        )
    source = price_source(roles, price)
    wanted = client.normalize_symbols(symbols) if symbols is not None else None
    start = parse_since(since, client.tz)
    sql = ohlc_sql(
        client.table_name, roles, source, symbols=wanted is not None, since=start is not None
    )
    params: list[Any] = [client.tz, interval_ns // 1000, client.tz]
    if wanted is not None:
        params.append(wanted)
    if start is not None:
        params.append(start)
    bars = client.query(sql, params)
    bars["count"] = bars["count"].astype("int64")
    return bars
