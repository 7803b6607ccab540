"""Asset types, feeds, channels, URLs and symbol mapping of the Polygon provider (pure data and
small functions; the session uses them, the tests check them one by one).

A Polygon subscription is ``<channel>.<ticker>``: ``XT.BTC-USD``, ``C.EUR/USD``, ``AM.I:SPX``,
``T.O:SPY251219C00650000``, ``Q.*``. The session keeps these keys as its symbols, so the
provider's acknowledgements ("subscribed to: XT.BTC-USD") name exactly what was asked.
"""

from __future__ import annotations

import re

from obbws_jupyter.protocol import InvalidParameterError, SymbolError

__all__ = [
    "ASSET_TYPES",
    "CHANNEL_ALIASES",
    "FEEDS",
    "FEED_MAP",
    "GROUP",
    "MARKET",
    "MAX_OPTION_CONTRACTS",
    "check_feed",
    "default_url",
    "normalize",
    "ticker",
]

ASSET_TYPES = (
    "stock",
    "stock_delayed",
    "options",
    "options_delayed",
    "fx",
    "crypto",
    "index",
    "index_delayed",
)
FEEDS = ("aggs_min", "aggs_sec", "trade", "quote", "l2", "fmv", "value")

#: asset type -> its group (the delayed asset types speak the real-time one's channels)
GROUP = {a: a.removesuffix("_delayed") for a in ASSET_TYPES}

#: asset type -> Polygon's market, the URL path (``/stocks``, ``/forex``, ...)
MARKET = {
    "stock": "stocks",
    "stock_delayed": "stocks",
    "options": "options",
    "options_delayed": "options",
    "fx": "forex",
    "crypto": "crypto",
    "index": "indices",
    "index_delayed": "indices",
}

#: group -> feed -> channel prefix. As OpenBB's FEED_MAP, except per-second aggregates of
#: stocks and indices: Polygon's channel is ``A`` (docs "Aggregates (Per Second)"), OpenBB
#: wrote ``AS``, which Polygon does not serve; ``AS.`` items are still accepted (an alias).
FEED_MAP: dict[str, dict[str, str]] = {
    "crypto": {
        "aggs_min": "XA",
        "aggs_sec": "XAS",
        "trade": "XT",
        "quote": "XQ",
        "l2": "XL2",
        "fmv": "FMV",
    },
    "fx": {"aggs_min": "CA", "aggs_sec": "CAS", "quote": "C", "fmv": "FMV"},
    "stock": {"aggs_min": "AM", "aggs_sec": "A", "trade": "T", "quote": "Q", "fmv": "FMV"},
    "options": {"aggs_min": "AM", "aggs_sec": "A", "trade": "T", "quote": "Q", "fmv": "FMV"},
    "index": {"aggs_min": "AM", "aggs_sec": "A", "value": "V"},
}
CHANNEL_ALIASES = {"AS": "A"}  # OpenBB's name for the per-second aggregates channel

_ALL_CHANNELS = frozenset(c for feeds in FEED_MAP.values() for c in feeds.values()) | set(
    CHANNEL_ALIASES
)

MAX_OPTION_CONTRACTS = 1000  # Polygon: "up to 1,000 option contracts per connection"

# OpenBB's refusals (reference §9.2), worded as OpenBB words them
_REFUSED: dict[str, tuple[tuple[str, ...], str]] = {
    "fx": (("trade", "l2", "value"), "FX does not support the {feed} feed."),
    "stock": (("l2", "value"), "Asset type, {asset_type}, does not support the {feed} feed."),
    "options": (("l2", "value"), "Asset type, {asset_type}, does not support the {feed} feed."),
    "index": (("trade", "quote", "l2", "fmv"), "Index does not support the {feed} feed."),
    "crypto": (("value",), "Crypto does not support the {feed} feed."),
}


def check_feed(asset_type: str, feed: str) -> None:
    """Raise InvalidParameterError for a feed the asset type does not have (OpenBB's words,
    then the feeds it does have)."""
    group = GROUP[asset_type]
    refused, wording = _REFUSED[group]
    if feed in refused:
        offered = ", ".join(FEED_MAP[group])
        raise InvalidParameterError(
            f"polygon: {wording.format(feed=feed, asset_type=asset_type)} "
            f"Feeds of asset_type={asset_type!r}: {offered}."
        )


def default_url(asset_type: str, feed: str) -> str:
    """Polygon's websocket URL for the asset type and feed.

    Real-time and delayed data have their own clusters (``socket.`` / ``delayed.``); the fair
    market value (FMV) feed is served by the Business clusters (``business.`` /
    ``delayed-business.``), as Polygon's docs and its Python client (``Feed.Business``) say.
    Polygon is now also branded Massive: the same protocol answers on ``socket.massive.com``
    (pass ``url="wss://socket.massive.com"``)."""
    delayed = asset_type.endswith("_delayed")
    if feed == "fmv":
        host = "delayed-business" if delayed else "business"
    else:
        host = "delayed" if delayed else "socket"
    return f"wss://{host}.polygon.io/{MARKET[asset_type]}"


