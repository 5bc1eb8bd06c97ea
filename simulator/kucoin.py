"""KuCoin Futures (the classic API) as ccxt.pro.kucoinfutures sees it: USDT-margined perpetuals.

Wire format follows https://www.kucoin.com/docs-new (futures market data, public token, classic WebSocket):

* REST answers `{"code":"200000","data":...}`; contract lists use JSON numbers, as KuCoin's Java backend does.
  load_markets reads `/api/v3/currencies` (spot host) and `/api/v1/contracts/active` (futures host).
* The WebSocket needs a token: `POST /api/v1/bullet-public` names the endpoint, the token and `pingInterval`.
  The server greets with `{"id":<connectId>,"type":"welcome"}`, answers `{"type":"ping"}` with a pong and
  acknowledges `subscribe`/`unsubscribe` with `{"id":..,"type":"ack"}`. One request may join up to 100 symbols
  (`/contractMarket/tickerV2:XBTUSDTM,ETHUSDTM`); every push names one symbol's topic.
* Sizes are whole contracts of `multiplier` coins (XBTUSDTM 0.001 BTC, DOGEUSDTM 100 DOGE); BTC is called XBT.
* `/contractMarket/level2` sends one `change` ("price,side,size") per message, `sequence` +1 each; clients sync it
  to `/api/v1/level2/snapshot`, whose `sequence` is the last change it contains. `tickerV2` shares that sequence.
  `level2Depth5`/`level2Depth50` push the whole top of book, at most every 100 ms, when it changed.
* `/contractMarket/ticker` (v1) pushes each trade with the best bid/ask at that moment.
* Funding, mark and index are read from `contracts/active` (`fundingFeeRate`, `nextFundingRateDateTime`,
  `fundingRateGranularity`, `markPrice`, `indexPrice`); there is no trade feed, so one trade per book update at
  the touch makes up last price and 24 h volume.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import orjson
from aiohttp import web

from simulator.book import Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument
from simulator.venue import Session, VenueSimulator

OK_CODE = "200000"
DEFAULT_PING_INTERVAL_MS = 18_000
"""What bullet-public announces; ccxt pings at this interval."""
PING_TIMEOUT_MS = 10_000
MAX_TOPICS_PER_REQUEST = 100
MAX_TOPICS_PER_SESSION = 400
"""Each symbol of a topic counts; past it KuCoin answers `exceed max subscription count limitation of 400 per
session` and subscribes nothing of that request."""
DEPTH_PUSH_INTERVAL_MS = 100
PHANTOM_LIFETIME_MS = 50
"""A crossed level2 bid lives this long when no book update removes it first (e.g. while frozen)."""
DEPTH_CHANNELS: dict[str, int] = {"/contractMarket/level2Depth5": 5, "/contractMarket/level2Depth50": 50}
TICKER_V2 = "/contractMarket/tickerV2"
TICKER_V1 = "/contractMarket/ticker"
LEVEL2 = "/contractMarket/level2"
CHANNELS = frozenset({TICKER_V2, TICKER_V1, LEVEL2, *DEPTH_CHANNELS})
SEQUENCE_START = 1_709_400_000_000
"""Realistic magnitudes (KuCoin's are ~1.7e12): below millisecond timestamps, which ccxt compares them with."""
TRADE_SEQUENCE_START = 1_828_900_000_000
CONTRACT_MULTIPLIERS: dict[str, str] = {
    "BTC": "0.001", "ETH": "0.01", "SOL": "0.1", "XRP": "10", "DOGE": "100", "ADA": "10", "LINK": "0.1",
    "1000PEPE": "10", "BNB": "0.01", "AVAX": "0.1", "DOT": "1", "LTC": "0.1", "BCH": "0.01", "TRX": "100",
    "NEAR": "1", "APT": "1", "ARB": "1", "OP": "1", "SUI": "1", "FIL": "0.1", "ATOM": "0.1", "1000SHIB": "10",
    "WIF": "1", "UNI": "1", "TIA": "1",
}
"""Coins per contract, by the instrument's base; anything unlisted trades in contracts of 1 coin."""
VENUE_CURRENCY = {"BTC": "XBT"}
FUNDING_CAP = 0.003
LISTED_SINCE_MS = 1_585_555_200_000
SOURCE_EXCHANGES = ("okex", "binance", "kucoin", "bybit", "bitmart", "gateio")


def venue_id(instrument: Instrument) -> str:
    """KuCoin's contract id: XBTUSDTM, ETHUSDTM, 1000PEPEUSDTM."""
    return f"{VENUE_CURRENCY.get(instrument.base, instrument.base)}USDTM"


@dataclass(frozen=True)
class Contract:
    """How one instrument is listed: its id and how many coins one contract is."""

    id: str
    base_currency: str
    multiplier: str
    contract_size: float
    steps_numerator: int
    steps_denominator: int
    """contracts = steps x numerator / denominator, where steps are the book's qty steps (integers keep it fast)."""

    @classmethod
    def of(cls, instrument: Instrument) -> Contract:
        multiplier = CONTRACT_MULTIPLIERS.get(instrument.base, "1")
        ratio = Fraction(Decimal(instrument.qty_step)) / Fraction(Decimal(multiplier))
        base = VENUE_CURRENCY.get(instrument.base, instrument.base)
        return cls(venue_id(instrument), base, multiplier, float(multiplier), ratio.numerator, ratio.denominator)

    def contracts(self, steps: int) -> int:
        """Whole contracts (rounded half up) for a resting size; a level that exists shows at least one."""
        if not steps:
            return 0
        return max(1, (2 * steps * self.steps_numerator + self.steps_denominator) // (2 * self.steps_denominator))

    def side(self, levels: Levels) -> Levels:
        """price ticks -> contracts."""
        return {ticks: self.contracts(steps) for ticks, steps in levels.items()}

    def coins(self, contracts: int) -> float:
        """What a consumer should see: contracts as printed times the multiplier, exactly (9 x 0.001 is 0.009)."""
        return float(contracts * Decimal(self.multiplier))


@dataclass
class DayStats:
    """One trade per book update at the touch, the stand-in for a trade feed."""

    open_ticks: int
    high_ticks: int
    low_ticks: int
    last_ticks: int
    last_contracts: int = 0
    last_side: str = "buy"
    volume_contracts: int = 0
    turnover: int = 0
    """Sum of ticks x contracts, an integer so quote volume prints exactly."""

    def record(self, ticks: int, contracts: int, side: str) -> None:
        self.last_ticks, self.last_contracts, self.last_side = ticks, contracts, side
        self.high_ticks = max(self.high_ticks, ticks)
        self.low_ticks = min(self.low_ticks, ticks)
        self.volume_contracts += contracts
        self.turnover += ticks * contracts


@dataclass
class Feed:
    """One contract's streams: what its subscribers were last sent, and its sequence numbers."""

    contract: Contract
    book: SimulatedBook
    stats: DayStats
    sequence: int
    """The order book sequence, shared by level2 changes and tickerV2."""
    trade_sequence: int
    topics: dict[str, str]
    book_view: tuple[Levels, Levels] | None = None
    """(bids, asks) in contracts as level2 subscribers know them; kept only while someone streams level2."""
    phantom_bid: int | None = None
    """A crossed bid injected into level2; removed by the next change, at the latest after PHANTOM_LIFETIME_MS."""
    phantom_until: int = 0
    last_bbo: tuple[str, int, str, int] | None = None
    bbo_resend: bool = False
    """Send tickerV2 on the next tick even if unchanged (to heal a crossed frame)."""
    depth_sent: dict[int, tuple[list[list[Any]], list[list[Any]]]] = field(default_factory=dict)
    depth_resend: set[int] = field(default_factory=set)


class KucoinSimulator(VenueSimulator):
    name: ClassVar[str] = "kucoin"

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        self.books = {venue_id(book.instrument): book for book in self.books.values()}
        self.feeds: dict[str, Feed] = {}
        for number, (contract_id, book) in enumerate(self.books.items()):
            mid = (book.best_bid + book.best_ask) // 2
            self.feeds[contract_id] = Feed(
                Contract.of(book.instrument),
                book,
                DayStats(round(mid * 0.985), max(mid, round(mid * 1.01)), round(mid * 0.98), mid),
                SEQUENCE_START + number * 7_919_311,
                TRADE_SEQUENCE_START + number * 3_301_117,
                {channel: f"{channel}:{contract_id}" for channel in CHANNELS},
            )
        self.ping_interval_ms = DEFAULT_PING_INTERVAL_MS
        """Announced by bullet-public; tests shrink it to exercise keepalive."""
        self.tokens: set[str] = set()
        self._next_depth_push = 0

    # --- configuration --------------------------------------------------------------------------

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt builds REST URLs from urls.api[<api name>] (spot host `public`, futures host `futuresPublic`); the
        classic WebSocket URL comes from bullet-public, so it follows the REST base. The Pro API sockets (urls.api.ws)
        are pointed here too, though nothing serves them, so no call can reach the real venue."""
        apis = ("public", "private", "futuresPublic", "futuresPrivate", "webExchange", "broker", "earn", "uta",
                "utaV2", "utaPrivate")
        rest = dict.fromkeys(apis, http_base)
        sockets = {kind: f"{ws_base}/x-push-{kind}" for kind in ("spot", "futures", "private")}
        return {"urls": {"api": {**rest, "ws": sockets}}}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/currencies", self._get_currencies),
            web.get("/api/v1/timestamp", self._get_timestamp),
            web.get("/api/v1/contracts/active", self._get_contracts),
            web.get("/api/v1/contracts/{symbol}", self._get_contract),
            web.get("/api/v1/ticker", self._get_ticker),
            web.get("/api/v1/allTickers", self._get_all_tickers),
            web.get("/api/v1/level2/snapshot", self._get_level2),
            web.get(r"/api/v1/level2/depth{limit:\d+}", self._get_level2),
            web.get("/api/v1/funding-rate/{symbol}/current", self._get_funding_rate),
            web.get("/api/v1/mark-price/{symbol}/current", self._get_mark_price),
            web.post("/api/v1/bullet-public", self._post_bullet_public),
            web.get("/endpoint", self._handle_socket),
        ]

    def state(self) -> dict[str, Any]:
        """The base view with KuCoin's printing: trimmed prices, sizes in coins (contracts x multiplier), the REST
        numbers for mark, index and funding, and the trade stand-ins."""
        state = super().state()
        for symbol_state in state["symbols"].values():
            feed = self.feeds[symbol_state["id"]]
            book, contract, stats = feed.book, feed.contract, feed.stats
            bid_contracts, ask_contracts = contract.contracts(book.bid_sizes[0]), contract.contracts(book.ask_sizes[0])
            symbol_state.update(
                bid=_price_text(book, book.best_bid),
                ask=_price_text(book, book.best_ask),
                bid_contracts=bid_contracts,
                ask_contracts=ask_contracts,
                bid_size=contract.coins(bid_contracts),
                ask_size=contract.coins(ask_contracts),
                contract_size=contract.contract_size,
                mark_price=float(book.mark_price()),
                index_price=float(book.index_price()),
                funding_rate=_funding_rate(book),
                last_price=_price_text(book, stats.last_ticks),
                volume_24h=_volume_coins(feed),
                sequence=feed.sequence,
            )
        return state

    # --- REST -----------------------------------------------------------------------------------

    async def _get_currencies(self, request: web.Request) -> web.Response:
        coins = sorted({book.instrument.coin for book in self.books.values()} | {"USDT"})
        return _ok([_currency(coin) for coin in coins])

    async def _get_timestamp(self, request: web.Request) -> web.Response:
        return _ok(now_ms())

    async def _get_contracts(self, request: web.Request) -> web.Response:
        now = now_ms()
        return _ok([self._contract_entry(feed, now) for feed in self.feeds.values()])

    async def _get_contract(self, request: web.Request) -> web.Response:
        feed = self.feeds.get(request.match_info["symbol"])
        if feed is None:
            return _error("404000", "contract not exists", status=404)
        return _ok(self._contract_entry(feed, now_ms()))

    async def _get_ticker(self, request: web.Request) -> web.Response:
        feed = self.feeds.get(request.query.get("symbol", ""))
        if feed is None:
            return _error("400100", "symbol not exists")
        return _ok(self._trade_ticker(feed))

    async def _get_all_tickers(self, request: web.Request) -> web.Response:
        return _ok([self._trade_ticker(feed) for feed in self.feeds.values()])

    async def _get_level2(self, request: web.Request) -> web.Response:
        """Full book (`level2/snapshot`) or its top (`level2/depth20`, `depth100`), in contracts, with the sequence
        of the last level2 change it includes."""
        feed = self.feeds.get(request.query.get("symbol", ""))
        if feed is None:
            return _error("400100", "symbol not exists")
        limit_text = request.match_info.get("limit")
        if limit_text not in (None, "20", "100"):
            return _error("404000", "Url Not Found", status=404)
        bids, asks = feed.book_view or (feed.contract.side(feed.book.bids()), feed.contract.side(feed.book.asks()))
        limit = int(limit_text) if limit_text else None
        book = feed.book
        return _ok(
            {
                "symbol": feed.contract.id,
                "sequence": feed.sequence,
                "asks": [[float(book.price(t)), c] for t, c in sorted(asks.items())[:limit]],
                "bids": [[float(book.price(t)), c] for t, c in sorted(bids.items(), reverse=True)[:limit]],
                "ts": _nanos(book.timestamp_ms),
            }
        )

    async def _get_funding_rate(self, request: web.Request) -> web.Response:
        feed = self.feeds.get(request.match_info["symbol"])
        if feed is None:
            return _error("400100", "symbol not exists")
        funding, now = feed.book.funding, now_ms()
        next_time = funding.next_time_ms(now)
        return _ok(
            {
                "symbol": f".{feed.contract.id}FPI{funding.interval_hours}H",
                "granularity": funding.interval_hours * 3_600_000,
                "timePoint": next_time - funding.interval_hours * 3_600_000,
                "value": _funding_rate(feed.book),
                "predictedValue": _funding_rate(feed.book),
                "fundingRateCap": FUNDING_CAP,
                "fundingRateFloor": -FUNDING_CAP,
                "period": 1,
                "fundingTime": next_time,
            }
        )

    async def _get_mark_price(self, request: web.Request) -> web.Response:
        feed = self.feeds.get(request.match_info["symbol"])
        if feed is None:
            return _error("400100", "symbol not exists")
        book = feed.book
        return _ok(
            {
                "symbol": feed.contract.id,
                "granularity": 1000,
                "timePoint": now_ms() // 1000 * 1000,
                "value": float(book.mark_price()),
                "indexPrice": float(book.index_price()),
            }
        )

    async def _post_bullet_public(self, request: web.Request) -> web.Response:
        """A public token and the endpoint to use it on: this server, under this venue's prefix."""
        token = secrets.token_urlsafe(96)
        self.tokens.add(token)
        prefix = request.path.removesuffix("/api/v1/bullet-public")
        server = {
            "endpoint": f"ws://{request.host}{prefix}/endpoint",
            "encrypt": True,
            "protocol": "websocket",
            "pingInterval": self.ping_interval_ms,
            "pingTimeout": PING_TIMEOUT_MS,
        }
        return _ok({"token": token, "instanceServers": [server]})

    def _contract_entry(self, feed: Feed, now: int) -> dict[str, Any]:
        """One perpetual as contracts/active lists it (KuCoin's field set and JSON types)."""
        book, contract, stats = feed.book, feed.contract, feed.stats
        instrument, funding = book.instrument, book.funding
        hours = funding.interval_hours
        next_time = funding.next_time_ms(now)
        base = contract.base_currency
        tick = float(instrument.tick_size)
        last = stats.last_ticks
        change = last - stats.open_ticks
        mark = float(book.mark_price())
        max_leverage = 125 if base in ("XBT", "ETH") else 75
        return {
            "symbol": contract.id,
            "rootSymbol": "USDT",
            "type": "FFWCSX",
            "firstOpenDate": LISTED_SINCE_MS,
            "expireDate": None,
            "settleDate": None,
            "baseCurrency": base,
            "quoteCurrency": "USDT",
            "settleCurrency": "USDT",
            "maxOrderQty": 1_000_000,
            "marketMaxOrderQty": 1_000_000,
            "maxPrice": 1_000_000.0,
            "lotSize": 1,
            "tickSize": tick,
            "indexPriceTickSize": tick,
            "multiplier": contract.contract_size,
            "initialMargin": round(1 / max_leverage, 6),
            "maintainMargin": round(0.5 / max_leverage, 6),
            "maxRiskLimit": 100_000,
            "minRiskLimit": 100_000,
            "riskStep": 50_000,
            "makerFeeRate": 0.0002,
            "takerFeeRate": 0.0006,
            "takerFixFee": 0.0,
            "makerFixFee": 0.0,
            "settlementFee": None,
            "isDeleverage": True,
            "isQuanto": True,
            "isInverse": False,
            "markMethod": "FairPrice",
            "fairMethod": "FundingRate",
            "fundingBaseSymbol": f".{base}INT{hours}H",
            "fundingQuoteSymbol": f".USDTINT{hours}H",
            "fundingRateSymbol": f".{contract.id}FPI{hours}H",
            "indexSymbol": f".K{base}USDT",
            "settlementSymbol": "",
            "status": "Open",
            "fundingFeeRate": _funding_rate(book),
            "predictedFundingFeeRate": _funding_rate(book),
            "fundingRateGranularity": hours * 3_600_000,
            "fundingRateCap": FUNDING_CAP,
            "fundingRateFloor": -FUNDING_CAP,
            "period": 1,
            "openInterest": str(stats.volume_contracts // 3 + 1_000_000),
            "turnoverOf24h": float(stats.turnover * Decimal(instrument.tick_size) * Decimal(contract.multiplier)),
            "volumeOf24h": _volume_coins(feed),
            "markPrice": mark,
            "indexPrice": float(book.index_price()),
            "lastTradePrice": float(book.price(last)),
            "nextFundingRateTime": next_time - now,
            "nextFundingRateDateTime": next_time,
            "maxLeverage": max_leverage,
            "sourceExchanges": list(SOURCE_EXCHANGES),
            "premiumsSymbol1M": f".{contract.id}PI",
            "premiumsSymbol8H": f".{contract.id}PI8H",
            "fundingBaseSymbol1M": f".{base}INT",
            "fundingQuoteSymbol1M": ".USDTINT",
            "lowPrice": float(book.price(stats.low_ticks)),
            "highPrice": float(book.price(stats.high_ticks)),
            "priceChgPct": round(change / stats.open_ticks, 4),
            "priceChg": float(book.price(change)),
            "k": 490.0,
            "m": 300.0,
            "f": 1.3,
            "mmrLimit": 0.3,
            "mmrLevConstant": float(max_leverage),
            "supportCross": True,
            "buyLimit": round(mark * 1.05, instrument.price_decimals),
            "sellLimit": round(mark * 0.95, instrument.price_decimals),
            "marketStage": "NORMAL",
        }

    def _trade_ticker(self, feed: Feed) -> dict[str, Any]:
        """The last trade with the touch, as REST `ticker` and WebSocket ticker v1 print it."""
        book, contract, stats = feed.book, feed.contract, feed.stats
        return {
            "symbol": contract.id,
            "sequence": feed.trade_sequence,
            "side": stats.last_side,
            "size": stats.last_contracts,
            "price": _price_text(book, stats.last_ticks),
            "bestBidSize": contract.contracts(book.bid_sizes[0]),
            "bestBidPrice": _price_text(book, book.best_bid),
            "bestAskPrice": _price_text(book, book.best_ask),
            "tradeId": str(feed.trade_sequence),
            "bestAskSize": contract.contracts(book.ask_sizes[0]),
            "ts": _nanos(book.timestamp_ms),
        }

    # --- WebSocket protocol ---------------------------------------------------------------------

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        """A connection with a token this server issued is greeted (see _greet); any other token is answered the
        way KuCoin answers an expired one, which makes ccxt negotiate a new token."""
        if request.query.get("token") in self.tokens or time.monotonic() < self.faults.refuse_until:
            return await self.handle_ws(request)  # (which refuses the handshake during an outage)
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, compress=False)
        await ws.prepare(request)
        error = {"id": request.query.get("connectId", ""), "type": "error", "code": 401, "data": "token is expired"}
        await ws.send_str(orjson.dumps(error).decode())
        await ws.close()
        return ws

    async def on_connect(self, session: Session, request: web.Request) -> None:
        """KuCoin's first frame on every connection is a welcome carrying the client's connectId."""
        await self.send(session, {"id": request.query.get("connectId", ""), "type": "welcome"})

    async def on_client_message(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            await self._reply_error(session, None, 400, "message is not valid json")
            return
        request_id, kind = message.get("id"), message.get("type")
        if kind == "ping":
            await self.send(session, {"id": request_id, "type": "pong"})
        elif kind in ("subscribe", "unsubscribe"):
            await self._change_subscriptions(session, message, kind == "subscribe")
        else:
            await self._reply_error(session, request_id, 415, "type is not supported")

    async def _change_subscriptions(self, session: Session, message: dict[str, Any], add: bool) -> None:
        request_id, topic = message.get("id"), message.get("topic")
        channel, _, joined = topic.partition(":") if isinstance(topic, str) else ("", "", "")
        symbols = [symbol for symbol in joined.split(",") if symbol]
        if channel not in CHANNELS or not symbols or any(symbol not in self.feeds for symbol in symbols):
            await self._reply_error(session, request_id, 404, f"topic {topic} is not found")
            return
        if len(symbols) > MAX_TOPICS_PER_REQUEST:
            await self._reply_error(session, request_id, 509, f"exceed max subscription count limitation of "
                                                              f"{MAX_TOPICS_PER_REQUEST} per time")
            return
        if add and len(session.topics | {self.feeds[symbol].topics[channel] for symbol in symbols}) > \
                MAX_TOPICS_PER_SESSION:
            await self._reply_error(session, request_id, 509, f"exceed max subscription count limitation of "
                                                              f"{MAX_TOPICS_PER_SESSION} per session")
            return
        for symbol in symbols:
            feed = self.feeds[symbol]
            if not add:
                self.unsubscribe(session, feed.topics[channel])
                continue
            if channel == LEVEL2 and feed.book_view is None:
                book = feed.book
                feed.book_view = feed.contract.side(book.bids()), feed.contract.side(book.asks())
            if channel in DEPTH_CHANNELS:
                feed.depth_resend.add(DEPTH_CHANNELS[channel])  # a new subscriber gets the current book
            self.subscribe(session, feed.topics[channel])
        if message.get("response"):
            await self.send(session, {"id": request_id, "type": "ack"})

    async def _reply_error(self, session: Session, request_id: Any, code: int, text: str) -> None:
        await self.send(session, {"id": request_id, "type": "error", "code": code, "data": text})

    # --- real-time frames -----------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        feed = self.feeds[venue_id(book.instrument)]
        self._record_trade(feed)
        if self.has_subscribers(topic := feed.topics[TICKER_V1]):
            await self.publish(topic, _message(topic, "ticker", feed.trade_sequence, self._trade_ticker(feed)))
        if feed.book_view is not None:
            await self._push_level2_changes(feed)
        else:
            feed.sequence += 1 + book.update_id % 3  # nobody follows the changes one by one: only the count moves
        if self.has_subscribers(feed.topics[TICKER_V2]):
            await self._push_ticker_v2(feed)

    def _record_trade(self, feed: Feed) -> None:
        book = feed.book
        if book.update_id & 1:
            ticks, steps, side = book.best_bid, book.bid_sizes[0], "sell"
        else:
            ticks, steps, side = book.best_ask, book.ask_sizes[0], "buy"
        feed.stats.record(ticks, max(1, feed.contract.contracts(steps) // 8), side)
        feed.trade_sequence += 1

    async def _push_level2_changes(self, feed: Feed) -> None:
        """One message per changed level, in contracts, each with the next sequence number; removals first."""
        assert feed.book_view is not None
        book, contract = feed.book, feed.contract
        old_bids, old_asks = feed.book_view
        bids, asks = contract.side(book.bids()), contract.side(book.asks())
        changes = [(ticks, "buy", size) for ticks, size in diff_levels(old_bids, bids)]
        changes += [(ticks, "sell", size) for ticks, size in diff_levels(old_asks, asks)]
        # Removed levels first, as a matching engine fills before it rests: a client applying the changes one by
        # one never holds a crossed book (ccxt hands the book over after each change).
        changes.sort(key=lambda change: change[2] != 0)
        feed.phantom_bid = None
        if self._crossed_now(feed.topics[LEVEL2]):
            feed.phantom_bid, feed.phantom_until = book.best_ask + 1, now_ms() + PHANTOM_LIFETIME_MS
            bids = {**bids, feed.phantom_bid: bids[book.best_bid]}
            changes.append((feed.phantom_bid, "buy", bids[feed.phantom_bid]))
        feed.book_view = bids, asks
        for ticks, side, size in changes:
            await self._publish_level2(feed, ticks, side, size)

    async def _publish_level2(self, feed: Feed, ticks: int, side: str, size: int) -> None:
        feed.sequence += 1
        topic, book = feed.topics[LEVEL2], feed.book
        if self.has_subscribers(topic) and self.withhold_diff(book):
            return
        change = {"sequence": feed.sequence, "change": f"{_price_text(book, ticks)},{side},{size}",
                  "timestamp": book.timestamp_ms}
        await self.publish(topic, _message(topic, "level2", feed.sequence, change))

    async def _push_ticker_v2(self, feed: Feed, force: bool = False) -> None:
        book, contract = feed.book, feed.contract
        bbo = (_price_text(book, book.best_bid), contract.contracts(book.bid_sizes[0]),
               _price_text(book, book.best_ask), contract.contracts(book.ask_sizes[0]))
        crossed = self._crossed_now(feed.topics[TICKER_V2])
        if crossed:
            bbo = (_price_text(book, book.best_ask + 1), *bbo[1:])
        elif bbo == feed.last_bbo and not force:
            return
        feed.last_bbo, feed.bbo_resend = bbo, crossed
        data = {"symbol": contract.id, "sequence": feed.sequence, "bestBidSize": bbo[1], "bestBidPrice": bbo[0],
                "bestAskPrice": bbo[2], "bestAskSize": bbo[3], "ts": _nanos(book.timestamp_ms)}
        topic = feed.topics[TICKER_V2]
        await self.publish(topic, _message(topic, "tickerV2", feed.sequence, data))

    async def on_tick(self, now: int) -> None:
        """Heal crossed frames (even while frozen); push depth snapshots every 100 ms."""
        for feed in self.feeds.values():
            if feed.bbo_resend and self.has_subscribers(feed.topics[TICKER_V2]):
                await self._push_ticker_v2(feed, force=True)
            if feed.phantom_bid is not None and feed.book_view is not None and now >= feed.phantom_until:
                del feed.book_view[0][feed.phantom_bid]
                await self._publish_level2(feed, feed.phantom_bid, "buy", 0)
                feed.phantom_bid = None
        if now < self._next_depth_push:
            return
        self._next_depth_push = now - now % DEPTH_PUSH_INTERVAL_MS + DEPTH_PUSH_INTERVAL_MS
        for feed in self.feeds.values():
            if feed.book_view is not None and not self.has_subscribers(feed.topics[LEVEL2]):
                feed.book_view, feed.phantom_bid = None, None  # nobody follows level2 any more
            for channel, depth in DEPTH_CHANNELS.items():
                if self.has_subscribers(topic := feed.topics[channel]):
                    await self._push_depth(feed, topic, depth)
                else:
                    feed.depth_sent.pop(depth, None)

    async def _push_depth(self, feed: Feed, topic: str, depth: int) -> None:
        """The top `depth` levels in contracts, when they changed since the last push (or must be resent)."""
        book = feed.book
        bids = _wire_side(feed, feed.contract.side(book.bids(depth)).items(), descending=True)
        asks = _wire_side(feed, feed.contract.side(book.asks(depth)).items(), descending=False)
        crossed = self._crossed_now(topic)
        if crossed:
            bids = [[_price_text(book, book.best_ask + 1), bids[0][1]], *bids[: depth - 1]]
        elif feed.depth_sent.get(depth) == (bids, asks) and depth not in feed.depth_resend:
            return
        feed.depth_sent[depth] = bids, asks
        if crossed:
            feed.depth_resend.add(depth)  # the next push shows the true book again, even while frozen
        else:
            feed.depth_resend.discard(depth)
        data = {"bids": bids, "sequence": feed.sequence, "timestamp": book.timestamp_ms, "ts": book.timestamp_ms,
                "asks": asks}
        await self.publish(topic, _message(topic, "level2", book.timestamp_ms, data))

    def _crossed_now(self, topic: str) -> bool:
        """Take a pending crossed fault for a topic someone will see (not while silent)."""
        return not self.faults.silent and self.has_subscribers(topic) and self.faults.take_crossed()


# --- wire helpers -------------------------------------------------------------------------------


def _ok(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps({"code": OK_CODE, "data": data}), content_type="application/json")


def _error(code: str, text: str, status: int = 400) -> web.Response:
    body = orjson.dumps({"code": code, "msg": text})
    return web.Response(body=body, status=status, content_type="application/json")


def _message(topic: str, subject: str, sn: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "type": "message", "subject": subject, "sn": sn, "data": data}


def _price_text(book: SimulatedBook, ticks: int) -> str:
    """KuCoin prints prices without trailing zeros: "89721", "89720.9"."""
    text = book.price(ticks)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _wire_side(feed: Feed, levels: Iterable[tuple[int, int]], descending: bool) -> list[list[Any]]:
    return [[_price_text(feed.book, ticks), size] for ticks, size in sorted(levels, reverse=descending)]


def _nanos(timestamp_ms: int) -> int:
    """A nanosecond time inside that millisecond: ccxt converts `ts` through a float and truncates, so the
    sub-millisecond part keeps its result on the right millisecond."""
    return timestamp_ms * 1_000_000 + 250_000


def _funding_rate(book: SimulatedBook) -> float:
    return float(f"{book.funding.rate:.6f}")


def _volume_coins(feed: Feed) -> float:
    return float(Decimal(feed.stats.volume_contracts) * Decimal(feed.contract.multiplier))


def _currency(coin: str) -> dict[str, Any]:
    """A spot currency as /api/v3/currencies lists it (ccxt reads it in load_markets)."""
    chain = {
        "chainName": "ERC20", "chainId": "eth", "withdrawalMinSize": "10", "depositMinSize": None,
        "withdrawFeeRate": "0", "withdrawalMinFee": "1", "isWithdrawEnabled": True, "isDepositEnabled": True,
        "confirms": 96, "preConfirms": 32, "withdrawPrecision": 8, "maxWithdraw": None, "maxDeposit": None,
        "needTag": False, "contractAddress": "",
    }
    return {"currency": coin, "name": coin, "fullName": coin, "precision": 8, "confirms": None,
            "contractAddress": None, "isMarginEnabled": True, "isDebitEnabled": True, "chains": [chain]}


SIMULATOR = KucoinSimulator
