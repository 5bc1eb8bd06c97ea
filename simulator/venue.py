"""What every simulated venue shares: books, WebSocket sessions, topic fan-out, the feed loop, faults.

A venue module (binance.py, bybit.py) subclasses `VenueSimulator` and supplies only its wire format:
REST routes, how a client subscribes, and how a book update is printed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiohttp import WSMsgType, web

from simulator.book import ReferenceMarket, SimulatedBook, now_ms
from simulator.instruments import Instrument

log = logging.getLogger("simulator")

FEED_INTERVAL_SECONDS = 0.005


@dataclass(frozen=True)
class Gap:
    """One pending `gap` fault: the next incremental book update of `market` (futures/spot) and `symbol` (ccxt's
    unified symbol) is withheld; None matches any."""

    market: str | None = None
    symbol: str | None = None


@dataclass
class Faults:
    """Switches a test or a user flips to make the venue misbehave like real venues do."""

    silent: bool = False
    """Sockets stay open and pings are answered, but no market data is sent (a silent stall)."""
    silent_streams: set[str] = field(default_factory=set)
    """Streams (`VenueSimulator.stream_names`) that send nothing while the venue's other streams run on."""
    frozen: bool = False
    """Prices stop moving; streams keep sending the last values (handy to compare exact numbers)."""
    malformed_pending: int = 0
    """The next N data frames are replaced by malformed ones."""
    crossed_pending: int = 0
    """The next N top-of-book updates show the bid above the ask."""
    refuse_until: float = 0.0
    """time.monotonic() until which new WebSocket handshakes are refused (an outage)."""
    gaps: list[Gap] = field(default_factory=list)
    """Each withholds one incremental book update (a diff), while the venue's sequence moves on as if it was sent."""

    def take_crossed(self) -> bool:
        if self.crossed_pending > 0:
            self.crossed_pending -= 1
            return True
        return False

    def take_gap(self, market: str, symbols: Iterable[str]) -> bool:
        for gap in self.gaps:
            if gap.market in (None, market) and (gap.symbol is None or gap.symbol in symbols):
                self.gaps.remove(gap)
                return True
        return False


class Session:
    """One client's WebSocket connection and the topics it subscribed to."""

    __slots__ = ("envelope", "peer", "stalled", "topics", "ws")

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws = ws
        self.topics: set[str] = set()
        self.peer = peer
        self.stalled = False
        """This connection stays open but gets no more data (a stall only a redial cures)."""
        self.envelope: Callable[[str, str], str] | None = None
        """How this connection wraps each market-data frame, (topic, frame) -> text, e.g. Binance's combined
        streams; None sends frames as they are. Control replies are never wrapped."""


