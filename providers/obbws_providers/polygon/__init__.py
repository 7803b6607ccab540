"""The ``polygon`` provider: Polygon.io's websockets (now also branded Massive), sans-I/O.

``create_connection(provider="polygon", symbol="btcusd,ethusd", asset_type="crypto",
feed="trade", api_key=...)``; the key also comes from ``POLYGON_API_KEY`` or from
``polygon_api_key`` in OpenBB's ``~/.openbb_platform/user_settings.json``. Defaults as OpenBB:
``asset_type="crypto"``, ``feed="aggs_sec"``. User guide: ``docs/providers/polygon.md``.

What it supports (channel prefix per asset type and feed; "-" = refused before connecting,
with OpenBB's wording, e.g. "FX does not support the trade feed.")

===============  ===========================  ====  ====  =====  =====  ===  ===  =====
asset_type       URL (``wss://``)             aggs  aggs  trade  quote  l2   fmv  value
                                              _min  _sec
===============  ===========================  ====  ====  =====  =====  ===  ===  =====
crypto           socket.polygon.io/crypto     XA    XAS   XT     XQ     XL2  FMV  -
fx               socket.polygon.io/forex      CA    CAS   -      C      -    FMV  -
stock            socket.polygon.io/stocks     AM    A     T      Q      -    FMV  -
stock_delayed    delayed.polygon.io/stocks    AM    A     T      Q      -    FMV  -
options          socket.polygon.io/options    AM    A     T      Q      -    FMV  -
options_delayed  delayed.polygon.io/options   AM    A     T      Q      -    FMV  -
index            socket.polygon.io/indices    AM    A     -      -      -    -    V
index_delayed    delayed.polygon.io/indices   AM    A     -      -      -    -    V
===============  ===========================  ====  ====  =====  =====  ===  ===  =====

``feed="fmv"`` connects to the Business cluster instead (``business.polygon.io``, delayed:
``delayed-business.polygon.io``). ``url=`` replaces the URL (a fake server, or Massive's
``wss://socket.massive.com``: a URL without a path gets the market's, ``/crypto`` ...).

Symbols (upper-cased, comma-separated, each becomes a subscription ``<channel>.<ticker>``):

- crypto ``BTCUSD`` / ``btc-usd`` / ``BTC/USD`` / ``X:BTCUSD`` -> ``XT.BTC-USD`` (a dash
  before the last 3 letters; 4 for USDT/USDC quotes: ``BTCUSDT`` -> ``BTC-USDT``);
- fx ``XAUUSD`` / ``XAU-USD`` / ``C:XAUUSD`` -> ``C.XAU/USD``;
- index ``SPX`` -> ``AM.I:SPX``; options ``SPY251219C00650000`` -> ``T.O:SPY251219C00650000``
  (OCC format checked; at most 1000 contracts per connection, Polygon's limit);
- stocks as given (``AAPL``, ``BRK.A``);
- ``*`` -> ``<channel>.*`` (refused for options: "Options symbols do not support wildcards.",
  and for the L2 book: "L2 Crypto does not support the all-symbols wildcard.");
- an item with a channel prefix keeps it, so one connection mixes feeds
  (``XQ.BTCUSD,XT.ETHUSD``); a prefix the asset type lacks is refused ("Invalid feed, X, for
  asset type, Y."). FMV items need ``feed="fmv"`` (another cluster).

Records: one per event, fields named as OpenBB's Polygon models name them (``date`` is the
event time, aggregates' window end; ``type`` is the event type ``XT``, ``AM``...); exchange,
tape and condition codes become names (:mod:`._codes`, from Polygon's reference data). The
connection's table is the union of its channels' models: the feed's, widened by the channel
prefixes of the initial symbols (see :mod:`._records` for every model).

OpenBB mistakes fixed here:

- per-second aggregates of stocks and indices are channel ``A``: OpenBB's ``AS`` is no
  Polygon channel (``AS.`` items are still accepted and sent as ``A.``);
- FMV is served by Polygon's Business cluster, not ``socket.polygon.io``;
- the crypto pair split knows 4-letter quotes (``BTCUSDT`` -> ``BTC-USDT``, not ``BTCU-SDT``);
  a dotted stock ticker (``BRK.A``) is a ticker, not an invalid feed;
- forex aggregates without ``e`` (as in Polygon's own samples) get the window end from ``s``;
- a ``status: error`` element is reported (as ``SubscriptionFailed`` when it names a
  subscription) instead of killing the stream; ``max_connections`` is a clear fatal error
  instead of a reconnect storm; subscriptions survive reconnects.

Deviations from OpenBB (on purpose): Polygon's ``r`` is ``provider_received_at`` (our table
already has ``received_at``, our own receipt time); the L2 book's ``b``/``a`` are ``bids`` /
``asks`` (JSON text of ``[[price, size], ...]``) and ``bid``/``bid_size``/``ask``/``ask_size``
are the top of the book, so a table mixing ``XQ`` and ``XL2`` keeps one type per column;
dates are int ns UTC in records (tz-aware in ``get_results``, in the connection's ``tz``).
"""

from __future__ import annotations

from obbws_providers.polygon._channels import ASSET_TYPES, FEED_MAP, FEEDS, default_url
from obbws_providers.polygon._records import FIELDS, MODEL_FIELDS
from obbws_providers.polygon._session import PROVIDER, PolygonSession

__all__ = [
    "ASSET_TYPES",
    "FEEDS",
    "FEED_MAP",
    "FIELDS",
    "MODEL_FIELDS",
    "PROVIDER",
    "PolygonSession",
    "default_url",
]
