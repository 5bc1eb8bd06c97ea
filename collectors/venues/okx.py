"""OKX v5 (ccxt `okx`): USDT-margined perpetual swaps (instType SWAP) and spot (instType SPOT).

Every stream runs on the public WebSocket (/ws/v5/public), one subscription per channel and batch:
- `bbo-tbt` (watch_bids_asks): the best bid/ask, tick by tick. ccxt resolves `bidask::<symbol>` for it, and
  also for every `tickers` frame (whose bid/ask are up to 100 ms old); only bbo-tbt frames are taken.
- `tickers`: last price and 24 h volume. ccxt's baseVolume is `vol24h`, which on a swap counts contracts;
  `volCcy24h` is the swap's volume in coins (on spot it is the quote volume, and vol24h the coins).
- `books` (depth > 5: a snapshot, then increments every 100 ms chained by seqId/prevSeqId, which ccxt checks: it
  applies the increment, then gives the book up when prevSeqId isn't the last seqId; it never verifies the
  CRC32 `checksum` the frames carry) or
  `books5` (depth <= 5: five-level snapshots). The quote comes from bbo-tbt, not from the book's top.
- swaps only: `mark-price` (every 200 ms when it moves, else every 10 s) carrying `funding-rate` (the rate, the
  next settlement `fundingTime`; the interval is nextFundingTime - fundingTime) and `index-tickers` (the index
  of the swap's underlying, e.g. BTC-USDT). They ride on the mark-price subscription because funding is pushed only
  every 30 to 90 s, which a stream of its own would have the stale-stream watchdog tear down (taking the shared
  connection with it), and because ccxt resolves an index update as `index-tickers::BTC/USDT`, a hash no
  per-swap-symbol stream can name. Their message hashes are routed to the mark-price stream's route.

Book and quote sizes of a swap are contracts (contractSize = ctVal coins); spot sizes are coins. OKX lists PEPE
and SHIB as the coins themselves (PEPE/USDT:USDT, ctVal 10000000), not as 1000PEPE. The market list carries no
funding interval; it is known from the first funding-rate push. ccxt has no unwatch for bbo-tbt, mark-price,
funding-rate or index-tickers: those are unsubscribed with OKX's own request, and ccxt's record of the
subscription is dropped so a later watch subscribes again.

OKX documents no number of channels per connection, only that too many closes it (4008/4009) and 480 subscribe
requests per connection per hour; ccxt puts every channel on one connection, so the collector opens one per 500
channels (about 80 swaps with all six channels), a conservative figure. A refusal is {"event": "error", ...}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from collectors.market_state import MarketState
from collectors.venues.base import StreamSpec, Venue, event_error, integer, number

BOOKS5_MAX_DEPTH = 5
MAX_SYMBOLS = 100
"""Channels per subscribe request: OKX caps a request at 64 KB, and ccxt sends one request per batch."""
CHANNELS_PER_CONNECTION = 500
MARK_HASH = "mark-price::"
FUNDING_HASH = "funding-rate:"
INDEX_HASH = "index-tickers::"
HOUR_MS = 3_600_000


# --- what each stream contributes ---------------------------------------------------------------


def apply_bid_ask(state: MarketState, ticker: dict[str, Any]) -> bool:
    if "bidPx" in ticker["info"]:  # a tickers frame resolved under bidask:: too; the quote is bbo-tbt's
        return False
    return state.set_quote(ticker["bid"], ticker["ask"], ticker["bidVolume"], ticker["askVolume"], ticker["timestamp"])


def _ticker(update: dict[str, Any]) -> dict[str, Any]:
    """ccxt resolves tickers, mark-price and index-tickers updates as {symbol: ticker}."""
    return update if "info" in update else next(iter(update.values()))


def apply_swap_ticker(state: MarketState, update: dict[str, Any]) -> bool:
    ticker = _ticker(update)
    return state.set_trade_stats(ticker["last"], number(ticker["info"].get("volCcy24h")), ticker["timestamp"])


def apply_spot_ticker(state: MarketState, update: dict[str, Any]) -> bool:
    ticker = _ticker(update)
    return state.set_trade_stats(ticker["last"], ticker["baseVolume"], ticker["timestamp"])


def apply_order_book(state: MarketState, book: dict[str, Any]) -> bool:
    return state.set_book(book)


def apply_swap_reference(state: MarketState, update: dict[str, Any]) -> bool:
    """A mark-price ticker, a funding-rate structure or an index ticker (see the module docstring)."""
    update = _ticker(update)
    info = update["info"]
    if "fundingRate" in info:
        settles, after = update["fundingTimestamp"], update["nextFundingTimestamp"]
        if settles and after and after > settles:
            state.funding_interval_hours = (after - settles) / HOUR_MS
        return state.set_funding(update["fundingRate"], settles, None, None, integer(info.get("ts")))
    if "idxPx" in info:
        return state.set_funding(None, None, None, update["indexPrice"], update["timestamp"])
    return state.set_funding(None, None, update["markPrice"], None, update["timestamp"])


# --- subscriptions ccxt has no unified call for ----------------------------------------------------


def _swallow(future: asyncio.Future[Any]) -> None:
    """A rider subscription fails with its connection, which the carrier reports; mark its error as seen."""
    if not future.cancelled():
        future.exception()


def _riders(exchange: Any, symbols: list[str]) -> list[tuple[str, dict[str, str], str]]:
    """(swap symbol, OKX subscription argument, ccxt message hash) of the funding and index channels."""
    riders = []
    for symbol in symbols:
        market = exchange.market(symbol)
        index_id = market["info"]["uly"]  # BTC-USDT: the index OKX computes for BTC-USDT-SWAP
        index_symbol = exchange.safe_market(index_id, None, "-")["symbol"]  # as ccxt's handle_ticker names it
        riders.append((symbol, {"channel": "funding-rate", "instId": market["id"]}, FUNDING_HASH + symbol))
        riders.append((symbol, {"channel": "index-tickers", "instId": index_id}, INDEX_HASH + index_symbol))
    return riders


def rider_hashes(exchange: Any, symbol: str) -> list[str]:
    """The funding-rate and index-tickers updates feed the mark-price stream's state."""
    return [message_hash for _, _, message_hash in _riders(exchange, [symbol])]


