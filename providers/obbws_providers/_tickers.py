"""Ticker rules shared by the providers whose symbols are lower-case tickers and pairs
(tiingo, fmp): stock tickers by a pattern, fx/crypto pairs with ``-`` and ``/`` dropped."""

from __future__ import annotations

import re

from obbws_jupyter.protocol import SymbolError

__all__ = ["normalize_ticker"]

_PAIR_RE = re.compile(r"^[a-z0-9]{2,24}$")
_PAIR_SEPARATORS = str.maketrans("", "", "-/")


def normalize_ticker(
    provider: str, asset_type: str, symbol: str, stock: re.Pattern[str], stock_rule: str
) -> str:
    """``symbol`` lower-case for the wire: a stock ticker matching ``stock`` (described by
    ``stock_rule`` in the error), or an fx/crypto pair (``BTC-USD`` -> ``btcusd``); else
    SymbolError saying what is accepted."""
    text = symbol.strip().lower()
    if asset_type == "stock":
        if stock.match(text):
            return text
        rule = stock_rule
    else:
        text = text.translate(_PAIR_SEPARATORS)
        if _PAIR_RE.match(text):
            return text
        example = "eurusd" if asset_type == "fx" else "btcusd"
        rule = f"a pair of 2-24 letters or digits, e.g. {example} ('-' and '/' are removed)"
    raise SymbolError(f"{provider}: invalid {asset_type} symbol {symbol!r}: use {rule}.")
