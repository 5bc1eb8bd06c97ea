"""OKX v5 as ccxt.pro.okx sees it: the public instruments REST endpoint and the public WebSocket, for
USDT-margined perpetual swaps (instType SWAP) and USDT spot pairs (instType SPOT).

Wire format follows https://www.okx.com/docs-v5/en/ (public-data-rest-api-get-instruments, websocket-api-subscribe,
order-book-trading-market-data-ws-tickers-channel / -order-book-channel, public-data-websocket-mark-price-channel /
-index-tickers-channel / -funding-rate-channel):

* REST answers `{"code":"0","msg":"","data":[...]}`. Every number is a string printed without trailing zeros
  ("97000", "0.123"), as OKX prints them.
* Swaps are sized in contracts of `ctVal` coins (BTC 0.01, ETH 0.1, DOGE 1000, ...), in multiples of `lotSz`
  contracts; spot in coins. PEPE and SHIB are listed as the coin itself (PEPE-USDT-SWAP, ctVal 10000000), so their
  prices are per coin: the shared book's 1000-coin price divided by 1000.
* The WebSocket /ws/v5/public takes `{"op":"subscribe","args":[{"channel":..,"instId":..}]}`, acknowledges each
  argument with `{"event":"subscribe","arg":{..},"connId":..}`, reports errors as `{"event":"error","code":..,
  "msg":..}` and answers the text `ping` with `pong` (even while the venue is silent).
* Each channel pushes its current data right after the acknowledgement, then:
  bbo-tbt the top of book, tick by tick (at most every 10 ms); books5 five levels every 100 ms when they changed;
  books a full snapshot, then every 100 ms the levels that changed (size "0" removes), chained by `seqId` /
  `prevSeqId` (-1 on a snapshot) and carrying the CRC32 `checksum` of the top 25 levels, and an empty update with
  `prevSeqId == seqId` after a minute without change; tickers every 100 ms when changed; mark-price every 200 ms when
  changed, else every 10 s; index-tickers every 100 ms when changed, else every minute; funding-rate every 30 to 90 s.
  OKX announced in 2026 that `checksum` would be sent as 0 from 23 June 2026 (clients are to rely on seqId);
  the simulator keeps computing it as documented, which a client that still verifies it will accept.
* The books channel holds 400 levels on OKX; the simulated book has 50, so that is what books carries.

The simulator has no trades: `last` is the mid price and the 24 h volume a constant made up at start.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import orjson
from aiohttp import web

from simulator.book import BOOK_LEVELS, ReferenceMarket, SimulatedBook, now_ms
from simulator.instruments import Instrument
from simulator.venue import Session, VenueSimulator

WS_PUBLIC_PATH = "/ws/v5/public"
INSTRUMENT_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
SWAP, SPOT = "SWAP", "SPOT"

CONTRACTS: dict[str, tuple[str, str]] = {
    "BTC": ("0.01", "0.01"), "ETH": ("0.1", "0.01"), "SOL": ("1", "0.01"), "XRP": ("100", "1"),
    "DOGE": ("1000", "1"), "ADA": ("100", "1"), "LINK": ("1", "1"), "PEPE": ("10000000", "1"),
    "BNB": ("0.01", "1"), "AVAX": ("1", "1"), "DOT": ("1", "1"), "LTC": ("1", "1"), "BCH": ("0.1", "1"),
    "TRX": ("1000", "1"), "NEAR": ("10", "1"), "APT": ("1", "1"), "ARB": ("10", "1"), "OP": ("1", "1"),
    "SUI": ("1", "1"), "FIL": ("0.1", "1"), "ATOM": ("1", "1"), "SHIB": ("1000000", "1"), "WIF": ("1", "1"),
    "UNI": ("1", "1"), "TIA": ("1", "1"),
}
"""(ctVal in coins, lotSz in contracts) of each USDT swap, as OKX lists them; coins not here get (1, 1)."""
SPOT_SHIFT_BPS = -1.5
"""Spot trades a little below the perpetual (a small positive basis)."""

BBO_INTERVAL_MS = 10
BOOKS_INTERVAL_MS = 100
TICKERS_INTERVAL_MS = 100
MARK_INTERVAL_MS, MARK_IDLE_MS = 200, 10_000
INDEX_INTERVAL_MS, INDEX_IDLE_MS = 100, 60_000
FUNDING_PUSH_MS = (30_000, 90_000)
BOOKS_IDLE_MS = 60_000
"""books sends an empty update (prevSeqId == seqId) after this long without a change."""
BOOK_DEPTHS = {"bbo-tbt": 1, "books5": 5, "books": BOOK_LEVELS}
CHECKSUM_LEVELS = 25
PRINT_CACHE_SIZE = 4096
FUNDING_CAP = "0.00375"
LIST_TIME_MS = "1611907686000"

BOOK_CHANNELS = frozenset(BOOK_DEPTHS)
MARKET_CHANNELS = BOOK_CHANNELS | {"tickers"}
SWAP_CHANNELS = frozenset({"mark-price", "funding-rate"})
INDEX_CHANNEL = "index-tickers"

Side = dict[int, int]
"""Price in ticks -> size in wire units (lots), as one channel shows one side of a book; best level first."""


@dataclass
class Listing:
    """One OKX instrument on top of a simulated book: its id and how its prices and sizes are printed."""

    inst_id: str
    inst_type: str
    symbol: str
    """ccxt's unified symbol, e.g. BTC/USDT:USDT or BTC/USDT."""
    index_id: str
    book: SimulatedBook
    lot_size: str
    """Contracts (swap) or coins (spot) per wire unit."""
    contract_value: str | None
    """ctVal: coins per contract; None on spot."""
    seq: int
    """OKX's seqId: grows with every book change (in uneven steps, as OKX's does)."""
    open_ticks: int = 0
    high_ticks: int = 0
    low_ticks: int = 0
    volume_units: int = 0
    price_decimals: int = field(init=False)
    lot_decimals: int = field(init=False)
    units_num: int = field(init=False)
    units_den: int = field(init=False)
    _prices: dict[int, str] = field(init=False, default_factory=dict)
    _sizes: dict[int, str] = field(init=False, default_factory=dict)
    """Printed numbers by ticks / units: books print the same few hundred levels over and over."""

    def __post_init__(self) -> None:
        instrument = self.book.instrument
        shift = len(str(instrument.multiplier)) - 1
        self.price_decimals = instrument.price_decimals + shift
        self.lot_decimals = _decimals(self.lot_size)
        coins_per_unit = Fraction(self.lot_size) * Fraction(self.contract_value or "1")
        units_per_step = Fraction(instrument.qty_step) * instrument.multiplier / coins_per_unit
        self.units_num, self.units_den = units_per_step.numerator, units_per_step.denominator
        mid = (self.book.best_bid + self.book.best_ask) // 2
        self.open_ticks = round(mid * 0.98)
        self.high_ticks, self.low_ticks = max(mid, round(mid * 1.01)), self.open_ticks
        self.volume_units = self.units(instrument.lot_size) * 30_000

    @property
    def is_swap(self) -> bool:
        return self.inst_type == SWAP

    @property
    def tick_size(self) -> str:
        return _text(1, self.price_decimals)

    def units(self, steps: int) -> int:
        """A book size (qty steps) in wire units, rounded; a level that exists shows at least one lot."""
        return max(1, (2 * steps * self.units_num + self.units_den) // (2 * self.units_den))

    def price(self, ticks: int) -> str:
        text = self._prices.get(ticks)
        if text is None:
            if len(self._prices) >= PRINT_CACHE_SIZE:
                self._prices.clear()
            text = self._prices[ticks] = _text(ticks, self.price_decimals)
        return text

    def size(self, units: int) -> str:
        text = self._sizes.get(units)
        if text is None:
            if len(self._sizes) >= PRINT_CACHE_SIZE:
                self._sizes.clear()
            text = self._sizes[units] = _text(units, self.lot_decimals)
        return text

    def coins(self, units: int) -> str:
        """What `units` on the wire are in coins: contracts x ctVal on a swap."""
        value = Decimal(units) * Decimal(self.lot_size) * Decimal(self.contract_value or "1")
        return _decimal_text(value)

    def side(self, levels: dict[int, int]) -> Side:
        return {ticks: self.units(steps) for ticks, steps in levels.items()}

    def mid_ticks(self) -> int:
        return (self.book.best_bid + self.book.best_ask) // 2


@dataclass
class Feed:
    """One topic (channel + instId) all of whose subscribers get the same pushes."""

    topic: str
    channel: str
    listing: Listing
    interval_ms: int
    next_at: int
    seen_seq: int = -1
    """listing.seq when the feed last looked at the book; unchanged means nothing new to compute."""
    pushed_at: int = 0
    last: Any = None
    """What was pushed last: the record (tickers, funding), the price (mark, index) or the levels (books)."""
    pushed_seq: int = -1
    """books: seqId of the last push, the next push's prevSeqId."""
    resync: bool = False
    """books: the next push is a snapshot (a frame was garbled, or the venue was silent)."""
    force: bool = False
    """Book channels: push even if the book did not move (to remove an injected crossed bid)."""

    def due(self, now: int) -> bool:
        if now < self.next_at:
            return False
        self.next_at += self.interval_ms
        if self.next_at <= now:
            self.next_at = now + self.interval_ms
        return True


class OkxSimulator(VenueSimulator):
    name = "okx"
    idle_ms: ClassVar[dict[str, int]] = {"mark-price": MARK_IDLE_MS, INDEX_CHANNEL: INDEX_IDLE_MS}

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        swap_books = list(self.books.values())
        self.listings: dict[str, Listing] = {}
        self.swaps_by_index: dict[str, Listing] = {}
        for book in swap_books:
            coin = book.instrument.coin
            ct_val, lot = CONTRACTS.get(coin, ("1", "1"))
            swap = Listing(f"{coin}-USDT-SWAP", SWAP, f"{coin}/USDT:USDT", f"{coin}-USDT", book, lot, ct_val,
                           self._first_seq())
            spot_book = SimulatedBook(book.instrument, reference, self.rng, bias_bps=SPOT_SHIFT_BPS)
            spot_lot = book.instrument.qty_step if book.instrument.multiplier == 1 else "1"
            spot = Listing(f"{coin}-USDT", SPOT, f"{coin}/USDT", f"{coin}-USDT", spot_book, spot_lot, None,
                           self._first_seq())
            for listing in (swap, spot):
                self.listings[listing.inst_id] = listing
            self.swaps_by_index[swap.index_id] = swap
        self.books = {inst_id: listing.book for inst_id, listing in self.listings.items()}
        self._codes = {inst_id: code for code, inst_id in enumerate(sorted(self.listings), start=10_001)}
        self._listing_of_book = {id(listing.book): listing for listing in self.listings.values()}
        self.feeds: dict[str, Feed] = {}
        self.funding_printed: dict[str, dict[str, str]] = {}
        """The funding record each swap last printed: funding pushes are rare, and state() shows what was sent."""
        self._was_silent = False

    def books_showing(self, symbol: str) -> list[SimulatedBook]:
        return [listing.book for listing in self.listings.values() if listing.symbol == symbol]

    def _first_seq(self) -> int:
        return self.rng.randint(10_000_000, 90_000_000)

    # --- configuration --------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v5/public/time", self._get_time),
            web.get("/api/v5/public/instruments", self._get_instruments),
            web.get("/api/v5/public/funding-rate", self._get_funding_rate),
            web.get(WS_PUBLIC_PATH, self.handle_ws),
        ]

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt signs every REST call onto urls.api.rest ('https://{hostname}') + '/api/v5/...', and dials
        urls.api.ws + '/public' (market data) or '/business' (candles, which nothing here uses)."""
        return {"urls": {"api": {"rest": http_base, "ws": f"{ws_base}/ws/v5"}}}

    # --- REST -----------------------------------------------------------------------------------

    async def _get_time(self, request: web.Request) -> web.Response:
        return _ok([{"ts": str(now_ms())}])

    async def _get_instruments(self, request: web.Request) -> web.Response:
        query = request.query
        inst_type = query.get("instType", "")
        if not inst_type:
            return _error("50014", "Parameter instType can not be empty.")
        if inst_type not in INSTRUMENT_TYPES:
            return _error("51000", "Parameter instType error")
        listings = [listing for listing in self.listings.values() if listing.inst_type == inst_type]
        if "instId" in query:
            listings = [listing for listing in listings if listing.inst_id == query["instId"]]
        family = query.get("instFamily") or query.get("uly")
        if family:
            listings = [listing for listing in listings if listing.is_swap and listing.index_id == family]
        listings.sort(key=lambda listing: listing.inst_id)
        return _ok([_instrument(listing, self._codes[listing.inst_id]) for listing in listings])

    async def _get_funding_rate(self, request: web.Request) -> web.Response:
        listing = self.listings.get(request.query.get("instId", ""))
        if listing is None or not listing.is_swap:
            return _error("51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")
        return _ok([{**self._funding_record(listing), "ts": str(now_ms())}])

    # --- WebSocket control ----------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        if message == "ping":
            await self.send(session, "pong")
            return
        request = message if isinstance(message, dict) else {}
        op, args = request.get("op"), request.get("args")
        reply: dict[str, Any] = {"id": str(request["id"])} if "id" in request else {}
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            text = message if isinstance(message, str) else orjson.dumps(message).decode()
            await self.send(session, {**reply, "event": "error", "code": "60012", "msg": f"Illegal request: {text}",
                                      "connId": _conn_id(session)})
            return
        topics = []
        for arg in args:
            channel, inst_id = (arg.get("channel"), arg.get("instId")) if isinstance(arg, dict) else (None, None)
            if not self._known(channel, inst_id):
                await self.send(session, {
                    **reply, "event": "error", "code": "60018", "connId": _conn_id(session),
                    "msg": f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the correct "
                           "URL, channel and parameters referring to API document.",
                })
                return
            topics.append((f"{channel}:{inst_id}", {"channel": channel, "instId": inst_id}))
        for topic, arg in topics:
            await self.send(session, {**reply, "event": op, "arg": arg, "connId": _conn_id(session)})
            if op == "unsubscribe":
                self.unsubscribe(session, topic)
            else:
                await self._start(session, topic, arg["channel"], arg["instId"])

    def _known(self, channel: Any, inst_id: Any) -> bool:
        if channel == INDEX_CHANNEL:
            return inst_id in self.swaps_by_index
        listing = self.listings.get(inst_id) if isinstance(inst_id, str) else None
        if listing is None:
            return False
        return channel in MARKET_CHANNELS or (channel in SWAP_CHANNELS and listing.is_swap)

    async def _start(self, session: Session, topic: str, channel: str, inst_id: str) -> None:
        """Subscribe, and send this session the channel's current data (a snapshot for the book channels)."""
        feed = self.feeds.get(topic)
        if feed is None or not self.has_subscribers(topic):
            listing = self.swaps_by_index[inst_id] if channel == INDEX_CHANNEL else self.listings[inst_id]
            feed = self.feeds[topic] = self._new_feed(topic, channel, listing)
        self.subscribe(session, topic)
        now = now_ms()
        if channel == "books":
            frame = self._books_frame(feed, "snapshot", feed.last[0].items(), feed.last[1].items(), -1,
                                      feed.listing.book.timestamp_ms)
        elif channel in BOOK_CHANNELS:
            frame = self._top_frame(feed, *self._top(feed.listing, BOOK_DEPTHS[channel]))
        elif channel == "funding-rate":
            frame = self._frame(feed, self._printed_funding(feed.listing), now)
        else:
            frame = self._frame(feed, self._record(feed), now)
        await self.send_data(session, frame)

    def _new_feed(self, topic: str, channel: str, listing: Listing) -> Feed:
        now = now_ms()
        if channel == "funding-rate":
            interval = self.rng.randint(*FUNDING_PUSH_MS)
        else:
            interval = {"bbo-tbt": BBO_INTERVAL_MS, "books5": BOOKS_INTERVAL_MS, "books": BOOKS_INTERVAL_MS,
                        "tickers": TICKERS_INTERVAL_MS, "mark-price": MARK_INTERVAL_MS}.get(channel, INDEX_INTERVAL_MS)
        phase = zlib.crc32(topic.encode()) % interval  # topics are not pushed in lockstep
        feed = Feed(topic, channel, listing, interval, now + phase, pushed_at=now)
        if channel == "books":
            book = listing.book
            feed.last = (listing.side(book.bids()), listing.side(book.asks()))
            feed.pushed_seq = feed.seen_seq = listing.seq
        elif channel in BOOK_CHANNELS:
            feed.last = self._top(listing, BOOK_DEPTHS[channel])
            feed.seen_seq = listing.seq
        elif channel == "funding-rate":
            feed.last = self._printed_funding(listing)
        else:
            feed.last = self._record(feed)
            feed.seen_seq = listing.seq
        return feed

    # --- the feed -------------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        listing = self._listing_of_book[id(book)]
        listing.seq += self.rng.randint(1, 12)
        mid = listing.mid_ticks()
        listing.high_ticks = max(listing.high_ticks, mid)
        listing.low_ticks = min(listing.low_ticks, mid)

    async def on_tick(self, now: int) -> None:
        silent = self.faults.silent
        if self._was_silent and not silent:
            for feed in self.feeds.values():  # subscribers during the silence got no snapshot: start over
                feed.resync = True
        self._was_silent = silent
        if silent:
            return
        for topic, feed in tuple(self.feeds.items()):
            if not feed.due(now):
                continue
            if not self.has_subscribers(topic):
                del self.feeds[topic]
            elif feed.channel == "books":
                await self._push_books(feed, now)
            elif feed.channel in BOOK_CHANNELS:
                await self._push_top(feed, now)
            elif feed.channel == "funding-rate":
                await self._push_funding(feed, now)
            else:
                await self._push_record(feed, now)

    async def _push_books(self, feed: Feed, now: int) -> None:
        listing = feed.listing
        changed = listing.seq != feed.seen_seq or feed.force or feed.resync
        if not changed:
            if now - feed.pushed_at >= BOOKS_IDLE_MS:  # still here: an empty update, seqId unchanged
                feed.pushed_at = now
                await self.publish_data(feed.topic, self._books_frame(feed, "update", (), (), feed.pushed_seq, now))
            return
        feed.seen_seq = listing.seq
        bids, asks = listing.side(listing.book.bids()), listing.side(listing.book.asks())
        crossed = self.faults.take_crossed()
        if crossed:
            bids = {next(iter(asks)) + 1: next(iter(bids.values())), **bids}
        old_bids, old_asks = feed.last
        if bids == old_bids and asks == old_asks and not feed.resync:
            feed.force = False
            return
        if listing.seq <= feed.pushed_seq:  # a forced push without a book change still needs a new seqId
            listing.seq = feed.pushed_seq + 1
            feed.seen_seq = listing.seq
        previous = feed.pushed_seq
        feed.last, feed.pushed_seq, feed.pushed_at, feed.force = (bids, asks), listing.seq, now, crossed
        ts = listing.book.timestamp_ms
        if feed.resync:
            frame = self._books_frame(feed, "snapshot", bids.items(), asks.items(), -1, ts)
        else:
            frame = self._books_frame(feed, "update", _changes(old_bids, bids), _changes(old_asks, asks), previous, ts)
            if self.withhold_diff(listing.book, "futures" if listing.is_swap else "spot"):
                return
        feed.resync = await self.publish_data(feed.topic, frame)

    async def _push_top(self, feed: Feed, now: int) -> None:
        """bbo-tbt and books5: a snapshot of the top levels when they changed."""
        listing = feed.listing
        again = feed.force or feed.resync
        if listing.seq == feed.seen_seq and not again:
            return
        feed.seen_seq = listing.seq
        bids, asks = self._top(listing, BOOK_DEPTHS[feed.channel])
        crossed = self.faults.take_crossed()
        if crossed:
            bids = [(asks[0][0] + 1, bids[0][1]), *bids][: len(bids)]
        elif (bids, asks) == feed.last and not again:
            return
        feed.last, feed.pushed_at, feed.force = (bids, asks), now, crossed
        feed.resync = await self.publish_data(feed.topic, self._top_frame(feed, bids, asks))

    async def _push_record(self, feed: Feed, now: int) -> None:
        """tickers, mark-price, index-tickers: the record when it changed, or after the channel's idle time."""
        idle_ms = self.idle_ms.get(feed.channel)
        again = feed.resync or (idle_ms is not None and now - feed.pushed_at >= idle_ms)
        if feed.listing.seq == feed.seen_seq and not again:
            return
        feed.seen_seq = feed.listing.seq
        record = self._record(feed)
        if record == feed.last and not again:
            return
        feed.last, feed.pushed_at = record, now
        feed.resync = await self.publish_data(feed.topic, self._frame(feed, record, now))

    async def _push_funding(self, feed: Feed, now: int) -> None:
        """Every 30 to 90 s whatever changed; while frozen the last printed values again."""
        listing = feed.listing
        if not self.faults.frozen or listing.inst_id not in self.funding_printed:
            self.funding_printed[listing.inst_id] = self._funding_record(listing)
        feed.interval_ms = self.rng.randint(*FUNDING_PUSH_MS)
        feed.next_at, feed.pushed_at = now + feed.interval_ms, now
        await self.publish_data(feed.topic, self._frame(feed, self.funding_printed[listing.inst_id], now))

    # --- records --------------------------------------------------------------------------------

    @staticmethod
    def _top(listing: Listing, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        book = listing.book
        bids = [(book.best_bid - level, listing.units(book.bid_sizes[level])) for level in range(depth)]
        asks = [(book.best_ask + level, listing.units(book.ask_sizes[level])) for level in range(depth)]
        return bids, asks

    def _record(self, feed: Feed) -> dict[str, str]:
        """The data of a tickers, mark-price or index-tickers push, without its timestamp."""
        listing = feed.listing
        if feed.channel == "mark-price":
            return {"instType": SWAP, "instId": listing.inst_id, "markPx": listing.price(listing.mid_ticks())}
        if feed.channel == INDEX_CHANNEL:
            return _index_record(listing)
        return _ticker_record(listing)

    def _printed_funding(self, listing: Listing) -> dict[str, str]:
        """What the funding-rate channel shows now: the last push, or fresh values if there was none."""
        if listing.inst_id not in self.funding_printed or not self.has_subscribers(f"funding-rate:{listing.inst_id}"):
            self.funding_printed[listing.inst_id] = self._funding_record(listing)
        return self.funding_printed[listing.inst_id]

    @staticmethod
    def _funding_record(listing: Listing) -> dict[str, str]:
        book = listing.book
        funding_time = book.funding.next_time_ms(now_ms())
        mark, index = listing.mid_ticks(), book.index_ticks
        return {
            "formulaType": "withRate",
            "fundingRate": _rate_text(book.funding.rate),
            "fundingTime": str(funding_time),
            "impactValue": "20000",
            "instId": listing.inst_id,
            "instType": SWAP,
            "interestRate": "0.0001",
            "maxFundingRate": FUNDING_CAP,
            "method": "current_period",
            "minFundingRate": f"-{FUNDING_CAP}",
            "nextFundingRate": "",
            "nextFundingTime": str(funding_time + book.funding.interval_hours * 3_600_000),
            "premium": _decimal_text(Decimal(mark - index) / Decimal(index), places=8),
            "settFundingRate": _rate_text(book.funding.rate),
            "settState": "settled",
        }

    # --- frames ---------------------------------------------------------------------------------

    @staticmethod
    def _frame(feed: Feed, record: dict[str, str], now: int) -> dict[str, Any]:
        arg = {"channel": feed.channel, "instId": feed.topic.split(":", 1)[1]}
        return {"arg": arg, "data": [{**record, "ts": str(now)}]}

    @staticmethod
    def _top_frame(feed: Feed, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> dict[str, Any]:
        listing = feed.listing
        data: dict[str, Any] = {"asks": _levels(listing, asks), "bids": _levels(listing, bids)}
        if feed.channel == "books5":
            data["instId"] = listing.inst_id
        data.update(ts=str(listing.book.timestamp_ms), seqId=listing.seq)
        return {"arg": {"channel": feed.channel, "instId": listing.inst_id}, "data": [data]}

    @staticmethod
    def _books_frame(feed: Feed, action: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]],
                     previous: int, ts: int) -> dict[str, Any]:
        listing = feed.listing
        held_bids, held_asks = feed.last
        data = {
            "asks": _levels(listing, sorted(asks)),
            "bids": _levels(listing, sorted(bids, reverse=True)),
            "ts": str(ts),
            "checksum": _checksum(listing, held_bids, held_asks),
            "prevSeqId": previous,
            "seqId": feed.pushed_seq,
        }
        return {"arg": {"channel": "books", "instId": listing.inst_id}, "action": action, "data": [data]}

    # --- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What the venue shows per symbol (swap and spot), as printed: prices per coin, sizes in coins
        (contracts x ctVal on a swap, the contracts themselves in bid/ask_contracts)."""
        state = super().state()
        state["symbols"] = {listing.symbol: self._symbol_state(listing) for listing in self.listings.values()}
        return state

    def _symbol_state(self, listing: Listing) -> dict[str, Any]:
        book = listing.book
        bid_units, ask_units = listing.units(book.bid_sizes[0]), listing.units(book.ask_sizes[0])
        index = self.swaps_by_index[listing.index_id]
        entry: dict[str, Any] = {
            "id": listing.inst_id,
            "market": "futures" if listing.is_swap else "spot",
            "update_id": listing.seq,
            "timestamp": book.timestamp_ms,
            "bid": listing.price(book.best_bid),
            "ask": listing.price(book.best_ask),
            "bid_size": listing.coins(bid_units),
            "ask_size": listing.coins(ask_units),
            "contract_size": listing.contract_value,
            "last_price": listing.price(listing.mid_ticks()),
            "volume_24h": listing.coins(listing.volume_units),
            "mark_price": None,
            "index_price": None,
            "funding_rate": None,
            "next_funding_time": None,
            "funding_interval_hours": None,
        }
        if listing.is_swap:
            funding = self._printed_funding(listing)
            entry.update(
                bid_contracts=listing.size(bid_units),
                ask_contracts=listing.size(ask_units),
                mark_price=listing.price(listing.mid_ticks()),
                index_price=index.price(index.book.index_ticks),
                funding_rate=funding["fundingRate"],
                next_funding_time=int(funding["fundingTime"]),
                funding_interval_hours=(int(funding["nextFundingTime"]) - int(funding["fundingTime"])) // 3_600_000,
            )
        return entry


# --- wire helpers -------------------------------------------------------------------------------


def _ok(data: list[Any]) -> web.Response:
    return _json({"code": "0", "msg": "", "data": data})


def _error(code: str, message: str) -> web.Response:
    """OKX reports request errors with a non-zero code, HTTP 400 for bad parameters."""
    return _json({"code": code, "msg": message, "data": []}, status=400)


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _conn_id(session: Session) -> str:
    """Stable for the life of the connection, shaped like OKX's ("a4d3ae55")."""
    return f"{id(session) & 0xFFFFFFFF:08x}"


