"""Bybit v5 as ccxt.pro.bybit sees it: public market-data REST and the public WebSocket, for linear USDT
perpetuals and spot.

Wire format follows https://bybit-exchange.github.io/docs/v5/ (market/instrument, market/tickers,
market/orderbook, websocket/public/ticker, websocket/public/orderbook, ws/connect):

* REST answers `{"retCode":0,"retMsg":"OK","result":{...},"retExtInfo":{},"time":...}`, numbers as strings.
* `tickers.<SYM>` sends one "snapshot", then "delta" frames holding only the fields that changed.
* `orderbook.<depth>.<SYM>` sends a snapshot, then deltas at the depth's cadence while something changed;
  depth 1 is snapshot-only and repeats itself (same `u`) after 3 s without change.
* `{"op":"ping"}` is answered with `{"success":true,"ret_msg":"pong",...}`, even while the venue is silent.

Spot (`category=spot`, /v5/public/spot) lists every instrument's coin against USDT (PEPEUSDT for 1000PEPEUSDT)
in its own `BybitSpotSimulator`, hosted by the linear one: same prefix, same faults, and each linear update also
moves the same coin's spot book. Spot tickers carry no bid/ask, mark or funding and are always snapshots; spot
order books push 200 levels every 200 ms; a spot subscribe request takes at most 10 topics.

The inverse and option categories exist but list nothing, so ccxt's default `load_markets` (which asks for all
four) works without the user narrowing the market types.
"""

from __future__ import annotations

import base64
import contextvars
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import orjson
from aiohttp import web

from simulator.book import Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument, spot_instrument
from simulator.spot_host import SpotHost
from simulator.venue import Session, VenueSimulator

CATEGORIES = ("linear", "spot", "inverse", "option")
BOOK_PUSH_INTERVAL_MS = {1: 10, 50: 20, 200: 100, 1000: 200}
"""Linear order book depths and how often Bybit pushes each of them."""
SPOT_BOOK_PUSH_INTERVAL_MS = {1: 10, 50: 20, 200: 200, 1000: 200}
SPOT_MAX_TOPICS_PER_REQUEST = 10
MAX_ARGS_CHARS_PER_CONNECTION = 21_000
"""Bybit: `args` of one connection may not exceed 21,000 characters (every topic subscribed on it, as sent)."""
LEVEL1_REPEAT_MS = 3_000
"""Depth 1 re-sends its snapshot after this long without a change."""
TICKER_REFRESH_MS = 1_000
"""How often tickers are re-checked without a book update (index price, next funding time)."""
INSTRUMENTS_DEFAULT_LIMIT = 500
INSTRUMENTS_MAX_LIMIT = 1_000
FUNDING_CAP = "0.005"
ZERO_SIZE = "0"
TICKER_FIELDS = (
    *("symbol", "tickDirection", "price24hPcnt", "lastPrice", "prevPrice24h", "highPrice24h", "lowPrice24h"),
    *("prevPrice1h", "markPrice", "indexPrice", "openInterest", "openInterestValue", "turnover24h", "volume24h"),
    *("nextFundingTime", "fundingRate", "bid1Price", "bid1Size", "ask1Price", "ask1Size", "preOpenPrice"),
    *("preQty", "curPreListingPhase", "fundingIntervalHour", "fundingCap"),
)
"""A linear ticker snapshot's fields, in Bybit's order (fundingIntervalHour/fundingCap are the 2025 additions)."""
SPOT_TICKER_FIELDS = (
    *("symbol", "lastPrice", "highPrice24h", "lowPrice24h", "prevPrice24h", "volume24h", "turnover24h"),
    *("price24hPcnt", "usdIndexPrice"),
)
"""A spot ticker's fields, in Bybit's order; `usdIndexPrice` is how ccxt tells a spot ticker from a contract one."""
SPOT_STATIC_TICKER_FIELDS = ("symbol", "prevPrice24h", "volume24h", "turnover24h")
FUTURES_ONLY_STATE = ("funding_rate", "next_funding_time", "funding_interval_hours", "mark_price", "index_price")

