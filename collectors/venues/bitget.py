"""Bitget USDT-M perpetuals (ccxt `bitget`, productType USDT-FUTURES, ids like BTCUSDT).

Streams, all on Bitget's one public socket (wss://ws.bitget.com/v2/ws/public):
* `ticker`: last, 24 h volume, mark, index, funding rate and next funding time (every 100-300 ms).
* a depth channel whose top is the best bid/ask: `books1` (depth 0 or 1), `books5`, `books15` (snapshots
  at every push) or `books` (snapshot + updates) beyond 15 levels. A `books` update carries `seq` (rising, not
  one by one, so it can't show a lost update) and a CRC32 `checksum` over the top 25 levels, which ccxt verifies
  after applying the update: a lost or reordered update is found at the first update whose top 25 levels
  differ, and the collector redials. A lost update that only touched deeper levels stays unnoticed.
The funding interval is in the market list (`fundInterval`, hours). Sizes are coins: ccxt gives every
Bitget contract a contractSize of 1 and passes bidSz/askSz/book sizes/baseVolume through unchanged.

Bitget closes a connection that sends more than 10 messages a second (pings included) and takes at most
4096 bytes of arguments per subscribe, so subscribe and unsubscribe requests are paced and batches hold
50 symbols. ccxt unsubscribes one symbol per request.

Bitget allows 1000 channels per connection and advises fewer than 50; ccxt puts every channel on one connection, so
the collector opens a connection per 25 symbols (two channels each). Each connection paces its own requests. A
refusal is {"event": "error", "code": ..., "msg": ...}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from collectors.market_state import MarketState
from collectors.venues.base import StreamSpec, Venue, event_error, integer, number

SNAPSHOT_BOOK_DEPTHS = (1, 5, 15)
"""books1/books5/books15: the whole top N at every push. Deeper books come from `books`."""
MAX_SYMBOLS_PER_REQUEST = 50
"""A ticker or books argument is ~65 bytes; 50 of them stay well under Bitget's 4096 bytes per subscribe."""
CHANNELS_PER_CONNECTION = 50
"""Bitget: `< 50 channels per connection advised` for a stable connection (1000 at most)."""
REQUEST_SPACING_SECONDS = 0.2
"""At most 5 client messages a second per connection from here, half of Bitget's limit (pings need room)."""


class RequestPacer:
    """Spaces the requests sent on one exchange's public connection (ccxt keeps one socket per URL)."""

    def __init__(self) -> None:
        self._next_slot = 0.0

    async def wait_turn(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + REQUEST_SPACING_SECONDS
        if slot > now:
            await asyncio.sleep(slot - now)


_pacers: WeakKeyDictionary[Any, RequestPacer] = WeakKeyDictionary()


def pacer(exchange: Any) -> RequestPacer:
    found = _pacers.get(exchange)
    if found is None:
        found = _pacers[exchange] = RequestPacer()
    return found


def apply_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    """ccxt's parsed ticker has no mark or index for Bitget; they (and funding) come from the raw ticker."""
    info = ticker["info"]
    timestamp = ticker["timestamp"]
    state.set_trade_stats(ticker["last"], ticker["baseVolume"], timestamp)
    return state.set_funding(
        funding_rate=number(info.get("fundingRate")),
        next_funding_time=integer(info.get("nextFundingTime")),
        mark_price=number(info.get("markPrice")),
        index_price=number(info.get("indexPrice")),
        timestamp=timestamp,
    )


def apply_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book, top_is_quote=True)


async def watch_tickers(exchange: Any, symbols: list[str]) -> Any:
    await pacer(exchange).wait_turn()
    return await exchange.watch_tickers(symbols)


async def watch_books(exchange: Any, symbols: list[str], limit: int | None) -> Any:
    if limit is None:
        # ccxt merges a `books` snapshot into the book it already holds for the symbol (it never resets it), so a
        # book left from a lost connection would keep stale levels and fail the next checksum: start afresh.
        for symbol in symbols:
            exchange.orderbooks.pop(symbol, None)
    await pacer(exchange).wait_turn()
    return await exchange.watch_order_book_for_symbols(symbols, limit)


async def unwatch_each(unwatch_one: Callable[[Any, str], Awaitable[Any]], exchange: Any, symbols: list[str]) -> None:
    for symbol in symbols:
        await pacer(exchange).wait_turn()
        await unwatch_one(exchange, symbol)


def book_channel(orderbook_depth: int) -> tuple[str, int | None]:
    """The depth channel and the ccxt `limit` that selects it: the smallest snapshot channel covering the
    depth, else the incremental `books` (ccxt picks it for any other limit; None here)."""
    limit = next((depth for depth in SNAPSHOT_BOOK_DEPTHS if depth >= orderbook_depth), None)
    return ("books" if limit is None else f"books{limit}"), limit


class BitgetFutures(Venue):
    name = "bitget"
    market = "futures"
    ccxt_id = "bitget"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Only contracts are collected: skip the spot and margin lists, and the coin list (with every chain of
        # every coin) that load_markets would fetch first. The contract list still comes once per productType.
        "options": {"fetchMarkets": {"types": ["swap"]}, "defaultType": "swap"},
        "has": {"fetchCurrencies": False},
    }
    sizes_in_contracts = False
    connection_budget: ClassVar[int | None] = CHANNELS_PER_CONNECTION

    def refusal(self, message: Any) -> str | None:
        return event_error(message) if isinstance(message, dict) else None

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        channel, limit = book_channel(orderbook_depth)
        unwatch_params = {} if limit is None else {"limit": limit}
        return [
            StreamSpec(
                "ticker", "ticker:", watch_tickers, apply_ticker,
                partial(unwatch_each, lambda ex, symbol: ex.un_watch_ticker(symbol)),
                unwatch_each=True, max_symbols=MAX_SYMBOLS_PER_REQUEST,
            ),
            StreamSpec(
                channel, "orderbook:", partial(watch_books, limit=limit),
                apply_book,
                partial(unwatch_each, lambda ex, symbol: ex.un_watch_order_book(symbol, dict(unwatch_params))),
                unwatch_each=True, max_symbols=MAX_SYMBOLS_PER_REQUEST, carries_book=True,
            ),
        ]

    def funding_interval_hours(self, market: dict[str, Any]) -> float | None:
        hours = number(market.get("info", {}).get("fundInterval"))
        return hours if hours else None


SOURCES = (BitgetFutures(),)