# -- symbols ----------------------------------------------------------------------------------

_STOCK_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,15}$")
_CRYPTO_RE = re.compile(r"^[A-Z0-9]{1,16}-[A-Z0-9]{2,8}$")
_FX_RE = re.compile(r"^[A-Z0-9]{2,6}/[A-Z0-9]{2,6}$")
_INDEX_RE = re.compile(r"^I:[A-Z0-9.\-^$]{1,20}$")
_OPTION_RE = re.compile(r"^O:[A-Z0-9.]{1,6}\d{6}[CP]\d{8}$")  # OCC: root, YYMMDD, C/P, strike
_CRYPTO_QUOTES_4 = ("USDT", "USDC")  # quote currencies of 4 letters: BTCUSDT -> BTC-USDT

_FORMATS = {
    "stock": "a stock ticker such as AAPL or BRK.A",
    "crypto": "a pair such as BTCUSD, BTC-USD or BTC/USD",
    "fx": "a pair such as EURUSD, EUR/USD or EUR-USD",
    "index": "an index such as SPX or I:SPX",
    "options": "an OCC contract such as SPY251219C00650000 or O:SPY251219C00650000",
}
_CHECKS = {
    "stock": _STOCK_RE,
    "crypto": _CRYPTO_RE,
    "fx": _FX_RE,
    "index": _INDEX_RE,
    "options": _OPTION_RE,
}


def ticker(text: str, group: str) -> str:
    """A bare ticker in the group's Polygon form (``text`` already upper-case):
    crypto ``BTCUSD`` -> ``BTC-USD`` (a dash before the last 3 letters, or 4 for USDT/USDC),
    fx ``XAUUSD`` / ``XAU-USD`` -> ``XAU/USD``, index ``SPX`` -> ``I:SPX``, options
    ``SPY251219C00650000`` -> ``O:SPY251219C00650000``; Polygon's REST prefixes ``X:`` / ``C:``
    are accepted. Raises SymbolError when the result is not a valid ticker."""
    if group == "crypto":
        text = text.removeprefix("X:").replace("/", "-")
        if "-" not in text:
            cut = 4 if text.endswith(_CRYPTO_QUOTES_4) and len(text) > 5 else 3
            text = f"{text[:-cut]}-{text[-cut:]}"
    elif group == "fx":
        text = text.removeprefix("C:").replace("-", "/")
        if "/" not in text:
            text = f"{text[:-3]}/{text[-3:]}"
    elif group == "index":
        text = text if text.startswith("I:") else f"I:{text}"
    elif group == "options":
        text = text if text.startswith("O:") else f"O:{text}"
    if not _CHECKS[group].match(text):
        raise SymbolError(f"polygon: invalid {group} symbol {text!r}; use {_FORMATS[group]}.")
    return text


def normalize(symbol: str, asset_type: str, feed: str) -> str:
    """One user symbol -> the subscription key ``<channel>.<ticker>``.

    ``*`` is every ticker of the feed's channel (not for options, nor the crypto L2 book: OpenBB
    refuses both); an item with a channel prefix (``XQ.BTCUSD``) keeps its channel if the asset
    type has it, so one connection can mix feeds; anything else takes the feed's channel.
    A dotted stock ticker without a channel (``BRK.A``) is a ticker. FMV is served by another
    cluster than the other channels, so a connection carries FMV items only with ``feed="fmv"``.
    """
    group = GROUP[asset_type]
    channels = FEED_MAP[group]
    text = symbol.strip().upper()
    channel = channels[feed]
    head, dot, rest = text.partition(".")
    head = CHANNEL_ALIASES.get(head, head) if dot else head
    if dot and head in channels.values():
        channel, text = head, rest
    elif dot and (head in _ALL_CHANNELS or group != "stock"):
        valid = ", ".join(dict.fromkeys(channels.values()))
        raise SymbolError(
            f"polygon: Invalid feed, {head}, for asset type, {asset_type}. "
            f"Channels of {asset_type}: {valid} (e.g. {channels[feed]}.{_example(group)})."
        )
    if (channel == "FMV") != (feed == "fmv"):
        raise SymbolError(
            f"polygon: {channel}.{text} cannot share a connection with feed={feed!r}: Polygon "
            "serves FMV on its Business cluster and the other channels on the real-time or "
            "delayed one; open a separate connection with feed='fmv' for FMV symbols."
        )
    if text == "*":
        _check_wildcard(channel, group)
        return f"{channel}.*"
    return f"{channel}.{ticker(text, group)}"


def _check_wildcard(channel: str, group: str) -> None:
    if group == "options":
        raise SymbolError("polygon: Options symbols do not support wildcards.")
    if channel == "XL2":
        raise SymbolError("polygon: L2 Crypto does not support the all-symbols wildcard.")


def _example(group: str) -> str:
    return {
        "stock": "AAPL",
        "crypto": "BTC-USD",
        "fx": "EUR/USD",
        "index": "I:SPX",
        "options": "O:SPY251219C00650000",
    }[group]