_ws_category: contextvars.ContextVar[str] = contextvars.ContextVar("bybit_ws_category", default="linear")
"""The /v5/public/<category> a WebSocket connected to; each connection runs in its own task and context."""


@dataclass
class DayStats:
    """The 24 h statistics a Bybit ticker carries. The simulator has no trades, so volume and open interest
    are made up once; the last price is the mark price and high/low follow it."""

    prev_24h: int
    high: int
    low: int
    last: int
    tick_direction: str
    static_fields: dict[str, str]

    def observe(self, last: int) -> None:
        if last > self.last:
            self.tick_direction = "PlusTick"
        elif last < self.last:
            self.tick_direction = "MinusTick"
        elif self.tick_direction in ("PlusTick", "ZeroPlusTick"):
            self.tick_direction = "ZeroPlusTick"
        else:
            self.tick_direction = "ZeroMinusTick"
        self.last = last
        self.high = max(self.high, last)
        self.low = min(self.low, last)


@dataclass
class TickerStream:
    """What the subscribers of one tickers.<SYM> topic were sent last, so a delta carries only changes."""

    fields: dict[str, str]
    resync: bool = False
    """Next frame is a full snapshot (after a garbled frame or a silent stall)."""


@dataclass
class BookStream:
    """What the subscribers of one orderbook.<depth>.<SYM> topic hold, so a delta carries only changes."""

    topic: str
    depth: int
    book: SimulatedBook
    bids: Levels
    asks: Levels
    update_id: int
    """Bybit's `u`: +1 per pushed frame. Never 1, which would tell clients the service restarted."""
    pushed_book_update: int
    pushed_at: int
    next_push_at: int
    """Each stream keeps its own clock, phase-shifted per topic: Bybit's streams are not pushed in lockstep, and
    ccxt's watch_order_book_for_symbols() only returns one of several frames that arrive together."""
    interval_ms: int
    """How often this depth is pushed in its category."""
    resync: bool = False
    force: bool = False
    """Push even if the book did not move (to remove an injected crossed level)."""

    def due(self, now: int) -> bool:
        if now < self.next_push_at:
            return False
        self.next_push_at += self.interval_ms
        if self.next_push_at <= now:
            self.next_push_at = now + self.interval_ms
        return True


