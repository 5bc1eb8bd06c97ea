"""Binance USDⓈ-M futures (ccxt `binanceusdm`) and Binance spot (ccxt `binance`).

Futures streams: bookTicker (real-time best bid/ask), depth diffs @100ms synced to a REST snapshot (ccxt
checks their chain: `pu` = the previous `u` on futures, `U` = the previous `u` + 1 on spot, and gives the book
up on a gap, which the collector answers by redialing),
markPrice@1s (mark, index, funding rate `r`, next funding time `T`) and miniTicker (last, volume).
The funding interval is not in the market list: /fapi/v1/fundingInfo lists the symbols whose
interval differs from Binance's default of 8 h, so unlisted symbols are 8 h by Binance's rule.

Spot streams: bookTicker, depth diffs @100ms (synced to an /api/v3/depth snapshot) and miniTicker,
on the spot stream. Spot has no funding, mark or index price, and its bookTicker carries no time.
Sizes are coins on both markets (USDⓈ-M contracts are one coin each).

Binance allows 1024 streams per connection (it closes a connection that asks for more). ccxt spreads
subscriptions over sockets itself (`streamLimits`, 50 per market type) and refuses, before sending, to put more
than `subscriptionLimitByStream` on one: set here to Binance's 1024 (ccxt's default is 200, the old limit).
"""

from __future__ import annotations

from typing import Any, ClassVar

from collectors.market_state import MarketState
from collectors.venues.base import FundingSnapshot, StreamSpec, Venue, integer, number

DEFAULT_FUNDING_INTERVAL_HOURS = 8.0
STREAMS_PER_CONNECTION = 1024
SNAPSHOT_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
"""Depths /fapi/v1/depth accepts; deeper costs more request weight (2 up to 50, 5 for 100, 20 for 1000)."""
SPOT_SNAPSHOT_MAX_LIMIT = 5000
"""/api/v3/depth takes any limit up to 5000 (weight 5 up to 100 levels, 25 up to 500, 50 up to 1000)."""


def apply_book_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_quote(
        ticker["bid"], ticker["ask"], ticker["bidVolume"], ticker["askVolume"], ticker["timestamp"]
    )


def apply_mini_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_trade_stats(ticker["last"], ticker["baseVolume"], ticker["timestamp"])


def apply_mark_price(state: MarketState, ticker: dict[str, Any]) -> bool:
    info = ticker["info"]
    return state.set_funding(
        funding_rate=number(info.get("r")),
        next_funding_time=integer(info.get("T")),
        mark_price=ticker["markPrice"],
        index_price=ticker["indexPrice"],
        timestamp=ticker["timestamp"],
    )


def apply_order_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book)


def ticker_streams() -> list[StreamSpec]:
    """bookTicker and miniTicker, alike on both markets. ccxt keys a Binance subscription (and its
    connection) by the exact symbol list, so only a whole batch can be unsubscribed, with the list
    it was subscribed with."""
    return [
        StreamSpec("bookTicker", "bidask:bookTicker@", lambda ex, symbols: ex.watch_bids_asks(symbols),
                   apply_book_ticker, lambda ex, symbols: ex.un_watch_bids_asks(symbols)),
        StreamSpec("miniTicker", "ticker:miniTicker@", lambda ex, symbols: ex.watch_tickers(symbols),
                   apply_mini_ticker, lambda ex, symbols: ex.un_watch_tickers(symbols)),
    ]


def depth_stream(limit: int) -> StreamSpec:
    """Diff depth @100ms on top of a REST snapshot of `limit` levels."""
    return StreamSpec("depth", "orderbook::",
                      lambda ex, symbols: ex.watch_order_book_for_symbols(symbols, limit), apply_order_book,
                      lambda ex, symbols: ex.un_watch_order_book_for_symbols(symbols), carries_book=True)


def snapshot_levels(orderbook_depth: int) -> int:
    """The snapshot is deeper than what is published, so levels that move into the top
    `orderbook_depth` are known before a diff touches them: 5x the depth, at least 50."""
    return max(50, 5 * orderbook_depth)


class Binance(Venue):
    name = "binance"
    ccxt_id = "binanceusdm"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Market data needs no currency list; with API keys ccxt would fetch it from the spot API (sapi).
        "has": {"fetchCurrencies": False},
        "options": {"subscriptionLimitByStream": {"linear": STREAMS_PER_CONNECTION}},
    }

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        bookticker, miniticker = ticker_streams()
        specs = [
            bookticker,
            StreamSpec("markPrice", "markPrice:markPrice@", lambda ex, symbols: ex.watch_mark_prices(symbols),
                       apply_mark_price, lambda ex, symbols: ex.un_watch_mark_prices(symbols)),
            miniticker,
        ]
        if orderbook_depth > 0:
            wanted = snapshot_levels(orderbook_depth)
            specs.append(depth_stream(next((limit for limit in SNAPSHOT_LIMITS if limit >= wanted),
                                           SNAPSHOT_LIMITS[-1])))
        return specs

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """Only the interval: rate and next time stream with the mark price."""
        adjusted = await exchange.fetch_funding_intervals(symbols)
        intervals = dict.fromkeys(symbols, DEFAULT_FUNDING_INTERVAL_HOURS)
        for symbol, funding in adjusted.items():
            hours = _hours(funding.get("interval"))
            if symbol in intervals and hours is not None:
                intervals[symbol] = hours
        return {symbol: FundingSnapshot(interval_hours=hours) for symbol, hours in intervals.items()}


def _hours(interval: str | None) -> float | None:
    """ccxt writes intervals as '4h'."""
    if not interval or not interval.endswith("h"):
        return None
    return float(interval[:-1])


class BinanceSpot(Venue):
    name = "binance"
    market = "spot"
    ccxt_id = "binance"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        "options": {
            # Only the spot list (/api/v3/exchangeInfo); no futures lists, and none of the margin or
            # currency endpoints (sapi) ccxt would call when API keys are configured.
            "fetchMarkets": {"types": ["spot"]},
            "defaultType": "spot",
            "fetchMargins": False,
            "fetchCurrencies": False,
            "subscriptionLimitByStream": {"spot": STREAMS_PER_CONNECTION},
        },
    }
    sizes_in_contracts = False

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        specs = ticker_streams()
        if orderbook_depth > 0:
            specs.append(depth_stream(min(snapshot_levels(orderbook_depth), SPOT_SNAPSHOT_MAX_LIMIT)))
        return specs


SOURCES = (Binance(), BinanceSpot())
