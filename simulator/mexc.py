"""MEXC as ccxt.pro.mexc sees it: USDT-margined perpetuals (contract API) and spot (v3 API).

Futures (https://www.mexc.com/api-docs/futures/, REST under /api/v1/contract, WebSocket /edge):

* `GET /api/v1/contract/detail` lists contracts with `contractSize`, `priceUnit` and `volUnit`; JSON numbers.
* `sub.ticker` pushes `push.ticker` about once a second (last, fair = mark, index, funding rate, volume in
  contracts); `sub.funding.rate` pushes `push.funding.rate` (`rate`, `nextSettleTime`) once on subscribe and
  then only when either changes; `sub.depth` pushes merged deltas (`asks`, `bids`, `version`, `cts`: the
  fields MEXC documents) every 200 ms while the book moves, with levels `[price, contracts, orders]` and
  `[price, 0, 0]` for a removal; `version` goes up by one per push, as MEXC's rule (re-initialize otherwise)
  expects. There is no snapshot on subscribe: clients seed from `GET /api/v1/contract/depth/{symbol}` (`version`).
* Acks are `{"channel":"rs.sub.depth","data":"success"}`, unknown contracts get `rs.error`,
  `{"method":"ping"}` is answered with `{"channel":"pong","data":ms}`.

Spot (https://www.mexc.com/api-docs/spot-v3/, REST under /api/v3, WebSocket /ws):

* `{"method":"SUBSCRIPTION","params":[...]}`, acked with `{"id":0,"code":0,"msg":"<channels>"}`; at most 30
  subscriptions per connection; PING is answered with `{"msg":"PONG"}`.
* Market data comes as binary protobuf `PushDataV3ApiWrapper` frames, encoded with the message classes ccxt ships
  (ccxt.protobuf.mexc, which need the `protobuf` package; without it spot subscriptions are refused).
* `aggre.bookTicker`, `aggre.depth` (`fromVersion`/`toVersion`) and `aggre.deals` are pushed every 100 ms when
  something changed.

Coins that other venues list in bundles (1000PEPE, 1000SHIB) are listed per coin here (PEPE_USDT, PEPEUSDT), as
MEXC does, with prices and sizes per single coin.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any, ClassVar

import orjson
from aiohttp import web

from simulator.book import Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument
from simulator.venue import Session, VenueSimulator

try:  # the decoder ccxt uses for these frames; spot streams need it on both ends
    from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2 as wrapper_pb2
except ImportError:  # pragma: no cover - depends on the environment
    wrapper_pb2 = None
SPOT_STREAMS_AVAILABLE = wrapper_pb2 is not None
"""ccxt decodes the spot frames with the `protobuf` package; without it neither side can speak them."""

CONTRACT_SIZES: dict[str, str] = {
    "BTC": "0.0001", "ETH": "0.01", "SOL": "0.1", "XRP": "1", "DOGE": "100", "ADA": "1", "LINK": "0.1",
    "PEPE": "100000", "BNB": "0.01", "AVAX": "0.1", "DOT": "1", "LTC": "0.01", "BCH": "0.01", "TRX": "100",
    "NEAR": "1", "APT": "0.1", "ARB": "1", "OP": "1", "SUI": "1", "FIL": "0.1", "ATOM": "0.1", "SHIB": "1000",
    "WIF": "1", "UNI": "0.1", "TIA": "0.1",
}
"""Coins per contract, as MEXC's contract list states them (BTC_USDT 0.0001, ETH_USDT 0.01, ...)."""
DEFAULT_CONTRACT_SIZE = "1"

FUTURES_DEPTH_PUSH_MS = 200
"""Merged `push.depth` cadence on a busy contract."""
FUTURES_TICKER_PUSH_MS = 1_000
FUNDING_CHECK_MS = 100
SPOT_PUSH_MS = 100
SPOT_INTERVAL = "100ms"
SPOT_MAX_SUBSCRIPTIONS = 30
SPOT_BOOK_TICKER = "spot@public.aggre.bookTicker.v3.api.pb"
SPOT_DEPTH = "spot@public.aggre.depth.v3.api.pb"
SPOT_DEALS = "spot@public.aggre.deals.v3.api.pb"
SPOT_CHANNELS = (SPOT_BOOK_TICKER, SPOT_DEPTH, SPOT_DEALS)
MAX_PENDING_DEALS = 50
DAY_VOLUME_IN_LOTS = 30_000
"""The 24 h volume a ticker starts with, in typical level sizes (the simulator has no history)."""
FUTURES_METHODS = {"sub.ticker": "ticker", "sub.depth": "depth", "sub.funding.rate": "funding"}
"""Subscribe method -> internal topic kind; `unsub.` + the same name unsubscribes."""
FUTURES_ENDPOINT, SPOT_ENDPOINT = "futures", "spot"
NOT_PUSHED = (float("nan"), -1)

_endpoint: contextvars.ContextVar[str] = contextvars.ContextVar("mexc_endpoint", default=FUTURES_ENDPOINT)
"""Which socket (contract /edge or spot /ws) the current connection's task serves."""


