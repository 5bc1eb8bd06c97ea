"""Binance as ccxt.pro sees it, with Binance's field names, string-encoded numbers and update-id rules:

* USDⓈ-M futures (ccxt `binanceusdm`): the fapi REST endpoints and the fstream WebSocket.
* Spot (ccxt `binance`): the api/v3 REST endpoints and the spot stream (stream.binance.com).

Stream names are the topics: `btcusdt@bookTicker`, `btcusdt@depth@100ms`, `!markPrice@arr@1s`, ... Futures also
serves the combined-stream path `/stream?streams=a/b` (each data frame wrapped as {"stream": ..., "data": ...}), the
one cryptofeed dials. Both markets
use the same names for different books, so spot runs as its own `BinanceSpotSimulator` (its own sessions and
topics) hosted by the futures one: same path prefix, same faults, and each futures update also moves the same
coin's spot book, so the spot feed needs no loop of its own.

Where spot differs from futures on the wire: bookTicker carries no event or transaction time, a diff-depth
event has `U`/`u` but no `pu` (a client checks `U == previous u + 1`), the REST depth snapshot has no times,
and every price and quantity is printed with 8 decimals.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

import orjson
from aiohttp import web

from simulator.book import Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument, spot_instrument
from simulator.spot_host import SpotHost
from simulator.venue import Session, VenueSimulator

DEPTH_CADENCES_MS: dict[str, int] = {"depth": 250, "depth@100ms": 100, "depth@500ms": 500}
"""Futures diff-depth stream suffix -> push interval, as Binance documents them."""
SPOT_DEPTH_CADENCES_MS: dict[str, int] = {"depth": 1000, "depth@100ms": 100}
MARK_PRICE_CADENCES_MS: dict[str, int] = {"markPrice": 3000, "markPrice@1s": 1000}
TICKER_CHANNELS: frozenset[str] = frozenset({"bookTicker", "miniTicker", "ticker"})
MAX_STREAMS_PER_CONNECTION = 1024
"""Binance: `A single connection can listen to a maximum of 1024 streams`; it closes a connection asking for more."""
COMBINED_STREAMS: web.RequestKey[list[str]] = web.RequestKey("binance.combined_streams", list)
"""Request key: the topics a combined-stream URL (`/stream?streams=a/b/c`) asked for, subscribed on connect."""
ALL_BOOK_TICKERS = "!bookTicker"
ALL_MINI_TICKERS = "!miniTicker@arr"
ALL_TICKERS = "!ticker@arr"
ALL_MARK_PRICES = ("!markPrice@arr", "!markPrice@arr@1s")
MARKET_WIDE_STREAMS: frozenset[str] = frozenset({ALL_BOOK_TICKERS, ALL_MINI_TICKERS, ALL_TICKERS, *ALL_MARK_PRICES})
SPOT_MARKET_WIDE_STREAMS: frozenset[str] = frozenset({ALL_MINI_TICKERS})
"""Spot retired `!bookTicker` and `!ticker@arr`; the all-market mini tickers remain."""

TICKER_INTERVAL_MS = 500
"""Individual futures (mini)ticker streams push every 500 ms; the market-wide arrays every second."""
SPOT_TICKER_INTERVAL_MS = 1000
FROZEN_BOOK_TICKER_INTERVAL_MS = 100
"""While frozen, bookTicker repeats the last top of book so a test can read exact values."""
DAY_MS = 86_400_000
DEFAULT_FUNDING_INTERVAL_HOURS = 8
ONBOARD_DATE_MS = 1_569_398_400_000
PERPETUAL_DELIVERY_DATE_MS = 4_133_404_800_000
REQUEST_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
SPOT_DECIMALS = 8
"""Binance spot prints every price and quantity with 8 decimals ("97000.10000000")."""
SPOT_DEPTH_MAX_LIMIT = 5000
FUTURES_ONLY_STATE = ("funding_rate", "next_funding_time", "funding_interval_hours", "mark_price", "index_price")


class EightDecimalBook(SimulatedBook):
    """A spot book printed like Binance spot: the same exact values, padded to 8 decimals."""

    def price(self, ticks: int) -> str:
        return f"{ticks * self._tick:.{SPOT_DECIMALS}f}"

    def size(self, steps: int) -> str:
        return f"{steps * float(self.instrument.qty_step):.{SPOT_DECIMALS}f}"


@dataclass
class DiffStream:
    """One diff-depth stream (symbol + cadence): the update-id chain and the levels touched since its
    last event. Binance reports every level that changed within the window, with its final size."""

    topic: str
    previous_update_id: int
    """`u` of the previous event: the next event's `pu` on futures, `U - 1` on spot."""
    changed_bids: set[int] = field(default_factory=set)
    changed_asks: set[int] = field(default_factory=set)


@dataclass
class DepthWatch:
    """The book of one symbol as last seen, kept only while someone streams its depth, so each
    step's changed levels can be recorded (a diff of two pushes alone would miss a level that came
    and went in between, which a client's REST snapshot may still hold)."""

    bids: Levels
    asks: Levels
    streams: dict[int, DiffStream] = field(default_factory=dict)
    """By cadence in ms."""


