"""Small pure helpers every provider needs: symbol lists, timestamps, URL checks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError

__all__ = ["check_ws_url", "iso_to_ns", "ms_to_ns", "split_symbols"]


def check_ws_url(provider: str, url: Any, hint: str = "") -> None:
    """Raise InvalidParameterError unless ``url`` is None or a ws:// / wss:// URL."""
    if url is not None and not str(url).startswith(("ws://", "wss://")):
        raise InvalidParameterError(
            f"{provider}: url must start with ws:// or wss://, got {url!r}{hint}."
        )


def split_symbols(symbols: str | Iterable[str] | None) -> list[str]:
    """``"btcusd, ethusd"`` or ``["btcusd", "ethusd"]`` -> ``["btcusd", "ethusd"]`` (order kept,
    blanks and duplicates dropped)."""
    if symbols is None:
        return []
    items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise SymbolError(f"symbols must be strings, got {item!r}.")
        text = item.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def ms_to_ns(value: Any) -> int:
    """Epoch milliseconds (or ns/us when clearly larger) -> int nanoseconds."""
    number = int(value)
    if number > 10**17:  # already ns
        return number
    if number > 10**14:  # us
        return number * 1_000
    return number * 1_000_000


def iso_to_ns(text: str) -> int:
    """ISO 8601 with an offset (nanosecond digits allowed) -> int nanoseconds UTC."""
    head, dot, rest = text.partition(".")
    frac = ""
    tail = ""
    if dot:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tail = rest[:i], rest[i:]
    stamp = datetime.fromisoformat(head + tail.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    seconds = int(stamp.timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
