"""HTX USDT-margined perpetual swaps (ccxt `htx`, contract codes like BTC-USDT).

Streams (one `/linear-swap-ws` connection, one subscription per symbol: ccxt.pro htx has no multi-symbol watch):
`market.<code>.depth.size_<N>.high_freq` incremental books (N = 20, or 150 for deeper books; their top is the
best bid/ask, in contracts) and `market.<code>.detail` (last price, 24 h volume: ccxt's baseVolume is HTX's
`amount`, in coins).

ccxt resolves each update under the channel (`market.BTC-USDT.detail`), not prefix + unified symbol. ccxt
applies a book update only when its `version` follows the book's, and silently skips (yet still resolves) one
that doesn't: the book would go stale for good. HTX's rule is to resubscribe then, so a book resolved with an
unchanged version makes the supervisor redial, which starts over from a snapshot.

HTX streams no funding, mark or index in a form ccxt parses, so they are polled over REST every
funding_poll_seconds: `/v5/market/funding_rate` per symbol (rate; `funding_time` is the coming settlement and
`next_funding_time` the one after, so their difference is the interval), the mark price kline's close and
`/linear-swap-api/v1/swap_index` for all contracts at once.

HTX documents no cap on subscriptions per connection; ccxt subscribes one symbol per request at its rate limit
(10/s), all on one connection. The collector opens one connection per 200 subscriptions (100 contracts, two
channels each): conservative, and each connection subscribes within ~20 s, under the subscribe timeout. A refusal
is {"id": ..., "status": "error", "err-code": ..., "err-msg": ...}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from collectors.market_state import MarketState
from collectors.venues.base import FundingSnapshot, SequenceCheck, StreamSpec, Venue, integer, number

BOOK_SIZES = (20, 150)
HOUR_MS = 3_600_000
SUBSCRIPTIONS_PER_CONNECTION = 200
MAX_SYMBOLS_PER_BATCH = 100
"""ccxt sends subscriptions at 10/s (its rate limiter), within HTX's 40 subscriptions per second."""


def apply_order_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book, top_is_quote=True)


def apply_detail(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_trade_stats(ticker["last"], ticker["baseVolume"], ticker["timestamp"])


class HtxFutures(Venue):
    name = "htx"
    ccxt_id = "htx"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Only linear swaps are collected: skip the spot and inverse lists and the spot currency list.
        "has": {"fetchCurrencies": False},
        "options": {
            "defaultType": "swap",
            "defaultSubType": "linear",
            "fetchMarkets": {"types": {"spot": False, "linear": True, "inverse": False}},
        },
    }
    sizes_in_contracts = True
    connection_budget: ClassVar[int | None] = SUBSCRIPTIONS_PER_CONNECTION

    def refusal(self, message: Any) -> str | None:
        if isinstance(message, dict) and message.get("status") == "error" and "subbed" not in message:
            return f"{message.get('err-code')} {message.get('err-msg')}"
        return None

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        size = next((size for size in BOOK_SIZES if size >= orderbook_depth), BOOK_SIZES[-1])

        channel = f"depth.size_{size}.high_freq"

        async def watch_books(exchange: Any, symbols: list[str]) -> Any:
            exchange.options["watchOrderBook"]["depth"] = size  # what un_watch_order_book unsubscribes
            return await _watch_each(symbols, lambda symbol: exchange.watch_order_book(symbol, size))

        async def unwatch_books(exchange: Any, symbols: list[str]) -> Any:
            exchange.options["watchOrderBook"]["depth"] = size
            return await asyncio.gather(*(exchange.un_watch_order_book(symbol) for symbol in symbols))

        async def watch_details(exchange: Any, symbols: list[str]) -> Any:
            return await _watch_each(symbols, exchange.watch_ticker)

        async def unwatch_details(exchange: Any, symbols: list[str]) -> Any:
            return await asyncio.gather(*(exchange.un_watch_ticker(symbol) for symbol in symbols))

        return [
            StreamSpec(f"depth.size_{size}", "", watch_books, apply_order_book, unwatch_books, unwatch_each=True,
                       max_symbols=MAX_SYMBOLS_PER_BATCH, message_hash=_channel_hash(channel),
                       carries_book=True, check=VersionGapCheck()),
            StreamSpec("detail", "", watch_details, apply_detail, unwatch_details, unwatch_each=True,
                       max_symbols=MAX_SYMBOLS_PER_BATCH, message_hash=_channel_hash("detail")),
        ]

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """Rate, settlement times, mark and index; a symbol whose requests failed gets what did arrive."""
        rates, marks, index = await asyncio.gather(
            asyncio.gather(*(exchange.fetch_funding_rate(symbol) for symbol in symbols), return_exceptions=True),
            asyncio.gather(*(exchange.fetch_mark_ohlcv(symbol, "1m", None, 1) for symbol in symbols),
                           return_exceptions=True),
            exchange.contract_public_get_linear_swap_api_v1_swap_index(),
            return_exceptions=True,
        )
        failures = [result for result in (*rates, *marks, index) if isinstance(result, BaseException)]
        if len(failures) == 2 * len(symbols) + 1:
            raise failures[0]
        indices = {} if isinstance(index, BaseException) else {
            entry.get("contract_code"): entry for entry in index.get("data") or []
        }
        snapshots = {}
        for symbol, rate, mark in zip(symbols, rates, marks, strict=True):
            funding = {} if isinstance(rate, BaseException) else rate
            candles = [] if isinstance(mark, BaseException) else mark
            this_time, next_time = funding.get("fundingTimestamp"), funding.get("nextFundingTimestamp")
            entry = indices.get(exchange.market(symbol)["id"], {})
            snapshots[symbol] = FundingSnapshot(
                rate=funding.get("fundingRate"),
                next_time=this_time,
                interval_hours=(next_time - this_time) / HOUR_MS if this_time and next_time else None,
                mark_price=candles[-1][4] if candles else None,
                index_price=number(entry.get("index_price")),
                timestamp=integer(entry.get("index_ts")),
            )
        return snapshots


def _channel_hash(channel: str) -> Callable[[Any, str], str]:
    def message_hash(exchange: Any, symbol: str) -> str:
        return f"market.{exchange.market(symbol)['id']}.{channel}"

    return message_hash


class VersionGapCheck(SequenceCheck):
    """`version` goes up by one per push; ccxt's nonce is the version of the last push it applied. A push that
    doesn't follow is skipped (resolved with the old version: "again"), and a snapshot starts afresh."""

    def span(self, book: Any, frame: Any) -> tuple[int | None, int | None]:
        version = book.get("nonce")
        tick = frame.get("tick") if isinstance(frame, dict) else None
        if isinstance(tick, dict) and tick.get("event") == "snapshot":
            return None, version
        return version, version


async def _watch_each(symbols: list[str], watch_one: Callable[[str], Awaitable[Any]]) -> Any:
    """Subscribe every symbol and return the first update; the others keep subscribing in the background."""
    tasks = [asyncio.ensure_future(watch_one(symbol)) for symbol in symbols]
    for task in tasks:
        task.add_done_callback(_retrieve)
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return next(iter(done)).result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """A background subscription's failure reaches its supervisor through the connection, not here."""
    if not task.cancelled():
        task.exception()


SOURCES = (HtxFutures(),)