def _decimals(step: str) -> int:
    return max(0, -int(Decimal(step).normalize().as_tuple().exponent))


def _text(units: int, decimals: int) -> str:
    """units x 10^-decimals without trailing zeros, as OKX prints numbers: 970001 at 1 decimal is "97000.1"."""
    if decimals == 0:
        return str(units)
    whole, fraction = divmod(units, 10**decimals)
    digits = f"{fraction:0{decimals}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _decimal_text(value: Decimal, places: int | None = None) -> str:
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _rate_text(rate: float) -> str:
    return _decimal_text(Decimal(f"{rate:.6f}"))


def _levels(listing: Listing, levels: Iterable[tuple[int, int]]) -> list[list[str]]:
    """[price, size, "0" (deprecated liquidated orders), number of orders]; size "0" removes the level."""
    return [
        [listing.price(ticks), listing.size(units), "0", str(1 + units % 23) if units else "0"]
        for ticks, units in levels
    ]


def _changes(before: Side, after: Side) -> list[tuple[int, int]]:
    changes = [(ticks, units) for ticks, units in after.items() if before.get(ticks) != units]
    changes.extend((ticks, 0) for ticks in before if ticks not in after)
    return changes


def _checksum(listing: Listing, bids: Side, asks: Side) -> int:
    """OKX's book checksum: CRC32 of "bidPx:bidSz:askPx:askSz:..." over the best 25 levels of each side,
    interleaved (the longer side's remaining levels follow alone), as a signed 32-bit integer."""
    best_bids = list(itertools.islice(bids.items(), CHECKSUM_LEVELS))
    best_asks = list(itertools.islice(asks.items(), CHECKSUM_LEVELS))
    parts = []
    for level in range(max(len(best_bids), len(best_asks))):
        for side in (best_bids, best_asks):
            if level < len(side):
                ticks, units = side[level]
                parts.append(f"{listing.price(ticks)}:{listing.size(units)}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _ticker_record(listing: Listing) -> dict[str, str]:
    book = listing.book
    last = listing.mid_ticks()
    volume = listing.size(listing.volume_units)
    if listing.is_swap:
        volume_ccy = listing.coins(listing.volume_units)  # swaps: vol24h in contracts, volCcy24h in coins
    else:
        volume_ccy = _decimal_text(Decimal(listing.coins(listing.volume_units)) * Decimal(listing.price(last)), 8)
    opened = listing.price(listing.open_ticks)
    return {
        "instType": listing.inst_type,
        "instId": listing.inst_id,
        "last": listing.price(last),
        "lastSz": listing.size(listing.units(book.ask_sizes[0])),
        "askPx": listing.price(book.best_ask),
        "askSz": listing.size(listing.units(book.ask_sizes[0])),
        "bidPx": listing.price(book.best_bid),
        "bidSz": listing.size(listing.units(book.bid_sizes[0])),
        "open24h": opened,
        "high24h": listing.price(listing.high_ticks),
        "low24h": listing.price(listing.low_ticks),
        "volCcy24h": volume_ccy,
        "vol24h": volume,
        "sodUtc0": opened,
        "sodUtc8": opened,
    }


def _index_record(swap: Listing) -> dict[str, str]:
    opened = swap.price(swap.open_ticks)
    return {
        "instId": swap.index_id,
        "idxPx": swap.price(swap.book.index_ticks),
        "high24h": swap.price(swap.high_ticks),
        "low24h": swap.price(swap.low_ticks),
        "open24h": opened,
        "sodUtc0": opened,
        "sodUtc8": opened,
    }


def _instrument(listing: Listing, code: int) -> dict[str, Any]:
    """One instrument as /api/v5/public/instruments lists it (field set and order of the live venue, 2026)."""
    coin = listing.book.instrument.coin
    swap = listing.is_swap
    max_size = "100000000" if swap else "9999999999"
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": "" if swap else coin,
        "category": "1",
        "contTdSwTime": "1611916860000" if swap else "",
        "ctMult": "1" if swap else "",
        "ctType": "linear" if swap else "",
        "ctVal": listing.contract_value or "",
        "ctValCcy": coin if swap else "",
        "expTime": "",
        "floatPxLmtPct": "0.005",
        "freq": "",
        "futureSettlement": False,
        "groupId": "4" if swap else "12",
        "initPxLmtPct": "0.02" if swap else "",
        "instCategory": "1",
        "instFamily": listing.index_id if swap else "",
        "instId": listing.inst_id,
        "instIdCode": code,
        "instType": listing.inst_type,
        "lever": "50" if swap else "10",
        "listTime": LIST_TIME_MS,
        "longPosRemainingQuota": "",
        "lotSz": listing.lot_size,
        "maxIcebergSz": f"{max_size}.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": max_size,
        "maxMktAmt": "" if swap else "1000000",
        "maxMktSz": "35000" if swap else "1000000",
        "maxPlatOICoinLmt": "",
        "maxPlatOILmt": "",
        "maxPxLmtPct": "0.01",
        "maxStopSz": "35000" if swap else "1000000",
        "maxTriggerSz": f"{max_size}.0000000000000000",
        "maxTwapSz": f"{max_size}.0000000000000000",
        "method": "",
        "minSz": listing.lot_size,
        "openType": "call_auction" if swap else "fix_price",
        "optType": "",
        "posLmtAmt": "250000" if swap else "",
        "posLmtPct": "30" if swap else "",
        "preMktSwTime": "",
        "quoteCcy": "" if swap else "USDT",
        "rpiMinLevel": "3",
        "rpiMinPxBand": "20",
        "ruleType": "normal",
        "seriesId": "",
        "settleCcy": "USDT" if swap else "",
        "shortPosRemainingQuota": "",
        "state": "live",
        "stk": "",
        "tickSz": listing.tick_size,
        "tradeQuoteCcyList": [] if swap else ["USDT"],
        "uly": listing.index_id if swap else "",
        "upcChg": [],
    }


SIMULATOR = OkxSimulator