class BybitMarketSimulator(VenueSimulator):
    """One Bybit category's public WebSocket: its topics, tickers and order books, and how its REST lists them.
    The defaults are linear's; BybitSpotSimulator overrides what spot prints differently."""

    name = "bybit"
    ticker_prefix: ClassVar[str] = "tickers."
    category: ClassVar[str] = "linear"
    book_push_interval_ms: ClassVar[dict[int, int]] = BOOK_PUSH_INTERVAL_MS
    max_topics_per_request: ClassVar[int | None] = None
    rest_book_limits: ClassVar[tuple[int, int]] = (25, 500)
    """/v5/market/orderbook: default and largest `limit`."""

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        self.day_stats = {venue_id: self._new_day_stats(book) for venue_id, book in self.books.items()}
        self.ticker_streams: dict[str, TickerStream] = {}
        self.book_streams: dict[str, BookStream] = {}
        self.next_ticker_refresh = 0
        self._was_silent = False

    # --- configuration --------------------------------------------------------------------------

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt builds REST URLs from urls.api[<api name>] (all `https://api.{hostname}`) and picks the public
        stream from urls.api.ws.public[<category>]; overriding them leaves no `{hostname}` to fill in. One block
        serves both the linear and the spot source (both are ccxt.bybit)."""
        rest = {api: http_base for api in ("public", "private", "spot", "futures", "v2")}
        sockets = {category: f"{ws_base}/v5/public/{category}" for category in CATEGORIES}
        return {"urls": {"api": {**rest, "ws": {"public": sockets}}}}

    def _ws_handler(self, category: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            _ws_category.set(category)
            return await self.handle_ws(request)

        return handle

    # --- what the REST endpoints list -----------------------------------------------------------

    def listed(self, symbol: str | None) -> list[SimulatedBook]:
        """The books a request for `symbol` (None: all of them) covers, sorted by symbol; a delisted instrument
        is no longer Trading, and Bybit lists only Trading instruments unless asked for a status."""
        if symbol is None:
            return [self.books[venue_id] for venue_id in sorted(self.books) if venue_id not in self.delisted]
        book = self.books.get(symbol)
        return [] if book is None or symbol in self.delisted else [book]

    def topic_venue_id(self, topic: str) -> str | None:
        return topic.rpartition(".")[2]

    def instrument_entry(self, book: SimulatedBook) -> dict[str, Any]:
        return _instrument(book)

    def rest_ticker(self, book: SimulatedBook) -> dict[str, str]:
        ticker = self._full_ticker(book)
        ticker.update(predictedDeliveryPrice="", basisRate="", basis="", deliveryFeeRate="", deliveryTime="0")
        return ticker

    def state(self) -> dict[str, Any]:
        state = super().state()
        for symbol_state in state["symbols"].values():
            symbol_state["market"] = "spot" if self.category == "spot" else "futures"
        return state

    # --- WebSocket control ----------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        request = message if isinstance(message, dict) else {}
        op, topics = request.get("op"), request.get("args")
        reply = {"success": True, "ret_msg": "", "conn_id": _conn_id(session), "req_id": str(request.get("req_id", ""))}
        if op == "ping":
            await self.send(session, {**reply, "ret_msg": "pong", "op": op})
        elif op not in ("subscribe", "unsubscribe") or not isinstance(topics, list):
            failure = {"success": False, "ret_msg": "error:invalid op", "conn_id": reply["conn_id"]}
            await self.send(session, {**failure, "request": {"op": op or "", "args": topics}})
        elif op == "unsubscribe":
            for topic in topics:
                self.unsubscribe(session, str(topic))
            await self.send(session, {**reply, "op": op})
        elif self.max_topics_per_request is not None and len(topics) > self.max_topics_per_request:
            await self.send(
                session, {**reply, "success": False, "ret_msg": f"args size >{self.max_topics_per_request}", "op": op}
            )
        elif problem := next(filter(None, (self._topic_problem(str(topic)) for topic in topics)), None):
            await self.send(session, {**reply, "success": False, "ret_msg": problem, "op": op})
        elif _args_chars(session.topics | {str(topic) for topic in topics}) > MAX_ARGS_CHARS_PER_CONNECTION:
            ret_msg = f"args length >{MAX_ARGS_CHARS_PER_CONNECTION}"
            await self.send(session, {**reply, "success": False, "ret_msg": ret_msg, "op": op})
        else:
            await self.send(session, {**reply, "op": op})
            for topic in topics:
                if topic not in session.topics:
                    await self._start_stream(session, topic)

    def _topic_problem(self, topic: str) -> str | None:
        """Bybit's failure text for a topic this connection cannot subscribe to, or None."""
        parts = topic.split(".")
        symbol = parts[-1]
        if parts[0] == "tickers" and len(parts) == 2:
            known = True
        elif parts[0] == "orderbook" and len(parts) == 3 and parts[1].isdigit():
            known = int(parts[1]) in self.book_push_interval_ms
        else:
            known = False
        if not known:
            return f"error:handler not found,topic:{topic}"
        if _ws_category.get() != self.category or symbol not in self.books or symbol in self.delisted:
            return f"Invalid symbol :[{topic}]"
        return None

    async def _start_stream(self, session: Session, topic: str) -> None:
        """Subscribe and send this session the snapshot the topic's next delta will apply to."""
        fresh = not self.has_subscribers(topic)
        if topic.startswith(self.ticker_prefix):
            book = self.books[topic.removeprefix(self.ticker_prefix)]
            stream = self.ticker_streams.get(topic)
            if fresh or stream is None:
                stream = self.ticker_streams[topic] = TickerStream(self._full_ticker(book))
            self.subscribe(session, topic)
            await self.send_data(session, _ticker_frame(topic, "snapshot", stream.fields, book))
            return
        _, depth_text, venue_id = topic.split(".")
        depth, book = int(depth_text), self.books[venue_id]
        book_stream = self.book_streams.get(topic)
        if fresh or book_stream is None:
            now = now_ms()
            interval = self.book_push_interval_ms[depth]
            phase = zlib.crc32(topic.encode()) % interval
            levels = book.bids(depth), book.asks(depth)
            book_stream = BookStream(
                topic, depth, book, *levels, book.update_id, book.update_id, now, now + phase, interval
            )
            self.book_streams[topic] = book_stream
        self.subscribe(session, topic)
        await self.send_data(
            session, _book_frame(book_stream, "snapshot", book_stream.bids.items(), book_stream.asks.items())
        )

    # --- the feed -------------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        topic = self.ticker_prefix + book.instrument.venue_id
        if self.has_subscribers(topic):
            await self._push_ticker(topic, book)

    async def on_tick(self, now: int) -> None:
        silent = self.faults.silent
        if self._was_silent and not silent:
            self._resync_everything()
        self._was_silent = silent
        if silent:
            return
        refresh_all = now >= self.next_ticker_refresh and not self.faults.frozen
        if refresh_all:
            self.next_ticker_refresh = now + TICKER_REFRESH_MS
        for topic, ticker_stream in tuple(self.ticker_streams.items()):
            if (refresh_all or ticker_stream.resync) and self.has_subscribers(topic):
                await self._push_ticker(topic, self.books[topic.removeprefix(self.ticker_prefix)])
        for topic, book_stream in tuple(self.book_streams.items()):
            if not book_stream.due(now):
                continue
            if self.has_subscribers(topic):
                await self._push_book(book_stream, now)
            else:
                del self.book_streams[topic]

    def _resync_everything(self) -> None:
        for ticker_stream in self.ticker_streams.values():
            ticker_stream.resync = True
        for book_stream in self.book_streams.values():
            book_stream.resync = True

    async def _push_ticker(self, topic: str, book: SimulatedBook) -> None:
        if self.faults.silent:
            return
        stream = self.ticker_streams[topic]
        if stream.resync:
            stream.fields = self._full_ticker(book)
            stream.resync = await self.publish_data(topic, _ticker_frame(topic, "snapshot", stream.fields, book))
            return
        changed = {key: value for key, value in self._moving_ticker_fields(book).items() if stream.fields[key] != value}
        if self.faults.take_crossed():
            changed["bid1Price"] = book.price(book.best_ask + 1)
        if not changed:
            return
        stream.fields.update(changed)
        delta = {"symbol": book.instrument.venue_id, **changed}
        stream.resync = await self.publish_data(topic, _ticker_frame(topic, "delta", delta, book))

    async def _push_book(self, stream: BookStream, now: int) -> None:
        book, depth = stream.book, stream.depth
        if book.update_id == stream.pushed_book_update and not (stream.force or stream.resync):
            if depth == 1 and now - stream.pushed_at >= LEVEL1_REPEAT_MS:  # same frame again, same `u`
                stream.pushed_at = now
                snapshot = _book_frame(stream, "snapshot", stream.bids.items(), stream.asks.items())
                await self.publish_data(stream.topic, snapshot)
            return
        bids, asks = book.bids(depth), book.asks(depth)
        crossed = self.faults.take_crossed()
        if crossed:
            bid_above_ask = {book.best_ask + 1: book.bid_sizes[0]}
            bids = bid_above_ask if depth == 1 else {**bids, **bid_above_ask}
        elif bids == stream.bids and asks == stream.asks and not stream.resync:
            stream.pushed_book_update, stream.force = book.update_id, False
            return
        if depth == 1 or stream.resync:
            kind, bid_changes, ask_changes = "snapshot", bids.items(), asks.items()
        else:
            kind, bid_changes, ask_changes = "delta", diff_levels(stream.bids, bids), diff_levels(stream.asks, asks)
        stream.bids, stream.asks = bids, asks
        stream.update_id += 1
        stream.pushed_book_update, stream.pushed_at, stream.force = book.update_id, now, crossed
        if kind == "delta" and self.withhold_diff(book):
            return
        stream.resync = await self.publish_data(stream.topic, _book_frame(stream, kind, bid_changes, ask_changes))

    # --- ticker fields --------------------------------------------------------------------------

    def _moving_ticker_fields(self, book: SimulatedBook) -> dict[str, str]:
        """The ticker fields that change with the book, the index and the funding clock."""
        stats = self.day_stats[book.instrument.venue_id]
        last = (book.best_bid + book.best_ask) // 2
        stats.observe(last)
        change = (last - stats.prev_24h) / stats.prev_24h
        return {
            "tickDirection": stats.tick_direction,
            "price24hPcnt": f"{change:.6f}",
            "lastPrice": book.price(last),
            "highPrice24h": book.price(stats.high),
            "lowPrice24h": book.price(stats.low),
            "markPrice": book.mark_price(),
            "indexPrice": book.index_price(),
            "nextFundingTime": str(book.funding.next_time_ms(now_ms())),
            "fundingRate": _funding_rate(book.funding.rate),
            "bid1Price": book.price(book.best_bid),
            "bid1Size": book.size(book.bid_sizes[0]),
            "ask1Price": book.price(book.best_ask),
            "ask1Size": book.size(book.ask_sizes[0]),
        }

    def _new_day_stats(self, book: SimulatedBook) -> DayStats:
        return _day_stats(book)

    def _full_ticker(self, book: SimulatedBook) -> dict[str, str]:
        """Every field of a linear ticker snapshot, in Bybit's order."""
        stats = self.day_stats[book.instrument.venue_id]
        moving = self._moving_ticker_fields(book)
        static = stats.static_fields
        merged = {**static, **moving}
        return {key: merged[key] for key in TICKER_FIELDS}


