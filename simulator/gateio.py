"""Gate futures (USDT-settled perpetuals) as ccxt.pro.gate sees it: the API v4 REST market list and order-book
snapshots, and the futures WebSocket v4.

Wire format follows https://www.gate.com/docs/developers/apiv4/en/ (futures: list contracts, futures order book)
and https://www.gate.com/docs/developers/futures/ws/en/ (futures.tickers, futures.book_ticker,
futures.order_book_update, futures.ping):

* Contracts are named BTC_USDT. A contract is `quanto_multiplier` coins (BTC_USDT 0.0001 BTC, PEPE_USDT ten million
  PEPE) and every size on the wire counts contracts. Gate lists PEPE and SHIB per coin (PEPE_USDT), not as
  1000PEPE, so their books are priced per coin here.
* Sizes are whole contracts, printed as JSON integers, or as decimal strings when the client sent the header
  `X-Gate-Size-Decimal: 1` (ccxt sends it on the socket handshake and on futures REST calls).
* A socket request is `{"time", "id", "channel", "event": "subscribe"|"unsubscribe", "payload": [...]}`; the reply
  echoes channel, event, id and payload with `result.status` success or fail (+ `error.code`/`message`).
  `futures.ping` is answered with `futures.pong`; protocol-level pings (what ccxt sends) are answered too.
* futures.order_book_update [contract, "20ms"|"100ms", "20"|"50"|"100"] pushes, per interval, every level of the
  top N that changed (absolute size, 0 = gone) with `U` = previous `u` + 1 and `u` = the book's update id. The
  client anchors it on the REST snapshot /futures/usdt/order_book?with_id=true (`id`), as ccxt does.
* futures.tickers carries last, 24 h volume (`volume_24h_base` in coins), mark, index and the funding rate; the
  next funding time and the interval are only in the contract list (`funding_next_apply`, `funding_interval`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import orjson
from aiohttp import web

from simulator.book import BOOK_LEVELS, Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument
from simulator.venue import Session, VenueSimulator

SETTLE = "usdt"
TICKERS = "futures.tickers"
BOOK_TICKER = "futures.book_ticker"
BOOK_UPDATE = "futures.order_book_update"
PING, PONG = "futures.ping", "futures.pong"
BOOK_UPDATE_LEVELS = (20, 50, 100)
BOOK_UPDATE_INTERVALS_MS = {"20ms": 20, "100ms": 100}
"""futures.order_book_update frequencies; 20 ms is offered for the 20-level book only."""
TICKER_INTERVAL_MS = 1_000
FROZEN_BOOK_TICKER_INTERVAL_MS = 1_000
"""While frozen, book_ticker repeats the unchanged top so streams don't look dead to a watchdog."""
REST_BOOK_DEFAULT_LIMIT, REST_BOOK_MAX_LIMIT = 10, 300
SIZE_DECIMAL_HEADER = "X-Gate-Size-Decimal"

CONTRACT_MULTIPLIERS: dict[str, str] = {
    "BTC": "0.0001", "ETH": "0.01", "SOL": "1", "XRP": "10", "DOGE": "10", "ADA": "10", "LINK": "1",
    "PEPE": "10000000", "BNB": "0.01", "AVAX": "1", "DOT": "1", "LTC": "0.1", "BCH": "0.01", "TRX": "100",
    "NEAR": "1", "APT": "1", "ARB": "1", "OP": "1", "SUI": "1", "FIL": "1", "ATOM": "1", "SHIB": "10000",
    "WIF": "1", "UNI": "1", "TIA": "1",
}  # fmt: skip
"""quanto_multiplier per coin, close to Gate's own (coins per contract)."""

PUBLIC_APIS = ("wallet", "futures", "margin", "delivery", "spot", "options", "sub_accounts", "earn")
PRIVATE_APIS = (
    *("withdrawals", "wallet", "futures", "margin", "delivery", "spot", "options", "subAccounts", "unified"),
    *("rebate", "earn", "account", "loan", "otc"),
)
"""ccxt's urls.api.public / urls.api.private keys; all share https://api.gateio.ws/api/v4."""

