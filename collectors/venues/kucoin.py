"""KuCoin Futures, USDT-margined perpetuals (ccxt `kucoinfutures`, the classic futures API).

Streams, all on the one public futures connection ccxt opens with a bullet-public token:
`/contractMarket/tickerV2` (real-time best bid/ask), `/contractMarket/ticker` (each trade: last price) and the
order book: `level2Depth5` / `level2Depth50` (the whole top of book at most every 100 ms, so a lost frame heals
itself) for depths up to 50, the incremental `level2` synced to the full REST snapshot beyond. Each level2
change carries `sequence`, one up per change; ccxt checks it only when it syncs to the snapshot, so the
collector checks every change and redials on a gap. ccxt keeps every
size in contracts; the collector multiplies by the market's `multiplier` (contractSize).

Funding rate, next funding time, mark and index are polled from `/api/v1/contracts/active` (one request for all
symbols): ccxt streams them only over KuCoin's Pro API WebSocket (`watch_funding_rate`, `watch_mark_price`), which
KuCoin documents as unreleased and not for production. The classic `/contract/instrument` topic carries them, but
ccxt does not parse it. The funding interval is in the market list (`fundingRateGranularity`, ms).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from collectors.market_state import MarketState
from collectors.venues.base import FundingSnapshot, NonceSequenceCheck, StreamSpec, Venue, integer, number

MAX_TOPICS_PER_REQUEST = 100
"""KuCoin accepts at most 100 topics in one subscribe (ccxt enforces it for tickerV2)."""
TOPICS_PER_CONNECTION = 400
"""KuCoin documents 400 topics per connection for spot and nothing for futures; its futures socket answers the 401st
with `exceed max subscription count limitation of 400 per session` (each symbol of a topic counts), so 400 here
too. ccxt puts every topic on one connection: the collector opens more (133 symbols each with a book, 200
without)."""
CAP_ERROR_CODE = 509
DEPTH_SNAPSHOT_LIMITS = (5, 50)
"""level2Depth<N> topics; beyond 50 levels only the incremental book (limit None: the full REST snapshot) serves."""
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def apply_best_bid_ask(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_quote(
        ticker["bid"], ticker["ask"], ticker["bidVolume"], ticker["askVolume"], ticker["timestamp"]
    )


def apply_trade_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    """Ticker v1 is the last trade (its bid/ask come from tickerV2); it carries no 24 h volume."""
    return state.set_trade_stats(ticker["last"], None, ticker["timestamp"])


def apply_order_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book)


class KucoinFutures(Venue):
    name = "kucoin"
    ccxt_id = "kucoinfutures"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # load_markets would also download the whole spot currency list; the futures contract list is enough.
        "has": {"fetchCurrencies": False},
    }
    sizes_in_contracts: ClassVar[bool] = True
    """ccxt keeps KuCoin's contract counts: tickerV2 `bestBidSize`, book levels, REST snapshots."""
    connection_budget: ClassVar[int | None] = TOPICS_PER_CONNECTION

    def refusal(self, message: Any) -> str | None:
        """{"id": ..., "type": "error", "code": 509, "data": "exceed max subscription count limitation of 400 per
        session"}"""
        if not isinstance(message, dict) or message.get("type") != "error":
            return None
        text = str(message.get("data"))
        if message.get("code") != CAP_ERROR_CODE and "exceed max subscription" not in text:
            return None  # e.g. `401 token is expired`: ccxt handles it (the connection is redialed with a new token)
        return f"{message.get('code')} {text}"

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        specs = [
            StreamSpec("tickerV2", "bidask@", lambda ex, symbols: ex.watch_bids_asks(symbols), apply_best_bid_ask,
                       # ccxt has no unWatchBidsAsks for KuCoin: this fails (NotSupported) and the venue keeps sending
                       lambda ex, symbols: ex.un_watch_bids_asks(symbols), max_symbols=MAX_TOPICS_PER_REQUEST),
            StreamSpec("ticker", "ticker:", lambda ex, symbols: ex.watch_tickers(symbols), apply_trade_ticker,
                       _unwatch_trade_tickers, unwatch_each=True, max_symbols=MAX_TOPICS_PER_REQUEST),
        ]
        if orderbook_depth > 0:
            limit = next((limit for limit in DEPTH_SNAPSHOT_LIMITS if limit >= orderbook_depth), None)
            specs.append(
                StreamSpec(f"level2Depth{limit}" if limit else "level2", "orderbook:",
                           lambda ex, symbols: ex.watch_order_book_for_symbols(symbols, limit), apply_order_book,
                           lambda ex, symbols: ex.un_watch_order_book_for_symbols(symbols, {"limit": limit}),
                           unwatch_each=True, max_symbols=MAX_TOPICS_PER_REQUEST, carries_book=True,
                           check=None if limit else NonceSequenceCheck())
            )
        return specs

    def funding_interval_hours(self, market: dict[str, Any]) -> float | None:
        return _hours(market.get("info", {}).get("fundingRateGranularity"))

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """contracts/active (ccxt's fetch_tickers for contracts): rate, next time, interval, mark and index."""
        tickers = await exchange.fetch_tickers(symbols)
        received_ms = time.time_ns() // 1_000_000
        snapshots = {}
        for symbol, ticker in tickers.items():
            info = ticker.get("info") or {}
            snapshots[symbol] = FundingSnapshot(
                rate=number(info.get("fundingFeeRate")),
                next_time=_next_funding_time(info, received_ms),
                interval_hours=_hours(info.get("fundingRateGranularity")),
                mark_price=ticker.get("markPrice"),
                index_price=ticker.get("indexPrice"),
                volume_24h=number(info.get("volumeOf24h")),
            )
        return snapshots


async def _unwatch_trade_tickers(exchange: Any, symbols: list[str]) -> None:
    """ccxt unsubscribes ticker topics one symbol at a time (it has no unWatchTickers for KuCoin)."""
    await asyncio.gather(*(exchange.un_watch_ticker(symbol) for symbol in symbols))


def _hours(granularity_ms: Any) -> float | None:
    milliseconds = number(granularity_ms)
    return milliseconds / HOUR_MS if milliseconds else None


def _next_funding_time(info: dict[str, Any], received_ms: int) -> int | None:
    """`nextFundingRateDateTime` (ms UTC) where listed; otherwise `nextFundingRateTime`, the milliseconds left,
    counted from receipt and rounded to the minute (settlements fall on whole hours; this absorbs the latency)."""
    absolute = integer(info.get("nextFundingRateDateTime"))
    if absolute is not None:
        return absolute
    remaining = number(info.get("nextFundingRateTime"))
    if remaining is None:
        return None
    return round((received_ms + remaining) / MINUTE_MS) * MINUTE_MS


SOURCES = (KucoinFutures(),)
