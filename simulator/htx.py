"""HTX (ex-Huobi) USDT-margined perpetual swaps as ccxt.pro.htx sees them: the linear-swap REST endpoints on
api.hbdm.com and the market WebSocket `/linear-swap-ws`.

Wire format follows HTX's USDT-margined contracts API (huobiapi.github.io/docs/usdt_swap/v1/en):

* REST answers `{"status":"ok","data":[...],"ts":...}` (v1) or `{"code":200,"message":"Success","data":[...]}` (v5);
  prices are JSON numbers, funding rates and mark klines are strings.
* Every WebSocket frame the server sends is GZIP-compressed binary. Subscribing is `{"sub": topic, "id": ...}`,
  acknowledged with `{"id","status":"ok","subbed",...}`; errors carry `"status":"error","err-code":"bad-request"`.
* The server pings `{"ping": ts}` every 5 s and drops a client that leaves 5 pings unanswered (`{"pong": ts}`).
* `market.$code.depth.size_{20,150}.high_freq` with `data_type: incremental` sends a snapshot, then the levels that
  changed (size 0 removes), checked every 30 ms; `version` goes up by one per push. `market.$code.detail` is the
  rolling 24 h statistics, checked every 0.5 s and pushed when a trade happened.
* Sizes are whole contracts: one contract is `contract_size` coins (BTC-USDT 0.001, ETH-USDT 0.01, ...).

The simulator has no trades: each book update counts as one trade at the touch, which drives last and volume.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from simulator.book import Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument
from simulator.venue import Session, VenueSimulator

WS_PATH = "/linear-swap-ws"
STEPS_PER_CONTRACT: dict[str, int] = {"BTC": 1, "ETH": 10, "SOL": 100, "XRP": 100, "DOGE": 100, "BNB": 1, "TRX": 100}
"""Qty steps of the shared book per contract: BTC 0.001 (= its step), ETH 0.01, SOL 1, XRP 10, DOGE 100 coins."""
DEFAULT_STEPS_PER_CONTRACT = 10
BOOK_SIZES = (20, 150)
BOOK_CHECK_MS = 30
DETAIL_CHECK_MS = 500
HEARTBEAT_CHECK_MS = 100
FULL_BOOK_SUFFIX = "#snapshot"
"""Internal topic key of a depth subscription with data_type "snapshot" (every push a full book)."""
FUNDING_CAP = "0.00375"
CREATE_DATE = "20201021"


@dataclass(frozen=True)
class Contract:
    """How the shared book (qty steps) is printed in HTX contracts."""

    code: str
    steps: int
    size: Decimal
    """Coins per contract."""

    def contracts(self, steps: int) -> int:
        """Whole contracts, at least one for a level that exists."""
        return max(1, round(steps / self.steps))

    def coins(self, contracts: int) -> Decimal:
        return self.size * contracts


@dataclass
class BookStream:
    """One depth topic: what its subscribers hold, so the next push carries only the changes."""

    key: str
    channel: str
    book: SimulatedBook
    size: int
    incremental: bool
    bids: Levels
    asks: Levels
    version: int
    pushed_update: int
    force: bool = False
    """Push even if the book did not move (to remove an injected crossed bid)."""
    resync: bool = False
    """Next push is a full snapshot (after a garbled frame or a silent spell, which clients could not follow)."""


@dataclass
class DayStats:
    """Rolling 24 h statistics from the simulated trades; sizes in contracts, turnover in ticks x contracts."""

    open: int
    high: int
    low: int
    last: int
    contracts: int
    turnover: int
    count: int

    def record(self, ticks: int, contracts: int) -> None:
        self.last = ticks
        self.high, self.low = max(self.high, ticks), min(self.low, ticks)
        self.contracts += contracts
        self.turnover += ticks * contracts
        self.count += 1


@dataclass
class Heartbeat:
    next_ping_ms: int
    unanswered: int = 0


class HtxSimulator(VenueSimulator):
    name = "htx"
    ping_interval_ms = 5_000
    max_unanswered_pings = 5
    """A client that leaves this many pings in a row unanswered is disconnected (tests shrink both)."""

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        self.by_code: dict[str, SimulatedBook] = {}
        self.contracts: dict[str, Contract] = {}
        self.day_stats: dict[str, DayStats] = {}
        for book in self.books.values():
            instrument = book.instrument
            code = f"{instrument.base}-USDT"
            steps = STEPS_PER_CONTRACT.get(instrument.base, DEFAULT_STEPS_PER_CONTRACT)
            self.by_code[code] = book
            self.contracts[code] = Contract(code, steps, Decimal(instrument.qty_step) * steps)
            mid = (book.best_bid + book.best_ask) // 2
            volume = instrument.lot_size * 2_000 // steps + 1
            self.day_stats[code] = DayStats(mid, mid, mid, mid, volume, volume * mid, 1_000)
        self.book_streams: dict[str, BookStream] = {}
        self.detail_pushed: dict[str, int] = {}
        """Detail topic -> trade count when it was last pushed."""
        self.heartbeats: dict[Session, Heartbeat] = {}
        self.pongs_received = 0
        self._next_book_check = 0
        self._next_detail_check = 0
        self._next_heartbeat_check = 0
        self._was_silent = False
        self._closing: set[asyncio.Task[Any]] = set()

    # --- configuration --------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/linear-swap-api/v1/swap_contract_info", self._get_contract_info),
            web.get("/linear-swap-api/v1/swap_index", self._get_index),
            web.get("/v5/market/funding_rate", self._get_funding_rate),
            web.get("/index/market/history/linear_swap_mark_price_kline", self._get_mark_price_kline),
            web.get(WS_PATH, self.handle_ws),
        ]

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt builds REST URLs from urls.api[<api>] ('https://{hostname}', the hostname from urls.hostnames) and
        dials urls.api.ws[options.api][<type>].linear.public for swaps; both 'api' and 'api-aws' are covered."""
        rest = {api: http_base for api in ("status", "contract", "spot", "public", "private", "v2Public", "v2Private")}
        linear = {"linear": {"public": f"{ws_base}{WS_PATH}"}}
        sockets = {variant: {"swap": linear, "future": linear} for variant in ("api", "api-aws")}
        return {"urls": {"api": {**rest, "ws": sockets}}}

    def state(self) -> dict[str, Any]:
        """The base view in HTX's terms: contract codes, sizes as printed (contracts) and in coins."""
        state = super().state()
        for symbol_state in state["symbols"].values():
            book = self.books[symbol_state.pop("id")]
            code = f"{book.instrument.base}-USDT"
            contract, stats = self.contracts[code], self.day_stats[code]
            bid_contracts = contract.contracts(book.bid_sizes[0])
            ask_contracts = contract.contracts(book.ask_sizes[0])
            symbol_state.update(
                id=code,
                contract_size=_text(contract.size),
                bid_contracts=bid_contracts,
                ask_contracts=ask_contracts,
                bid_size=_text(contract.coins(bid_contracts)),
                ask_size=_text(contract.coins(ask_contracts)),
                last_price=book.price(stats.last),
                volume_24h=_text(contract.coins(stats.contracts)),
            )
        return state

    # --- REST -----------------------------------------------------------------------------------

    async def _get_contract_info(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("business_type", "swap") not in ("swap", "all"):
            return _v1_ok([])  # no dated (futures) contracts are listed
        books = self._books(query.get("contract_code") or query.get("pair"))
        if books is None:
            return _v1_error(1332, "The contract doesn't exist.")
        return _v1_ok([self._contract_info(book, now_ms()) for book in books])

    async def _get_index(self, request: web.Request) -> web.Response:
        books = self._books(request.query.get("contract_code"))
        if books is None:
            return _v1_error(1332, "The contract doesn't exist.")
        return _v1_ok(
            [
                {
                    "index_price": float(book.index_price()),
                    "index_ts": book.timestamp_ms,
                    "contract_code": f"{book.instrument.base}-USDT",
                }
                for book in books
            ]
        )

    async def _get_funding_rate(self, request: web.Request) -> web.Response:
        """v5: one or more comma-separated contract codes (at most 10), required."""
        codes = [code.strip().upper() for code in request.query.get("contract_code", "").split(",") if code.strip()]
        if not codes:
            return _v5(1066, "The contract_code field cannot be empty. Please re-enter.", None)
        if len(codes) > 10 or any(code not in self.by_code for code in codes):
            return _v5(1014, "This contract doesn't exist.", None)
        now = now_ms()
        entries = []
        for code in codes:
            funding = self.by_code[code].funding
            settles = funding.next_time_ms(now)
            entries.append(
                {
                    "contract_code": code,
                    "funding_rate": _plain(funding.rate),
                    "funding_time": str(settles),
                    "next_funding_time": str(settles + funding.interval_hours * 3_600_000),
                    "min_funding_rate": f"-{FUNDING_CAP}",
                    "max_funding_rate": FUNDING_CAP,
                }
            )
        return _v5(200, "Success", entries)

    async def _get_mark_price_kline(self, request: web.Request) -> web.Response:
        """The simulator keeps no mark history: every candle shows the current mark price."""
        query = request.query
        code, period = query.get("contract_code", "").upper(), query.get("period", "")
        book = self.by_code.get(code)
        seconds = _PERIOD_SECONDS.get(period)
        if book is None:
            return _v1_error(1332, "The contract doesn't exist.")
        if seconds is None:
            return _v1_error(1067, f"Illegal parameter period: {period}.")
        size = min(max(_int(query.get("size"), 1), 1), 2000)
        mark, newest = book.mark_price(), time.time_ns() // 1_000_000_000 // seconds * seconds
        candles = [
            {"id": newest - seconds * back, "open": mark, "close": mark, "high": mark, "low": mark,
             "amount": "0", "vol": "0", "trade_turnover": "0", "count": "0"}
            for back in reversed(range(size))
        ]
        return _json({"ch": f"market.{code}.mark_price.{period}", "data": candles, "status": "ok", "ts": now_ms()})

    def _books(self, code: str | None) -> list[SimulatedBook] | None:
        if not code:
            return [self.by_code[code] for code in sorted(self.by_code)]
        book = self.by_code.get(code.upper())
        return None if book is None else [book]

    def _contract_info(self, book: SimulatedBook, now: int) -> dict[str, Any]:
        instrument = book.instrument
        code = f"{instrument.base}-USDT"
        return {
            "symbol": instrument.base,
            "contract_code": code,
            "contract_size": _number(self.contracts[code].size),
            "price_tick": float(instrument.tick_size),
            "delivery_date": "",
            "delivery_time": "",
            "create_date": CREATE_DATE,
            "contract_status": 1,
            "settlement_date": str(book.funding.next_time_ms(now)),
            "support_margin_mode": "all",
            "business_type": "swap",
            "pair": code,
            "contract_type": "swap",
            "trade_partition": "USDT",
        }

    # --- WebSocket protocol ---------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            await self._reply_error(session, None, "invalid request")
            return
        if "pong" in message:
            heartbeat = self.heartbeats.get(session)
            if heartbeat is not None:
                heartbeat.unanswered = 0
            self.pongs_received += 1
        elif "ping" in message:  # the heartbeat works both ways
            await self.send(session, {"pong": message["ping"]})
        elif "sub" in message:
            await self._subscribe(session, message)
        elif "unsub" in message:
            topic = str(message["unsub"])
            for key in (topic, topic + FULL_BOOK_SUFFIX):
                self.unsubscribe(session, key)
            await self.send(session, {"id": message.get("id"), "status": "ok", "unsubbed": topic, "ts": now_ms()})
        else:
            await self._reply_error(session, message.get("id"), "invalid request")

    async def _subscribe(self, session: Session, request: dict[str, Any]) -> None:
        topic, request_id = str(request["sub"]), request.get("id")
        parts = topic.split(".")
        book = self.by_code.get(parts[1]) if len(parts) > 2 and parts[0] == "market" else None
        if book is None:
            await self._reply_error(session, request_id, f"invalid topic {topic}")
            return
        if parts[2:] == ["detail"]:
            await self.send(session, {"id": request_id, "status": "ok", "subbed": topic, "ts": now_ms()})
            self.subscribe(session, topic)
            self.detail_pushed.setdefault(topic, -1)
            await self.send_data(session, self._detail_frame(book))
            return
        size = _book_size(parts[2:])
        data_type = request.get("data_type", "snapshot")
        if size is None or data_type not in ("incremental", "snapshot"):
            await self._reply_error(session, request_id, f"invalid topic {topic}")
            return
        ack = {"id": request_id, "status": "ok", "subbed": topic, "data_type": data_type, "ts": now_ms()}
        await self.send(session, ack)
        key = topic if data_type == "incremental" else topic + FULL_BOOK_SUFFIX
        stream = self.book_streams.get(key)
        if stream is None or not self.has_subscribers(key):
            bids, asks = self._levels(book, size)
            version = self.rng.randint(1_000_000, 9_000_000)
            stream = BookStream(key, topic, book, size, data_type == "incremental", bids, asks, version, book.update_id)
            self.book_streams[key] = stream
        self.subscribe(session, key)
        await self.send_data(session, _book_frame(stream, "snapshot", stream.bids.items(), stream.asks.items()))

    async def _reply_error(self, session: Session, request_id: Any, text: str) -> None:
        await self.send(session, {"status": "error", "err-code": "bad-request", "err-msg": text, "id": request_id,
                                  "ts": now_ms()})

    # --- sending: every frame is GZIP-compressed binary ------------------------------------------

    async def send(self, session: Session, payload: Any) -> None:
        if not session.ws.closed:
            await session.ws.send_bytes(_gzip(orjson.dumps(payload)))

    async def publish(self, topic: str, payload: Any) -> None:
        await self._publish(topic, payload)

    async def _publish(self, topic: str, payload: Any) -> bool:
        """publish() in binary; True when the frame went out garbled."""
        subscribers = self.subscribers.get(topic)
        if not subscribers or self.faults.silent:
            return False
        text, garbled = orjson.dumps(payload).decode(), self.faults.malformed_pending > 0
        if garbled:
            self.faults.malformed_pending -= 1
            text = self._malformed(text)
        frame = _gzip(text.encode())
        for session in tuple(subscribers):
            if session.stalled or session.ws.closed:
                continue
            try:
                await session.ws.send_bytes(frame)
            except ConnectionError:
                self._forget(session)
                continue
            self.frames_sent += 1
        return garbled

    # --- the feed -------------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        """One trade at the touch per update: the buyer lifts the ask on odd update ids."""
        code = f"{book.instrument.base}-USDT"
        contract = self.contracts[code]
        if book.update_id & 1:
            ticks, steps = book.best_ask, book.ask_sizes[0]
        else:
            ticks, steps = book.best_bid, book.bid_sizes[0]
        self.day_stats[code].record(ticks, max(1, contract.contracts(steps) // 8))

    async def on_tick(self, now: int) -> None:
        if now >= self._next_heartbeat_check:
            self._next_heartbeat_check = now + HEARTBEAT_CHECK_MS
            await self._heartbeat(now)
        silent = self.faults.silent
        if self._was_silent and not silent:
            for stream in self.book_streams.values():
                stream.resync = True
        self._was_silent = silent
        if silent:
            return
        if now >= self._next_book_check:
            self._next_book_check = now + BOOK_CHECK_MS
            for key, stream in tuple(self.book_streams.items()):
                if self.has_subscribers(key):
                    await self._push_book(stream)
                else:
                    del self.book_streams[key]
        if now >= self._next_detail_check:
            self._next_detail_check = now + DETAIL_CHECK_MS
            for topic, pushed in tuple(self.detail_pushed.items()):
                book = self.by_code[topic.split(".")[1]]
                if not self.has_subscribers(topic):
                    del self.detail_pushed[topic]
                elif (count := self.day_stats[f"{book.instrument.base}-USDT"].count) != pushed:
                    await self._publish(topic, self._detail_frame(book))
                    self.detail_pushed[topic] = count

    async def _heartbeat(self, now: int) -> None:
        """Ping every session; drop one that left `max_unanswered_pings` in a row unanswered."""
        for session in tuple(self.heartbeats):
            if session not in self.sessions:
                del self.heartbeats[session]
        for session in tuple(self.sessions):
            heartbeat = self.heartbeats.setdefault(session, Heartbeat(now + self.ping_interval_ms))
            if session.stalled or now < heartbeat.next_ping_ms:
                continue
            heartbeat.next_ping_ms = now + self.ping_interval_ms
            if heartbeat.unanswered >= self.max_unanswered_pings:  # close without waiting for the client's reply
                closing = asyncio.ensure_future(session.ws.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
                continue
            heartbeat.unanswered += 1
            await self.send(session, {"ping": now})

    async def _push_book(self, stream: BookStream) -> None:
        book = stream.book
        if book.update_id == stream.pushed_update and not (stream.force or stream.resync):
            return
        bids, asks = self._levels(book, stream.size)
        crossed = self.faults.take_crossed()
        if crossed:  # a bid one tick above the best ask, removed again by the next push
            bids = {**bids, min(asks) + 1: bids[max(bids)]}
        elif bids == stream.bids and asks == stream.asks and not stream.resync:
            stream.pushed_update, stream.force = book.update_id, False
            return
        if stream.resync or not stream.incremental:
            kind, bid_changes, ask_changes = "snapshot", bids.items(), asks.items()
        else:
            kind, bid_changes, ask_changes = "update", diff_levels(stream.bids, bids), diff_levels(stream.asks, asks)
        stream.version += 1
        if kind == "update" and self.withhold_diff(book):
            stream.bids, stream.asks = bids, asks
            stream.pushed_update, stream.force = book.update_id, crossed
            return
        garbled = await self._publish(stream.key, _book_frame(stream, kind, bid_changes, ask_changes))
        stream.bids, stream.asks = bids, asks
        stream.pushed_update, stream.force = book.update_id, crossed
        stream.resync = garbled  # clients may have dropped or half-applied it: the next push replaces their book

    def _levels(self, book: SimulatedBook, size: int) -> tuple[Levels, Levels]:
        contract = self.contracts[f"{book.instrument.base}-USDT"]
        bids = {ticks: contract.contracts(steps) for ticks, steps in book.bids(size).items()}
        asks = {ticks: contract.contracts(steps) for ticks, steps in book.asks(size).items()}
        return bids, asks

    def _detail_frame(self, book: SimulatedBook) -> dict[str, Any]:
        code = f"{book.instrument.base}-USDT"
        contract, stats = self.contracts[code], self.day_stats[code]
        now = now_ms()
        turnover = Decimal(stats.turnover) * contract.size * Decimal(book.instrument.tick_size)
        return {
            "ch": f"market.{code}.detail",
            "ts": now,
            "tick": {
                "id": now // 1000,
                "mrid": book.update_id,
                "open": float(book.price(stats.open)),
                "close": float(book.price(stats.last)),
                "high": float(book.price(stats.high)),
                "low": float(book.price(stats.low)),
                "amount": float(contract.coins(stats.contracts)),
                "vol": stats.contracts,
                "trade_turnover": float(turnover),
                "count": stats.count,
                "ask": [float(book.price(book.best_ask)), contract.contracts(book.ask_sizes[0])],
                "bid": [float(book.price(book.best_bid)), contract.contracts(book.bid_sizes[0])],
            },
        }


# --- wire helpers -------------------------------------------------------------------------------

_PERIOD_SECONDS = {"1min": 60, "5min": 300, "15min": 900, "30min": 1800, "60min": 3600, "4hour": 14_400,
                   "1day": 86_400, "1week": 604_800, "1mon": 2_592_000}


def _gzip(data: bytes) -> bytes:
    """A gzip member (what HTX sends); level 1 keeps the simulator cheap."""
    return zlib.compress(data, 1, wbits=31)


def _book_size(parts: list[str]) -> int | None:
    """20 or 150 for ["depth", "size_20", "high_freq"], else None."""
    if len(parts) != 3 or parts[0] != "depth" or parts[2] != "high_freq" or not parts[1].startswith("size_"):
        return None
    size = parts[1].removeprefix("size_")
    return int(size) if size.isdigit() and int(size) in BOOK_SIZES else None


def _book_frame(
    stream: BookStream, event: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
) -> dict[str, Any]:
    book = stream.book
    return {
        "ch": stream.channel,
        "tick": {
            "asks": [[float(book.price(ticks)), contracts] for ticks, contracts in sorted(asks)],
            "bids": [[float(book.price(ticks)), contracts] for ticks, contracts in sorted(bids, reverse=True)],
            "ch": stream.channel,
            "event": event,
            "id": book.update_id,
            "mrid": book.update_id,
            "ts": book.timestamp_ms,
            "version": stream.version,
        },
        "ts": now_ms(),
    }


def _text(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: "0.01", "100"."""
    return f"{value.normalize():f}"


def _number(value: Decimal) -> int | float:
    """A JSON number as HTX prints it: 10, not 10.0."""
    return int(value) if value == value.to_integral_value() else float(value)


def _plain(rate: float) -> str:
    """A funding rate as the v5 API prints it: "0.0001", "-0.000212"."""
    text = f"{rate:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def _v1_ok(data: list[dict[str, Any]]) -> web.Response:
    return _json({"status": "ok", "data": data, "ts": now_ms()})


def _v1_error(code: int, message: str) -> web.Response:
    """HTX reports request errors with HTTP 200."""
    return _json({"status": "error", "err_code": code, "err_msg": message, "ts": now_ms()})


def _v5(code: int, message: str, data: list[dict[str, Any]] | None) -> web.Response:
    return _json({"code": code, "message": message, "data": data, "ts": now_ms()})


SIMULATOR = HtxSimulator
