"""MEXC USDT-margined perpetuals and spot (ccxt `mexc`).

Futures (contract socket), one subscription per contract and channel on one shared connection:
* `sub.depth`: merged deltas; ccxt buffers them, seeds the book over REST (`/api/v1/contract/depth`) and applies
  the deltas by `version`. Sizes are contracts. The book's top is the best bid/ask: MEXC's ticker carries no sizes.
  MEXC's rule is `version` = the previous one + 1, else re-initialize; ccxt only skips a delta older than its book,
  so the collector checks the chain and redials on a gap.
* `sub.ticker` (about once a second): last, 24 h volume (ccxt converts `volume24` from contracts to coins), fair
  (mark) and index price.
* `sub.funding.rate`: funding rate and next settlement time. MEXC pushes it on subscribe and then only when it
  changes, often less than once a minute: a stream of its own would look stalled to the watchdog, which would then
  tear down the connection every stream shares. So it is subscribed and routed with the ticker stream.
* The funding interval is in neither the contract list nor the socket: `collectCycle` of
  `/api/v1/contract/funding_rate/{symbol}`, read over REST every funding_poll_seconds.

Spot (protobuf socket; ccxt decodes it with the `protobuf` package): `aggre.bookTicker` (best bid/ask with sizes),
`aggre.depth` (deltas on a REST snapshot, each covering `fromVersion`..`toVersion`; MEXC's rule is fromVersion =
the previous toVersion + 1, else re-initialize, which ccxt doesn't check and the collector does) and `aggre.deals`
(last trade price). ccxt 4.5.90 has no spot 24 h ticker
stream: the 24 h volume is read over REST (`/api/v3/ticker/24hr`) every funding_poll_seconds. MEXC allows 30
subscriptions per spot connection (it answers the 31st with `Not Subscribed successfully! [...]. Reason： Blocked!`)
and ccxt opens one connection for all spot streams, so the collector opens a connection per 10 symbols (3 streams
each; 15 at depth 0). The contract socket has no documented cap: 300 subscriptions per connection (100 symbols with
3 channels) is a conservative choice that also spreads the REST book snapshots, which ccxt throttles per instance.

ccxt keeps a contract's book across a reconnect and applies the new connection's deltas to it without a new
snapshot (spot: its reset looks the book up under the wrong key), which would leave levels that changed during the
gap; every book subscription therefore starts from an empty book.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from collectors.ccxt_bridge import last_delta
from collectors.market_state import MarketState
from collectors.venues.base import (
    FundingSnapshot,
    NonceSequenceCheck,
    SequenceCheck,
    StreamSpec,
    Venue,
    integer,
    number,
)

BOOK_SNAPSHOT_DELAY = 5
"""Deltas ccxt buffers before reading the REST snapshot (ccxt's default of 25 is 5 s of a busy contract and
far longer on a quiet one, longer than a subscription may take)."""
FUTURES_BATCH = 100
SPOT_SUBSCRIPTIONS_PER_CONNECTION = 30
FUTURES_SUBSCRIPTIONS_PER_CONNECTION = 300
SPOT_BATCH = 10


# --- futures ------------------------------------------------------------------------------------


def apply_futures_ticker_or_funding(state: MarketState, update: dict[str, Any]) -> bool:
    """A ccxt ticker (`ticker:` hash) or funding rate (`fundingRate:` hash) of the shared stream."""
    if "fundingTimestamp" in update:
        return state.set_funding(
            funding_rate=update["fundingRate"],
            next_funding_time=integer(update["fundingTimestamp"]),
            mark_price=None,
            index_price=None,
            timestamp=update["timestamp"],
        )
    info = update["info"]
    timestamp = update["timestamp"]
    state.set_trade_stats(update["last"], update["baseVolume"], timestamp)
    return state.set_funding(
        funding_rate=number(info.get("fundingRate")),
        next_funding_time=None,
        mark_price=number(info.get("fairPrice")),
        index_price=number(info.get("indexPrice")),
        timestamp=timestamp,
    )


async def watch_tickers_and_funding(exchange: Any, symbols: list[str]) -> Any:
    """Returns when every symbol has delivered a ticker and a funding rate."""
    return await asyncio.gather(*(exchange.watch_ticker(symbol) for symbol in symbols),
                                *(exchange.watch_funding_rate(symbol) for symbol in symbols))


async def unwatch_tickers_and_funding(exchange: Any, symbols: list[str]) -> None:
    for symbol in symbols:
        await exchange.un_watch_ticker(symbol)
        await exchange.un_watch_funding_rate(symbol)


def apply_futures_book(state: MarketState, book: dict[str, Any]) -> bool:
    """Levels are [price, contracts, orders]; MarketState converts to coins and keeps the first two columns."""
    return state.set_book(book, top_is_quote=True)


# --- spot ---------------------------------------------------------------------------------------


def apply_spot_book_ticker(state: MarketState, ticker: dict[str, Any]) -> bool:
    return state.set_quote(
        ticker["bid"], ticker["ask"], ticker["bidVolume"], ticker["askVolume"], ticker["timestamp"]
    )


def apply_spot_trades(state: MarketState, trades: list[dict[str, Any]]) -> bool:
    last = trades[-1]
    return state.set_trade_stats(last["price"], None, last["timestamp"])


def apply_spot_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book)


# --- subscribing --------------------------------------------------------------------------------


def each(method: str) -> Callable[[Any, list[str]], Awaitable[Any]]:
    """MEXC subscribes one symbol per request and ccxt has no multi-symbol watch for these channels:
    `method` per symbol, together; returns when every symbol has delivered once."""

    async def run(exchange: Any, symbols: list[str]) -> Any:
        return await asyncio.gather(*(getattr(exchange, method)(symbol) for symbol in symbols))

    return run


def fresh_books(method: str) -> Callable[[Any, list[str]], Awaitable[Any]]:
    """`each(method)` for order books, each started from an empty book (see the module docstring)."""
    watch = each(method)

    async def run(exchange: Any, symbols: list[str]) -> Any:
        for symbol in symbols:
            exchange.orderbooks.pop(symbol, None)
        return await watch(exchange, symbols)

    return run


def unwatch_each(method: str) -> Callable[[Any, list[str]], Awaitable[Any]]:
    async def run(exchange: Any, symbols: list[str]) -> None:
        for symbol in symbols:
            await getattr(exchange, method)(symbol)

    return run


def _defaults(market_type: str) -> dict[str, Any]:
    # ccxt 4.5.90 always loads both market lists (spot exchangeInfo and contract/detail): fetchMarkets has no
    # types option for mexc. The currency list (a private call, made only with API keys) is not needed.
    return {
        "enableRateLimit": True,
        "has": {"fetchCurrencies": False},
        "options": {"defaultType": market_type, "watchOrderBook": {"snapshotDelay": BOOK_SNAPSHOT_DELAY}},
    }


class MexcFutures(Venue):
    name = "mexc"
    market = "futures"
    ccxt_id = "mexc"
    ccxt_defaults: ClassVar[dict[str, Any]] = _defaults("swap")
    sizes_in_contracts = True
    connection_budget: ClassVar[int | None] = FUTURES_SUBSCRIPTIONS_PER_CONNECTION

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        # The book runs even at depth 0: its top is the only best bid/ask with sizes.
        return [
            StreamSpec("depth", "orderbook:", fresh_books("watch_order_book"), apply_futures_book,
                       unwatch_each("un_watch_order_book"), unwatch_each=True, max_symbols=FUTURES_BATCH,
                       carries_book=True, check=NonceSequenceCheck()),
            StreamSpec("ticker+funding.rate", "ticker:", watch_tickers_and_funding, apply_futures_ticker_or_funding,
                       unwatch_tickers_and_funding, unwatch_each=True, max_symbols=FUTURES_BATCH,
                       extra_hashes=lambda exchange, symbol: ["fundingRate:" + symbol], topics_per_symbol=2),
        ]

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """Only the interval (`collectCycle`); rate and next time stream. One request per contract; symbols whose
        request fails are retried at the next poll, and only a poll where every request failed raises."""
        results = await asyncio.gather(*(exchange.fetch_funding_interval(symbol) for symbol in symbols),
                                       return_exceptions=True)
        snapshots = {}
        for symbol, result in zip(symbols, results, strict=True):
            if isinstance(result, BaseException):
                continue
            hours = _hours(result.get("interval"))
            if hours is not None:
                snapshots[symbol] = FundingSnapshot(interval_hours=hours)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures and len(failures) == len(symbols):
            raise failures[0]
        return snapshots


class MexcSpot(Venue):
    name = "mexc"
    market = "spot"
    ccxt_id = "mexc"
    ccxt_defaults: ClassVar[dict[str, Any]] = _defaults("spot")
    sizes_in_contracts = False
    connection_budget: ClassVar[int | None] = SPOT_SUBSCRIPTIONS_PER_CONNECTION

    def refusal(self, message: Any) -> str | None:
        """{"id": 0, "code": 0, "msg": "Not Subscribed successfully! [spot@...].  Reason： Blocked! "}: a code of 0,
        the refusal is in the text."""
        if not isinstance(message, dict):
            return None
        text = message.get("msg")
        if isinstance(text, str) and text.startswith("Not Subscribed successfully"):
            return text.strip()
        return None

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        specs = [
            StreamSpec("aggre.bookTicker", "ticker:", each("watch_ticker"), apply_spot_book_ticker,
                       unwatch_each("un_watch_ticker"), unwatch_each=True),
            StreamSpec("aggre.deals", "trades:", each("watch_trades"), apply_spot_trades,
                       unwatch_each("un_watch_trades"), unwatch_each=True),
        ]
        if orderbook_depth > 0:
            specs.append(StreamSpec("aggre.depth", "orderbook:", fresh_books("watch_order_book"), apply_spot_book,
                                    unwatch_each("un_watch_order_book"), unwatch_each=True, carries_book=True,
                                    check=SpotVersionCheck()))
        # every spot stream of a connection counts toward MEXC's 30: the collector opens a connection per 10 symbols
        return [dataclasses.replace(spec, max_symbols=SPOT_BATCH) for spec in specs]

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """No funding on spot: the 24 h volume, which ccxt 4.5.90 doesn't stream for MEXC spot (one request for all
        pairs, /api/v3/ticker/24hr)."""
        tickers = await exchange.fetch_tickers(symbols)
        return {
            symbol: FundingSnapshot(volume_24h=ticker.get("baseVolume"), timestamp=ticker.get("timestamp"))
            for symbol, ticker in tickers.items()
            if symbol in symbols
        }


class SpotVersionCheck(SequenceCheck):
    """aggre.depth deltas cover fromVersion..toVersion. ccxt keeps only the fromVersion of the last delta it applied
    as the book's nonce (and skips one older than that), so the spans come from the delta itself."""

    ccxt_skips_stale = True

    def span(self, book: Any, frame: Any) -> tuple[int | None, int | None]:
        delta = last_delta(book)
        if delta is None:
            return None, None
        return int(delta["fromVersion"]), int(delta["toVersion"])

    def position(self, book: Any, frame: Any) -> int | None:
        """After the REST snapshot (`lastUpdateId`, the nonce) ccxt replays the cached deltas that reach past it;
        the sequence stands at the last one's toVersion, or at the snapshot's when none was replayed."""
        first, last = self.span(book, frame)
        return last if first is not None and first == book.get("nonce") else book.get("nonce")


def _hours(interval: str | None) -> float | None:
    """ccxt writes intervals as '8h'."""
    if not interval or not interval.endswith("h"):
        return None
    return float(interval[:-1])


SOURCES = (MexcFutures(), MexcSpot())
