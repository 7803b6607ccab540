"""The reference OHLCV bars that chart and ohlc tests compare against, computed with pandas."""

from __future__ import annotations

import pandas as pd


def pandas_bars(
    df: pd.DataFrame, interval: str, price: pd.Series, size: pd.Series | None = None
) -> pd.DataFrame:
    """Bars per symbol and ``interval`` of ``df`` (columns id, symbol, date): first and last
    ``price`` ordered by (date, id), max, min, summed ``size`` and count; empty bars left out.
    Columns: symbol, date (bar start), open, high, low, close, volume, count."""
    frame = pd.DataFrame(
        {
            "id": df["id"],
            "symbol": df["symbol"],
            "date": df["date"],
            "price": price,
            "size": size if size is not None else float("nan"),
        }
    ).dropna(subset=["price"])
    bars = (
        frame.sort_values(["date", "id"])
        .groupby(["symbol", pd.Grouper(key="date", freq=interval)])
        .agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("size", "sum"),
            count=("price", "size"),
        )
        .reset_index()
    )
    return bars[bars["count"] > 0].reset_index(drop=True)
