"""The latest complete state of one (exchange, symbol): partial venue updates merge here.

Streams deliver pieces (a best bid/ask, a book, a mark price with funding); the state always holds
the newest of each, so every message published is complete. Serialization happens only when the
publisher actually sends, so updates that get conflated cost no JSON work.

Each part keeps its own venue time and receipt time: one stream going quiet (say Binance's
bookTicker) must show in its part's age, even while the other streams keep the message flowing and
the top-level times fresh. The stream supervisor calls `mark_received` right before each update is
applied; every setter stamps the part it refreshed from that receipt time.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from models.futures_data import routing_key, split_multiplier

COIN_DECIMALS = 12
"""Contracts x contract size is rounded here: 9 x 0.001 is 0.009, not 0.009000000000000001."""

Book = dict[str, Any]
"""A ccxt.pro OrderBook: {'bids': [[price, amount], ...], 'asks': ..., 'timestamp': ms}."""


class MarketState:
    """Implements the publisher's `Publishable` protocol."""

    __slots__ = (
        "_book",
        "_book_crossed",
        "_book_unusable",
        "_quote_crossed",
        "ask",
        "ask_size",
        "base_multiplier",
        "bid",
        "bid_size",
        "book_received_ms",
        "coin",
        "contract_size",
        "depth",
        "exchange",
        "extra",
        "funding_interval_hours",
        "funding_rate",
        "funding_received_ms",
        "funding_timestamp",
        "index_price",
        "last",
        "log",
        "mark_price",
        "market",
        "next_funding_time",
        "quote_received_ms",
        "quote_timestamp",
        "received_ms",
        "received_ns",
        "routing_key",
        "stats_received_ms",
        "stats_timestamp",
        "symbol",
        "timestamp",
        "volume_24h",
    )

    def __init__(
        self,
        exchange: str,
        symbol: str,
        contract_size: float,
        depth: int,
        funding_interval_hours: float | None = None,
        market: str = "futures",
        base: str | None = None,
    ) -> None:
        self.exchange = exchange
        self.market = market
        self.symbol = symbol
        self.coin, self.base_multiplier = split_multiplier(base or symbol.split("/", 1)[0])
        self.routing_key = routing_key(exchange, symbol, market)
        self.contract_size = contract_size
        self.depth = depth
        self.bid: float | None = None
        self.ask: float | None = None
        self.bid_size: float | None = None
        self.ask_size: float | None = None
        self.last: float | None = None
        self.volume_24h: float | None = None
        self._book: Book | None = None
        self.funding_rate: float | None = None
        self.next_funding_time: int | None = None
        self.funding_interval_hours = funding_interval_hours
        self.mark_price: float | None = None
        self.index_price: float | None = None
        self.timestamp = 0
        self.received_ms = 0
        self.received_ns = 0
        # per part: venue time (the receipt time where the venue sends none) and receipt time; None until it arrives
        self.quote_timestamp: int | None = None
        self.quote_received_ms: int | None = None
        self.stats_timestamp: int | None = None
        self.stats_received_ms: int | None = None
        self.book_received_ms: int | None = None
        self.funding_timestamp: int | None = None
        self.funding_received_ms: int | None = None
        self.extra: dict[str, Any] = {}
        self._quote_crossed = False
        self._book_crossed = False
        self._book_unusable = False
        self.log = logging.getLogger(exchange if market == "futures" else f"{exchange}.{market}")

    # --- merging (sizes arrive as the venue counts them: contracts on contract venues) ----------

    def set_quote(
        self,
        bid: float | None,
        ask: float | None,
        bid_size: float | None,
        ask_size: float | None,
        timestamp: int | None,
    ) -> bool:
        """Best bid/ask; False (and nothing kept) when the quote is unusable."""
        if not _positive(bid) or not _positive(ask):
            raise ValueError(f"quote without a positive bid and ask: bid={bid!r} ask={ask!r}")
        self._quote_crossed = self._is_crossed("quote", bid, ask, self._quote_crossed)  # type: ignore[arg-type]
        if self._quote_crossed:
            return False
        self._keep_quote(bid, ask, bid_size, ask_size, timestamp)  # type: ignore[arg-type]
        self._stamp(timestamp)
        return True

    def set_trade_stats(self, last: float | None, volume_24h: float | None, timestamp: int | None) -> bool:
        """An update carrying neither (a REST poll that only had funding) leaves the statistics' times alone."""
        if last is not None or volume_24h is not None:
            if last is not None:
                self.last = last
            if volume_24h is not None:
                self.volume_24h = volume_24h
            self.stats_timestamp = timestamp or self.received_ms
            self.stats_received_ms = self.received_ms
        self._stamp(timestamp)
        return self.ready

    def set_book(self, book: Book, top_is_quote: bool = False) -> bool:
        """A ccxt order book; kept by reference (ccxt updates it in place) and cut to depth when sent.

        `top_is_quote`: the venue's best bid/ask comes from this book rather than a separate stream.
        """
        bids, asks = book["bids"], book["asks"]
        if bids and asks:
            best_bid, best_ask = bids[0], asks[0]
            self._book_crossed = self._is_crossed("book", best_bid[0], best_ask[0], self._book_crossed)
            if self._book_crossed:
                return False
            if top_is_quote:
                self._keep_quote(best_bid[0], best_ask[0], best_bid[1], best_ask[1], book.get("timestamp"))
        self._book = book
        self.book_received_ms = self.received_ms
        self._stamp(book.get("timestamp"))
        return self.ready

    def drop_book(self) -> None:
        """The book stream can no longer vouch for the book ccxt keeps (it may hold a diff ccxt then rejected, or
        levels from before a reconnect): messages carry no book until the stream delivers one again."""
        self._book = None
        self._book_crossed = False

    def set_funding(
        self,
        funding_rate: float | None,
        next_funding_time: int | None,
        mark_price: float | None,
        index_price: float | None,
        timestamp: int | None,
    ) -> bool:
        """Any of the four refreshes the funding part's times (venues send them apart: OKX's mark, index and
        funding rate are three channels); an update carrying none of them leaves the times alone."""
        refreshed = False
        if funding_rate is not None:
            self.funding_rate = funding_rate
            refreshed = True
        if next_funding_time is not None:
            self.next_funding_time = next_funding_time
            refreshed = True
        if mark_price is not None:
            self.mark_price = mark_price
            refreshed = True
        if index_price is not None:
            self.index_price = index_price
            refreshed = True
        if refreshed:
            self.funding_timestamp = timestamp or self.received_ms
            self.funding_received_ms = self.received_ms
        self._stamp(timestamp)
        return self.ready

    def _keep_quote(
        self, bid: float, ask: float, bid_size: float | None, ask_size: float | None, timestamp: int | None
    ) -> None:
        self.bid, self.ask = bid, ask
        self.bid_size = _coins(bid_size, self.contract_size)
        self.ask_size = _coins(ask_size, self.contract_size)
        self.quote_timestamp = timestamp or self.received_ms
        self.quote_received_ms = self.received_ms

    def mark_received(self, received_ms: int, received_ns: int) -> None:
        self.received_ms = received_ms
        self.received_ns = received_ns

    @property
    def crossed(self) -> bool:
        """The venue's latest quote or book has bid >= ask."""
        return self._quote_crossed or self._book_crossed

    @property
    def ready(self) -> bool:
        """Publishable: a best bid and ask are known and the book is not crossed."""
        return self.bid is not None and not self._quote_crossed and not self._book_crossed

    def _stamp(self, timestamp: int | None) -> None:
        if timestamp is not None and timestamp > self.timestamp:
            self.timestamp = timestamp

    def _is_crossed(self, source: str, bid: float, ask: float, was_crossed: bool) -> bool:
        """bid >= ask; logged once when a crossing starts and once when it ends."""
        crossed = bid >= ask
        if crossed and not was_crossed:
            self.log.warning(
                "%s: crossed %s from the venue (bid %s >= ask %s); not published until it uncrosses",
                self.symbol, source, bid, ask,
            )
        elif was_crossed and not crossed:
            self.log.info("%s: %s uncrossed (bid %s < ask %s); publishing again", self.symbol, source, bid, ask)
        return crossed

    # --- the message ------------------------------------------------------------------------------

    def to_message(self, published_ms: int) -> dict[str, Any]:
        """The contract (models.futures_data.FuturesData) as a plain dict."""
        return {
            "exchange": self.exchange,
            "market": self.market,
            "symbol": self.symbol,
            "coin": self.coin,
            "base_multiplier": self.base_multiplier,
            "timestamp": self.timestamp or self.received_ms,
            "ticker": {
                "bid": self.bid,
                "ask": self.ask,
                "bid_size": self.bid_size,
                "ask_size": self.ask_size,
                "last": self.last,
                "volume_24h": self.volume_24h,
                "timestamp": self.quote_timestamp,
                "received_timestamp": self.quote_received_ms,
                "stats_timestamp": self.stats_timestamp,
                "stats_received_timestamp": self.stats_received_ms,
            },
            "orderbook": self._book_message(),
            "funding_rate": self.funding_rate,
            "next_funding_time": self.next_funding_time,
            "funding_interval_hours": self.funding_interval_hours,
            "mark_price": self.mark_price,
            "index_price": self.index_price,
            "funding_timestamp": self.funding_timestamp,
            "funding_received_timestamp": self.funding_received_ms,
            "received_timestamp": self.received_ms,
            "published_timestamp": published_ms,
            "extra": self.extra,
        }

    def to_json(self, published_ms: int) -> bytes | None:
        if not self.ready:
            return None
        return orjson.dumps(self.to_message(published_ms))

    def _book_message(self) -> dict[str, Any] | None:
        book = self._book
        if book is None or self.depth == 0 or not self._book_usable(book):
            return None
        return {
            "bids": _levels(book["bids"], self.depth, self.contract_size),
            "asks": _levels(book["asks"], self.depth, self.contract_size),
            "timestamp": book.get("timestamp") or self.book_received_ms,
            "received_timestamp": self.book_received_ms,
        }

    def _book_usable(self, book: Book) -> bool:
        """ccxt edits the book we hold in place, and a garbled snapshot or diff can raise halfway
        through, leaving a side empty (or crossed) until the venue resyncs it. Such a book is left
        out of the message (`orderbook: null`) rather than handed to consumers as market state."""
        bids, asks = book["bids"], book["asks"]
        usable = bool(bids) and bool(asks) and bids[0][0] < asks[0][0]
        if usable == self._book_unusable:
            self._book_unusable = not usable
            if usable:
                self.log.info("%s: book whole again; publishing it", self.symbol)
            else:
                self.log.warning(
                    "%s: book has an empty or crossed side (%d bids, %d asks) after a failed update; "
                    "publishing without it until the venue resyncs", self.symbol, len(bids), len(asks),
                )
        return usable


def _levels(side: list[list[Any]], depth: int, contract_size: float) -> list[list[Any]]:
    """The top `depth` levels as [price, size in coins]. Some ccxt books carry a third column (the raw
    strings, or an order count); the contract has two."""
    top = side[:depth]
    if contract_size == 1:
        return top if not top or len(top[0]) == 2 else [[price, amount] for price, amount, *_ in top]
    return [[price, round(amount * contract_size, COIN_DECIMALS)] for price, amount, *_ in top]


def _positive(value: float | None) -> bool:
    return value is not None and 0 < value < math.inf


def _coins(size: float | None, contract_size: float) -> float | None:
    if size is None or contract_size == 1:
        return size
    return round(size * contract_size, COIN_DECIMALS)
