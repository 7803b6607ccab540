"""Polygon's numeric codes and their names: exchanges, tapes, trade and quote conditions.

The codes are Polygon's own (they are the same on the ``massive.com`` brand); the names follow
OpenBB's ``openbb_polygon`` maps (reference §9.2) so that a notebook written for OpenBB reads
the same values. Sources, all public:

- exchanges: Polygon's exchange list, ``GET /v3/reference/exchanges`` (docs "Exchanges",
  https://polygon.io/docs/rest/stocks/market-operations/exchanges): stock and options venues
  are shown by their *operating* MIC (the ``operating_mic`` column: NYSE American, id 1, mic
  XASE, operates under XNYS), crypto and forex venues by name;
- tapes: the ``z`` field of stock trades and quotes ("1 = NYSE, 2 = AMEX, 3 = Nasdaq" in the
  websocket docs; CTA tape A, CTA tape B, UTP tape C);
- conditions and indicators: Polygon's glossary "Conditions and Indicators"
  (https://polygon.io/glossary/us/stocks/conditions-indicators) and ``GET
  /v3/reference/conditions`` (SIP mappings for stocks, OPRA for options);
- crypto trade conditions: the ``c`` field of ``XT`` events ("0 (or empty array): empty,
  1: sellside, 2: buyside").

A code missing from a table is shown as its number in text (as OpenBB does), never dropped.
:class:`Codes` does that lookup in C: a hit is a plain ``dict`` lookup.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CRYPTO_CONDITIONS",
    "CRYPTO_EXCHANGES",
    "FX_EXCHANGES",
    "OPTIONS_EXCHANGES",
    "OPTIONS_TRADE_CONDITIONS",
    "STOCK_EXCHANGES",
    "STOCK_QUOTE_CONDITIONS",
    "STOCK_QUOTE_INDICATORS",
    "STOCK_TRADE_CONDITIONS",
    "TAPES",
    "Codes",
]


class Codes(dict[Any, str]):
    """A code table: ``table[code]`` is the name, or the code as text when it is unknown.
    An unhashable code (a list where a number belongs) raises TypeError: a malformed event."""

    def __missing__(self, key: Any) -> str:
        return str(key)


# -- venues -----------------------------------------------------------------------------------

CRYPTO_EXCHANGES = Codes({1: "Coinbase", 2: "Bitfinex", 6: "Bitstamp", 10: "Binance", 23: "Kraken"})

FX_EXCHANGES = Codes({48: "Currency Banks 1"})

# stock venue id -> operating MIC
STOCK_EXCHANGES = Codes(
    {
        1: "XNYS",  # NYSE American (XASE)
        2: "XNAS",  # Nasdaq OMX BX (XBOS)
        3: "XNYS",  # NYSE National (XCIS)
        4: "FINR",  # FINRA (ADF and the TRFs share id 4)
        5: "XNAS",
        6: "XNAS",  # International Securities Exchange (XISE)
        7: "XCBO",  # Cboe EDGA
        8: "XCBO",  # Cboe EDGX
        9: "XNYS",  # NYSE Chicago (XCHI)
        10: "XNYS",  # New York Stock Exchange
        11: "XNYS",  # NYSE Arca (ARCX)
        12: "XNAS",  # Nasdaq
        13: "XNYS",
        14: "LTSE",  # Long-Term Stock Exchange
        15: "IEXG",  # Investors Exchange
        16: "XCBO",  # Cboe Stock Exchange
        17: "XNAS",  # Nasdaq Philadelphia (XPHL)
        18: "XCBO",  # Cboe BYX
        19: "XCBO",  # Cboe BZX
        20: "MIHI",  # MIAX Pearl
        21: "MEMX",  # Members Exchange
        62: "FINR",  # OTC Equity Security
    }
)

# options venue id (OPRA participants, 300-325) -> operating MIC
OPTIONS_EXCHANGES = Codes(
    {
        300: "XNYS",
        301: "XBOX",
        302: "XCBO",
        303: "MIHI",
        304: "XCBO",
        307: "GEMX",
        308: "XISX",
        309: "XISX",
        310: "XISX",
        312: "MIHI",
        313: "XNYS",
        314: "OPRA",
        315: "MIHI",
        316: "XNAS",
        318: "MIHI",
        319: "XNAS",
        320: "MEMX",
        322: "XCBO",
        323: "XNAS",
        325: "XCBO",
    }
)

TAPES = Codes({1: "Tape A: NYSE", 2: "Tape B: NYSE ARCA", 3: "Tape C: NASDAQ"})

# -- conditions -------------------------------------------------------------------------------

CRYPTO_CONDITIONS = Codes({1: "sellside", 2: "buyside"})  # 0 / [] mean "no condition"

STOCK_TRADE_CONDITIONS = Codes(
    {
        0: "Regular Trade",
        1: "Acquisition",
        2: "Average Price Trade",
        3: "Automatic Execution",
        4: "Bunched Trade",
        5: "Bunched Sold Trade",
        6: "CAP Election",
        7: "Cash Sale",
        8: "Closing Prints",
        9: "Cross Trade",
        10: "Derivatively Priced",
        11: "Distribution",
        12: "Form T/Extended Hours",
        13: "Extended Hours (Sold Out Of Sequence)",
        14: "Intermarket Sweep",
        15: "Market Center Official Close",
        16: "Market Center Official Open",
        17: "Market Center Opening Trade",
        18: "Market Center Reopening Trade",
        19: "Market Center Closing Trade",
        20: "Next Day",
        21: "Price Variation Trade",
        22: "Prior Reference Price",
        23: "Rule 155 Trade (AMEX)",
        24: "Rule 127 (NYSE Only)",
        25: "Opening Prints",
        27: "Stopped Stock (Regular Trade)",
        28: "Re-Opening Prints",
        29: "Seller",
        30: "Sold Last",
        31: "Sold Last and Stopped Stock",
        32: "Sold (Out Of Sequence)",
        33: "Sold (Out of Sequence) and Stopped Stock",
        34: "Split Trade",
        35: "Stock Option",
        36: "Yellow Flag Regular Trade",
        37: "Odd Lot Trade",
        38: "Corrected Consolidated Close (per listing market)",
        41: "Trade Thru Exempt",
        52: "Contingent Trade",
        53: "Qualified Contingent Trade",
        55: "Opening Reopening Trade Detail",
        57: "Short Sale Restriction Activated",
        58: "Short Sale Restriction Continued",
        59: "Short Sale Restriction Deactivated",
        60: "Short Sale Restriction In Effect",
        62: "Financial Status - Bankrupt",
        63: "Financial Status - Deficient",
        64: "Financial Status - Delinquent",
        65: "Financial Status - Bankrupt and Deficient",
        66: "Financial Status - Bankrupt and Delinquent",
        67: "Financial Status - Deficient and Delinquent",
        68: "Financial Status - Deficient, Delinquent, and Bankrupt",
        69: "Financial Status - Liquidation",
        70: "Financial Status - Creations Suspended",
        71: "Financial Status - Redemptions Suspended",
    }
)

STOCK_QUOTE_CONDITIONS = Codes(
    {
        0: "Regular",
        1: "RegularTwoSidedOpen",
        2: "RegularOneSidedOpen",
        3: "SlowAsk",
        4: "SlowBid",
        5: "SlowBidAsk",
        6: "SlowDueLRPBid",
        7: "SlowDueLRPAsk",
        8: "SlowDueNYSELRP",
        9: "SlowDueSetSlowListBidAsk",
        10: "ManualAskAutomatedBid",
        11: "ManualBidAutomatedAsk",
        12: "ManualBidAndAsk",
        13: "Opening",
        14: "Closing",
        15: "Closed",
        16: "Resume",
        17: "FastTrading",
        18: "TradingRangeIndication",
        19: "MarketMakerQuotesClosed",
        20: "NonFirm",
        21: "NewsDissemination",
        22: "OrderInflux",
        23: "OrderImbalance",
        24: "DueToRelatedSecurityNewsDissemination",
        25: "DueToRelatedSecurityNewsPending",
        26: "AdditionalInformation",
        27: "NewsPending",
        28: "AdditionalInformationDueToRelatedSecurity",
        29: "DueToRelatedSecurity",
        30: "InViewOfCommon",
        31: "EquipmentChangeover",
        32: "NoOpenNoResponse",
        33: "SubPennyTrading",
        34: "AutomatedBidNoOfferNoBid",
        35: "LULDPriceBand",
        36: "MarketWideCircuitBreakerLevel1",
        37: "MarketWideCircuitBreakerLevel2",
        38: "MarketWideCircuitBreakerLevel3",
        39: "RepublishedLULDPriceBand",
        40: "OnDemandAuction",
        41: "CashOnlySettlement",
        42: "NextDaySettlement",
        43: "LULDTradingPause",
        71: "SlowDuelRPBidAsk",
        80: "Cancel",
        81: "Corrected Price",
        82: "SIPGenerated",
        83: "Unknown",
        84: "Crossed Market",
        85: "Locked Market",
        86: "Depth On Offer Side",
        87: "Depth On Bid Side",
        88: "Depth On Bid And Offer",
        89: "Pre Opening Indication",
        90: "Syndicate Bid",
        91: "Pre Syndicate Bid",
        92: "Penalty Bid",
    }
)

STOCK_QUOTE_INDICATORS = Codes(
    {
        501: "RETAIL_INTEREST_ON_BID",
        502: "RETAIL_INTEREST_ON_ASK",
        503: "RETAIL_INTEREST_ON_BID_AND_ASK",
        504: "FINRA_BBO_NO_CHANGE",
        505: "FINRA_BBO_DOES_NOT_EXIST",
        506: "FINRA_BB_BO_EXECUTABLE",
        507: "FINRA_BB_BELOW_LOWER_BAND",
        508: "FINRA_BO_ABOVE_UPPER_BAND",
        509: "FINRA_BB_BELOW_LOWER_BAND_BO_ABOVE_UPPER_BAND",
        601: "NBBO_NO_CHANGE",
        602: "NBBO_QUOTE_IS_NBBO",
        603: "NBBO_NO_BB_NO_BO",
        604: "NBBO_BB_BO_SHORT_APPENDAGE",
        605: "NBBO_BB_BO_LONG_APPENDAGE",
        621: "HELD_TRADE_NOT_LAST_SALE_AND_NOT_ON_CONSOLIDATED",
        622: "HELD_TRADE_LAST_SALE_BUT_NOT_ON_CONSOLIDATED",
        623: "HELD_TRADE_LAST_SALE_AND_ON_CONSOLIDATED",
        901: "CTA_NOT_DUE_TO_RELATED_SECURITY",
        902: "CTA_DUE_TO_RELATED_SECURITY",
        903: "CTA_NOT_IN_VIEW_OF_COMMON",
        904: "CTA_IN_VIEW_OF_COMMON",
        905: "CTA_PRICE_INDICATOR",
        906: "CTA_NEW_PRICE_INDICATOR",
        907: "CTA_CORRECTED_PRICE_INDICATION",
        908: "CTA_CANCELLED_MARKET_IMBALANCE_PRICE_TRADING_RANGE_INDICATION",
    }
)

OPTIONS_TRADE_CONDITIONS = Codes(
    {
        201: "Canceled",
        202: "Late and Out Of Sequence",
        203: "Last and Canceled",
        204: "Late",
        205: "Opening Trade and Canceled",
        206: "Opening Trade, Late, and Out Of Sequence",
        207: "Only Trade and Canceled",
        208: "Opening Trade and Late",
        209: "Automatic Execution",
        210: "Reopening Trade",
        219: "Intermarket Sweep Order",
        227: "Single Leg Auction Non ISO",
        228: "Single Leg Auction ISO",
        229: "Single Leg Cross Non ISO",
        230: "Single Leg Cross ISO",
        231: "Single Leg Floor Trade",
        232: "Multi Leg auto-electronic trade",
        233: "Multi Leg Auction",
        234: "Multi Leg Cross",
        235: "Multi Leg floor trade",
        236: "Multi Leg auto-electronic trade against single leg(s)",
        237: "Stock Options Auction",
        238: "Multi Leg Auction against single leg(s)",
        239: "Multi Leg floor trade against single leg(s)",
        240: "Stock Options auto-electronic trade",
        241: "Stock Options Cross",
        242: "Stock Options floor trade",
        243: "Stock Options auto-electronic trade against single leg(s)",
        244: "Stock Options Auction against single leg(s)",
        245: "Stock Options floor trade against single leg(s)",
        246: "Multi Leg Floor Trade of Proprietary Products",
        247: "Multilateral Compression Trade of Proprietary Products",
        248: "Extended Hours Trade",
    }
)
