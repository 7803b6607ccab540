"""Polygon events -> records: the typed fields (named as OpenBB's ``openbb_polygon`` models name
them, reference §9.2) and one small parse function per model.

Each parse function takes one event (a ``dict`` decoded from the frame's JSON array) and returns
its record; a missing required key, a value of the wrong kind or an unhashable code raises
(KeyError/TypeError/ValueError), which the session counts as one malformed element. Optional
keys that are absent stay absent (a NULL in the table). Timestamps are Polygon's epoch
milliseconds turned into int nanoseconds UTC (``int()`` first: a number in a string is accepted,
anything else is malformed, never a string repeated a million times).

Models (wire key -> field), per Polygon's websocket docs (https://polygon.io/docs/websocket,
now https://massive.com/docs/websocket) and the fixtures in ``tests/fixtures/polygon.jsonl``:

================  ==========================  ===================================================
model             events                      fields
================  ==========================  ===================================================
currency_aggs     XA XAS (crypto), CA CAS     date←e, symbol←pair, open/high/low/close←o/h/l/c,
                  (fx)                        volume←v, vwap←vw, avg_size←z
crypto_trade      XT                          date←t, symbol←pair, exchange←x, price←p, size←s,
                                              conditions←c, provider_received_at←r
crypto_quote      XQ                          date←t, symbol←pair, exchange←x, bid←bp,
                                              bid_size←bs, ask←ap, ask_size←as,
                                              provider_received_at←r
crypto_l2         XL2                         date←t, symbol←pair, exchange←x, bids←b, asks←a
                                              (JSON text), bid/bid_size/ask/ask_size (top of
                                              book), provider_received_at←r
fx_quote          C                           date←t, symbol←p, exchange←x, bid←b, ask←a
stock_aggs        A AM (stocks, options)      date←e, symbol←sym, open/high/low/close, volume←v,
                                              vwap←vw, day_open←op, day_volume←av, day_vwap←a,
                                              avg_size←z
stock_trade       T (stocks)                  date←t, symbol←sym, exchange←x, tape←z, price←p,
                                              size←s, conditions←c, trf_id←trfi,
                                              trf_timestamp←trft
stock_quote       Q (stocks)                  date←t, symbol←sym, bid_exchange←bx, bid←bp,
                                              bid_size←bs, ask←ap, ask_size←as, ask_exchange←ax,
                                              tape←z, condition←c, indicators←i
options_trade     T (options)                 date←t, symbol←sym, exchange←x, price←p, size←s,
                                              conditions←c
options_quote     Q (options)                 date←t, symbol←sym, bid_exchange←bx, bid←bp,
                                              bid_size←bs, ask←ap, ask_size←as, ask_exchange←ax
index_aggs        A AM (indices)              date←e, symbol←sym, day_open←op, open/high/low/close
index_value       V                           date←t, symbol←T, value←val
fmv               FMV                         date←t, symbol←sym, fair_market_value←fmv
================  ==========================  ===================================================

Every record also has ``type`` (the event type, ``ev``). Codes become names through the tables
of :mod:`._codes`; lists of codes are joined with ``"; "``. Dropped as OpenBB drops them: the
window start ``s``, trade ids ``i``, sequence numbers ``q`` (unique per ticker but not
consecutive, so no gap detection), ``otc``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from obbws_jupyter.protocol import Field, FieldType, Record, ms_to_ns
from obbws_providers.polygon._codes import (
    CRYPTO_CONDITIONS,
    CRYPTO_EXCHANGES,
    FX_EXCHANGES,
    OPTIONS_EXCHANGES,
    OPTIONS_TRADE_CONDITIONS,
    STOCK_EXCHANGES,
    STOCK_QUOTE_CONDITIONS,
    STOCK_QUOTE_INDICATORS,
    STOCK_TRADE_CONDITIONS,
    TAPES,
    Codes,
)

__all__ = ["CHANNEL_MODELS", "FIELDS", "MODELS", "MODEL_FIELDS", "Parser", "fields_for"]

Parser = Callable[[dict[str, Any]], Record]

_MS = 1_000_000  # ns per ms
_T = FieldType

#: every field any Polygon record has, in the order a table shows them
FIELDS: tuple[Field, ...] = (
    Field("date", _T.TIMESTAMP, "event time, UTC (aggregates: the end of the window)"),
    Field("symbol", _T.STRING, "ticker as Polygon sends it: AAPL, BTC-USD, EUR/USD, I:SPX, O:..."),
    Field("type", _T.STRING, "Polygon event type (ev): XT, XQ, XAS, T, Q, AM, A, C, V, FMV, ..."),
    Field("exchange", _T.STRING, "venue: operating MIC (stocks, options) or name (crypto, fx)"),
    Field("bid_exchange", _T.STRING, "venue of the bid (operating MIC)"),
    Field("ask_exchange", _T.STRING, "venue of the ask (operating MIC)"),
    Field("tape", _T.STRING, "consolidated tape: Tape A: NYSE, Tape B: NYSE ARCA, Tape C: NASDAQ"),
    Field("price", _T.FLOAT, "trade price"),
    Field("size", _T.FLOAT, "trade size (shares, contracts or coins)"),
    Field("bid", _T.FLOAT, "best bid price (L2: top of the book)"),
    Field("bid_size", _T.FLOAT, "size at the bid"),
    Field("ask", _T.FLOAT, "best ask price (L2: top of the book)"),
    Field("ask_size", _T.FLOAT, "size at the ask"),
    Field("open", _T.FLOAT, "first price of the aggregate window"),
    Field("high", _T.FLOAT, "highest price of the window"),
    Field("low", _T.FLOAT, "lowest price of the window"),
    Field("close", _T.FLOAT, "last price of the window"),
    Field("volume", _T.FLOAT, "volume traded in the window"),
    Field("vwap", _T.FLOAT, "volume-weighted average price of the window"),
    Field("day_open", _T.FLOAT, "today's official opening price"),
    Field("day_volume", _T.FLOAT, "today's accumulated volume"),
    Field("day_vwap", _T.FLOAT, "today's volume-weighted average price"),
    Field("avg_size", _T.FLOAT, "average trade size of the window"),
    Field("value", _T.FLOAT, "index value"),
    Field("fair_market_value", _T.FLOAT, "Polygon's fair market value (Business plans)"),
    Field("conditions", _T.STRING, "trade conditions, names joined with '; '"),
    Field("condition", _T.STRING, "quote condition name"),
    Field("indicators", _T.STRING, "quote indicators, names joined with '; '"),
    Field("bids", _T.STRING, "L2 bid levels, JSON [[price, size], ...] (depth <= 100)"),
    Field("asks", _T.STRING, "L2 ask levels, JSON [[price, size], ...] (depth <= 100)"),
    Field("trf_id", _T.INT, "Trade Reporting Facility id"),
    Field("trf_timestamp", _T.TIMESTAMP, "when the Trade Reporting Facility received the trade"),
    Field("provider_received_at", _T.TIMESTAMP, "when Polygon received the tick (r)"),
)

_COMMON = ("date", "symbol", "type")
_QUOTE = ("bid", "bid_size", "ask", "ask_size")
_OHLC = ("open", "high", "low", "close")

#: model -> its fields (the union of a connection's models is its table)
MODEL_FIELDS: dict[str, tuple[str, ...]] = {
    "currency_aggs": (*_COMMON, *_OHLC, "volume", "vwap", "avg_size"),
    "crypto_trade": (*_COMMON, "exchange", "price", "size", "conditions", "provider_received_at"),
    "crypto_quote": (*_COMMON, "exchange", *_QUOTE, "provider_received_at"),
    "crypto_l2": (*_COMMON, "exchange", *_QUOTE, "bids", "asks", "provider_received_at"),
    "fx_quote": (*_COMMON, "exchange", "bid", "ask"),
    "stock_aggs": (
        *_COMMON,
        *_OHLC,
        "volume",
        "vwap",
        "day_open",
        "day_volume",
        "day_vwap",
        "avg_size",
    ),
    "stock_trade": (
        *_COMMON,
        "exchange",
        "tape",
        "price",
        "size",
        "conditions",
        "trf_id",
        "trf_timestamp",
    ),
    "stock_quote": (
        *_COMMON,
        "bid_exchange",
        "ask_exchange",
        *_QUOTE,
        "tape",
        "condition",
        "indicators",
    ),
    "options_trade": (*_COMMON, "exchange", "price", "size", "conditions"),
    "options_quote": (*_COMMON, "bid_exchange", "ask_exchange", *_QUOTE),
    "index_aggs": (*_COMMON, *_OHLC, "day_open"),
    "index_value": (*_COMMON, "value"),
    "fmv": (*_COMMON, "fair_market_value"),
}

#: group -> channel -> model
CHANNEL_MODELS: dict[str, dict[str, str]] = {
    "crypto": {
        "XA": "currency_aggs",
        "XAS": "currency_aggs",
        "XT": "crypto_trade",
        "XQ": "crypto_quote",
        "XL2": "crypto_l2",
        "FMV": "fmv",
    },
    "fx": {"CA": "currency_aggs", "CAS": "currency_aggs", "C": "fx_quote", "FMV": "fmv"},
    "stock": {
        "AM": "stock_aggs",
        "A": "stock_aggs",
        "T": "stock_trade",
        "Q": "stock_quote",
        "FMV": "fmv",
    },
    "options": {
        "AM": "stock_aggs",
        "A": "stock_aggs",
        "T": "options_trade",
        "Q": "options_quote",
        "FMV": "fmv",
    },
    "index": {"AM": "index_aggs", "A": "index_aggs", "V": "index_value"},
}


def fields_for(models: set[str]) -> tuple[Field, ...]:
    """The table of a connection whose events are of ``models``: the union of their fields, in
    :data:`FIELDS` order."""
    wanted = {name for model in models for name in MODEL_FIELDS[model]}
    return tuple(f for f in FIELDS if f.name in wanted)


# -- helpers ----------------------------------------------------------------------------------

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_WINDOW_MS = {"XA": 60_000, "CA": 60_000, "AM": 60_000}  # others: per second


def _names(codes: Any, table: Codes) -> str:
    """Codes -> names joined with "; " (a single code may come bare)."""
    if type(codes) is not list:
        return table[codes]
    if len(codes) == 1:
        return table[codes[0]]
    return "; ".join([table[c] for c in codes])


def _window_end(m: dict[str, Any]) -> int:
    """The window end in ns: ``e``, or ``s`` plus the window when ``e`` is missing (Polygon's
    own forex aggregate samples omit ``e``)."""
    end = m.get("e")
    if end is None:
        end = int(m["s"]) + _WINDOW_MS.get(m["ev"], 1_000)
    return int(end) * _MS


# -- parse functions, one per model -----------------------------------------------------------
# The crypto trade and quote parsers (the busiest feeds) skip int() when a time already is one.


def _currency_aggs(m: dict[str, Any]) -> Record:
    rec = {
        "date": _window_end(m),
        "symbol": m["pair"],
        "type": m["ev"],
        "open": m["o"],
        "high": m["h"],
        "low": m["l"],
        "close": m["c"],
        "volume": m.get("v"),
    }
    vwap = m.get("vw")
    if vwap is not None:
        rec["vwap"] = vwap
    size = m.get("z")
    if size:
        rec["avg_size"] = size
    return rec


def _crypto_trade(m: dict[str, Any]) -> Record:
    rec = {
        "date": (t if type(t := m["t"]) is int else int(t)) * _MS,
        "symbol": m["pair"],
        "type": m["ev"],
        "exchange": CRYPTO_EXCHANGES[m["x"]],
        "price": m["p"],
        "size": m["s"],
    }
    conditions = m.get("c")
    if conditions:
        if type(conditions) is list and len(conditions) == 1:  # the usual [1] or [2]
            code = conditions[0]
            if code != 0:  # 0 means "no condition"
                rec["conditions"] = CRYPTO_CONDITIONS[code]
        else:
            codes = [c for c in conditions if c] if len(conditions) > 1 else conditions
            if codes and codes != [0]:
                rec["conditions"] = _names(codes, CRYPTO_CONDITIONS)
    received = m.get("r")
    if received is not None:
        rec["provider_received_at"] = (received if type(received) is int else int(received)) * _MS
    return rec


def _crypto_quote(m: dict[str, Any]) -> Record:
    rec = {
        "date": (t if type(t := m["t"]) is int else int(t)) * _MS,
        "symbol": m["pair"],
        "type": m["ev"],
        "exchange": CRYPTO_EXCHANGES[m["x"]],
        "bid": m["bp"],
        "bid_size": m["bs"],
        "ask": m["ap"],
        "ask_size": m["as"],
    }
    received = m.get("r")
    if received is not None:
        rec["provider_received_at"] = (received if type(received) is int else int(received)) * _MS
    return rec


def _crypto_l2(m: dict[str, Any]) -> Record:
    bids, asks = m["b"], m["a"]
    if type(bids) is not list or type(asks) is not list:
        raise TypeError("XL2 b and a must be lists of [price, size]")
    rec = {
        "date": int(m["t"]) * _MS,
        "symbol": m["pair"],
        "type": m["ev"],
        "exchange": CRYPTO_EXCHANGES[m["x"]],
        "bids": _DUMPS(bids),
        "asks": _DUMPS(asks),
    }
    if bids:
        rec["bid"], rec["bid_size"] = bids[0]
    if asks:
        rec["ask"], rec["ask_size"] = asks[0]
    received = m.get("r")
    if received is not None:
        rec["provider_received_at"] = int(received) * _MS
    return rec


def _fx_quote(m: dict[str, Any]) -> Record:
    rec = {
        "date": int(m["t"]) * _MS,
        "symbol": m["p"],
        "type": m["ev"],
        "bid": m["b"],
        "ask": m["a"],
    }
    exchange = m.get("x")
    if exchange is not None:
        rec["exchange"] = FX_EXCHANGES[exchange]
    return rec


def _stock_aggs(m: dict[str, Any]) -> Record:
    rec = {
        "date": _window_end(m),
        "symbol": m["sym"],
        "type": m["ev"],
        "open": m["o"],
        "high": m["h"],
        "low": m["l"],
        "close": m["c"],
        "volume": m.get("v"),
        "vwap": m.get("vw"),
        "day_open": m.get("op"),
        "day_volume": m.get("av"),
        "day_vwap": m.get("a"),
    }
    size = m.get("z")
    if size:
        rec["avg_size"] = size
    return rec


def _stock_trade(m: dict[str, Any]) -> Record:
    rec = {
        "date": int(m["t"]) * _MS,
        "symbol": m["sym"],
        "type": m["ev"],
        "exchange": STOCK_EXCHANGES[m["x"]],
        "price": m["p"],
        "size": m["s"],
    }
    tape = m.get("z")
    if tape is not None:
        rec["tape"] = TAPES[tape]
    conditions = m.get("c")
    if conditions:
        rec["conditions"] = _names(conditions, STOCK_TRADE_CONDITIONS)
    trf = m.get("trfi")
    if trf is not None:
        rec["trf_id"] = int(trf)
        trft = m.get("trft")
        if trft is not None:
            rec["trf_timestamp"] = int(trft) * _MS
    return rec


def _stock_quote(m: dict[str, Any]) -> Record:
    rec = {
        "date": int(m["t"]) * _MS,
        "symbol": m["sym"],
        "type": m["ev"],
        "bid_exchange": STOCK_EXCHANGES[m["bx"]],
        "ask_exchange": STOCK_EXCHANGES[m["ax"]],
        "bid": m["bp"],
        "bid_size": m["bs"],
        "ask": m["ap"],
        "ask_size": m["as"],
    }
    tape = m.get("z")
    if tape is not None:
        rec["tape"] = TAPES[tape]
    condition = m.get("c")
    if condition is not None:
        rec["condition"] = STOCK_QUOTE_CONDITIONS[condition]
    indicators = m.get("i")
    if indicators:
        rec["indicators"] = (
            STOCK_QUOTE_INDICATORS[indicators[0]]
            if len(indicators) == 1
            else _names(indicators, STOCK_QUOTE_INDICATORS)
        )
    return rec


def _options_trade(m: dict[str, Any]) -> Record:
    rec = {
        "date": int(m["t"]) * _MS,
        "symbol": m["sym"],
        "type": m["ev"],
        "exchange": OPTIONS_EXCHANGES[m["x"]],
        "price": m["p"],
        "size": m["s"],
    }
    conditions = m.get("c")
    if conditions:
        rec["conditions"] = _names(conditions, OPTIONS_TRADE_CONDITIONS)
    return rec


def _options_quote(m: dict[str, Any]) -> Record:
    return {
        "date": int(m["t"]) * _MS,
        "symbol": m["sym"],
        "type": m["ev"],
        "bid_exchange": OPTIONS_EXCHANGES[m["bx"]],
        "ask_exchange": OPTIONS_EXCHANGES[m["ax"]],
        "bid": m["bp"],
        "bid_size": m["bs"],
        "ask": m["ap"],
        "ask_size": m["as"],
    }


def _index_aggs(m: dict[str, Any]) -> Record:
    return {
        "date": _window_end(m),
        "symbol": m["sym"],
        "type": m["ev"],
        "open": m["o"],
        "high": m["h"],
        "low": m["l"],
        "close": m["c"],
        "day_open": m.get("op"),
    }


def _index_value(m: dict[str, Any]) -> Record:
    return {"date": ms_to_ns(m["t"]), "symbol": m["T"], "type": m["ev"], "value": m["val"]}


def _fmv(m: dict[str, Any]) -> Record:
    # Polygon documents FMV's t as nanoseconds and shows milliseconds in some samples
    return {
        "date": ms_to_ns(m["t"]),
        "symbol": m["sym"],
        "type": m["ev"],
        "fair_market_value": m["fmv"],
    }


#: model -> parse function
MODELS: dict[str, Parser] = {
    "currency_aggs": _currency_aggs,
    "crypto_trade": _crypto_trade,
    "crypto_quote": _crypto_quote,
    "crypto_l2": _crypto_l2,
    "fx_quote": _fx_quote,
    "stock_aggs": _stock_aggs,
    "stock_trade": _stock_trade,
    "stock_quote": _stock_quote,
    "options_trade": _options_trade,
    "options_quote": _options_quote,
    "index_aggs": _index_aggs,
    "index_value": _index_value,
    "fmv": _fmv,
}