async def watch_swap_reference(exchange: Any, symbols: list[str]) -> Any:
    """Subscribe mark-price, funding-rate and index-tickers; returns with the first mark price."""
    await exchange.load_markets()
    riders = _riders(exchange, symbols)
    hashes = [message_hash for _, _, message_hash in riders]
    request = {"op": "subscribe", "args": [arg for _, arg, _ in riders]}
    first_rider = exchange.watch_multiple(exchange.get_url("funding-rate", "public"), hashes, request, hashes)
    first_rider.add_done_callback(_swallow)
    return await exchange.watch_mark_prices(symbols)


async def _unsubscribe(exchange: Any, args: list[dict[str, str]], subscribe_hashes: list[str]) -> None:
    """OKX's unsubscribe request, for channels ccxt cannot unwatch; ccxt forgets the subscriptions so that
    watching the symbols again subscribes again."""
    client = (exchange.clients or {}).get(exchange.get_url(args[0]["channel"], "public"))
    if client is None:
        return
    for message_hash in subscribe_hashes:
        client.subscriptions.pop(message_hash, None)
    await client.send({"op": "unsubscribe", "args": args})


async def unwatch_swap_reference(exchange: Any, symbols: list[str]) -> None:
    riders = _riders(exchange, symbols)
    marks = [{"channel": "mark-price", "instId": exchange.market_id(symbol)} for symbol in symbols]
    hashes = [MARK_HASH + symbol for symbol in symbols] + [message_hash for _, _, message_hash in riders]
    await _unsubscribe(exchange, marks + [arg for _, arg, _ in riders], hashes)


async def unwatch_bids_asks(exchange: Any, symbols: list[str]) -> None:
    args = [{"channel": "bbo-tbt", "instId": exchange.market_id(symbol)} for symbol in symbols]
    await _unsubscribe(exchange, args, [f"bidask::{symbol}" for symbol in symbols])


# --- the sources ----------------------------------------------------------------------------------


def _book_stream(orderbook_depth: int) -> StreamSpec:
    """books5 up to 5 levels, books beyond (ccxt picks the channel from the limit: 2..5 -> books5, none -> books)."""
    if orderbook_depth <= BOOKS5_MAX_DEPTH:
        channel, limit, params = "books5", BOOKS5_MAX_DEPTH, {"limit": BOOKS5_MAX_DEPTH}
    else:
        channel, limit, params = "books", None, {}
    return StreamSpec(
        channel, f"{channel}:", lambda ex, symbols: ex.watch_order_book_for_symbols(symbols, limit), apply_order_book,
        lambda ex, symbols: ex.un_watch_order_book_for_symbols(symbols, params), unwatch_each=True,
        max_symbols=MAX_SYMBOLS, carries_book=True,
    )


def _market_streams(orderbook_depth: int, apply_ticker: Callable[[MarketState, Any], bool]) -> list[StreamSpec]:
    specs = [
        StreamSpec("bbo-tbt", "bidask::", lambda ex, symbols: ex.watch_bids_asks(symbols), apply_bid_ask,
                   unwatch_bids_asks, unwatch_each=True, max_symbols=MAX_SYMBOLS),
        StreamSpec("tickers", "tickers::", lambda ex, symbols: ex.watch_tickers(symbols), apply_ticker,
                   lambda ex, symbols: ex.un_watch_tickers(symbols), unwatch_each=True, max_symbols=MAX_SYMBOLS),
    ]
    if orderbook_depth > 0:
        specs.append(_book_stream(orderbook_depth))
    return specs


class OkxVenue(Venue):
    connection_budget: ClassVar[int | None] = CHANNELS_PER_CONNECTION

    def refusal(self, message: Any) -> str | None:
        return event_error(message) if isinstance(message, dict) else None


class OkxFutures(OkxVenue):
    name = "okx"
    ccxt_id = "okx"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        # Only the perpetual swaps: skip the spot, dated futures and option lists.
        "options": {"fetchMarkets": {"types": ["swap"]}, "defaultType": "swap"},
    }
    sizes_in_contracts = True

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        return [
            *_market_streams(orderbook_depth, apply_swap_ticker),
            StreamSpec("mark-price", MARK_HASH, watch_swap_reference, apply_swap_reference, unwatch_swap_reference,
                       unwatch_each=True, max_symbols=MAX_SYMBOLS // 3, extra_hashes=rider_hashes,
                       topics_per_symbol=3),
        ]


class OkxSpot(OkxVenue):
    name = "okx"
    market = "spot"
    ccxt_id = "okx"
    ccxt_defaults: ClassVar[dict[str, Any]] = {
        "enableRateLimit": True,
        "options": {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"},
    }
    sizes_in_contracts = False

    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        return _market_streams(orderbook_depth, apply_spot_ticker)


SOURCES = (OkxFutures(), OkxSpot())