_size_decimal: contextvars.ContextVar[bool] = contextvars.ContextVar("gate_size_decimal", default=False)
"""Whether this WebSocket connection asked for decimal sizes; each connection runs in its own task and context."""
_socket_settle: contextvars.ContextVar[str] = contextvars.ContextVar("gate_socket_settle", default=SETTLE)


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 1E-10 -> 0.0000000001, 1E+3 -> 1000."""
    return format(value.normalize(), "f")


def per_coin(instrument: Instrument) -> Instrument:
    """Gate quotes 1000PEPE-style instruments per single coin (PEPE_USDT)."""
    if instrument.multiplier == 1:
        return instrument
    multiplier = Decimal(instrument.multiplier)
    return dataclasses.replace(
        instrument,
        start_price=_plain(Decimal(instrument.start_price) / multiplier),
        tick_size=_plain(Decimal(instrument.tick_size) / multiplier),
        qty_step=_plain(Decimal(instrument.qty_step) * multiplier),
        multiplier=1,
    )


class Contract:
    """One listed contract: its book and how the book's coin sizes become whole contracts."""

    __slots__ = ("_denominator", "_numerator", "book", "id", "multiplier")

    def __init__(self, book: SimulatedBook) -> None:
        instrument = book.instrument
        self.book = book
        self.id = f"{instrument.base}_USDT"
        self.multiplier = CONTRACT_MULTIPLIERS.get(instrument.coin, "1")
        ratio = Fraction(Decimal(instrument.qty_step)) / Fraction(Decimal(self.multiplier))
        self._numerator, self._denominator = ratio.numerator, ratio.denominator

    def contracts(self, steps: int) -> int:
        """A size in qty steps as whole contracts, rounded half up, at least one."""
        return max(1, (2 * steps * self._numerator + self._denominator) // (2 * self._denominator))

    def bids(self, depth: int) -> Levels:
        book = self.book
        return {book.best_bid - i: self.contracts(size) for i, size in enumerate(book.bid_sizes[:depth])}

    def asks(self, depth: int) -> Levels:
        book = self.book
        return {book.best_ask + i: self.contracts(size) for i, size in enumerate(book.ask_sizes[:depth])}

    def coins(self, contracts: int) -> str:
        """Contracts x contract size, exactly: what a consumer should read in coins."""
        return _plain(Decimal(contracts) * Decimal(self.multiplier))


@dataclass
class DayStats:
    """A rolling-24h model for the tickers: one trade at the touch per book update."""

    open_ticks: int
    high_ticks: int
    low_ticks: int
    last_ticks: int
    volume_contracts: int = 0
    turnover: int = 0
    """Sum of ticks x contracts, kept as an integer so the quote volume prints exactly."""

    def record(self, ticks: int, contracts: int) -> None:
        self.last_ticks = ticks
        self.high_ticks = max(self.high_ticks, ticks)
        self.low_ticks = min(self.low_ticks, ticks)
        self.volume_contracts += contracts
        self.turnover += ticks * contracts


@dataclass
class DepthStream:
    """One futures.order_book_update stream (contract, interval, level) and the levels changed since its last push.

    Changes are recorded at every book step, not by comparing two pushes, so a level that came and went between
    pushes (and may sit in a client's REST snapshot) is still reported with its final size."""

    key: str
    level: int
    interval_ms: int
    previous_id: int
    """`u` of the previous push: the next push's `U` - 1."""
    due_ms: int
    changed_bids: set[int] = field(default_factory=set)
    changed_asks: set[int] = field(default_factory=set)
    phantom_bid: int | None = None
    """A crossed bid shown in the last push, which the next push takes back."""


@dataclass
class DepthWatch:
    """The top-N views of one contract's book as last seen, kept while someone streams its depth."""

    views: dict[int, tuple[Levels, Levels]]
    streams: dict[tuple[str, int], DepthStream] = field(default_factory=dict)
    """By (interval, level)."""


class GateioSimulator(VenueSimulator):
    name: ClassVar[str] = "gateio"

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(tuple(per_coin(instrument) for instrument in instruments), reference, rate, seed)
        self.contracts: dict[str, Contract] = {}
        for book in self.books.values():
            contract = Contract(book)
            self.contracts[contract.id] = contract
        self.books = {contract_id: contract.book for contract_id, contract in self.contracts.items()}
        self._by_instrument = {contract.book.instrument: contract for contract in self.contracts.values()}
        self.day_stats = {
            contract_id: _day_stats(contract.book) for contract_id, contract in self.contracts.items()
        }
        self.depth_watches: dict[str, DepthWatch] = {}
        self._ticker_due_ms = 0
        self._frozen_repeat_due_ms = 0
        self._launch_time = now_ms() // 1000 - 86_400 * 400

    # --- configuration ----------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        rest = [
            web.get("/api/v4/futures/{settle}/contracts", self._rest_contracts),
            web.get("/api/v4/futures/{settle}/contracts/{contract}", self._rest_contract),
            web.get("/api/v4/futures/{settle}/order_book", self._rest_order_book),
            web.get("/api/v4/spot/currencies", self._rest_currencies),
            web.get("/api/v4/spot/currency_pairs", self._rest_nothing),
            web.get("/api/v4/margin/currency_pairs", self._rest_nothing),
            web.get("/api/v4/delivery/{settle}/contracts", self._rest_nothing),
            web.get("/api/v4/options/underlyings", self._rest_nothing),
        ]
        sockets = [web.get(f"/v4/ws/{settle}", self._ws_handler(settle)) for settle in ("usdt", "btc")]
        return rest + sockets

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt builds REST URLs as urls.api.<public|private>.<api> + /<api>/<path> and dials perpetual streams at
        urls.api.swap.<settle> (not under urls.api.ws); every market type's socket is pointed here."""
        rest = f"{http_base}/api/v4"

        def sockets(prefix: str) -> dict[str, str]:
            return {settle: f"{ws_base}/v4/ws/{prefix}{settle}" for settle in ("usdt", "btc")}

        return {
            "urls": {
                "api": {
                    "public": dict.fromkeys(PUBLIC_APIS, rest),
                    "private": dict.fromkeys(PRIVATE_APIS, rest),
                    "ws": f"{ws_base}/v4",
                    "spot": f"{ws_base}/ws/v4/",
                    "swap": sockets(""),
                    "future": sockets("delivery/"),
                    "option": sockets("options/"),
                }
            }
        }

    def state(self) -> dict[str, Any]:
        """The base view with sizes as a consumer sees them: the contracts printed times the contract size."""
        state = super().state()
        for symbol_state in state["symbols"].values():
            contract = self.contracts[symbol_state["id"]]
            book, stats = contract.book, self.day_stats[contract.id]
            bid_contracts, ask_contracts = contract.contracts(book.bid_sizes[0]), contract.contracts(book.ask_sizes[0])
            symbol_state.update(
                bid_contracts=bid_contracts,
                ask_contracts=ask_contracts,
                bid_size=contract.coins(bid_contracts),
                ask_size=contract.coins(ask_contracts),
                contract_size=contract.multiplier,
                funding_rate=_rate(book.funding.rate),
                last_price=book.price(stats.last_ticks),
                volume_24h=_coins_text(stats.volume_contracts, contract.multiplier),
            )
        return state

    def _ws_handler(self, settle: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            _size_decimal.set(request.headers.get(SIZE_DECIMAL_HEADER) == "1")
            _socket_settle.set(settle)
            return await self.handle_ws(request)

        return handle

    # --- WebSocket protocol -----------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            await self.send(session, _reply(session, {}, error=(1, "invalid request body")))
            return
        channel, event, payload = message.get("channel"), message.get("event"), message.get("payload")
        if channel == PING:
            now = now_ms()
            pong = {"time": now // 1000, "time_ms": now, "conn_id": _conn_id(session), "channel": PONG}
            await self.send(session, {**pong, "event": "", "result": None})
            return
        if event not in ("subscribe", "unsubscribe") or not isinstance(channel, str):
            await self.send(session, _reply(session, message, error=(1, f"invalid event {event!r}")))
            return
        if channel not in (TICKERS, BOOK_TICKER, BOOK_UPDATE):
            await self.send(session, _reply(session, message, error=(2, f"unknown channel {channel}")))
            return
        keys = self._stream_keys(channel, payload, event == "subscribe")
        if isinstance(keys, str):
            await self.send(session, _reply(session, message, error=(2, keys)))
            return
        decimal = _size_decimal.get()
        if event == "unsubscribe":
            for topic in [topic for topic in session.topics if _topic_key(topic) in keys]:
                self.unsubscribe(session, topic)
            await self.send(session, _reply(session, message))
            return
        if channel == BOOK_UPDATE:
            self._open_depth_stream(keys[0])  # before the ack, so any snapshot taken afterwards is covered
        for key in keys:
            self.subscribe(session, _topic(key, decimal))
        # An unbuffered frame is written before send() first yields, so the ack still precedes any data.
        await self.send(session, _reply(session, message))

    def _stream_keys(self, channel: str, payload: Any, subscribing: bool) -> list[str] | str:
        """The streams a request names, or Gate's error text."""
        if not isinstance(payload, list) or not payload or not all(isinstance(item, str) for item in payload):
            return "invalid argument: payload"
        unknown = [item for item in payload[:1 if channel == BOOK_UPDATE else None] if item not in self.contracts]
        if unknown or _socket_settle.get() != SETTLE:
            return f"unknown contract {(unknown or payload)[0]}"
        if channel != BOOK_UPDATE:
            return [f"{channel}|{contract}" for contract in payload]
        if not subscribing and len(payload) == 1:  # every depth stream of that contract
            return [
                f"{BOOK_UPDATE}|{payload[0]}|{interval}|{level}"
                for interval in BOOK_UPDATE_INTERVALS_MS
                for level in BOOK_UPDATE_LEVELS
            ]
        if len(payload) != 3:
            return "invalid argument: payload must be [contract, interval, level]"
        contract, interval, level = payload
        if interval not in BOOK_UPDATE_INTERVALS_MS or not level.isdigit() or int(level) not in BOOK_UPDATE_LEVELS:
            return f"invalid argument: interval {interval} level {level}"
        if interval == "20ms" and level != "20":
            return "invalid argument: 20ms is only available for level 20"
        return [f"{BOOK_UPDATE}|{contract}|{interval}|{level}"]

    def _open_depth_stream(self, key: str) -> None:
        _, contract_id, interval, level_text = key.split("|")
        contract, level = self.contracts[contract_id], int(level_text)
        watch = self.depth_watches.get(contract_id)
        if watch is None:
            watch = self.depth_watches[contract_id] = DepthWatch({})
        if level not in watch.views:
            watch.views[level] = contract.bids(level), contract.asks(level)
        if (interval, level) not in watch.streams:
            period = BOOK_UPDATE_INTERVALS_MS[interval]
            due = now_ms() // period * period + period
            watch.streams[interval, level] = DepthStream(key, level, period, contract.book.update_id, due)

    # --- real-time frames -------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        contract = self._by_instrument[book.instrument]
        stats = self.day_stats[contract.id]
        if book.update_id & 1:
            stats.record(book.best_bid, contract.contracts(book.bid_sizes[0] // 8 + 1))
        else:
            stats.record(book.best_ask, contract.contracts(book.ask_sizes[0] // 8 + 1))
        await self._publish_book_ticker(contract)
        watch = self.depth_watches.get(contract.id)
        if watch is not None:
            _record_depth_changes(contract, watch)

    async def _publish_book_ticker(self, contract: Contract) -> None:
        key = f"{BOOK_TICKER}|{contract.id}"
        wanted = [decimal for decimal in (True, False) if self.has_subscribers(_topic(key, decimal))]
        if not wanted:
            return
        book = contract.book
        bid, bid_size = book.price(book.best_bid), contract.contracts(book.bid_sizes[0])
        ask, ask_size = book.price(book.best_ask), contract.contracts(book.ask_sizes[0])
        if self._crossed_now():
            bid, bid_size, ask, ask_size = ask, ask_size, bid, bid_size
        for decimal in wanted:
            result = {
                "t": book.timestamp_ms,
                "u": book.update_id,
                "s": contract.id,
                "b": bid,
                "B": _size(bid_size, decimal),
                "a": ask,
                "A": _size(ask_size, decimal),
            }
            await self.publish(_topic(key, decimal), _update(BOOK_TICKER, result))

    # --- periodic frames --------------------------------------------------------------------------

    async def on_tick(self, now: int) -> None:
        if self.faults.silent:
            return  # depth changes keep accumulating, so the chain resumes without a gap
        for contract_id, watch in tuple(self.depth_watches.items()):
            for stream_key, stream in tuple(watch.streams.items()):
                if now < stream.due_ms:
                    continue
                stream.due_ms = now - now % stream.interval_ms + stream.interval_ms
                if any(self.has_subscribers(_topic(stream.key, decimal)) for decimal in (True, False)):
                    await self._push_depth(self.contracts[contract_id], watch, stream)
                else:
                    del watch.streams[stream_key]
                    if all(other.level != stream.level for other in watch.streams.values()):
                        del watch.views[stream.level]
            if not watch.streams:
                del self.depth_watches[contract_id]
        if now >= self._ticker_due_ms:
            self._ticker_due_ms = now - now % TICKER_INTERVAL_MS + TICKER_INTERVAL_MS
            for contract in self.contracts.values():
                await self._publish_ticker(contract, now)
        if self.faults.frozen and now >= self._frozen_repeat_due_ms:
            self._frozen_repeat_due_ms = now + FROZEN_BOOK_TICKER_INTERVAL_MS
            for contract in self.contracts.values():
                await self._publish_book_ticker(contract)

    async def _push_depth(self, contract: Contract, watch: DepthWatch, stream: DepthStream) -> None:
        book = contract.book
        if stream.phantom_bid is not None:  # take back the crossed bid of the previous push
            stream.changed_bids.add(stream.phantom_bid)
            stream.phantom_bid = None
        if not (stream.changed_bids or stream.changed_asks):
            return
        # Levels repeated without a book step in between (taking back a crossed bid, healing a garbled frame,
        # possibly while frozen) still need a fresh id, or clients would take the frame for an old one.
        book.update_id = max(book.update_id, stream.previous_id + 1)
        bids, asks = watch.views[stream.level]
        bid_sizes = bids
        if self._crossed_now():
            stream.phantom_bid = book.best_ask + 1
            bid_sizes = {**bids, stream.phantom_bid: contract.contracts(book.bid_sizes[0])}
            stream.changed_bids.add(stream.phantom_bid)
        changed_bids, changed_asks = sorted(stream.changed_bids, reverse=True), sorted(stream.changed_asks)
        stream.changed_bids.clear()
        stream.changed_asks.clear()
        first_id, stream.previous_id = stream.previous_id + 1, book.update_id
        if self.withhold_diff(book):
            return
        for decimal in (True, False):
            topic = _topic(stream.key, decimal)
            if not self.has_subscribers(topic):
                continue
            result = {
                "t": book.timestamp_ms,
                "s": contract.id,
                "U": first_id,
                "u": book.update_id,
                "b": [{"p": book.price(price), "s": _size(bid_sizes.get(price, 0), decimal)} for price in changed_bids],
                "a": [{"p": book.price(price), "s": _size(asks.get(price, 0), decimal)} for price in changed_asks],
                "l": str(stream.level),
            }
            garbles_left = self.faults.malformed_pending
            await self.publish(topic, _update(BOOK_UPDATE, result))
            if self.faults.malformed_pending < garbles_left:
                # A client that lost (or half-applied) this frame holds stale levels the chain never revisits;
                # the next push repeats these levels with their sizes then, which heals it either way.
                stream.changed_bids.update(changed_bids)
                stream.changed_asks.update(changed_asks)

    async def _publish_ticker(self, contract: Contract, now: int) -> None:
        key = f"{TICKERS}|{contract.id}"
        wanted = [decimal for decimal in (True, False) if self.has_subscribers(_topic(key, decimal))]
        if wanted:
            ticker = self._ticker(contract)
            for decimal in wanted:
                await self.publish(_topic(key, decimal), _update(TICKERS, [ticker], now))

    def _ticker(self, contract: Contract) -> dict[str, Any]:
        book, stats, multiplier = contract.book, self.day_stats[contract.id], contract.multiplier
        change = 100.0 * (stats.last_ticks - stats.open_ticks) / stats.open_ticks
        rate = _rate(book.funding.rate)
        quote_volume = _quote_volume(contract, stats)
        return {
            "contract": contract.id,
            "last": book.price(stats.last_ticks),
            "change_percentage": f"{change:.2f}",
            "total_size": str(_open_interest(contract)),
            "volume_24h": str(stats.volume_contracts),
            "volume_24h_base": _coins_text(stats.volume_contracts, multiplier),
            "volume_24h_quote": quote_volume,
            "volume_24h_settle": quote_volume,
            "mark_price": book.mark_price(),
            "funding_rate": rate,
            "funding_rate_indicative": rate,
            "index_price": book.index_price(),
            "quanto_base_rate": "",
            "low_24h": book.price(stats.low_ticks),
            "high_24h": book.price(stats.high_ticks),
        }

    def _crossed_now(self) -> bool:
        """Take a pending crossed fault, but not while silent: the crossed frame would never be seen."""
        return not self.faults.silent and self.faults.take_crossed()

    # --- REST -------------------------------------------------------------------------------------

    async def _rest_contracts(self, request: web.Request) -> web.Response:
        settle = request.match_info["settle"]
        if settle not in ("usdt", "btc"):
            return _error("INVALID_PARAM_VALUE", f"invalid argument: settle {settle}")
        contracts = self.contracts.values() if settle == SETTLE else ()
        return _json([self._contract_entry(contract) for contract in contracts])

    async def _rest_contract(self, request: web.Request) -> web.Response:
        contract = self.contracts.get(request.match_info["contract"])
        if request.match_info["settle"] != SETTLE or contract is None:
            return _error("CONTRACT_NOT_FOUND", "Contract not found", status=404)
        return _json(self._contract_entry(contract))

    async def _rest_order_book(self, request: web.Request) -> web.Response:
        query = request.query
        if "contract" not in query:
            return _error("MISSING_REQUIRED_PARAM", "Missing required parameter: contract")
        contract = self.contracts.get(query["contract"])
        if request.match_info["settle"] != SETTLE or contract is None:
            return _error("CONTRACT_NOT_FOUND", "Contract not found", status=404)
        limit_text = query.get("limit", str(REST_BOOK_DEFAULT_LIMIT))
        if not limit_text.isdigit() or not 0 < int(limit_text) <= REST_BOOK_MAX_LIMIT:
            return _error("INVALID_PARAM_VALUE", f"invalid argument: limit {limit_text}")
        if query.get("interval", "0") != "0":
            return _error("INVALID_PARAM_VALUE", "invalid argument: interval")
        depth = min(int(limit_text), BOOK_LEVELS)
        decimal = request.headers.get(SIZE_DECIMAL_HEADER) == "1"
        book = contract.book
        snapshot: dict[str, Any] = {}
        if query.get("with_id") == "true":
            snapshot["id"] = book.update_id
        now = now_ms()
        snapshot |= {
            "current": now / 1000,
            "update": book.timestamp_ms / 1000,
            "asks": [{"p": book.price(tick), "s": _size(size, decimal)} for tick, size in contract.asks(depth).items()],
            "bids": [{"p": book.price(tick), "s": _size(size, decimal)} for tick, size in contract.bids(depth).items()],
        }
        return _json(snapshot)

    async def _rest_currencies(self, request: web.Request) -> web.Response:
        coins = ["USDT", *dict.fromkeys(contract.book.instrument.coin for contract in self.contracts.values())]
        return _json([_currency(coin) for coin in coins])

    async def _rest_nothing(self, request: web.Request) -> web.Response:
        """Market types the simulator doesn't list (spot, margin, delivery, options): an empty list."""
        return _json([])

    def _contract_entry(self, contract: Contract) -> dict[str, Any]:
        """One perpetual as /futures/usdt/contracts lists it; ccxt reads name, quanto_multiplier, order_price_round,
        order_size_min/max, leverage, mark_price, order_price_deviate and status."""
        book, instrument = contract.book, contract.book.instrument
        stats = self.day_stats[contract.id]
        now = now_ms()
        rate = _rate(book.funding.rate)
        large = instrument.base in ("BTC", "ETH")
        return {
            "name": contract.id,
            "type": "direct",
            "quanto_multiplier": contract.multiplier,
            "ref_discount_rate": "0",
            "order_price_deviate": "0.05" if large else "0.1",
            "maintenance_rate": "0.004" if large else "0.01",
            "mark_type": "index",
            "last_price": book.price(stats.last_ticks),
            "mark_price": book.mark_price(),
            "index_price": book.index_price(),
            "funding_rate_indicative": rate,
            "mark_price_round": instrument.tick_size,
            "funding_offset": 0,
            "in_delisting": False,
            "risk_limit_base": "1000000" if large else "200000",
            "interest_rate": "0.0003",
            "order_price_round": instrument.tick_size,
            "order_size_min": 1,
            "ref_rebate_rate": "0.2",
            "funding_interval": book.funding.interval_hours * 3600,
            "risk_limit_step": "1000000" if large else "200000",
            "leverage_min": "1",
            "leverage_max": "125" if large else "75",
            "risk_limit_max": "50000000" if large else "5000000",
            "maker_fee_rate": "-0.0001",
            "taker_fee_rate": "0.00075",
            "funding_rate": rate,
            "order_size_max": 1_000_000,
            "funding_next_apply": book.funding.next_time_ms(now) // 1000,
            "short_users": 977,
            "config_change_time": self._launch_time + 86_400,
            "trade_size": 28_530_850_594 + stats.volume_contracts,
            "position_size": _open_interest(contract),
            "long_users": 455,
            "funding_impact_value": "60000" if large else "5000",
            "orders_limit": 100,
            "trade_id": 10_851_092 + stats.volume_contracts,
            "orderbook_id": book.update_id,
            "enable_bonus": True,
            "enable_credit": True,
            "create_time": self._launch_time,
            "funding_cap_ratio": "0.75",
            "voucher_leverage": "0",
            "is_pre_market": False,
            "status": "trading",
            "launch_time": self._launch_time,
            "enable_decimal": False,
            "cross_leverage_default": "10",
            "enable_circuit_breaker": False,
            "funding_rate_limit": "0.003",
            "market_order_slip_ratio": "0.05",
            "market_order_size_max": "500000",
            "contract_type": "",
        }


# --- helpers ------------------------------------------------------------------------------------


def _record_depth_changes(contract: Contract, watch: DepthWatch) -> None:
    """After a book step: the levels of each top-N view that changed, for every stream of that N."""
    for level, (old_bids, old_asks) in watch.views.items():
        bids, asks = contract.bids(level), contract.asks(level)
        changed_bids = [price for price, _ in diff_levels(old_bids, bids)]
        changed_asks = [price for price, _ in diff_levels(old_asks, asks)]
        watch.views[level] = bids, asks
        for stream in watch.streams.values():
            if stream.level == level:
                stream.changed_bids.update(changed_bids)
                stream.changed_asks.update(changed_asks)


def _topic(key: str, decimal: bool) -> str:
    """Subscribers are kept apart by size format, since one frame text serves one format."""
    return f"{key}|{'decimal' if decimal else 'integer'}"


def _topic_key(topic: str) -> str:
    return topic.rsplit("|", 1)[0]


def _size(contracts: int, decimal: bool) -> int | str:
    return str(contracts) if decimal else contracts


def _rate(rate: float) -> str:
    """Gate prints rates without trailing zeros: "0.0001", "-0.000212", "0"."""
    text = f"{rate:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _coins_text(contracts: int, multiplier: str) -> str:
    return _plain(Decimal(contracts) * Decimal(multiplier))


def _quote_volume(contract: Contract, stats: DayStats) -> str:
    instrument = contract.book.instrument
    quote = Decimal(stats.turnover) * Decimal(instrument.tick_size) * Decimal(contract.multiplier)
    return f"{quote:.2f}"


def _open_interest(contract: Contract) -> int:
    return contract.contracts(contract.book.instrument.lot_size * 5_000)


def _day_stats(book: SimulatedBook) -> DayStats:
    mid = (book.best_bid + book.best_ask) // 2
    return DayStats(open_ticks=mid, high_ticks=mid, low_ticks=mid, last_ticks=mid)


def _update(channel: str, result: Any, now: int | None = None) -> dict[str, Any]:
    now = now_ms() if now is None else now
    return {"time": now // 1000, "time_ms": now, "channel": channel, "event": "update", "result": result}


def _conn_id(session: Session) -> str:
    return f"{id(session):016x}"[-16:]


def _reply(session: Session, request: dict[str, Any], error: tuple[int, str] | None = None) -> dict[str, Any]:
    """Gate's answer to a (un)subscribe request: it echoes id, channel, event and payload."""
    now = now_ms()
    trace_id = uuid.uuid4().hex
    reply: dict[str, Any] = {"time": now // 1000, "time_ms": now}
    if "id" in request:
        reply["id"] = request["id"]
    reply |= {
        "conn_id": _conn_id(session),
        "trace_id": trace_id,
        "channel": request.get("channel", ""),
        "event": request.get("event", ""),
        "payload": request.get("payload", []),
    }
    if error is not None:
        reply["error"] = {"code": error[0], "message": error[1]}
    reply["result"] = {"status": "fail" if error is not None else "success"}
    reply["requestId"] = trace_id
    return reply


def _currency(coin: str) -> dict[str, Any]:
    chain = {"name": coin, "addr": "", "withdraw_disabled": False, "withdraw_delayed": False, "deposit_disabled": False}
    return {
        "currency": coin,
        "name": coin,
        "delisted": False,
        "withdraw_disabled": False,
        "withdraw_delayed": False,
        "deposit_disabled": False,
        "trade_disabled": False,
        "fixed_rate": "",
        "chain": coin,
        "chains": [chain],
    }


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _error(label: str, message: str, status: int = 400) -> web.Response:
    """Gate's REST error body; ccxt maps the label to an exception class."""
    return _json({"label": label, "message": message}, status=status)


SIMULATOR = GateioSimulator
