"""Which record field plays which market role (trade price, bid, ask, OHLC...), for any provider.

Providers name the same thing differently (reference §9): a trade price is ``price`` (demo,
Polygon, Intrinio) or ``last_price`` (Tiingo, FMP); a bid is ``bid`` (Polygon, demo) or
``bid_price`` (Tiingo, FMP). Charts and OHLC bars look fields up by role through the one table
below, so a new provider is charted as soon as its fields use one of these names (or a name
is added here).

A feed's *kind* follows from its roles: OHLC fields -> ``"candles"``, a trade price ->
``"line"``, bid and ask -> ``"band"``. A feed with both a trade price and bid/ask (Tiingo
``trade_and_quote``, Polygon crypto quotes that may carry ``last_price``) is ambiguous;
:func:`default_kind` returns None and the chart decides from the records that arrive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from obbws_jupyter.exceptions import InvalidParameterError

__all__ = [
    "KINDS",
    "NOT_TRADE_TYPES",
    "ROLE_FIELDS",
    "PriceSource",
    "Roles",
    "default_kind",
    "price_source",
    "resolve_roles",
]

# role -> candidate field names, first match wins. The one place to teach charts a new name.
ROLE_FIELDS: dict[str, tuple[str, ...]] = {
    "price": ("price", "last_price", "value", "fair_market_value"),
    "size": ("size", "last_size", "quantity", "qty"),
    "bid": ("bid", "bid_price"),
    "ask": ("ask", "ask_price"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume",),
}
# Records of these ``type`` values carry a quote side in ``price`` (Intrinio's bid/ask
# records), not a trade: they are left out of trade lines, candles and OHLC bars.
NOT_TRADE_TYPES = frozenset({"bid", "ask", "quote"})
KINDS = ("line", "band", "candles")


@dataclass(frozen=True, slots=True)
class Roles:
    """The field name that plays each role in one feed (None when the feed has none)."""

    fields: tuple[str, ...]
    price: str | None = None
    size: str | None = None
    bid: str | None = None
    ask: str | None = None
    open: str | None = None
    high: str | None = None
    low: str | None = None
    close: str | None = None
    volume: str | None = None

    @property
    def has_ohlc(self) -> bool:
        return None not in (self.open, self.high, self.low, self.close)

    @property
    def has_quotes(self) -> bool:
        return self.bid is not None and self.ask is not None

    @property
    def has_type(self) -> bool:
        return "type" in self.fields

    def describe(self) -> str:
        """The feed's fields, for error messages."""
        return ", ".join(self.fields) or "no fields"


def resolve_roles(field_names: Iterable[str]) -> Roles:
    """Roles of a feed whose records have ``field_names``."""
    names = tuple(field_names)
    present = set(names)
    found = {
        role: next((name for name in candidates if name in present), None)
        for role, candidates in ROLE_FIELDS.items()
    }
    return Roles(fields=names, **found)


def default_kind(roles: Roles) -> str | None:
    """``"candles"``, ``"line"`` or ``"band"`` for the feed; None when both a trade price and
    bid/ask exist (decided later from the records). Raises when nothing can be charted."""
    if roles.has_ohlc:
        return "candles"
    if roles.price is not None and roles.has_quotes:
        return None
    if roles.price is not None:
        return "line"
    if roles.has_quotes:
        return "band"
    raise InvalidParameterError(
        f"this feed has nothing to chart: its fields ({roles.describe()}) have no trade price "
        f"({', '.join(ROLE_FIELDS['price'])}), no bid and ask ({', '.join(ROLE_FIELDS['bid'])} / "
        f"{', '.join(ROLE_FIELDS['ask'])}) and no open/high/low/close. Add the provider's field "
        "names to obbws_jupyter._fieldmap.ROLE_FIELDS."
    )


@dataclass(frozen=True, slots=True)
class PriceSource:
    """Where a price series comes from: a trade price field (``"field"``), the bid/ask midpoint
    (``"mid"``), or the feed's own OHLC bars (``"bars"``)."""

    mode: str
    field: str | None = None  # the price field (mode "field")
    size: str | None = None  # the size field summed into volume (mode "field"), if any
    skip_quote_types: bool = False  # leave out records whose type is a quote side


def price_source(roles: Roles, price: str | None, *, bars: bool = True) -> PriceSource:
    """The price series for lines, candles and OHLC. ``price`` is None (the trade price, else
    the feed's bars when ``bars``), ``"mid"`` ((bid + ask) / 2) or the name of a field."""
    if price == "mid":
        if not roles.has_quotes:
            raise InvalidParameterError(
                f"price='mid' needs bid and ask fields; this feed has {roles.describe()}."
            )
        return PriceSource("mid")
    if price is not None:
        if not isinstance(price, str) or price not in roles.fields:
            raise InvalidParameterError(
                f"price={price!r} is not a field of this feed: use None (the trade price), "
                f"'mid' (bid/ask midpoint) or one of {roles.describe()}."
            )
        trade = price == roles.price
        return PriceSource("field", price, roles.size if trade else None, trade and roles.has_type)
    if roles.price is not None:
        return PriceSource("field", roles.price, roles.size, roles.has_type)
    if bars and roles.has_ohlc:
        return PriceSource("bars")
    hint = " For a quote feed pass price='mid' (the bid/ask midpoint)." if roles.has_quotes else ""
    raise InvalidParameterError(
        f"this feed has no trade price field ({', '.join(ROLE_FIELDS['price'])}); its fields "
        f"are {roles.describe()}.{hint}"
    )