@dataclass(frozen=True)
class Listing:
    """One coin as MEXC lists it: contract `BTC_USDT` and spot pair `BTCUSDT`, priced per single coin."""

    instrument: Instrument
    contract_size: str

    @property
    def coin(self) -> str:
        return self.instrument.coin

    @property
    def futures_id(self) -> str:
        return f"{self.coin}_USDT"

    @property
    def spot_id(self) -> str:
        return f"{self.coin}USDT"

    @property
    def futures_symbol(self) -> str:
        return f"{self.coin}/USDT:USDT"

    @property
    def spot_symbol(self) -> str:
        return f"{self.coin}/USDT"

    @cached_property
    def price_step(self) -> Decimal:
        """One book tick in USDT per coin (a 1000PEPE tick divided by 1000)."""
        return Decimal(self.instrument.tick_size) / self.instrument.multiplier

    @cached_property
    def coin_step(self) -> Decimal:
        """One book qty step in coins."""
        return Decimal(self.instrument.qty_step) * self.instrument.multiplier

    @cached_property
    def contract_size_number(self) -> Decimal:
        return Decimal(self.contract_size)

    def price(self, ticks: int) -> str:
        return _multiple(self.price_step, ticks)

    def coins(self, steps: int) -> str:
        return _multiple(self.coin_step, steps)

    def contracts(self, steps: int) -> int:
        """Whole contracts for a size in qty steps; at least one, as MEXC never prints a fraction."""
        return _contracts(self.coin_step, self.contract_size_number, steps)

    def coins_of_contracts(self, contracts: int) -> float:
        """What a consumer should see for printed contracts: contracts x contract size, exactly."""
        return float(contracts * self.contract_size_number)


@dataclass
class TradeTape:
    """A simple 24 h model: one trade at the touch per book update, kept in integers."""

    open_ticks: int
    high_ticks: int
    low_ticks: int
    last_ticks: int
    volume: int = 0
    """Futures: contracts; spot: qty steps."""
    turnover: int = 0
    """Sum of price ticks x amount."""

    def record(self, ticks: int, amount: int) -> None:
        self.last_ticks = ticks
        self.high_ticks = max(self.high_ticks, ticks)
        self.low_ticks = min(self.low_ticks, ticks)
        self.volume += amount
        self.turnover += ticks * amount


@dataclass
class FuturesDepthStream:
    """What the subscribers of one contract's `sub.depth` hold: levels in contracts per price tick."""

    listing: Listing
    book: SimulatedBook
    bids: Levels
    asks: Levels
    version: int
    """`version` of the last frame sent; the next frame's is one more."""
    pushed_update: int
    due_at: int
    force: bool = False
    """Push even if the book did not move (to remove an injected crossed level)."""


@dataclass
class SpotBookTickerStream:
    top: tuple[str, str, str, str] | None = None
    force: bool = True
    """Send the current top at the next push (a new subscriber, or undoing a crossed frame)."""


@dataclass
class SpotDepthStream:
    listing: Listing
    book: SimulatedBook
    bids: Levels
    asks: Levels
    to_version: int


@dataclass
class SpotDealsStream:
    pending: list[tuple[int, int, int, int]] = field(default_factory=list)
    """(price ticks, qty steps, trade type, time ms) not yet pushed."""


