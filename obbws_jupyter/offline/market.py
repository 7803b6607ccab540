"""A small, fast, seedable market simulator behind the ``demo`` provider's fake server.

Each instrument follows a geometric random walk (one log-return per generated event, with a
per-asset-class volatility) and quotes a realistic spread around its mid price:

============  =================  ===========================  ================================
asset class   spread             trade sizes                  quote sizes
============  =================  ===========================  ================================
``crypto``    1-2 bp of price    small fractional, lognormal  lognormal, a few times larger
``stock``     1-3 cents          round lots of 100, some odd  round lots of 100
``fx``        0.1-0.5 pip        100k-5M (multiples of 100k)  100k-5M
============  =================  ===========================  ================================

Trades print at the bid, at the ask or inside the quote. Every event also moves the mid.

Speed: the random draws come from tables built once per market/instrument (a centred,
antithetic table of log-return multipliers and tables of sizes and spreads), indexed with
``random.getrandbits`` so that generating one event is a handful of lookups and one ``dict``.
Only the standard library's :mod:`random` is used; ``Market(seed=...)`` is fully deterministic.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ASSET_TYPES",
    "DEFAULT_BASKETS",
    "EXCHANGE",
    "START_PRICES",
    "Channel",
    "Instrument",
    "Market",
    "start_price",
]

ASSET_TYPES = ("stock", "crypto", "fx")

#: What ``*`` means per asset type.
DEFAULT_BASKETS: dict[str, tuple[str, ...]] = {
    "stock": ("AAPL", "MSFT", "NVDA", "AMZN", "SPY"),
    "crypto": ("BTCUSD", "ETHUSD", "SOLUSD"),
    "fx": ("EURUSD", "GBPUSD", "USDJPY"),
}

START_PRICES: dict[str, float] = {
    "BTCUSD": 65000.0,
    "ETHUSD": 3500.0,
    "SOLUSD": 150.0,
    "AAPL": 190.0,
    "MSFT": 420.0,
    "NVDA": 130.0,
    "AMZN": 185.0,
    "SPY": 520.0,
    "EURUSD": 1.08,
    "GBPUSD": 1.27,
    "USDJPY": 150.0,
}

EXCHANGE = "DEMO"

#: Per-event standard deviation of the log-return. At ~70 events/s per symbol this gives
#: hourly moves of roughly 2 % (crypto), 0.8 % (stock) and 0.3 % (fx): lively but plausible.
_VOLATILITY = {"crypto": 2.5e-5, "stock": 1.0e-5, "fx": 4.0e-6}

_BITS = 12  # tables of 4096 entries
_TABLE = 1 << _BITS

Channel = tuple[str, "Instrument"]  # ("T" | "Q", instrument)


def _unit(symbol: str, asset_type: str) -> float:
    """A stable number in [0, 1) for a symbol (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(f"{asset_type}:{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def start_price(symbol: str, asset_type: str) -> float:
    """The first mid price of ``symbol``: a known level, or a deterministic one from a hash."""
    known = START_PRICES.get(symbol)
    if known is not None:
        return known
    u = _unit(symbol, asset_type)
    if asset_type == "fx":
        low, high = (80.0, 180.0) if symbol.endswith("JPY") else (0.5, 2.0)
    elif asset_type == "stock":
        low, high = 10.0, 500.0
    else:
        low, high = 0.1, 1000.0
    price = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return float(f"{price:.4g}")


def _round_sig(value: float, digits: int) -> float:
    if value <= 0:
        return value
    return round(value, max(0, digits - 1 - math.floor(math.log10(value))))


class Instrument:
    """One simulated symbol: its mid price, current quote and the tables it draws from."""

    __slots__ = (
        "_bid_ticks",
        "_bits",
        "_mults",
        "_quote_sizes",
        "_rnd",
        "_scale",
        "_spread_ticks",
        "_spreads",
        "_trade_sizes",
        "ask",
        "asset_type",
        "bid",
        "decimals",
        "mid",
        "proportional",
        "symbol",
        "tick",
    )

    def __init__(
        self, symbol: str, asset_type: str, rng: random.Random, mults: Sequence[float]
    ) -> None:
        self.symbol = symbol
        self.asset_type = asset_type
        self.mid = start_price(symbol, asset_type)
        self._rnd = rng.random
        self._bits = rng.getrandbits
        self._mults = mults
        price = self.mid
        self._trade_sizes: list[float] | list[int]
        self._quote_sizes: list[float] | list[int]
        # Spreads are counted in ticks (units of the last decimal): stocks and fx draw a tick
        # count from _spreads, crypto a fraction of the price.
        self._spreads: list[float] | list[int]
        if asset_type == "stock":
            self.decimals = 2
            self.proportional = False
            self._spreads = [rng.choice((1, 1, 1, 2, 2, 3)) for _ in range(64)]  # 1-3 cents
            self._trade_sizes = [_stock_trade_size(rng) for _ in range(_TABLE)]
            self._quote_sizes = [
                100 * rng.choice((1, 1, 2, 2, 3, 4, 5, 8, 10, 20)) for _ in range(256)
            ]
        elif asset_type == "fx":
            # 5 decimals (3 for JPY): a tick is 0.1 pip; spreads of 0.1-0.5 pip
            self.decimals = 3 if symbol.endswith("JPY") else 5
            self.proportional = False
            self._spreads = [rng.choice((1, 2, 2, 3, 3, 4, 5)) for _ in range(64)]
            self._trade_sizes = [_fx_size(rng) for _ in range(_TABLE)]
            self._quote_sizes = [_fx_size(rng) for _ in range(256)]
        else:
            self.decimals = min(8, max(2, 6 - math.floor(math.log10(price))))
            self.proportional = True
            self._spreads = [1e-4 + 1e-4 * rng.random() for _ in range(64)]  # 1-2 bp
            self._trade_sizes = [
                _round_sig(rng.lognormvariate(math.log(1500.0), 1.2) / price, 4)
                for _ in range(_TABLE)
            ]
            self._quote_sizes = [
                _round_sig(rng.lognormvariate(math.log(20000.0), 1.0) / price, 4)
                for _ in range(256)
            ]
        # prices are integers of ticks divided by 10**decimals: the division is correctly
        # rounded, so the float is the one its short decimal text denotes (no round() needed)
        self._scale = float(10**self.decimals)
        self.tick = 1.0 / self._scale
        self._bid_ticks = self._spread_ticks = 1
        self.bid = self.ask = 0.0
        self._move()

    def _move(self) -> None:
        """One step of the walk, then a fresh quote around the new mid."""
        mid = self.mid * self._mults[self._bits(_BITS)]
        scale = self._scale
        if self.proportional:
            spread = int(mid * self._spreads[self._bits(6)] * scale) or 1
        else:
            spread = int(self._spreads[self._bits(6)])
        bid = int(mid * scale - 0.5 * spread)
        if bid < 1:  # never reached from realistic starts; keeps prices positive regardless
            bid = 1
            mid = (bid + 0.5 * spread) / scale
        self.mid = mid
        self._bid_ticks = bid
        self._spread_ticks = spread
        self.bid = bid / scale
        self.ask = (bid + spread) / scale

    def trade(self, t_ms: int) -> dict[str, Any]:
        """A trade event (demo wire format) at the bid, the ask or inside the quote."""
        self._move()
        r = self._rnd()
        if r < 0.4:
            price = self.bid
        elif r < 0.8:
            price = self.ask
        else:
            inside = int(self._rnd() * (self._spread_ticks + 1))
            price = (self._bid_ticks + inside) / self._scale
        return {
            "ev": "T",
            "sym": self.symbol,
            "x": EXCHANGE,
            "p": price,
            "s": self._trade_sizes[self._bits(_BITS)],
            "t": t_ms,
        }

    def quote(self, t_ms: int) -> dict[str, Any]:
        """A quote event (demo wire format)."""
        self._move()
        sizes = self._quote_sizes
        bits = self._bits
        return {
            "ev": "Q",
            "sym": self.symbol,
            "x": EXCHANGE,
            "bp": self.bid,
            "bs": sizes[bits(8)],
            "ap": self.ask,
            "as": sizes[bits(8)],
            "t": t_ms,
        }


def _stock_trade_size(rng: random.Random) -> int:
    if rng.random() < 0.75:  # round lots
        return 100 * rng.choice((1, 1, 1, 1, 2, 2, 3, 4, 5, 10))
    return rng.randint(1, 99)  # odd lots


def _fx_size(rng: random.Random) -> int:
    lots = min(50, max(1, round(rng.lognormvariate(math.log(5.0), 0.9))))
    return 100_000 * lots


class Market:
    """A set of simulated instruments sharing one random source (deterministic with ``seed``).

    >>> market = Market(seed=1)
    >>> channels = market.channels("T", "BTCUSD,*", "crypto")  # doctest: +SKIP
    >>> events = market.events(channels, 100, t_ms=1_700_000_000_000)  # doctest: +SKIP
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._instruments: dict[tuple[str, str], Instrument] = {}
        self._mults: dict[str, list[float]] = {}

    def _multipliers(self, asset_type: str) -> list[float]:
        table = self._mults.get(asset_type)
        if table is None:
            sigma = _VOLATILITY.get(asset_type, _VOLATILITY["crypto"])
            half = [self._rng.gauss(0.0, 1.0) for _ in range(_TABLE // 2)]
            # antithetic pairs: the table's log-returns sum to exactly zero (no built-in drift)
            table = [math.exp(sigma * z) for z in half] + [math.exp(-sigma * z) for z in half]
            self._rng.shuffle(table)
            self._mults[asset_type] = table
        return table

    def instrument(self, symbol: str, asset_type: str) -> Instrument:
        """The instrument for ``symbol`` (created on first use; its state persists)."""
        key = (asset_type, symbol)
        inst = self._instruments.get(key)
        if inst is None:
            inst = Instrument(symbol, asset_type, self._rng, self._multipliers(asset_type))
            self._instruments[key] = inst
        return inst

    @staticmethod
    def expand(symbol: str, asset_type: str) -> tuple[str, ...]:
        """``*`` -> the default basket of ``asset_type``; any other symbol -> itself."""
        if symbol == "*":
            return DEFAULT_BASKETS.get(asset_type, DEFAULT_BASKETS["crypto"])
        return (symbol,)

    def channels(self, kind: str, symbols: str | Sequence[str], asset_type: str) -> list[Channel]:
        """Channels ``(kind, instrument)`` for comma-separated symbols (``*`` expanded)."""
        items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
        out: dict[str, Channel] = {}
        for item in items:
            for symbol in self.expand(item.strip(), asset_type):
                if symbol:
                    out.setdefault(symbol, (kind, self.instrument(symbol, asset_type)))
        return list(out.values())

    def events(
        self, channels: Sequence[Channel], n: int, t_ms: int, span_ms: float = 0.0
    ) -> list[dict[str, Any]]:
        """``n`` events spread at random over ``channels``, timestamps from ``t_ms`` over
        ``span_ms`` (non-decreasing)."""
        k = len(channels)
        if n <= 0 or k == 0:
            return []
        rnd = self._rng.random
        step = span_ms / n
        out: list[dict[str, Any]] = []
        append = out.append
        for i in range(n):
            kind, inst = channels[int(rnd() * k)] if k > 1 else channels[0]
            t = t_ms + int(i * step)
            append(inst.trade(t) if kind == "T" else inst.quote(t))
        return out