class VenueSimulator(ABC):
    name: ClassVar[str]
    """Path prefix and config name, e.g. "binance"."""
    stream_names: ClassVar[frozenset[str]] = frozenset()
    """Streams a `silent` fault can silence one at a time (see `stream_of`); none unless a venue says so."""
    market: ClassVar[str] = "futures"
    """The market this simulator serves (venues serving both pass it per book to `withhold_diff`)."""
    supports_delisting: ClassVar[bool] = False
    """Whether `set_listed` works here: the venue module says how its REST lists a delisted instrument."""

    def __init__(
        self,
        instruments: tuple[Instrument, ...],
        reference: ReferenceMarket,
        rate: float,
        seed: int,
    ) -> None:
        self.rng = random.Random(f"{self.name}:{seed}")
        self.books: dict[str, SimulatedBook] = {
            instrument.venue_id: SimulatedBook(instrument, reference, self.rng) for instrument in instruments
        }
        self.rate = rate
        """Book updates per symbol per second."""
        self.faults = Faults()
        self.sessions: set[Session] = set()
        self.subscribers: dict[str, set[Session]] = {}
        self.frames_sent = 0
        self.updates = 0
        self.connections_accepted = 0
        self.delisted: set[str] = set()
        """Venue ids delisted at run time (`set_listed`): their books stop moving and their topics go quiet."""
        self._malformed_variants = itertools.cycle(range(3))

    # --- what a venue module supplies ----------------------------------------------------------

    @abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """REST and WebSocket routes, relative to the venue prefix (e.g. "/fapi/v1/exchangeInfo")."""

    @abstractmethod
    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """The `ccxt` constructor overrides a user writes to point ccxt at this venue."""

    @abstractmethod
    async def on_client_message(self, session: Session, message: Any) -> None:
        """A text frame from a client (subscribe, unsubscribe, application-level ping)."""

    @abstractmethod
    async def on_book_update(self, book: SimulatedBook) -> None:
        """Send the real-time frames that follow one book update."""

    async def on_tick(self, now: int) -> None:  # noqa: B027 - optional hook
        """Send the periodic frames (depth every 100 ms, mark price every second)."""

    async def on_connect(self, session: Session, request: web.Request) -> None:  # noqa: B027 - optional hook
        """A client connected; its first frame (e.g. a welcome) goes here, before anything it asks for."""

    def stream_of(self, topic: str) -> str | None:
        """The stream (one of `stream_names`) a topic's frames belong to, for a silent fault on one stream."""
        return None

    def topic_venue_id(self, topic: str) -> str | None:
        """The venue id a single-instrument topic carries (None for market-wide topics), so a delisted
        instrument's topics go quiet."""
        return None

    def listing_changed(self) -> None:  # noqa: B027 - optional hook
        """`delisted` changed: a venue module updates what its REST market list shows."""

    # --- listings -------------------------------------------------------------------------------

    def set_listed(self, venue_id: str, listed: bool) -> bool:
        """Delist an instrument (its market list stops showing it as trading, its streams stop) or list it again,
        as a venue does. Returns whether anything changed."""
        if not self.supports_delisting:
            raise ValueError(f"the {self.name} {self.market} simulator cannot delist or list instruments")
        if venue_id not in self.books:
            raise ValueError(f"{venue_id} is not an instrument of the {self.name} {self.market} simulator")
        if listed == (venue_id not in self.delisted):
            return False
        if listed:
            self.delisted.discard(venue_id)
        else:
            self.delisted.add(venue_id)
        self.listing_changed()
        log.info("%s %s: %s %s", self.name, self.market, "listed" if listed else "delisted", venue_id)
        return True

    # --- sessions and fan-out -------------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self.faults.refuse_until:
            raise web.HTTPServiceUnavailable(text=f"{self.name} simulator: outage in progress")
        # No permessage-deflate: the venues' market streams are plain text, and deflating every frame
        # would make the simulator, not the collector, the bottleneck of a benchmark.
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        session = Session(ws, request.remote or "?")
        self.sessions.add(session)
        self.connections_accepted += 1
        log.debug("%s: client %s connected to %s", self.name, session.peer, request.path)
        try:
            await self.on_connect(session, request)
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    message = orjson.loads(frame.data)
                except orjson.JSONDecodeError:
                    message = frame.data
                await self.on_client_message(session, message)
        finally:
            self._forget(session)
        return ws

    def subscribe(self, session: Session, topic: str) -> None:
        session.topics.add(topic)
        self.subscribers.setdefault(topic, set()).add(session)

    def unsubscribe(self, session: Session, topic: str) -> None:
        session.topics.discard(topic)
        subscribers = self.subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(session)

    def has_subscribers(self, topic: str) -> bool:
        return bool(self.subscribers.get(topic))

    def _forget(self, session: Session) -> None:
        self.sessions.discard(session)
        for topic in session.topics:
            subscribers = self.subscribers.get(topic)
            if subscribers is not None:
                subscribers.discard(session)

    async def send(self, session: Session, payload: Any) -> None:
        """Send a control reply (subscribe ack, pong); these bypass the data faults."""
        if session.ws.closed:
            return
        await session.ws.send_str(_encode(payload))

    async def publish(self, topic: str, payload: Any) -> None:
        """Send a market-data frame to every subscriber of `topic`, applying the data faults."""
        subscribers = self.subscribers.get(topic)
        if not subscribers or self.faults.silent:
            return
        if self.delisted and self.topic_venue_id(topic) in self.delisted:
            return
        if self.faults.silent_streams and self.stream_of(topic) in self.faults.silent_streams:
            return
        text = _encode(payload)
        if self.faults.malformed_pending > 0:
            self.faults.malformed_pending -= 1
            text = self._malformed(text)
        for session in tuple(subscribers):
            if session.stalled or session.ws.closed:
                continue
            try:
                await session.ws.send_str(text if session.envelope is None else session.envelope(topic, text))
            except ConnectionError:
                self._forget(session)
                continue
            self.frames_sent += 1

    async def send_data(self, session: Session, payload: Any) -> None:
        """A market-data frame for one session (a snapshot on subscribe): silent or stalled drops it,
        as publish() would."""
        if self.faults.silent or session.stalled:
            return
        await self.send(session, payload)
        self.frames_sent += 1

    async def publish_data(self, topic: str, payload: Any) -> bool:
        """publish(); True if the frame went out garbled, so the stream must resend what it carried."""
        garbles_left = self.faults.malformed_pending
        await self.publish(topic, payload)
        return self.faults.malformed_pending < garbles_left

    def withhold_diff(self, book: SimulatedBook, market: str | None = None) -> bool:
        """The `gap` fault: True (once per gap asked for) when this incremental update of `book` is to be left out.
        The caller then moves the stream's sequence on as if it had been sent, so its subscribers miss one."""
        faults = self.faults
        if not faults.gaps or faults.silent:
            return False
        market = market or self.market
        coin = book.instrument.coin
        symbols = (book.instrument.unified_symbol, f"{coin}/USDT:USDT") if market == "futures" else (f"{coin}/USDT",)
        if not faults.take_gap(market, symbols):
            return False
        log.info("%s: withheld one %s order book update of %s (gap fault)", self.name, market, symbols[-1])
        return True

    def _malformed(self, text: str) -> str:
        variant = next(self._malformed_variants)
        if variant == 0:
            return text[: max(1, len(text) // 2)]
        if variant == 1:
            return "<html><body><h1>502 Bad Gateway</h1></body></html>"
        return _break_numbers(text)

    def books_showing(self, symbol: str) -> list[SimulatedBook]:
        """The books behind ccxt's unified `symbol` here: a perpetual by its listing (1000PEPE/USDT:USDT)
        or its coin (PEPE/USDT:USDT), a spot pair (BTC/USDT) on venues hosting a spot market."""
        if ":" in symbol:
            return [
                book for book in self.books.values()
                if symbol in (book.instrument.unified_symbol, f"{book.instrument.coin}/USDT:USDT")
            ]
        spot = getattr(self, "spot", None)
        if not isinstance(spot, VenueSimulator):
            return []
        return [book for book in spot.books.values() if symbol == f"{book.instrument.coin}/USDT"]

    # --- faults ---------------------------------------------------------------------------------

    async def drop_connections(self, refuse_seconds: float = 0.0) -> int:
        """Cut every client socket without a closing handshake, as a network failure would."""
        if refuse_seconds > 0:
            self.faults.refuse_until = time.monotonic() + refuse_seconds
        dropped = 0
        for session in tuple(self.sessions):
            transport = session.ws._req.transport if session.ws._req is not None else None
            if transport is not None:
                transport.abort()
                dropped += 1
            self._forget(session)
        log.info("%s: dropped %d client connection(s)", self.name, dropped)
        return dropped

    def stall_connections(self) -> int:
        for session in self.sessions:
            session.stalled = True
        return len(self.sessions)

    # --- the feed -------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        books = list(self.books.values())
        self.rng.shuffle(books)
        cursor = 0
        budget = 0.0
        last = loop.time()
        while True:
            await asyncio.sleep(FEED_INTERVAL_SECONDS)
            now = loop.time()
            elapsed, last = now - last, now
            if not self.faults.frozen:
                budget = min(budget + self.rate * len(books) * elapsed, self.rate * len(books) + 1.0)
                due = int(budget)
                budget -= due
                for _ in range(due):
                    book = books[cursor]
                    cursor = (cursor + 1) % len(books)
                    if self.delisted and book.instrument.venue_id in self.delisted:
                        continue
                    book.step()
                    self.updates += 1
                    await self.on_book_update(book)
            await self.on_tick(now_ms())

    def state(self) -> dict[str, Any]:
        """What the venue currently shows, per symbol, as printed on the wire."""
        symbols = {}
        for venue_id, book in self.books.items():
            symbols[book.instrument.unified_symbol] = {
                "id": venue_id,
                "update_id": book.update_id,
                "timestamp": book.timestamp_ms,
                "bid": book.price(book.best_bid),
                "bid_size": book.size(book.bid_sizes[0]),
                "ask": book.price(book.best_ask),
                "ask_size": book.size(book.ask_sizes[0]),
                "mark_price": book.mark_price(),
                "index_price": book.index_price(),
                "funding_rate": f"{book.funding.rate:.6f}",
                "next_funding_time": book.funding.next_time_ms(now_ms()),
                "funding_interval_hours": book.funding.interval_hours,
            }
        return {
            "faults": {
                "silent": self.faults.silent,
                "silent_streams": sorted(self.faults.silent_streams),
                "frozen": self.faults.frozen,
                "refusing": time.monotonic() < self.faults.refuse_until,
            },
            "connections": len(self.sessions),
            "connections_accepted": self.connections_accepted,
            "frames_sent": self.frames_sent,
            "updates": self.updates,
            "symbols": symbols,
        }


def _encode(payload: Any) -> str:
    return payload if isinstance(payload, str) else orjson.dumps(payload).decode()


def _break_numbers(text: str) -> str:
    """Valid JSON with the right shape, but every numeric string replaced by garbage."""
    out = []
    in_string = False
    for char in text:
        if char == '"':
            in_string = not in_string
            out.append(char)
        elif in_string and char.isdigit():
            out.append("x")
        else:
            out.append(char)
    return "".join(out)
