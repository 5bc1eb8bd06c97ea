"""Gate USDT-settled perpetual futures (ccxt `gate`).

Streams: `futures.book_ticker` (real-time best bid/ask, sizes in contracts), `futures.tickers` (last,
`volume_24h_base` in coins, mark, index, funding rate) and `futures.order_book_update` (top 20/50/100
changes every 100 ms, which ccxt anchors on a REST snapshot with `with_id=true` and chains by `U` = the previous
`u` + 1; on a gap it rejects the book, and the collector redials). The next funding time
is not streamed: it is `funding_next_apply` in the contract list (/futures/usdt/contracts), polled every
`funding_poll_seconds` through fetch_funding_rates; the interval (`funding_interval`, seconds) is there too.
Every size is in contracts of `quanto_multiplier` coins; the collector multiplies by ccxt's contractSize.

Gate documents no cap on subscriptions per connection (only ~100 connections per host advised); ccxt puts every
channel on one connection, so the collector opens one per 300 subscriptions (100 contracts with three channels),
a conservative figure that also spreads the per-contract REST book snapshots over connections. A refusal is
{"event": "subscribe", "error": {"code": ..., "message": ...}}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, ClassVar

from collectors.market_state import MarketState
from collectors.venues.base import FundingSnapshot, StreamSpec, Venue, integer, number

BOOK_LEVELS = (20, 50, 100)
"""Depths futures.order_book_update offers; ccxt fetches its REST snapshot with the same limit."""
SUBSCRIPTIONS_PER_CONNECTION = 300
MAX_SYMBOLS_PER_REQUEST = 100
"""Gate documents no cap on contracts per subscribe request; batches of 100 keep each request (and the order
book snapshots fetched for a batch at once) moderate."""


def apply_book_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_quote(ticker["bid"], ticker["ask"], ticker["bidVolume"], ticker["askVolume"], ticker["timestamp"])


def apply_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    """Gate's futures ticker has no event time of its own (only the frame's `time_ms`, which ccxt drops)."""
    info = ticker["info"]
    state.set_trade_stats(ticker["last"], ticker["baseVolume"], ticker["timestamp"])
    return state.set_funding(
        funding_rate=number(info.get("funding_rate")),
        next_funding_time=None,
        mark_price=ticker["markPrice"],
        index_price=ticker["indexPrice"],
        timestamp=ticker["timestamp"],
    )


def apply_order_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book)


class GateioFutures(Venue):
    name = "gateio"
    ccxt_id = "gate"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Only USDT-settled perpetuals are collected: skip the spot, margin, delivery, option and BTC-settled lists.
        "options": {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["swap"]},
            "swap": {"fetchMarkets": {"settlementCurrencies": ["usdt"]}},
        },
    }
    connection_budget: ClassVar[int | None] = SUBSCRIPTIONS_PER_CONNECTION

    def refusal(self, message: Any) -> str | None:
        if not isinstance(message, dict) or message.get("event") != "subscribe":
            return None
        error = message.get("error")
        if not error:
            return None
        return f"{error.get('code')} {error.get('message')}" if isinstance(error, dict) else str(error)

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        specs = [
            StreamSpec("book_ticker", "bidask:", lambda ex, symbols: ex.watch_bids_asks(symbols), apply_book_ticker,
                       lambda ex, symbols: _unsubscribe(ex, symbols, "futures.book_ticker", "bidsasks", "bidask"),
                       unwatch_each=True, max_symbols=MAX_SYMBOLS_PER_REQUEST),
            StreamSpec("tickers", "ticker:", lambda ex, symbols: ex.watch_tickers(symbols), apply_ticker,
                       lambda ex, symbols: _unsubscribe(ex, symbols, "futures.tickers", "ticker", "ticker"),
                       unwatch_each=True, max_symbols=MAX_SYMBOLS_PER_REQUEST),
        ]
        if orderbook_depth > 0:
            level = next((level for level in BOOK_LEVELS if level >= orderbook_depth), BOOK_LEVELS[-1])
            specs.append(
                StreamSpec(f"order_book_update.{level}", "orderbook:",
                           lambda ex, symbols: _each(ex.watch_order_book(symbol, level) for symbol in symbols),
                           apply_order_book,
                           lambda ex, symbols: _each(ex.un_watch_order_book(symbol, {"limit": level})
                                                     for symbol in symbols),
                           unwatch_each=True, max_symbols=MAX_SYMBOLS_PER_REQUEST, carries_book=True)
            )
        return specs

    def funding_interval_hours(self, market: dict[str, Any]) -> float | None:
        seconds = number(market.get("info", {}).get("funding_interval"))
        return seconds / 3600 if seconds else None

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """Next funding time and interval from the contract list (one request for every contract)."""
        rates = await exchange.fetch_funding_rates(symbols)
        wanted = set(symbols)
        snapshots = {}
        for symbol, funding in rates.items():
            if symbol not in wanted:
                continue
            seconds = number(funding.get("info", {}).get("funding_interval"))
            snapshots[symbol] = FundingSnapshot(
                next_time=integer(funding.get("fundingTimestamp")),
                interval_hours=seconds / 3600 if seconds else None,
            )
        return snapshots


async def _each(calls: Any) -> list[Any]:
    """ccxt's gate watches (and unwatches) one order book per call; run them together, fail like the first failure."""
    tasks: list[Awaitable[Any]] = list(calls)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _unsubscribe(exchange: Any, symbols: list[str], channel: str, cache: str, hash_prefix: str) -> Any:
    """ccxt's gate has no un_watch_tickers / un_watch_bids_asks; this is the request its un_watch_trades_for_symbols
    makes, for these channels: Gate unsubscribes contracts one by one, and ccxt drops the subscriptions it answers."""
    await exchange.load_markets()
    url = exchange.get_url_by_market(exchange.market(symbols[0]))
    return await exchange.un_subscribe_public_multiple(
        url,
        cache,
        symbols,
        [f"unsubscribe:{hash_prefix}:{symbol}" for symbol in symbols],
        [f"{hash_prefix}:{symbol}" for symbol in symbols],
        exchange.market_ids(symbols),
        channel,
    )


SOURCES = (GateioFutures(),)