class BybitSpotSimulator(BybitMarketSimulator):
    """Bybit spot (/v5/public/spot, category=spot): hosted by BybitSimulator under the same prefix and faults."""

    name = "bybit.spot"
    market = "spot"
    category = "spot"
    book_push_interval_ms = SPOT_BOOK_PUSH_INTERVAL_MS
    max_topics_per_request = SPOT_MAX_TOPICS_PER_REQUEST
    rest_book_limits = (1, 200)

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(tuple(spot_instrument(instrument) for instrument in instruments), reference, rate, seed)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v5/public/spot", self._ws_handler("spot"))]

    def state(self) -> dict[str, Any]:
        """Spot symbols (BTC/USDT) with the ticker's last price and 24 h volume; no funding, mark or index."""
        state = super().state()
        symbols = {}
        for symbol, symbol_state in state["symbols"].items():
            book, stats = self.books[symbol_state["id"]], self.day_stats[symbol_state["id"]]
            symbol_state.update(dict.fromkeys(FUTURES_ONLY_STATE))
            symbol_state.update(last_price=book.price(stats.last), volume_24h=stats.static_fields["volume24h"])
            symbols[symbol.split(":")[0]] = symbol_state
        state["symbols"] = symbols
        return state

    def instrument_entry(self, book: SimulatedBook) -> dict[str, Any]:
        return _spot_instrument_entry(book)

    def rest_ticker(self, book: SimulatedBook) -> dict[str, str]:
        """The REST spot ticker adds the best bid/ask the stream leaves out."""
        ticker = self._full_ticker(book)
        top = {
            "bid1Price": book.price(book.best_bid),
            "bid1Size": book.size(book.bid_sizes[0]),
            "ask1Price": book.price(book.best_ask),
            "ask1Size": book.size(book.ask_sizes[0]),
        }
        return {"symbol": ticker.pop("symbol"), **top, **ticker}

    # --- tickers: snapshots only, without bid/ask, mark or funding -------------------------------

    def _new_day_stats(self, book: SimulatedBook) -> DayStats:
        stats = _day_stats(book)
        stats.static_fields = {key: stats.static_fields[key] for key in SPOT_STATIC_TICKER_FIELDS}
        return stats

    def _moving_ticker_fields(self, book: SimulatedBook) -> dict[str, str]:
        stats = self.day_stats[book.instrument.venue_id]
        last = (book.best_bid + book.best_ask) // 2
        stats.observe(last)
        return {
            "lastPrice": book.price(last),
            "highPrice24h": book.price(stats.high),
            "lowPrice24h": book.price(stats.low),
            "price24hPcnt": f"{(last - stats.prev_24h) / stats.prev_24h:.4f}",
            "usdIndexPrice": book.index_price(),
        }

    def _full_ticker(self, book: SimulatedBook) -> dict[str, str]:
        merged = {**self.day_stats[book.instrument.venue_id].static_fields, **self._moving_ticker_fields(book)}
        return {key: merged[key] for key in SPOT_TICKER_FIELDS}

    async def _push_ticker(self, topic: str, book: SimulatedBook) -> None:
        """Spot tickers are always full snapshots, so a garbled one needs no resync."""
        if self.faults.silent:
            return
        stream = self.ticker_streams[topic]
        fields = self._full_ticker(book)
        if fields == stream.fields and not stream.resync:
            return
        stream.fields, stream.resync = fields, False
        await self.publish_data(topic, _ticker_frame(topic, "snapshot", fields, book))