@dataclass
class DayStats:
    """A simple rolling-24h model for the tickers: one trade per book update at the touch."""

    open_ticks: int
    opened_ms: int
    high_ticks: int = 0
    low_ticks: int = 0
    last_ticks: int = 0
    last_steps: int = 0
    volume_steps: int = 0
    turnover: int = 0
    """Sum of ticks * steps; quote volume in tick*step units, kept as an integer to print exactly."""
    trades: int = 0

    def __post_init__(self) -> None:
        self.high_ticks = self.low_ticks = self.last_ticks = self.open_ticks

    def record(self, ticks: int, steps: int) -> None:
        self.last_ticks, self.last_steps = ticks, steps
        self.high_ticks = max(self.high_ticks, ticks)
        self.low_ticks = min(self.low_ticks, ticks)
        self.volume_steps += steps
        self.turnover += ticks * steps
        self.trades += 1


@dataclass
class Job:
    """A periodic push, due on multiples of its period like Binance's timers."""

    period_ms: int
    run: Callable[[int], Awaitable[None]]
    due_ms: int = 0


class BinanceMarketSimulator(VenueSimulator):
    """What Binance futures and spot share: the stream protocol, bookTicker, diff depth with its update-id
    chain, (mini) tickers and the REST conventions. A subclass supplies its market's wire details."""

    market: ClassVar[Literal["futures", "spot"]]
    stream_names: ClassVar[frozenset[str]] = frozenset({"bookTicker", "miniTicker", "ticker", "depth", "markPrice"})
    depth_cadences_ms: ClassVar[dict[str, int]]
    market_wide_streams: ClassVar[frozenset[str]]
    ticker_interval_ms: ClassVar[int]

    def __init__(
        self,
        instruments: tuple[Instrument, ...],
        reference: ReferenceMarket,
        rate: float,
        seed: int,
    ) -> None:
        super().__init__(instruments, reference, rate, seed)
        started = now_ms()
        self.day_stats: dict[str, DayStats] = {
            venue_id: DayStats((book.best_bid + book.best_ask) // 2, started) for venue_id, book in self.books.items()
        }
        self.depth_watches: dict[str, DepthWatch] = {}
        self._book_ticker_topics = {venue_id: f"{venue_id.lower()}@bookTicker" for venue_id in self.books}
        self._symbol_channels = TICKER_CHANNELS | set(self.depth_cadences_ms) | self._extra_symbol_channels()
        self._jobs = [
            *(Job(ms, functools.partial(self._push_depth, ms)) for ms in sorted(set(self.depth_cadences_ms.values()))),
            Job(self.ticker_interval_ms, self._push_tickers),
            Job(1000, self._push_market_wide_tickers),
            Job(FROZEN_BOOK_TICKER_INTERVAL_MS, self._repeat_book_tickers_while_frozen),
            *self._extra_jobs(),
        ]

    # --- what a market adds -----------------------------------------------------------------------

    def _extra_symbol_channels(self) -> frozenset[str]:
        return frozenset()

    def _extra_jobs(self) -> list[Job]:
        return []

    @abstractmethod
    def _book_ticker_frame(self, book: SimulatedBook, bid: str, bid_size: str, ask: str, ask_size: str) -> dict:
        """One bookTicker event with the given (possibly crossed) top of book."""

    @abstractmethod
    def _depth_frame(self, book: SimulatedBook, stream: DiffStream, update_id: int, bids: list, asks: list,
                     now: int) -> dict[str, Any]:
        """One diff-depth event: the changed levels, from the stream's previous `u` + 1 to `update_id`."""

    @abstractmethod
    def _depth_limit(self, request: web.Request) -> int | web.Response:
        """The REST snapshot depth a request asks for, or the venue's error."""

    def _depth_due(self, book: SimulatedBook, stream: DiffStream) -> bool:
        """Whether a diff-depth stream has an event to send."""
        return bool(stream.changed_bids or stream.changed_asks)

    def stream_of(self, topic: str) -> str | None:
        """The channel without symbol or cadence: btcusdt@depth@100ms -> depth, !markPrice@arr@1s -> markPrice."""
        if topic.startswith("!"):
            return topic[1:].partition("@")[0]
        return topic.partition("@")[2].partition("@")[0]

    # --- state ------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The base view, plus the market and the ticker's last price and 24 h volume (in coins)."""
        state = super().state()
        for symbol_state in state["symbols"].values():
            book = self.books[symbol_state["id"]]
            stats = self.day_stats[symbol_state["id"]]
            symbol_state["market"] = self.market
            symbol_state["last_price"] = book.price(stats.last_ticks)
            symbol_state["volume_24h"] = book.size(stats.volume_steps)
        return state

    # --- WebSocket protocol -----------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            await self._reply_error(session, None, 3, "Invalid JSON: expected value at line 1 column 1")
            return
        request_id = message.get("id")
        if request_id is not None and (type(request_id) is not int or request_id < 0):
            await self._reply_error(session, None, 2, "Invalid request: request ID must be an unsigned integer")
            return
        method = message.get("method")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            await self._change_subscriptions(session, request_id, method == "SUBSCRIBE", message.get("params"))
        elif method == "LIST_SUBSCRIPTIONS":
            await self.send(session, {"result": sorted(session.topics), "id": request_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            await self._reply_error(session, request_id, 0, "Unknown property")
        elif method is None:
            await self._reply_error(session, request_id, 2, "Invalid request: missing field `method`")
        else:
            await self._reply_error(
                session,
                request_id,
                2,
                f"Invalid request: unknown variant `{method}`, expected one of {REQUEST_METHODS}",
            )

    async def _handle_combined_streams(self, request: web.Request) -> web.StreamResponse:
        """`/stream?streams=<name1>/<name2>`: the streams in the URL are subscribed on connect, and every data
        frame on this connection comes wrapped as {"stream": <name>, "data": <frame>} (SUBSCRIBE works here too).
        Binance does not document its answer to an unknown name in the URL; the simulator refuses the handshake
        with a 400 naming it, so a misconfigured client fails loudly instead of waiting for data that never comes."""
        names = [name for name in request.query.get("streams", "").split("/") if name]
        topics = [self._topic(name) for name in names]
        unknown = [name for name, topic in zip(names, topics, strict=True) if topic is None]
        if unknown:
            raise web.HTTPBadRequest(text=f"{self.name} simulator: unknown stream(s) in streams=: {', '.join(unknown)}")
        wanted = list(dict.fromkeys(topic for topic in topics if topic is not None))
        if len(wanted) > MAX_STREAMS_PER_CONNECTION:
            raise web.HTTPBadRequest(
                text=f"{self.name} simulator: {len(wanted)} streams asked for, at most {MAX_STREAMS_PER_CONNECTION}"
            )
        request[COMBINED_STREAMS] = wanted
        return await self.handle_ws(request)

    async def on_connect(self, session: Session, request: web.Request) -> None:
        topics = request.get(COMBINED_STREAMS)
        if topics is None:
            return
        session.envelope = _combined_stream_frame
        for topic in topics:
            self.subscribe(session, topic)
            self._open_depth_stream(topic)

    async def _change_subscriptions(self, session: Session, request_id: int | None, add: bool, params: Any) -> None:
        if not isinstance(params, list) or not all(isinstance(param, str) for param in params):
            await self._reply_error(session, request_id, 2, "Invalid request: params must be an array of stream names")
            return
        topics = [self._topic(param) for param in params]
        if None in topics:
            await self._reply_error(session, request_id, 2, "Invalid request: invalid stream")
            return
        if add and len(session.topics | set(topics)) > MAX_STREAMS_PER_CONNECTION:  # type: ignore[arg-type]
            # Binance acknowledges nothing past its cap: it closes the connection
            await session.ws.close(code=1008, message=b"Too many streams")
            return
        for topic in topics:
            assert topic is not None
            if add:
                self.subscribe(session, topic)
                self._open_depth_stream(topic)
            else:
                self.unsubscribe(session, topic)
        await self.send(session, {"result": None, "id": request_id})

    def _topic(self, stream: str) -> str | None:
        """The canonical stream name (symbol lower-cased), or None if Binance would not know it."""
        if stream in self.market_wide_streams:
            return stream
        symbol, _, channel = stream.partition("@")
        if symbol.upper() not in self.books or channel not in self._symbol_channels:
            return None
        return f"{symbol.lower()}@{channel}"

    async def _reply_error(self, session: Session, request_id: int | None, code: int, text: str) -> None:
        await self.send(session, {"error": {"code": code, "msg": text}, "id": request_id})

    # --- real-time frames -------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        venue_id = book.instrument.venue_id
        stats = self.day_stats[venue_id]
        if book.update_id & 1:
            stats.record(book.best_bid, book.bid_sizes[0] // 8 + 1)
        else:
            stats.record(book.best_ask, book.ask_sizes[0] // 8 + 1)
        await self._publish_book_ticker(book)
        watch = self.depth_watches.get(venue_id)
        if watch is not None:
            self._record_depth_changes(book, watch)

    async def _publish_book_ticker(self, book: SimulatedBook) -> None:
        topic = self._book_ticker_topics[book.instrument.venue_id]
        if not (self.has_subscribers(topic) or self.has_subscribers(ALL_BOOK_TICKERS)):
            return
        bid, bid_size = book.price(book.best_bid), book.size(book.bid_sizes[0])
        ask, ask_size = book.price(book.best_ask), book.size(book.ask_sizes[0])
        if self._crossed_now():
            bid, bid_size, ask, ask_size = ask, ask_size, bid, bid_size
        frame = orjson.dumps(self._book_ticker_frame(book, bid, bid_size, ask, ask_size)).decode()
        await self.publish(topic, frame)
        await self.publish(ALL_BOOK_TICKERS, frame)

    # --- periodic frames --------------------------------------------------------------------------

    async def on_tick(self, now: int) -> None:
        for job in self._jobs:
            if now >= job.due_ms:
                job.due_ms = now - now % job.period_ms + job.period_ms
                await job.run(now)

    async def _repeat_book_tickers_while_frozen(self, now: int) -> None:
        if self.faults.frozen:
            for book in self.books.values():
                await self._publish_book_ticker(book)

    async def _push_tickers(self, now: int) -> None:
        for venue_id, book in self.books.items():
            prefix = venue_id.lower()
            if self.has_subscribers(mini := f"{prefix}@miniTicker"):
                await self.publish(mini, self._mini_ticker(book, now))
            if self.has_subscribers(full := f"{prefix}@ticker"):
                await self.publish(full, self._ticker(book, now))

    async def _push_market_wide_tickers(self, now: int) -> None:
        if self.has_subscribers(ALL_MINI_TICKERS):
            await self.publish(ALL_MINI_TICKERS, [self._mini_ticker(book, now) for book in self.books.values()])
        if self.has_subscribers(ALL_TICKERS):
            await self.publish(ALL_TICKERS, [self._ticker(book, now) for book in self.books.values()])

    def _mini_ticker(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        venue_id = book.instrument.venue_id
        stats = self.day_stats[venue_id]
        return {
            "e": "24hrMiniTicker",
            "E": now,
            "s": book.instrument.venue_id,
            "c": book.price(stats.last_ticks),
            "o": book.price(stats.open_ticks),
            "h": book.price(stats.high_ticks),
            "l": book.price(stats.low_ticks),
            "v": book.size(stats.volume_steps),
            "q": self._quote_volume(book, stats),
        }

    def _ticker(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        summary = self._day_summary(book, now)
        return {
            "e": "24hrTicker",
            "E": now,
            "s": book.instrument.venue_id,
            "p": summary["priceChange"],
            "P": summary["priceChangePercent"],
            "w": summary["weightedAvgPrice"],
            "c": summary["lastPrice"],
            "Q": summary["lastQty"],
            "o": summary["openPrice"],
            "h": summary["highPrice"],
            "l": summary["lowPrice"],
            "v": summary["volume"],
            "q": summary["quoteVolume"],
            "O": summary["openTime"],
            "C": summary["closeTime"],
            "F": summary["firstId"],
            "L": summary["lastId"],
            "n": summary["count"],
        }

    # --- diff depth -------------------------------------------------------------------------------

    def _open_depth_stream(self, topic: str) -> None:
        """Start a depth stream's update-id chain when it gains its first subscriber, before the
        subscribe is acknowledged, so any REST snapshot the client takes afterwards is covered."""
        symbol, _, channel = topic.partition("@")
        cadence = self.depth_cadences_ms.get(channel)
        if cadence is None:
            return
        book = self.books[symbol.upper()]
        watch = self.depth_watches.get(book.instrument.venue_id)
        if watch is None:
            watch = self.depth_watches[book.instrument.venue_id] = DepthWatch(book.bids(), book.asks())
        if cadence not in watch.streams:
            watch.streams[cadence] = DiffStream(topic, book.update_id)

    @staticmethod
    def _record_depth_changes(book: SimulatedBook, watch: DepthWatch) -> None:
        bids, asks = book.bids(), book.asks()
        changed_bids = [price for price, _ in diff_levels(watch.bids, bids)]
        changed_asks = [price for price, _ in diff_levels(watch.asks, asks)]
        for stream in watch.streams.values():
            stream.changed_bids.update(changed_bids)
            stream.changed_asks.update(changed_asks)
        watch.bids, watch.asks = bids, asks

    async def _push_depth(self, cadence_ms: int, now: int) -> None:
        for venue_id, watch in tuple(self.depth_watches.items()):
            stream = watch.streams.get(cadence_ms)
            if stream is None:
                continue
            if not self.has_subscribers(stream.topic):
                del watch.streams[cadence_ms]
                if not watch.streams:
                    del self.depth_watches[venue_id]
                continue
            book = self.books[venue_id]
            if self._depth_due(book, stream):
                await self._publish_diff(book, watch, stream, now)

    async def _publish_diff(self, book: SimulatedBook, watch: DepthWatch, stream: DiffStream, now: int) -> None:
        bid_sizes = watch.bids
        if self._crossed_now():
            # One event shows a bid above the best ask; the price stays marked as changed so the
            # next event reports its true size (normally 0) and the client's book heals.
            phantom = book.best_ask + 1
            bid_sizes = {**watch.bids, phantom: book.bid_sizes[0]}
            stream.changed_bids.add(phantom)
        else:
            phantom = None
        bids = [
            [book.price(price), book.size(bid_sizes.get(price, 0))]
            for price in sorted(stream.changed_bids, reverse=True)
        ]
        asks = [[book.price(price), book.size(watch.asks.get(price, 0))] for price in sorted(stream.changed_asks)]
        stream.changed_bids.clear()
        stream.changed_asks.clear()
        if phantom is not None:
            stream.changed_bids.add(phantom)
        update_id = max(book.update_id, stream.previous_update_id)
        frame = self._depth_frame(book, stream, update_id, bids, asks, now)
        stream.previous_update_id = update_id
        if not self.withhold_diff(book):
            await self.publish(stream.topic, frame)

    # --- REST -------------------------------------------------------------------------------------

    async def _rest_ping(self, request: web.Request) -> web.Response:
        return _json({})

    async def _rest_time(self, request: web.Request) -> web.Response:
        return _json({"serverTime": now_ms()})

    def _depth_snapshot(self, book: SimulatedBook, depth: int) -> dict[str, Any]:
        return {
            "lastUpdateId": book.update_id,
            "bids": [[book.price(price), book.size(size)] for price, size in book.bids(depth).items()],
            "asks": [[book.price(price), book.size(size)] for price, size in book.asks(depth).items()],
        }

    async def _rest_depth(self, request: web.Request) -> web.Response:
        book = self._requested_book(request, required=True)
        if isinstance(book, web.Response):
            return book
        assert book is not None
        depth = self._depth_limit(request)
        if isinstance(depth, web.Response):
            return depth
        return _json(self._depth_snapshot(book, depth))

    def _book_ticker_entry(self, book: SimulatedBook) -> dict[str, Any]:
        return {
            "symbol": book.instrument.venue_id,
            "bidPrice": book.price(book.best_bid),
            "bidQty": book.size(book.bid_sizes[0]),
            "askPrice": book.price(book.best_ask),
            "askQty": book.size(book.ask_sizes[0]),
        }

    async def _rest_book_ticker(self, request: web.Request) -> web.Response:
        return self._one_or_all(request, self._book_ticker_entry)

    async def _rest_ticker_24hr(self, request: web.Request) -> web.Response:
        return self._one_or_all(request, lambda book: self._day_summary(book, now_ms()))

    async def _rest_ticker_price(self, request: web.Request) -> web.Response:
        def entry(book: SimulatedBook) -> dict[str, Any]:
            last = self.day_stats[book.instrument.venue_id].last_ticks
            return {"symbol": book.instrument.venue_id, "price": book.price(last), "time": book.timestamp_ms}

        return self._one_or_all(request, entry)

    def _one_or_all(self, request: web.Request, entry: Callable[[SimulatedBook], dict[str, Any]]) -> web.Response:
        """Binance's convention: `symbol=` gives one object, no symbol gives a list of all."""
        book = self._requested_book(request, required=False)
        if isinstance(book, web.Response):
            return book
        if book is None:
            return _json([entry(each) for each in self.books.values()])
        return _json(entry(book))

    def _requested_book(self, request: web.Request, required: bool) -> SimulatedBook | web.Response | None:
        symbol = request.query.get("symbol")
        if not symbol:
            if required:
                return _error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        book = self.books.get(symbol)
        return book if book is not None else _error(-1121, "Invalid symbol.")

    # --- shared values ----------------------------------------------------------------------------

    def _crossed_now(self) -> bool:
        """Take a pending crossed fault, but not while silent: the crossed frame would never be seen."""
        return not self.faults.silent and self.faults.take_crossed()

    @staticmethod
    def _quote_volume(book: SimulatedBook, stats: DayStats) -> str:
        instrument = book.instrument
        quote = Decimal(stats.turnover) * Decimal(instrument.tick_size) * Decimal(instrument.qty_step)
        return f"{quote:.{max(2, instrument.price_decimals)}f}"

    def _day_summary(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        """The REST 24hr ticker; the WebSocket ticker reuses its values."""
        venue_id = book.instrument.venue_id
        stats = self.day_stats[venue_id]
        change = stats.last_ticks - stats.open_ticks
        average = round(stats.turnover / stats.volume_steps) if stats.volume_steps else stats.last_ticks
        return {
            "symbol": book.instrument.venue_id,
            "priceChange": book.price(change),
            "priceChangePercent": f"{100.0 * change / stats.open_ticks:.3f}",
            "weightedAvgPrice": book.price(average),
            "lastPrice": book.price(stats.last_ticks),
            "lastQty": book.size(stats.last_steps),
            "openPrice": book.price(stats.open_ticks),
            "highPrice": book.price(stats.high_ticks),
            "lowPrice": book.price(stats.low_ticks),
            "volume": book.size(stats.volume_steps),
            "quoteVolume": self._quote_volume(book, stats),
            "openTime": max(stats.opened_ms, now - DAY_MS),
            "closeTime": now,
            "firstId": 1 if stats.trades else -1,
            "lastId": stats.trades if stats.trades else -1,
            "count": stats.trades,
        }


class BinanceSpotSimulator(BinanceMarketSimulator):
    """Binance spot as ccxt.pro.binance sees it: /api/v3 REST and the spot stream. Hosted by BinanceSimulator."""

    name: ClassVar[str] = "binance.spot"
    market = "spot"
    depth_cadences_ms = SPOT_DEPTH_CADENCES_MS
    market_wide_streams = SPOT_MARKET_WIDE_STREAMS
    ticker_interval_ms = SPOT_TICKER_INTERVAL_MS

    def __init__(
        self,
        instruments: tuple[Instrument, ...],
        reference: ReferenceMarket,
        rate: float,
        seed: int,
    ) -> None:
        super().__init__(tuple(spot_instrument(instrument) for instrument in instruments), reference, rate, seed)
        # The base builds plain books; spot's print their exact values with Binance spot's 8 decimals.
        self.books = {
            venue_id: EightDecimalBook(book.instrument, reference, self.rng) for venue_id, book in self.books.items()
        }
        started = now_ms()
        self.day_stats = {
            venue_id: DayStats((book.best_bid + book.best_ask) // 2, started) for venue_id, book in self.books.items()
        }
        self._symbol_list = [_spot_symbol_entry(book) for book in self.books.values()]

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt.binance builds spot REST URLs from urls.api.public and dials urls.api.ws.spot + '/<n>'. It tells a
        spot connection from a futures one by '/stream' in the URL (the real host is stream.binance.com)."""
        return {"urls": {"api": {"public": f"{http_base}/api/v3", "ws": {"spot": f"{ws_base}/stream/ws"}}}}

    def routes(self) -> list[web.RouteDef]:
        rest = [
            web.get("/api/v3/ping", self._rest_ping),
            web.get("/api/v3/time", self._rest_time),
            web.get("/api/v3/exchangeInfo", self._rest_exchange_info),
            web.get("/api/v3/depth", self._rest_depth),
            web.get("/api/v3/ticker/bookTicker", self._rest_book_ticker),
            web.get("/api/v3/ticker/24hr", self._rest_ticker_24hr),
            web.get("/api/v3/ticker/price", self._rest_ticker_price),
        ]
        return [*rest, web.get("/stream/ws", self.handle_ws), web.get("/stream/ws/{stream}", self.handle_ws)]

    def state(self) -> dict[str, Any]:
        """Spot has no funding, mark or index price; its symbols are the spot ones (BTC/USDT)."""
        state = super().state()
        for symbol_state in state["symbols"].values():
            symbol_state.update(dict.fromkeys(FUTURES_ONLY_STATE))
        state["symbols"] = {symbol.split(":")[0]: entry for symbol, entry in state["symbols"].items()}
        return state

    # --- wire details -----------------------------------------------------------------------------

    def _book_ticker_frame(self, book: SimulatedBook, bid: str, bid_size: str, ask: str, ask_size: str) -> dict:
        """Spot's bookTicker has neither an event type nor any time."""
        return {"u": book.update_id, "s": book.instrument.venue_id, "b": bid, "B": bid_size, "a": ask, "A": ask_size}

    def _depth_due(self, book: SimulatedBook, stream: DiffStream) -> bool:
        """A spot client drops an event whose `u` is not above the last one it applied, so an event waits for
        the book to advance (only a crossed fault's healing event could otherwise come without a step)."""
        return super()._depth_due(book, stream) and book.update_id > stream.previous_update_id

    def _depth_frame(self, book: SimulatedBook, stream: DiffStream, update_id: int, bids: list, asks: list,
                     now: int) -> dict[str, Any]:
        return {
            "e": "depthUpdate",
            "E": now,
            "s": book.instrument.venue_id,
            "U": stream.previous_update_id + 1,
            "u": update_id,
            "b": bids,
            "a": asks,
        }

    def _ticker(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        """Spot's 24hrTicker also carries the previous close (`x`) and the best bid/ask."""
        summary = self._day_summary(book, now)
        return {
            "e": "24hrTicker",
            "E": now,
            "s": book.instrument.venue_id,
            "p": summary["priceChange"],
            "P": summary["priceChangePercent"],
            "w": summary["weightedAvgPrice"],
            "x": summary["prevClosePrice"],
            "c": summary["lastPrice"],
            "Q": summary["lastQty"],
            "b": summary["bidPrice"],
            "B": summary["bidQty"],
            "a": summary["askPrice"],
            "A": summary["askQty"],
            "o": summary["openPrice"],
            "h": summary["highPrice"],
            "l": summary["lowPrice"],
            "v": summary["volume"],
            "q": summary["quoteVolume"],
            "O": summary["openTime"],
            "C": summary["closeTime"],
            "F": summary["firstId"],
            "L": summary["lastId"],
            "n": summary["count"],
        }

    @staticmethod
    def _quote_volume(book: SimulatedBook, stats: DayStats) -> str:
        instrument = book.instrument
        return _eight(Decimal(stats.turnover) * Decimal(instrument.tick_size) * Decimal(instrument.qty_step))

    def _day_summary(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        summary = super()._day_summary(book, now)
        top = self._book_ticker_entry(book)
        summary.update(prevClosePrice=summary["openPrice"], bidPrice=top["bidPrice"], bidQty=top["bidQty"],
                       askPrice=top["askPrice"], askQty=top["askQty"])
        return summary

    # --- REST -------------------------------------------------------------------------------------

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        symbols = self._symbol_list
        if wanted := request.query.get("symbol"):
            symbols = [entry for entry in symbols if entry["symbol"] == wanted]
            if not symbols:
                return _error(-1121, "Invalid symbol.")
        return _json(
            {
                "timezone": "UTC",
                "serverTime": now_ms(),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
                ],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    def _depth_limit(self, request: web.Request) -> int | web.Response:
        """Spot takes any limit up to 5000 (default 100) and cuts larger ones to 5000."""
        limit_text = request.query.get("limit", "100")
        if not limit_text.isdigit():
            return _error(-1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.")
        return min(max(int(limit_text), 1), SPOT_DEPTH_MAX_LIMIT)

    async def _rest_ticker_price(self, request: web.Request) -> web.Response:
        def entry(book: SimulatedBook) -> dict[str, Any]:
            return {"symbol": book.instrument.venue_id, "price": self._day_summary(book, now_ms())["lastPrice"]}

        return self._one_or_all(request, entry)

    async def _rest_ticker_24hr(self, request: web.Request) -> web.Response:
        def entry(book: SimulatedBook) -> dict[str, Any]:
            summary = self._day_summary(book, now_ms())
            order = (
                "symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice", "lastPrice",
                "lastQty", "bidPrice", "bidQty", "askPrice", "askQty", "openPrice", "highPrice", "lowPrice", "volume",
                "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count",
            )
            return {key: summary[key] for key in order}

        return self._one_or_all(request, entry)


class BinanceSimulator(SpotHost, BinanceMarketSimulator):
    """Binance USDⓈ-M futures, hosting Binance spot (`self.spot`) under the same prefix and faults."""

    name: ClassVar[str] = "binance"
    market = "futures"
    depth_cadences_ms = DEPTH_CADENCES_MS
    market_wide_streams = MARKET_WIDE_STREAMS
    ticker_interval_ms = TICKER_INTERVAL_MS

    def __init__(
        self,
        instruments: tuple[Instrument, ...],
        reference: ReferenceMarket,
        rate: float,
        seed: int,
    ) -> None:
        super().__init__(instruments, reference, rate, seed)
        self._symbol_list = [self._symbol_entry(book.instrument) for book in self.books.values()]
        self._listed_symbol_list = self._symbol_list
        self.host_spot(BinanceSpotSimulator(instruments, reference, rate, seed))

    # --- delisting --------------------------------------------------------------------------------

    supports_delisting = True

    def topic_venue_id(self, topic: str) -> str | None:
        return None if topic.startswith("!") else topic.partition("@")[0].upper()

    def listing_changed(self) -> None:
        """Binance keeps a delisted perpetual in exchangeInfo with status SETTLING (then CLOSE); ccxt reads any
        status but TRADING as inactive."""
        self._symbol_list = [
            {**entry, "status": "SETTLING"} if entry["symbol"] in self.delisted else entry
            for entry in self._listed_symbol_list
        ]

    # --- configuration ----------------------------------------------------------------------------

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """One block for both ccxt classes (binanceusdm for futures, binance for spot); ccxt deep-merges it into
        its urls. For linear streams ccxt rewrites `.../ws` to `.../public/ws/<n>` (depth, bookTicker) or
        `.../market/ws/<n>` (markPrice, tickers)."""
        spot = self.spot.ccxt_config(http_base, ws_base)["urls"]["api"]
        return {
            "urls": {
                "api": {
                    "fapiPublic": f"{http_base}/fapi/v1",
                    "fapiPublicV2": f"{http_base}/fapi/v2",
                    "fapiPublicV3": f"{http_base}/fapi/v3",
                    "fapiData": f"{http_base}/futures/data",
                    "public": spot["public"],
                    "ws": {"linear": f"{ws_base}/ws", "spot": spot["ws"]["spot"]},
                }
            }
        }

    def routes(self) -> list[web.RouteDef]:
        rest = [
            web.get("/fapi/v1/ping", self._rest_ping),
            web.get("/fapi/v1/time", self._rest_time),
            web.get("/fapi/v1/exchangeInfo", self._rest_exchange_info),
            web.get("/fapi/v1/depth", self._rest_depth),
            web.get("/fapi/v1/premiumIndex", self._rest_premium_index),
            web.get("/fapi/v1/fundingInfo", self._rest_funding_info),
            web.get("/fapi/v1/ticker/bookTicker", self._rest_book_ticker),
            web.get("/fapi/v1/ticker/24hr", self._rest_ticker_24hr),
            web.get("/fapi/v1/ticker/price", self._rest_ticker_price),
            web.get("/fapi/v2/ticker/price", self._rest_ticker_price),
        ]
        prefixes = ("", "/public", "/market")
        sockets = [
            web.get(path, self.handle_ws) for prefix in prefixes for path in (f"{prefix}/ws", f"{prefix}/ws/{{stream}}")
        ]
        combined = [web.get(f"{prefix}/stream", self._handle_combined_streams) for prefix in prefixes]
        return rest + sockets + combined + self.spot.routes()


    # --- wire details -----------------------------------------------------------------------------

    def _extra_symbol_channels(self) -> frozenset[str]:
        return frozenset(MARK_PRICE_CADENCES_MS)

    def _extra_jobs(self) -> list[Job]:
        return [Job(ms, functools.partial(self._push_mark_prices, ms)) for ms in MARK_PRICE_CADENCES_MS.values()]

    def _book_ticker_frame(self, book: SimulatedBook, bid: str, bid_size: str, ask: str, ask_size: str) -> dict:
        return {
            "e": "bookTicker",
            "u": book.update_id,
            "s": book.instrument.venue_id,
            "b": bid,
            "B": bid_size,
            "a": ask,
            "A": ask_size,
            "T": book.timestamp_ms,
            "E": now_ms(),
        }

    def _depth_frame(self, book: SimulatedBook, stream: DiffStream, update_id: int, bids: list, asks: list,
                     now: int) -> dict[str, Any]:
        return {
            "e": "depthUpdate",
            "E": now,
            "T": book.timestamp_ms,
            "s": book.instrument.venue_id,
            "U": stream.previous_update_id + 1,
            "u": update_id,
            "pu": stream.previous_update_id,
            "b": bids,
            "a": asks,
        }

    async def _push_mark_prices(self, cadence_ms: int, now: int) -> None:
        suffix = "@1s" if cadence_ms == 1000 else ""
        for venue_id, book in self.books.items():
            topic = f"{venue_id.lower()}@markPrice{suffix}"
            if self.has_subscribers(topic):
                await self.publish(topic, self._mark_price(book, now))
        everything = f"!markPrice@arr{suffix}"
        if self.has_subscribers(everything):
            await self.publish(everything, [self._mark_price(book, now) for book in self.books.values()])

    def _mark_price(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        mark, index = book.mark_price(), book.index_price()
        return {
            "e": "markPriceUpdate",
            "E": now,
            "s": book.instrument.venue_id,
            "p": mark,
            "ap": mark,
            "P": index,
            "i": index,
            "r": f"{book.funding.rate:.8f}",
            "T": book.funding.next_time_ms(now),
        }

    # --- REST -------------------------------------------------------------------------------------

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        return _json(
            {
                "timezone": "UTC",
                "serverTime": now_ms(),
                "futuresType": "U_MARGINED",
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
                ],
                "exchangeFilters": [],
                "assets": [
                    {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
                    {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
                    {"asset": "BNB", "marginAvailable": True, "autoAssetExchange": "-10000"},
                ],
                "symbols": self._symbol_list,
            }
        )

    @staticmethod
    def _symbol_entry(instrument: Instrument) -> dict[str, Any]:
        """One exchangeInfo symbol; ccxt reads tick and step sizes from the filters."""
        return {
            "symbol": instrument.venue_id,
            "pair": instrument.venue_id,
            "contractType": "PERPETUAL",
            "deliveryDate": PERPETUAL_DELIVERY_DATE_MS,
            "onboardDate": ONBOARD_DATE_MS,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": instrument.base,
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": instrument.price_decimals,
            "quantityPrecision": instrument.qty_decimals,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": instrument.tick_size,
                    "maxPrice": str(Decimal(instrument.start_price) * 100),
                    "tickSize": instrument.tick_size,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": instrument.qty_step,
                    "maxQty": "10000000",
                    "stepSize": instrument.qty_step,
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": instrument.qty_step,
                    "maxQty": "1000000",
                    "stepSize": instrument.qty_step,
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def _depth_limit(self, request: web.Request) -> int | web.Response:
        limit_text = request.query.get("limit", "500")
        if not limit_text.isdigit() or not 0 < int(limit_text) <= 1000:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        return int(limit_text)

    def _depth_snapshot(self, book: SimulatedBook, depth: int) -> dict[str, Any]:
        """Futures snapshots also carry the message and transaction times."""
        snapshot = super()._depth_snapshot(book, depth)
        return {"lastUpdateId": snapshot["lastUpdateId"], "E": now_ms(), "T": book.timestamp_ms,
                "bids": snapshot["bids"], "asks": snapshot["asks"]}

    async def _rest_premium_index(self, request: web.Request) -> web.Response:
        def entry(book: SimulatedBook) -> dict[str, Any]:
            now = now_ms()
            index = book.index_price()
            return {
                "symbol": book.instrument.venue_id,
                "markPrice": book.mark_price(),
                "indexPrice": index,
                "estimatedSettlePrice": index,
                "lastFundingRate": f"{book.funding.rate:.8f}",
                "interestRate": "0.00010000",
                "nextFundingTime": book.funding.next_time_ms(now),
                "time": now,
            }

        return self._one_or_all(request, entry)

    async def _rest_funding_info(self, request: web.Request) -> web.Response:
        """Like Binance, only symbols whose funding interval or caps differ from the default."""
        return _json(
            [
                {
                    "symbol": book.instrument.venue_id,
                    "adjustedFundingRateCap": "0.02000000",
                    "adjustedFundingRateFloor": "-0.02000000",
                    "fundingIntervalHours": book.funding.interval_hours,
                    "disclaimer": False,
                }
                for book in self.books.values()
                if book.funding.interval_hours != DEFAULT_FUNDING_INTERVAL_HOURS
            ]
        )

    def _book_ticker_entry(self, book: SimulatedBook) -> dict[str, Any]:
        """Futures book tickers also carry the time and the book's update id."""
        return {**super()._book_ticker_entry(book), "time": book.timestamp_ms, "lastUpdateId": book.update_id}


def _combined_stream_frame(topic: str, frame: str) -> str:
    """A data frame as a combined-stream connection gets it: {"stream":"<name>","data":<frame>}, printed without
    spaces like the venue (topics are canonical stream names, which need no escaping)."""
    return f'{{"stream":"{topic}","data":{frame}}}'


def _eight(value: Decimal | str) -> str:
    return f"{Decimal(value):.{SPOT_DECIMALS}f}"


def _spot_symbol_entry(book: SimulatedBook) -> dict[str, Any]:
    """One /api/v3/exchangeInfo symbol as Binance spot lists it; ccxt reads tick and step from the filters."""
    instrument = book.instrument
    tick, step = Decimal(instrument.tick_size), Decimal(instrument.qty_step)
    max_qty = step * instrument.lot_size * 1000
    return {
        "symbol": instrument.venue_id,
        "status": "TRADING",
        "baseAsset": instrument.base,
        "baseAssetPrecision": SPOT_DECIMALS,
        "quoteAsset": "USDT",
        "quotePrecision": SPOT_DECIMALS,
        "quoteAssetPrecision": SPOT_DECIMALS,
        "baseCommissionPrecision": SPOT_DECIMALS,
        "quoteCommissionPrecision": SPOT_DECIMALS,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                       "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _eight(tick),
             "maxPrice": _eight(Decimal(instrument.start_price) * 100), "tickSize": _eight(tick)},
            {"filterType": "LOT_SIZE", "minQty": _eight(step), "maxQty": _eight(max_qty), "stepSize": _eight(step)},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": _eight(0), "maxQty": _eight(max_qty / 10),
             "stepSize": _eight(0)},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": _eight(5), "applyMinToMarket": True,
             "maxNotional": _eight(9_000_000), "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
    }


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _error(code: int, text: str) -> web.Response:
    """Binance's REST error body; ccxt maps the code to an exception class."""
    return _json({"code": code, "msg": text}, status=400)


SIMULATOR = BinanceSimulator
