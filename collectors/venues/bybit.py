"""Bybit v5 linear perpetuals and spot (both ccxt `bybit`).

Streams: `tickers.<SYM>` (snapshot then deltas, which ccxt merges: last, 24 h volume, mark, index,
funding rate, next funding time) and `orderbook.<N>.<SYM>` (snapshot + deltas), whose top is the
best bid/ask. N is the smallest of Bybit's depths (1, 50, 200, 1000) that covers the configured
depth. ccxt keeps one book per symbol whatever N is, so only one book topic may run per symbol. Each
push carries `u`, one up per push (`seq` is the matching engine's, with gaps); ccxt ignores both, so the
collector checks `u` and redials on a gap. The funding interval is in the market list (`fundingInterval`,
minutes). Topics share one connection and can be unsubscribed one symbol at a time.

Spot uses the same two topics on /v5/public/spot: its tickers carry last and 24 h volume only (no
bid/ask, mark, index or funding), so the best bid/ask comes from the book. A spot subscribe request
takes at most 10 topics, so spot batches hold 10 symbols. Sizes are coins on both markets.

Bybit caps the `args` of one connection at 21,000 characters (all its subscriptions together); ccxt puts every
topic on one connection, so the collector counts each topic's characters (with its JSON quotes and comma) and
opens another connection before one would pass the cap: ~300 symbols with both topics per connection. A refused
subscribe comes back as {"success": false, "ret_msg": ..., "op": "subscribe"}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from collectors.market_state import MarketState
from collectors.venues.base import SequenceCheck, StreamSpec, Venue, integer, number

BOOK_DEPTHS = (1, 50, 200, 1000)
SPOT_TOPICS_PER_REQUEST = 10
ARGS_CHARS_PER_CONNECTION = 21_000


class BybitVenue(Venue):
    """What Bybit's two markets share: the per-connection cap on argument characters, the refusal frame."""

    connection_budget: ClassVar[int | None] = ARGS_CHARS_PER_CONNECTION

    def subscription_cost(self, spec: StreamSpec, market: dict[str, Any]) -> int:
        """The topic (`tickers.BTCUSDT`, `orderbook.50.BTCUSDT`) as it sits in `args`: quoted, comma after."""
        return len(f'"{spec.name}.{market["id"]}",')

    def refusal(self, message: Any) -> str | None:
        if isinstance(message, dict) and message.get("success") is False and message.get("op") == "subscribe":
            return str(message.get("ret_msg"))
        return None


def apply_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    info = ticker["info"]
    timestamp = ticker["timestamp"]
    state.set_trade_stats(ticker["last"], ticker["baseVolume"], timestamp)
    return state.set_funding(
        funding_rate=number(info.get("fundingRate")),
        next_funding_time=integer(info.get("nextFundingTime")),
        mark_price=ticker["markPrice"],
        index_price=ticker["indexPrice"],
        timestamp=timestamp,
    )


def apply_spot_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_trade_stats(ticker["last"], ticker["baseVolume"], ticker["timestamp"])


def apply_order_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book, top_is_quote=True)


class Bybit(BybitVenue):
    name = "bybit"
    ccxt_id = "bybit"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Only linear markets are collected; skip loading the spot, inverse and option lists, and the
        # currency list ccxt would fetch (from a private endpoint) when API keys are configured.
        "options": {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap"},
        "has": {"fetchCurrencies": False},
    }

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        return bybit_streams(orderbook_depth, apply_ticker, max_symbols=200)

    def funding_interval_hours(self, market: dict[str, Any]) -> float | None:
        minutes = number(market.get("info", {}).get("fundingInterval"))
        return minutes / 60 if minutes else None


class BybitSpot(BybitVenue):
    name = "bybit"
    market = "spot"
    ccxt_id = "bybit"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Only spot markets; skip loading the linear, inverse and option lists and the currency list.
        "options": {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"},
        "has": {"fetchCurrencies": False},
    }
    sizes_in_contracts = False

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        return bybit_streams(orderbook_depth, apply_spot_ticker, max_symbols=SPOT_TOPICS_PER_REQUEST)


def bybit_streams(
    orderbook_depth: int, apply_tickers: Callable[[MarketState, Any], bool], max_symbols: int
) -> list[StreamSpec]:
    """`tickers.<SYM>` and `orderbook.<N>.<SYM>`, N the smallest Bybit depth covering the wanted one."""
    depth = next((d for d in BOOK_DEPTHS if d >= orderbook_depth), BOOK_DEPTHS[-1])
    return [
        StreamSpec("tickers", "ticker:", lambda ex, symbols: ex.watch_tickers(symbols), apply_tickers,
                   lambda ex, symbols: ex.un_watch_tickers(symbols), unwatch_each=True, max_symbols=max_symbols),
        StreamSpec(f"orderbook.{depth}", "orderbook:",
                   lambda ex, symbols: ex.watch_order_book_for_symbols(symbols, depth), apply_order_book,
                   lambda ex, symbols: ex.un_watch_order_book_for_symbols(symbols, {"limit": depth}),
                   unwatch_each=True, max_symbols=max_symbols, carries_book=True, check=UpdateIdCheck()),
    ]


class UpdateIdCheck(SequenceCheck):
    """Bybit numbers an orderbook topic's pushes: `u` goes up by one per push, and a snapshot starts afresh
    (`u` = 1 after a service restart). ccxt applies every delta without looking at `u`."""

    def span(self, book: Any, frame: Any) -> tuple[int | None, int | None]:
        update_id = int(frame["data"]["u"])
        return (None if frame.get("type") == "snapshot" else update_id), update_id


SOURCES = (Bybit(), BybitSpot())