class BybitSimulator(SpotHost, BybitMarketSimulator):
    """Bybit linear perpetuals and the REST endpoints of every category, hosting spot (`self.spot`)."""

    supports_delisting = True

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        self.host_spot(BybitSpotSimulator(instruments, reference, rate, seed))

    def routes(self) -> list[web.RouteDef]:
        rest = [
            web.get("/v5/market/time", self._get_time),
            web.get("/v5/market/instruments-info", self._get_instruments),
            web.get("/v5/market/tickers", self._get_tickers),
            web.get("/v5/market/orderbook", self._get_orderbook),
            web.get("/v5/market/funding/history", self._get_funding_history),
        ]
        own = [category for category in CATEGORIES if category != "spot"]
        sockets = [web.get(f"/v5/public/{category}", self._ws_handler(category)) for category in own]
        return rest + sockets + self.spot.routes()


    # --- REST -----------------------------------------------------------------------------------

    def _market(self, category: str) -> BybitMarketSimulator | None:
        """The simulator serving a category; None for the categories that list nothing."""
        return {"linear": self, "spot": self.spot}.get(category)

    async def _get_time(self, request: web.Request) -> web.Response:
        now_ns = now_ms() * 1_000_000
        return _ok({"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)})

    async def _get_instruments(self, request: web.Request) -> web.Response:
        query = request.query
        category = query.get("category", "")
        if category not in CATEGORIES:
            return _error(10001, "Illegal category")
        market = self._market(category)
        if market is None:
            return _ok({"category": category, "list": [], "nextPageCursor": ""})
        books = market.listed(query.get("symbol"))
        books = [book for book in books if query.get("status", "Trading") == "Trading"]
        books = [book for book in books if query.get("baseCoin", book.instrument.base) == book.instrument.base]
        if market is self.spot:  # spot lists everything at once: no limit, no cursor
            page, cursor = books, ""
        else:
            limit = min(max(_int(query.get("limit"), INSTRUMENTS_DEFAULT_LIMIT), 1), INSTRUMENTS_MAX_LIMIT)
            offset = _decode_cursor(query.get("cursor", ""))
            page = books[offset : offset + limit]
            cursor = _encode_cursor(offset + limit) if offset + limit < len(books) else ""
        entries = [market.instrument_entry(book) for book in page]
        return _ok({"category": category, "list": entries, "nextPageCursor": cursor})

    async def _get_tickers(self, request: web.Request) -> web.Response:
        category, symbol = request.query.get("category", ""), request.query.get("symbol")
        if category not in CATEGORIES:
            return _error(10001, "Illegal category")
        market = self._market(category)
        books = market.listed(symbol) if market is not None else []
        if symbol is not None and not books:
            return _error(10001, "params error: symbol invalid")
        tickers = [market.rest_ticker(book) for book in books] if market is not None else []
        return _ok({"category": category, "list": tickers})

    async def _get_orderbook(self, request: web.Request) -> web.Response:
        market = self._market(request.query.get("category", ""))
        symbol = request.query.get("symbol")
        books = market.listed(symbol) if market is not None and symbol else []
        if market is None or len(books) != 1:
            return _error(10001, "params error: symbol invalid")
        book = books[0]
        default_limit, max_limit = market.rest_book_limits
        depth = min(max(_int(request.query.get("limit"), default_limit), 1), max_limit)
        return _ok(
            {
                "s": book.instrument.venue_id,
                "b": _wire_levels(book, book.bids(depth).items(), descending=True),
                "a": _wire_levels(book, book.asks(depth).items(), descending=False),
                "ts": book.timestamp_ms,
                "u": book.update_id,
                "seq": book.update_id,
                "cts": book.timestamp_ms,
            }
        )

    async def _get_funding_history(self, request: web.Request) -> web.Response:
        """Past settlements at the current rate: the simulator keeps no rate history."""
        query = request.query
        symbol = query.get("symbol")
        books = self.listed(symbol) if query.get("category") == "linear" and symbol else []
        if len(books) != 1:
            return _error(10001, "params error: symbol invalid")
        book = books[0]
        interval_ms = book.funding.interval_hours * 3_600_000
        end = _int(query.get("endTime"), now_ms())
        start = _int(query.get("startTime"), 0)
        limit = min(max(_int(query.get("limit"), 200), 1), 200)
        settled = (end // interval_ms) * interval_ms
        entries = []
        while settled >= start and len(entries) < limit:
            entries.append(
                {
                    "symbol": book.instrument.venue_id,
                    "fundingRate": _funding_rate(book.funding.rate),
                    "fundingRateTimestamp": str(settled),
                }
            )
            settled -= interval_ms
        return _ok({"category": "linear", "list": entries})

# --- wire helpers -------------------------------------------------------------------------------


def _ok(result: Any) -> web.Response:
    return _json({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms()})


def _error(code: int, message: str) -> web.Response:
    """Bybit reports request errors with HTTP 200 and a non-zero retCode."""
    return _json({"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": now_ms()})


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """Unknown or empty cursors start at the first page."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return max(0, int(text.removeprefix("offset=")))
    except ValueError:
        return 0


def _conn_id(session: Session) -> str:
    """Stable for the life of the connection, shaped like Bybit's ("cojifin88smerbj9t560-404")."""
    return f"sim{id(session):x}-{id(session) % 1000}"


def _funding_rate(rate: float) -> str:
    """Bybit prints funding rates without trailing zeros: "0.0001", "-0.000212", "0"."""
    text = f"{rate:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _wire_levels(book: SimulatedBook, levels: Iterable[tuple[int, int]], descending: bool) -> list[list[str]]:
    return [
        [book.price(ticks), book.size(steps) if steps else ZERO_SIZE]
        for ticks, steps in sorted(levels, reverse=descending)
    ]


def _ticker_frame(topic: str, kind: str, data: dict[str, str], book: SimulatedBook) -> dict[str, Any]:
    return {"topic": topic, "type": kind, "data": data, "cs": book.update_id, "ts": now_ms()}


def _book_frame(
    stream: BookStream, kind: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
) -> dict[str, Any]:
    book = stream.book
    return {
        "topic": stream.topic,
        "type": kind,
        "ts": now_ms(),
        "data": {
            "s": book.instrument.venue_id,
            "b": _wire_levels(book, bids, descending=True),
            "a": _wire_levels(book, asks, descending=False),
            "u": stream.update_id,
            "seq": book.update_id,
        },
        "cts": book.timestamp_ms,
    }


def _decimal_text(step: str, multiple: int | float) -> str:
    """A multiple of a price or qty step, printed with the step's decimals ("1190.000")."""
    quantum = Decimal(step)
    return str((quantum * Decimal(str(multiple))).quantize(quantum))


def _instrument(book: SimulatedBook) -> dict[str, Any]:
    """One linear perpetual as /v5/market/instruments-info lists it."""
    instrument = book.instrument
    tick, qty = instrument.tick_size, instrument.qty_step
    price_ticks = round(Decimal(instrument.start_price) / Decimal(tick))
    max_order_steps = instrument.lot_size * 1_000
    max_leverage = "100.00" if instrument.base in ("BTC", "ETH") else "50.00"
    return {
        "symbol": instrument.venue_id,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": instrument.base,
        "quoteCoin": "USDT",
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(instrument.price_decimals),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": max_leverage, "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": _decimal_text(tick, price_ticks * 20), "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": _decimal_text(qty, max_order_steps),
            "minOrderQty": qty,
            "qtyStep": qty,
            "postOnlyMaxOrderQty": _decimal_text(qty, max_order_steps * 10),
            "maxMktOrderQty": _decimal_text(qty, max_order_steps // 2),
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": instrument.funding_interval_hours * 60,
        "settleCoin": "USDT",
        "copyTrading": "both",
        "upperFundingRate": FUNDING_CAP,
        "lowerFundingRate": f"-{FUNDING_CAP}",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
    }


def _spot_instrument_entry(book: SimulatedBook) -> dict[str, Any]:
    """One spot pair as /v5/market/instruments-info?category=spot lists it."""
    instrument = book.instrument
    tick, qty = instrument.tick_size, instrument.qty_step
    return {
        "symbol": instrument.venue_id,
        "baseCoin": instrument.base,
        "quoteCoin": "USDT",
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": qty,
            "quotePrecision": "0.00000001",
            "minOrderQty": qty,
            "maxOrderQty": _decimal_text(qty, instrument.lot_size * 1_000),
            "minOrderAmt": "5",
            "maxOrderAmt": "8000000",
        },
        "priceFilter": {"tickSize": tick},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
    }


def _day_stats(book: SimulatedBook) -> DayStats:
    instrument = book.instrument
    mid = (book.best_bid + book.best_ask) // 2
    prev_24h = round(mid * 0.98)
    volume_steps = instrument.lot_size * 30_000
    interest_steps = instrument.lot_size * 5_000
    price = float(book.price(mid))
    volume = float(book.size(volume_steps))
    interest = float(book.size(interest_steps))
    static_fields = {
        "symbol": instrument.venue_id,
        "prevPrice24h": book.price(prev_24h),
        "prevPrice1h": book.price(mid),
        "openInterest": book.size(interest_steps),
        "openInterestValue": f"{interest * price:.2f}",
        "turnover24h": f"{volume * price:.4f}",
        "volume24h": book.size(volume_steps),
        "preOpenPrice": "",
        "preQty": "",
        "curPreListingPhase": "",
        "fundingIntervalHour": str(instrument.funding_interval_hours),
        "fundingCap": FUNDING_CAP,
    }
    high, low = max(mid, round(mid * 1.01)), min(prev_24h, mid)
    return DayStats(prev_24h, high, low, mid, "ZeroPlusTick", static_fields)


def _args_chars(topics: set[str]) -> int:
    """The characters of a JSON `args` array holding these topics."""
    return sum(len(topic) + 3 for topic in topics)


SIMULATOR = BybitSimulator