class MexcSimulator(VenueSimulator):
    name: ClassVar[str] = "mexc"

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        self.listings: dict[str, Listing] = {
            instrument.venue_id: Listing(instrument, CONTRACT_SIZES.get(instrument.coin, DEFAULT_CONTRACT_SIZE))
            for instrument in instruments
        }
        """By the shared book key (BTCUSDT, 1000PEPEUSDT)."""
        self.futures: dict[str, tuple[Listing, SimulatedBook]] = {
            listing.futures_id: (listing, self.books[key]) for key, listing in self.listings.items()
        }
        self.spot: dict[str, tuple[Listing, SimulatedBook]] = {
            listing.spot_id: (listing, SimulatedBook(listing.instrument, reference, self.rng))
            for listing in self.listings.values()
        }
        self.spot_by_key = {key: self.spot[listing.spot_id][1] for key, listing in self.listings.items()}
        self.depth_versions = {futures_id: book.update_id for futures_id, (_, book) in self.futures.items()}
        """Each contract's depth `version`: the last push's (one up per push), what a REST snapshot carries."""
        self.futures_tapes = {
            futures_id: _tape(book, listing.contracts(book.instrument.lot_size * DAY_VOLUME_IN_LOTS))
            for futures_id, (listing, book) in self.futures.items()
        }
        self.spot_tapes = {
            spot_id: _tape(book, book.instrument.lot_size * DAY_VOLUME_IN_LOTS)
            for spot_id, (_, book) in self.spot.items()
        }
        self.depth_streams: dict[str, FuturesDepthStream] = {}
        self.ticker_due: dict[str, int] = {}
        self.funding_pushed: dict[str, tuple[float, int]] = {}
        self.next_funding_check = 0
        self.spot_tickers: dict[str, SpotBookTickerStream] = {}
        self.spot_depths: dict[str, SpotDepthStream] = {}
        self.spot_deals: dict[str, SpotDealsStream] = {}
        self.next_spot_push = 0
        self._binary_garbage = itertools.cycle(range(3))

    def books_showing(self, symbol: str) -> list[SimulatedBook]:
        """MEXC lists every coin per single coin: BTC/USDT:USDT and PEPE/USDT:USDT, BTC/USDT and PEPE/USDT."""
        coin, _, rest = symbol.partition("/")
        books = self.futures.values() if rest == "USDT:USDT" else self.spot.values() if rest == "USDT" else []
        return [book for listing, book in books if listing.coin == coin]

    # --- configuration --------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/contract/ping", self._contract_ping),
            web.get("/api/v1/contract/detail", self._contract_detail),
            web.get("/api/v1/contract/depth/{symbol}", self._contract_depth),
            web.get("/api/v1/contract/funding_rate/{symbol}", self._contract_funding_rate),
            web.get("/api/v3/ping", self._spot_ping),
            web.get("/api/v3/time", self._spot_time),
            web.get("/api/v3/exchangeInfo", self._spot_exchange_info),
            web.get("/api/v3/depth", self._spot_depth),
            web.get("/api/v3/ticker/24hr", self._spot_ticker_24hr),
            web.get("/edge", self._ws_handler(FUTURES_ENDPOINT)),
            web.get("/ws", self._ws_handler(SPOT_ENDPOINT)),
        ]

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt builds spot URLs as urls.api.spot.<access> + /api/v3/<path> and contract URLs as
        urls.api.contract.<access> + /<path>; streams go to urls.api.ws.spot and urls.api.ws.swap."""
        return {
            "urls": {
                "api": {
                    "spot": {"public": http_base, "private": http_base},
                    "spot2": {"public": f"{http_base}/open/api/v2", "private": f"{http_base}/open/api/v2"},
                    "contract": {"public": f"{http_base}/api/v1/contract", "private": f"{http_base}/api/v1/private"},
                    "broker": {"private": f"{http_base}/api/v3/broker"},
                    "ws": {"spot": f"{ws_base}/ws", "swap": f"{ws_base}/edge"},
                }
            }
        }

    def _ws_handler(self, endpoint: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            _endpoint.set(endpoint)
            return await self.handle_ws(request)

        return handle

    # --- what the venue shows -------------------------------------------------------------------

    def futures_version(self, futures_id: str) -> int:
        return self.depth_versions[futures_id]

    def state(self) -> dict[str, Any]:
        """Futures sizes in coins (printed contracts x contract size) besides the contracts printed."""
        state = super().state()
        now = now_ms()
        futures = {}
        for futures_id, (listing, book) in self.futures.items():
            tape = self.futures_tapes[futures_id]
            bid_contracts, ask_contracts = listing.contracts(book.bid_sizes[0]), listing.contracts(book.ask_sizes[0])
            futures[listing.futures_symbol] = {
                "id": futures_id,
                "update_id": self.futures_version(futures_id),
                "timestamp": book.timestamp_ms,
                "bid": listing.price(book.best_bid),
                "ask": listing.price(book.best_ask),
                "bid_contracts": bid_contracts,
                "ask_contracts": ask_contracts,
                "bid_size": listing.coins_of_contracts(bid_contracts),
                "ask_size": listing.coins_of_contracts(ask_contracts),
                "contract_size": float(listing.contract_size),
                "mark_price": listing.price((book.best_bid + book.best_ask) // 2),
                "index_price": listing.price(book.index_ticks),
                "last_price": listing.price(tape.last_ticks),
                "volume_24h": listing.coins_of_contracts(tape.volume),
                "funding_rate": f"{book.funding.rate:.6f}",
                "next_funding_time": book.funding.next_time_ms(now),
                "funding_interval_hours": book.funding.interval_hours,
            }
        state["symbols"] = futures
        spot = {}
        for spot_id, (listing, book) in self.spot.items():
            spot[listing.spot_symbol] = {
                "id": spot_id,
                "update_id": book.update_id,
                "timestamp": book.timestamp_ms,
                "bid": listing.price(book.best_bid),
                "bid_size": listing.coins(book.bid_sizes[0]),
                "ask": listing.price(book.best_ask),
                "ask_size": listing.coins(book.ask_sizes[0]),
                "last_price": listing.price(self.spot_tapes[spot_id].last_ticks),
                "volume_24h": listing.coins(self.spot_tapes[spot_id].volume),
            }
        state["spot_symbols"] = spot
        return state

    # --- contract REST --------------------------------------------------------------------------

    async def _contract_ping(self, request: web.Request) -> web.Response:
        return _json({"success": True, "code": 0, "data": now_ms()})

    async def _contract_detail(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")
        if wanted is not None:
            if wanted not in self.futures:
                return _contract_error(1001, "contract not exists")
            return _json({"success": True, "code": 0, "data": _contract(*self.futures[wanted])})
        contracts = [_contract(listing, book) for listing, book in self.futures.values()]
        return _json({"success": True, "code": 0, "data": contracts})

    async def _contract_depth(self, request: web.Request) -> web.Response:
        """While a depth stream runs, the book as of its last frame (MEXC's REST book lags the socket too): a merged
        frame holds the levels that differ from the previous frame, so a live book could keep a level that changed
        and changed back in between, which no frame would ever correct."""
        futures_id = request.match_info["symbol"]
        if futures_id not in self.futures:
            return _contract_error(1001, "contract not exists")
        listing, book = self.futures[futures_id]
        limit = _int(request.query.get("limit"), 1_000)
        stream = self.depth_streams.get(futures_id)
        if stream is not None:
            bids, asks, version = stream.bids, stream.asks, stream.version
        else:
            bids, asks = _contract_view(listing, book.bids()), _contract_view(listing, book.asks())
            version = self.futures_version(futures_id)
        data = {
            "asks": [_depth_entry(listing, ticks, asks[ticks]) for ticks in sorted(asks)[:limit]],
            "bids": [_depth_entry(listing, ticks, bids[ticks]) for ticks in sorted(bids, reverse=True)[:limit]],
            "version": version,
            "timestamp": now_ms(),
        }
        return _json({"success": True, "code": 0, "data": data})

    async def _contract_funding_rate(self, request: web.Request) -> web.Response:
        futures_id = request.match_info["symbol"]
        if futures_id not in self.futures:
            return _contract_error(1001, "contract not exists")
        listing, book = self.futures[futures_id]
        now = now_ms()
        return _json(
            {
                "success": True,
                "code": 0,
                "data": {
                    "symbol": futures_id,
                    "fundingRate": _rate(book.funding.rate),
                    "maxFundingRate": 0.003,
                    "minFundingRate": -0.003,
                    "collectCycle": book.funding.interval_hours,
                    "nextSettleTime": book.funding.next_time_ms(now),
                    "timestamp": now,
                    "idxPrice": float(listing.price(book.index_ticks)),
                    "fairPrice": float(listing.price((book.best_bid + book.best_ask) // 2)),
                },
            }
        )

    # --- spot REST ------------------------------------------------------------------------------

    async def _spot_ping(self, request: web.Request) -> web.Response:
        return _json({})

    async def _spot_time(self, request: web.Request) -> web.Response:
        return _json({"serverTime": now_ms()})

    async def _spot_exchange_info(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")
        if wanted is not None and wanted not in self.spot:
            return _spot_error(-1121, "Invalid symbol.")
        pairs = list(self.spot.values()) if wanted is None else [self.spot[wanted]]
        return _json(
            {
                "timezone": "CST",
                "serverTime": now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [_spot_pair(listing) for listing, _ in pairs],
            }
        )

    async def _spot_ticker_24hr(self, request: web.Request) -> web.Response:
        """One object for `symbol=`, else a list of every pair."""
        wanted = request.query.get("symbol")
        if wanted is not None and wanted not in self.spot:
            return _spot_error(-1121, "Invalid symbol.")
        now = now_ms()
        if wanted is not None:
            return _json(self._spot_day_ticker(wanted, now))
        return _json([self._spot_day_ticker(spot_id, now) for spot_id in self.spot])

    def _spot_day_ticker(self, spot_id: str, now: int) -> dict[str, Any]:
        listing, book = self.spot[spot_id]
        tape = self.spot_tapes[spot_id]
        change = tape.last_ticks - tape.open_ticks
        quote_volume = tape.turnover * listing.price_step * listing.coin_step
        return {
            "symbol": spot_id,
            "priceChange": listing.price(change),
            "priceChangePercent": f"{change / tape.open_ticks:.4f}",
            "prevClosePrice": listing.price(tape.open_ticks),
            "lastPrice": listing.price(tape.last_ticks),
            "bidPrice": listing.price(book.best_bid),
            "bidQty": listing.coins(book.bid_sizes[0]),
            "askPrice": listing.price(book.best_ask),
            "askQty": listing.coins(book.ask_sizes[0]),
            "openPrice": listing.price(tape.open_ticks),
            "highPrice": listing.price(tape.high_ticks),
            "lowPrice": listing.price(tape.low_ticks),
            "volume": listing.coins(tape.volume),
            "quoteVolume": format(quote_volume.quantize(Decimal("0.01")), "f"),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "count": None,
        }

    async def _spot_depth(self, request: web.Request) -> web.Response:
        """While a depth stream runs, the book as of its last frame (`lastUpdateId` = its `toVersion`), as for
        contracts; the next frame then starts right after the snapshot, which matters because ccxt drops a frame
        whose `fromVersion` is below the snapshot's version even when its `toVersion` is above it."""
        spot_id = request.query.get("symbol", "")
        if spot_id not in self.spot:
            return _spot_error(-1121, "Invalid symbol.")
        listing, book = self.spot[spot_id]
        limit = min(max(_int(request.query.get("limit"), 100), 1), 5_000)
        stream = self.spot_depths.get(_spot_topic(SPOT_DEPTH, spot_id))
        if stream is not None:
            bids, asks, last_update_id = stream.bids, stream.asks, stream.to_version
        else:
            bids, asks, last_update_id = book.bids(), book.asks(), book.update_id
        return _json(
            {
                "lastUpdateId": last_update_id,
                "bids": [[listing.price(t), listing.coins(bids[t])] for t in sorted(bids, reverse=True)[:limit]],
                "asks": [[listing.price(t), listing.coins(asks[t])] for t in sorted(asks)[:limit]],
                "timestamp": now_ms(),
            }
        )

    # --- WebSocket control ----------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            return  # MEXC ignores text it cannot read, and the socket stays open
        if _endpoint.get() == SPOT_ENDPOINT:
            await self._spot_request(session, message)
        else:
            await self._futures_request(session, message)

    async def _futures_request(self, session: Session, message: dict[str, Any]) -> None:
        method = str(message.get("method", ""))
        now = now_ms()
        if method == "ping":
            await self.send(session, {"channel": "pong", "data": now, "ts": now})
            return
        subscribing = method in FUTURES_METHODS
        kind = FUTURES_METHODS.get(method if subscribing else method.removeprefix("un"))
        if kind is None or not (subscribing or method.startswith("unsub.")):
            return  # unknown methods get no reply
        param = message.get("param")
        futures_id = param.get("symbol") if isinstance(param, dict) else None
        if futures_id not in self.futures:
            await self.send(session, {"channel": "rs.error", "data": f"Contract [{futures_id}] not exists", "ts": now})
            return
        topic = f"{kind}@{futures_id}"
        if not subscribing:
            self.unsubscribe(session, topic)
            await self.send(session, {"channel": f"rs.{method}", "data": "success", "ts": now})
            return
        if kind == "depth" and not self.has_subscribers(topic):
            self._open_depth_stream(futures_id, now)
        self.subscribe(session, topic)
        await self.send(session, {"channel": f"rs.{method}", "data": "success", "ts": now})
        if kind == "ticker":
            self.ticker_due.setdefault(futures_id, now + _phase(topic, FUTURES_TICKER_PUSH_MS))
            await self.send_data(session, self._ticker_frame(futures_id, now))
        elif kind == "funding":
            await self.send_data(session, self._funding_frame(futures_id, now))

    async def _spot_request(self, session: Session, message: dict[str, Any]) -> None:
        method = str(message.get("method", "")).upper()
        request_id = message.get("id", 0)
        if method == "PING":
            await self.send(session, {"id": request_id, "code": 0, "msg": "PONG"})
            return
        params = message.get("params")
        if method not in ("SUBSCRIPTION", "UNSUBSCRIPTION") or not isinstance(params, list):
            await self.send(session, {"id": request_id, "code": 0, "msg": "Wrong Parameter"})
            return
        topics = [str(param) for param in params]
        if method == "UNSUBSCRIPTION":
            for topic in topics:
                self.unsubscribe(session, topic)
            await self.send(session, {"id": request_id, "code": 0, "msg": ",".join(topics)})
            return
        accepted, refused = [], []
        for topic in topics:
            fits = topic in session.topics or len(session.topics) < SPOT_MAX_SUBSCRIPTIONS
            if fits and self._spot_topic_known(topic):
                self._open_spot_stream(topic)
                self.subscribe(session, topic)
                accepted.append(topic)
            else:
                refused.append(topic)
        if accepted:
            await self.send(session, {"id": request_id, "code": 0, "msg": ",".join(accepted)})
        if refused:
            reason = f"Not Subscribed successfully! [{','.join(refused)}].  Reason： Blocked! "
            await self.send(session, {"id": request_id, "code": 0, "msg": reason})

    def _spot_topic_known(self, topic: str) -> bool:
        channel, _, rest = topic.partition("@" + SPOT_INTERVAL + "@")
        return SPOT_STREAMS_AVAILABLE and channel in SPOT_CHANNELS and rest in self.spot

    async def publish_binary(self, topic: str, payload: bytes) -> bool:
        """publish() for protobuf frames; True if the frame went out garbled."""
        subscribers = self.subscribers.get(topic)
        if not subscribers or self.faults.silent:
            return False
        garbled = self.faults.malformed_pending > 0
        frame: bytes | str = payload
        if garbled:
            self.faults.malformed_pending -= 1
            frame = self._garbage(payload)
        for session in tuple(subscribers):
            if session.stalled or session.ws.closed:
                continue
            try:
                if isinstance(frame, bytes):
                    await session.ws.send_bytes(frame)
                else:
                    await session.ws.send_str(frame)
            except ConnectionError:
                self._forget(session)
                continue
            self.frames_sent += 1
        return garbled

    def _garbage(self, payload: bytes) -> bytes | str:
        variant = next(self._binary_garbage)
        if variant == 0:
            return payload[: max(1, len(payload) // 2)]  # cut inside a field: the decoder raises
        if variant == 1:
            return "<html><body><h1>502 Bad Gateway</h1></body></html>"
        return b"\xff\xff\xff\xff" + payload  # an invalid field tag

    # --- the feed -------------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        """Each futures step also steps the coin's spot book, while any spot stream of that pair runs."""
        key = book.instrument.venue_id
        listing = self.listings[key]
        ticks, steps = _touch_trade(book)
        self.futures_tapes[listing.futures_id].record(ticks, listing.contracts(steps))
        spot_id = listing.spot_id
        if not any(self.has_subscribers(_spot_topic(channel, spot_id)) for channel in SPOT_CHANNELS):
            return
        spot_book = self.spot_by_key[key]
        spot_book.step()
        ticks, steps = _touch_trade(spot_book)
        self.spot_tapes[spot_id].record(ticks, steps)
        deals = self.spot_deals.get(_spot_topic(SPOT_DEALS, spot_id))
        if deals is not None and len(deals.pending) < MAX_PENDING_DEALS:
            trade_type = 2 if spot_book.update_id & 1 else 1  # 1 buy (hits the ask), 2 sell (hits the bid)
            deals.pending.append((ticks, steps, trade_type, spot_book.timestamp_ms))

    async def on_tick(self, now: int) -> None:
        if self.faults.silent:
            return  # nothing is sent and no stream advances, so the frames after resume cover the pause
        for futures_id, stream in tuple(self.depth_streams.items()):
            if now >= stream.due_at:
                stream.due_at = max(stream.due_at + FUTURES_DEPTH_PUSH_MS, now)
                if self.has_subscribers(f"depth@{futures_id}"):
                    await self._push_depth(futures_id, stream, now)
                else:
                    del self.depth_streams[futures_id]
        for futures_id, due in tuple(self.ticker_due.items()):
            if now >= due:
                if self.has_subscribers(topic := f"ticker@{futures_id}"):
                    self.ticker_due[futures_id] = max(due + FUTURES_TICKER_PUSH_MS, now)
                    await self.publish(topic, self._ticker_frame(futures_id, now))
                else:
                    del self.ticker_due[futures_id]
        if now >= self.next_funding_check:
            self.next_funding_check = now + FUNDING_CHECK_MS
            await self._push_funding_changes(now)
        if now >= self.next_spot_push:
            self.next_spot_push = now - now % SPOT_PUSH_MS + SPOT_PUSH_MS
            await self._push_spot(now)

    # --- futures frames -------------------------------------------------------------------------

    def _open_depth_stream(self, futures_id: str, now: int) -> None:
        listing, book = self.futures[futures_id]
        bids, asks = _contract_view(listing, book.bids()), _contract_view(listing, book.asks())
        due = now + _phase(futures_id, FUTURES_DEPTH_PUSH_MS)
        version = self.futures_version(futures_id)
        self.depth_streams[futures_id] = FuturesDepthStream(listing, book, bids, asks, version, book.update_id, due)

    async def _push_depth(self, futures_id: str, stream: FuturesDepthStream, now: int) -> None:
        listing, book = stream.listing, stream.book
        if book.update_id == stream.pushed_update and not stream.force and not self.faults.crossed_pending:
            return
        bids, asks = _contract_view(listing, book.bids()), _contract_view(listing, book.asks())
        crossed = self.faults.take_crossed()
        if crossed:  # one frame adds a bid above the best ask; the next frame removes it
            bids[book.best_ask + 1] = listing.contracts(book.bid_sizes[0])
        bid_changes, ask_changes = diff_levels(stream.bids, bids), diff_levels(stream.asks, asks)
        if not bid_changes and not ask_changes:
            stream.pushed_update, stream.force = book.update_id, False
            return
        version = stream.version + 1
        data = {
            "cts": book.timestamp_ms,
            "asks": [_depth_entry(listing, ticks, contracts) for ticks, contracts in ask_changes],
            "bids": [_depth_entry(listing, ticks, contracts) for ticks, contracts in bid_changes],
            "version": version,
        }
        frame = {"symbol": futures_id, "data": data, "channel": "push.depth", "ts": now}
        if not self.withhold_diff(book) and await self.publish_data(f"depth@{futures_id}", frame):
            stream.force = True  # nobody could read it: the next frame carries these changes again
            return
        stream.bids, stream.asks, stream.version = bids, asks, version
        self.depth_versions[futures_id] = version
        stream.pushed_update, stream.force = book.update_id, crossed

    def _ticker_frame(self, futures_id: str, now: int) -> dict[str, Any]:
        listing, book = self.futures[futures_id]
        tape = self.futures_tapes[futures_id]
        price = listing.price
        change = tape.last_ticks - tape.open_ticks
        rise_fall = round(change / tape.open_ticks, 4)
        index = book.index_ticks
        data = {
            "symbol": futures_id,
            "lastPrice": float(price(tape.last_ticks)),
            "riseFallRate": rise_fall,
            "fairPrice": float(price((book.best_bid + book.best_ask) // 2)),
            "indexPrice": float(price(index)),
            "volume24": tape.volume,
            "amount24": float(round(tape.turnover * listing.price_step * listing.contract_size_number, 4)),
            "maxBidPrice": float(price(round(index * 1.1))),
            "minAskPrice": float(price(round(index * 0.9))),
            "lower24Price": float(price(tape.low_ticks)),
            "high24Price": float(price(tape.high_ticks)),
            "timestamp": now,
            "bid1": float(price(book.best_bid)),
            "ask1": float(price(book.best_ask)),
            "holdVol": tape.volume // 3,
            "riseFallValue": float(price(change)),
            "fundingRate": _rate(book.funding.rate),
            "zone": "UTC+8",
            "riseFallRates": [rise_fall, 0.0, 0.0, 0.0, 0.0, 0.0],
            "riseFallRatesOfTimezone": [rise_fall, rise_fall, rise_fall],
        }
        return {"symbol": futures_id, "data": data, "channel": "push.ticker", "ts": now}

    def _funding_frame(self, futures_id: str, now: int) -> dict[str, Any]:
        book = self.futures[futures_id][1]
        rate, next_time = _rate(book.funding.rate), book.funding.next_time_ms(now)
        self.funding_pushed[futures_id] = (rate, next_time)
        data = {"symbol": futures_id, "rate": rate, "nextSettleTime": next_time}
        return {"symbol": futures_id, "data": data, "channel": "push.funding.rate", "ts": now}

    async def _push_funding_changes(self, now: int) -> None:
        for futures_id, pushed in tuple(self.funding_pushed.items()):
            topic = f"funding@{futures_id}"
            if not self.has_subscribers(topic):
                del self.funding_pushed[futures_id]
                continue
            funding = self.futures[futures_id][1].funding
            if pushed == (_rate(funding.rate), funding.next_time_ms(now)):
                continue
            if await self.publish_data(topic, self._funding_frame(futures_id, now)):
                self.funding_pushed[futures_id] = NOT_PUSHED  # MEXC pushes on change only: send it again

    # --- spot frames ----------------------------------------------------------------------------

    def _open_spot_stream(self, topic: str) -> None:
        channel, _, spot_id = topic.partition("@" + SPOT_INTERVAL + "@")
        listing, book = self.spot[spot_id]
        if channel == SPOT_BOOK_TICKER:
            stream = self.spot_tickers.setdefault(topic, SpotBookTickerStream())
            stream.force = True  # a new subscriber gets the current top at the next push
        elif channel == SPOT_DEPTH and topic not in self.spot_depths:
            self.spot_depths[topic] = SpotDepthStream(listing, book, book.bids(), book.asks(), book.update_id)
        elif channel == SPOT_DEALS:
            self.spot_deals.setdefault(topic, SpotDealsStream())

    async def _push_spot(self, now: int) -> None:
        for topic, ticker in tuple(self.spot_tickers.items()):
            if self.has_subscribers(topic):
                await self._push_spot_book_ticker(topic, ticker, now)
            else:
                del self.spot_tickers[topic]
        for topic, depth in tuple(self.spot_depths.items()):
            if self.has_subscribers(topic):
                await self._push_spot_depth(topic, depth, now)
            else:
                del self.spot_depths[topic]
        for topic, deals in tuple(self.spot_deals.items()):
            if self.has_subscribers(topic):
                await self._push_spot_deals(topic, deals, now)
            else:
                del self.spot_deals[topic]

    async def _push_spot_book_ticker(self, topic: str, stream: SpotBookTickerStream, now: int) -> None:
        spot_id = topic.rpartition("@")[2]
        listing, book = self.spot[spot_id]
        top = (
            listing.price(book.best_bid), listing.coins(book.bid_sizes[0]),
            listing.price(book.best_ask), listing.coins(book.ask_sizes[0]),
        )
        if top == stream.top and not stream.force:
            return
        sent = top
        crossed = self.faults.take_crossed()
        if crossed:  # one frame shows the bid above the ask; the next push shows the true top again
            sent = (listing.price(book.best_ask + 1), *top[1:])
        message = _wrapper(topic, spot_id, now)
        ticker = message.publicAggreBookTicker
        ticker.bidPrice, ticker.bidQuantity, ticker.askPrice, ticker.askQuantity = sent
        garbled = await self.publish_binary(topic, message.SerializeToString())
        stream.top, stream.force = top, crossed or garbled

    async def _push_spot_depth(self, topic: str, stream: SpotDepthStream, now: int) -> None:
        listing, book = stream.listing, stream.book
        if book.update_id == stream.to_version:
            return
        bids, asks = book.bids(), book.asks()
        message = _wrapper(topic, listing.spot_id, now)
        depths = message.publicAggreDepths
        _add_spot_levels(depths.bids, listing, diff_levels(stream.bids, bids))
        _add_spot_levels(depths.asks, listing, diff_levels(stream.asks, asks))
        depths.eventType = topic.rpartition("@")[0]
        depths.fromVersion, depths.toVersion = str(stream.to_version + 1), str(book.update_id)
        if self.withhold_diff(book, "spot") or not await self.publish_binary(topic, message.SerializeToString()):
            stream.bids, stream.asks, stream.to_version = bids, asks, book.update_id

    async def _push_spot_deals(self, topic: str, stream: SpotDealsStream, now: int) -> None:
        if not stream.pending:
            return
        spot_id = topic.rpartition("@")[2]
        listing = self.spot[spot_id][0]
        message = _wrapper(topic, spot_id, now)
        deals = message.publicAggreDeals
        for ticks, steps, trade_type, time_ms in stream.pending:
            deal = deals.deals.add()
            deal.price, deal.quantity, deal.tradeType, deal.time = listing.price(ticks), listing.coins(steps), \
                trade_type, time_ms
        deals.eventType = topic.rpartition("@")[0]
        stream.pending.clear()
        await self.publish_binary(topic, message.SerializeToString())


# --- wire helpers -------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _contract_error(code: int, message: str) -> web.Response:
    """The contract API answers errors with HTTP 200 and success false."""
    return _json({"success": False, "code": code, "message": message})


def _spot_error(code: int, message: str) -> web.Response:
    return _json({"code": code, "msg": message}, status=400)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _rate(rate: float) -> float:
    """A funding rate as MEXC prints it: a JSON number with at most 6 decimals."""
    return float(f"{rate:.6f}")


def _phase(key: str, period_ms: int) -> int:
    """Streams of different symbols are not pushed in lockstep."""
    return zlib.crc32(key.encode()) % period_ms


@functools.lru_cache(maxsize=1 << 16)
def _multiple(step: Decimal, count: int) -> str:
    """`count` steps printed with the step's decimals; cached, since books print the same levels over and over."""
    return format((count * step).quantize(step), "f")


@functools.lru_cache(maxsize=1 << 14)
def _contracts(coin_step: Decimal, contract_size: Decimal, steps: int) -> int:
    exact = steps * coin_step / contract_size
    return max(1, int(exact.to_integral_value(ROUND_HALF_UP)))


def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


def _decimals(step: Decimal) -> int:
    return max(0, -int(step.normalize().as_tuple().exponent))


def _contract_view(listing: Listing, levels: Levels) -> Levels:
    """Book levels with sizes in whole contracts."""
    return {ticks: listing.contracts(steps) for ticks, steps in levels.items()}


def _orders(ticks: int, contracts: int) -> int:
    """A plausible order count for a level (MEXC prints one per level)."""
    return max(1, min(contracts, 1 + (ticks + contracts) % 7))


def _depth_entry(listing: Listing, ticks: int, contracts: int) -> list[int | float]:
    price = float(listing.price(ticks))
    return [price, contracts, _orders(ticks, contracts)] if contracts else [price, 0, 0]


def _touch_trade(book: SimulatedBook) -> tuple[int, int]:
    """A trade at the bid or the ask, alternating with the update id: (price ticks, qty steps)."""
    if book.update_id & 1:
        return book.best_bid, book.bid_sizes[0] // 8 + 1
    return book.best_ask, book.ask_sizes[0] // 8 + 1


def _tape(book: SimulatedBook, start_volume: int) -> TradeTape:
    mid = (book.best_bid + book.best_ask) // 2
    tape = TradeTape(open_ticks=round(mid * 0.99), high_ticks=max(mid, round(mid * 1.01)), low_ticks=round(mid * 0.98),
                     last_ticks=mid)
    tape.volume = start_volume
    return tape


def _spot_topic(channel: str, spot_id: str) -> str:
    return f"{channel}@{SPOT_INTERVAL}@{spot_id}"


def _wrapper(topic: str, spot_id: str, now: int) -> Any:
    message = wrapper_pb2.PushDataV3ApiWrapper()
    message.channel, message.symbol, message.sendTime = topic, spot_id, now
    return message


def _add_spot_levels(target: Any, listing: Listing, changes: Iterable[tuple[int, int]]) -> None:
    for ticks, steps in changes:
        level = target.add()
        level.price, level.quantity = listing.price(ticks), listing.coins(steps) if steps else "0"


def _contract(listing: Listing, book: SimulatedBook) -> dict[str, Any]:
    """One USDT perpetual as /api/v1/contract/detail lists it."""
    instrument = listing.instrument
    coin = listing.coin
    price_unit = listing.price_step.normalize()
    max_leverage = 500 if coin in ("BTC", "ETH") else 200
    return {
        "symbol": listing.futures_id,
        "displayName": f"{listing.futures_id}永续",
        "displayNameEn": f"{listing.futures_id} PERPETUAL",
        "positionOpenType": 3,
        "baseCoin": coin,
        "quoteCoin": "USDT",
        "baseCoinName": coin,
        "quoteCoinName": "USDT",
        "futureType": 1,
        "settleCoin": "USDT",
        "contractSize": _number(listing.contract_size),
        "minLeverage": 1,
        "maxLeverage": max_leverage,
        "countryConfigContractMaxLeverage": 0,
        "priceScale": _decimals(price_unit),
        "volScale": 0,
        "amountScale": 4,
        "priceUnit": _number(format(price_unit, "f")),
        "volUnit": 1,
        "minVol": 1,
        "maxVol": listing.contracts(instrument.lot_size * 1_000),
        "bidLimitPriceRate": 0.1,
        "askLimitPriceRate": 0.1,
        "takerFeeRate": 0.0002,
        "makerFeeRate": 0,
        "maintenanceMarginRate": 0.004,
        "initialMarginRate": 0.008,
        "riskBaseVol": listing.contracts(instrument.lot_size * 10_000),
        "riskIncrVol": 0,
        "riskLongShortSwitch": 0,
        "riskIncrMmr": 0,
        "riskIncrImr": 0,
        "riskLevelLimit": 1,
        "priceCoefficientVariation": 0.05,
        "indexOrigin": ["BINANCE", "BYBIT", "OKX", "MEXC", "KUCOIN"],
        "state": 0,
        "isNew": False,
        "isHot": coin in ("BTC", "ETH", "SOL"),
        "isHidden": False,
        "conceptPlate": ["mc-trade-zone-pow"] if coin == "BTC" else [],
        "conceptPlateId": [12] if coin == "BTC" else [],
        "riskLimitType": "BY_VOLUME",
        "maxNumOrders": [200, 50],
        "marketOrderMaxLevel": 20,
        "marketOrderPriceLimitRate1": 0.2,
        "marketOrderPriceLimitRate2": 0.005,
        "triggerProtect": 0.1,
        "appraisal": 0,
        "showAppraisalCountdown": 0,
        "automaticDelivery": 0,
        "apiAllowed": True,
        "depthStepList": [format(price_unit * 10**i, "f") for i in range(4)],
        "limitMaxVol": listing.contracts(instrument.lot_size * 5_000),
        "threshold": 0,
        "createTime": 1_591_242_684_000,
        "openingTime": 0,
        "openingCountdownOption": 1,
        "showBeforeOpen": True,
        "isMaxLeverage": True,
        "isZeroFeeRate": False,
        "riskLimitMode": "CUSTOM",
    }


def _spot_pair(listing: Listing) -> dict[str, Any]:
    """One spot pair as /api/v3/exchangeInfo lists it; ccxt reads the precisions as decimal places."""
    coin = listing.coin
    quote_decimals = _decimals(listing.price_step)
    base_decimals = _decimals(listing.coin_step)
    return {
        "symbol": listing.spot_id,
        "status": "1",
        "baseAsset": coin,
        "baseAssetPrecision": base_decimals,
        "quoteAsset": "USDT",
        "quotePrecision": quote_decimals,
        "quoteAssetPrecision": quote_decimals,
        "baseCommissionPrecision": base_decimals,
        "quoteCommissionPrecision": quote_decimals,
        "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "quoteAmountPrecision": "1",
        "baseSizePrecision": format(listing.coin_step.normalize(), "f"),
        "permissions": ["SPOT"],
        "filters": [{"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "askMultiplierDown": "0.2"}],
        "maxQuoteAmount": "2000000",
        "makerCommission": "0",
        "takerCommission": "0.0005",
        "quoteAmountPrecisionMarket": "1",
        "maxQuoteAmountMarket": "2000000",
        "fullName": coin,
        "tradeSideType": 1,
        "contractAddress": "",
        "st": False,
    }


SIMULATOR = MexcSimulator
