"""Bitget v2 (classic account) USDT-M perpetuals as ccxt.pro.bitget sees them.

Wire format after Bitget's v2 docs (contract/market/Get-All-Symbols-Contracts, websocket intro,
contract/websocket/public/Tickers-Channel and Order-Book-Channel) and public captures of the real socket:

* REST answers `{"code":"00000","msg":"success","requestTime":...,"data":...}`, numbers as strings. ccxt's
  load_markets asks /api/v2/mix/market/contracts once per productType (six of them, the demo "S" ones too);
  only USDT-FUTURES lists anything here. Spot symbols, margin currencies and the coin list exist (the last
  two for ccxt's defaults) so an unconfigured ccxt.pro.bitget loads too.
* One public socket, /v2/ws/public. `{"op":"subscribe","args":[{"instType","channel","instId"},...]}` is acked
  once per argument (`{"event":"subscribe","arg":...}`); unknown channels answer 30016, unknown instruments
  30001. The text `ping` is answered with the text `pong`, even while the venue is silent.
* `ticker` pushes the whole ticker (bid/ask/sizes, last, 24 h stats, mark, index, funding) every 200 ms.
* `books` sends a snapshot, then updates with the changed levels (size "0" removes one), `seq` (rising with
  every push, not one by one) and a CRC32 `checksum` over the top 25 levels (bid1:ask1:bid2:ask2..., each
  `price:size` as printed), signed 32 bit: the fields of Bitget's v2 docs (asks, bids, checksum, seq, ts; `pseq`,
  the previous push's seq, belongs to the v3/UTA frames). `books1`/`books5`/`books15` send a snapshot of their
  depth at each push (when the book moved), checksum 0.
* Sizes are coins (ccxt gives every Bitget contract a contractSize of 1).

The book window is the simulator's 50 levels per side (the real `books` snapshot holds up to 500).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import orjson
from aiohttp import web

from simulator.book import BOOK_LEVELS, Levels, ReferenceMarket, SimulatedBook, diff_levels, now_ms
from simulator.instruments import Instrument
from simulator.venue import Session, VenueSimulator

LISTED_PRODUCT_TYPE = "USDT-FUTURES"
PRODUCT_TYPES = (LISTED_PRODUCT_TYPE, "COIN-FUTURES", "USDC-FUTURES", "SUSDT-FUTURES", "SCOIN-FUTURES", "SUSDC-FUTURES")
"""What /api/v2/mix/market/contracts accepts; ccxt asks for each of them."""
WS_INST_TYPES = frozenset({*PRODUCT_TYPES, "SPOT"})
SUCCESS_CODE = "00000"
MAX_CHANNELS_PER_CONNECTION = 1000
"""Bitget: at most 1000 channels per connection (under 50 advised)."""
TICKER_CHANNEL = "ticker"
INCREMENTAL_BOOK_CHANNEL = "books"
TICKER_PUSH_MS = 200
"""Bitget documents 100-300 ms and pushes the ticker whether or not it changed."""
CHECKSUM_LEVELS = 25
ZERO_SIZE = "0"


@dataclass(frozen=True)
class BookChannel:
    depth: int
    interval_ms: int
    incremental: bool = False


BOOK_CHANNELS: dict[str, BookChannel] = {
    INCREMENTAL_BOOK_CHANNEL: BookChannel(BOOK_LEVELS, 100, incremental=True),
    "books1": BookChannel(1, 20),
    "books5": BookChannel(5, 100),
    "books15": BookChannel(15, 100),
}
"""v2 contract depth channels and their push intervals (documented 150 ms and 10 ms; captured 100 ms and 23 ms)."""


@dataclass
class DayStats:
    """The 24 h figures a Bitget ticker carries. No trades are simulated: the last price is the mid, high and
    low follow it, volume and open interest are made up once."""

    open_ticks: int
    high_ticks: int
    low_ticks: int
    volume_steps: int
    holding_steps: int

    def observe(self, last_ticks: int) -> None:
        self.high_ticks = max(self.high_ticks, last_ticks)
        self.low_ticks = min(self.low_ticks, last_ticks)


@dataclass
class TickerStream:
    topic: str
    arg: dict[str, str]
    book: SimulatedBook
    next_push_at: int


@dataclass
class BookStream:
    """One depth channel of one symbol and the levels its subscribers hold (for `books`: what the next update
    is diffed against, and what its checksum covers)."""

    topic: str
    arg: dict[str, str]
    channel: BookChannel
    book: SimulatedBook
    bids: Levels
    asks: Levels
    seq: int
    next_push_at: int
    pushed_update_id: int
    force: bool = False
    """Push even if the book did not move (to take back an injected crossed level, or resend a garbled frame)."""

    def due(self, now: int) -> bool:
        if now < self.next_push_at:
            return False
        self.next_push_at += self.channel.interval_ms
        if self.next_push_at <= now:
            self.next_push_at = now + self.channel.interval_ms
        return True


class BitgetSimulator(VenueSimulator):
    name: ClassVar[str] = "bitget"

    def __init__(self, instruments: tuple[Instrument, ...], reference: ReferenceMarket, rate: float, seed: int) -> None:
        super().__init__(instruments, reference, rate, seed)
        self.day_stats = {venue_id: _day_stats(book) for venue_id, book in self.books.items()}
        self.ticker_streams: dict[str, TickerStream] = {}
        self.book_streams: dict[str, BookStream] = {}

    # --- configuration --------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v2/public/time", self._get_time),
            web.get("/api/v2/mix/market/contracts", self._get_contracts),
            web.get("/api/v2/spot/public/symbols", self._get_spot_symbols),
            web.get("/api/v2/spot/public/coins", self._get_coins),
            web.get("/api/v2/margin/currencies", self._get_margin_currencies),
            web.get("/v2/ws/public", self.handle_ws),
        ]

    def ccxt_config(self, http_base: str, ws_base: str) -> dict[str, Any]:
        """ccxt builds REST URLs as urls.api[<section>] + "/api/" + path (every section is `https://api.{hostname}`)
        and dials urls.api.ws.public; the demo and UTA sockets are pointed here too so nothing escapes."""
        sections = ("spot", "mix", "user", "p2p", "broker", "margin", "common", "tax", "convert", "copy", "earn", "uta")
        sockets = {
            "public": f"{ws_base}/v2/ws/public",
            "private": f"{ws_base}/v2/ws/private",
            "utaPublic": f"{ws_base}/v3/ws/public",
            "utaPrivate": f"{ws_base}/v3/ws/private",
        }
        return {"urls": {"api": {**dict.fromkeys(sections, http_base), "ws": sockets, "demo": dict(sockets)}}}

    # --- REST -----------------------------------------------------------------------------------

    async def _get_time(self, request: web.Request) -> web.Response:
        return _ok({"serverTime": str(now_ms())})

    async def _get_contracts(self, request: web.Request) -> web.Response:
        product_type = request.query.get("productType", "")
        if product_type not in PRODUCT_TYPES:
            return _error("40019", "Parameter productType cannot be empty", status=400)
        if product_type != LISTED_PRODUCT_TYPE:
            return _ok([])
        symbol = request.query.get("symbol")
        if symbol is not None and symbol.upper() not in self.books:
            return _error("40034", "Parameter symbol does not exist", status=400)
        books = [self.books[symbol.upper()]] if symbol else [self.books[venue_id] for venue_id in sorted(self.books)]
        return _ok([_contract(book.instrument) for book in books])

    async def _get_spot_symbols(self, request: web.Request) -> web.Response:
        """The simulator serves Bitget's futures only; the spot list exists so ccxt's default load works."""
        return _ok([])

    async def _get_margin_currencies(self, request: web.Request) -> web.Response:
        return _ok([])

    async def _get_coins(self, request: web.Request) -> web.Response:
        """ccxt's fetch_currencies (part of load_markets unless the user turns it off)."""
        coins = sorted({book.instrument.coin for book in self.books.values()} | {"USDT"})
        return _ok([_coin(index, coin) for index, coin in enumerate(coins, start=1)])

    # --- WebSocket control ----------------------------------------------------------------------

    async def on_client_message(self, session: Session, message: Any) -> None:
        if message == "ping":
            await self.send(session, "pong")
            return
        if not isinstance(message, dict) or "op" not in message:
            text = message if isinstance(message, str) else orjson.dumps(message).decode()
            await self.send(session, {"event": "error", "code": 30002, "msg": f"Unrecognized request:{text[:200]}"})
            return
        op, args = message.get("op"), message.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            await self.send(session, {"event": "error", "code": 30003, "msg": "Invalid op", "op": str(op)})
            return
        for raw in args:
            arg = _normalized_arg(raw)
            problem = self._arg_problem(arg)
            if problem is not None:
                code, text = problem
                await self.send(session, {"event": "error", "arg": raw, "code": code, "msg": text, "op": op})
                continue
            topic = f"{arg['channel']}.{arg['instId']}"
            if op == "subscribe" and topic not in session.topics and len(session.topics) >= MAX_CHANNELS_PER_CONNECTION:
                await self.send(session, {"event": "error", "arg": raw, "code": 30006,
                                          "msg": "subscribe channel exceeds the limit", "op": op})
                continue
            await self.send(session, {"event": op, "arg": arg})
            if op == "unsubscribe":
                self.unsubscribe(session, topic)
            else:
                await self._start_stream(session, topic, arg)

    def _arg_problem(self, arg: dict[str, str]) -> tuple[int, str] | None:
        """Bitget's error code and text for an argument this socket cannot serve, or None."""
        inst_type, channel, inst_id = arg.get("instType", ""), arg.get("channel", ""), arg.get("instId", "")
        if inst_type not in WS_INST_TYPES or (channel != TICKER_CHANNEL and channel not in BOOK_CHANNELS):
            return 30016, "Param error"
        if inst_type != LISTED_PRODUCT_TYPE or inst_id not in self.books:
            return 30001, f"instType:{inst_type},channel:{channel},instId:{inst_id} doesn't exist"
        return None

    async def _start_stream(self, session: Session, topic: str, arg: dict[str, str]) -> None:
        """Subscribe and send this session its first frame (for `books`: the snapshot the next update applies to)."""
        fresh = not self.has_subscribers(topic)
        book = self.books[arg["instId"]]
        now = now_ms()
        phase = zlib.crc32(topic.encode())
        if arg["channel"] == TICKER_CHANNEL:
            if fresh or topic not in self.ticker_streams:
                self.ticker_streams[topic] = TickerStream(topic, arg, book, now + phase % TICKER_PUSH_MS)
            self.subscribe(session, topic)
            await self.send_data(session, self._ticker_frame(self.ticker_streams[topic], now, crossed=False))
            return
        stream = self.book_streams.get(topic)
        if fresh or stream is None:
            channel = BOOK_CHANNELS[arg["channel"]]
            stream = BookStream(
                topic, arg, channel, book, book.bids(channel.depth), book.asks(channel.depth),
                seq=book.update_id, next_push_at=now + phase % channel.interval_ms, pushed_update_id=book.update_id,
            )
            self.book_streams[topic] = stream
        self.subscribe(session, topic)
        checksum = _checksum(book, stream.bids, stream.asks) if stream.channel.incremental else 0
        snapshot = _book_frame(stream, "snapshot", stream.bids.items(), stream.asks.items(), checksum)
        await self.send_data(session, snapshot)

    # --- the feed -------------------------------------------------------------------------------

    async def on_book_update(self, book: SimulatedBook) -> None:
        """Nothing at once: Bitget pushes on its own cadence (on_tick), with the book as it is then."""

    async def on_tick(self, now: int) -> None:
        if self.faults.silent:
            # Frames sent now would be lost, so nothing is pushed: each `books` update stays diffed against
            # what its subscribers really hold, and they pick up where they were when the venue speaks again.
            return
        for topic, ticker_stream in tuple(self.ticker_streams.items()):
            if now < ticker_stream.next_push_at:
                continue
            if not self.has_subscribers(topic):
                del self.ticker_streams[topic]
                continue
            ticker_stream.next_push_at += TICKER_PUSH_MS
            if ticker_stream.next_push_at <= now:
                ticker_stream.next_push_at = now + TICKER_PUSH_MS
            await self.publish(topic, self._ticker_frame(ticker_stream, now, crossed=self.faults.take_crossed()))
        for topic, book_stream in tuple(self.book_streams.items()):
            if not book_stream.due(now):
                continue
            if self.has_subscribers(topic):
                await self._push_book(book_stream)
            else:
                del self.book_streams[topic]

    async def _push_book(self, stream: BookStream) -> None:
        book, depth = stream.book, stream.channel.depth
        if book.update_id == stream.pushed_update_id and not stream.force:
            return
        bids, asks = book.bids(depth), book.asks(depth)
        crossed = self.faults.take_crossed()
        if crossed:
            # One frame shows a bid above the best ask; the following push takes it back.
            phantom = {book.best_ask + 1: book.bid_sizes[0]}
            bids = {**phantom, **bids} if depth > 1 else phantom
        previous_seq = stream.seq
        stream.seq = max(book.update_id, stream.seq + 1)
        if stream.channel.incremental:
            bid_changes, ask_changes = diff_levels(stream.bids, bids), diff_levels(stream.asks, asks)
            if not (bid_changes or ask_changes):
                stream.seq, stream.pushed_update_id, stream.force = previous_seq, book.update_id, False
                return
            frame = _book_frame(stream, "update", bid_changes, ask_changes, _checksum(book, bids, asks))
            if self.withhold_diff(book):
                stream.pushed_update_id, stream.force = book.update_id, crossed
                stream.bids, stream.asks = bids, asks
                return
        else:
            frame = _book_frame(stream, "snapshot", bids.items(), asks.items(), 0)
        garbled = await self.publish_data(stream.topic, frame)
        stream.pushed_update_id, stream.force = book.update_id, crossed or garbled
        if garbled and stream.channel.incremental:
            return  # the subscribers could not apply it: the next update is diffed against what they still hold
        stream.bids, stream.asks = bids, asks

    def _ticker_frame(self, stream: TickerStream, now: int, crossed: bool) -> dict[str, Any]:
        book = stream.book
        instrument = book.instrument
        stats = self.day_stats[instrument.venue_id]
        last = _last_ticks(book)
        stats.observe(last)
        bid = book.best_ask + 1 if crossed else book.best_bid
        volume = Decimal(book.size(stats.volume_steps))
        return {
            "action": "snapshot",
            "arg": stream.arg,
            "data": [
                {
                    "instId": instrument.venue_id,
                    "lastPr": book.price(last),
                    "bidPr": book.price(bid),
                    "askPr": book.price(book.best_ask),
                    "bidSz": book.size(book.bid_sizes[0]),
                    "askSz": book.size(book.ask_sizes[0]),
                    "open24h": book.price(stats.open_ticks),
                    "high24h": book.price(stats.high_ticks),
                    "low24h": book.price(stats.low_ticks),
                    "change24h": f"{(last - stats.open_ticks) / stats.open_ticks:.5f}",
                    "fundingRate": _funding_rate(book),
                    "nextFundingTime": str(book.funding.next_time_ms(now)),
                    "markPrice": book.mark_price(),
                    "indexPrice": book.index_price(),
                    "holdingAmount": book.size(stats.holding_steps),
                    "baseVolume": book.size(stats.volume_steps),
                    "quoteVolume": f"{volume * Decimal(book.price(last)):.{instrument.price_decimals}f}",
                    "openUtc": book.price(stats.open_ticks),
                    "symbolType": 1,
                    "symbol": instrument.venue_id,
                    "deliveryPrice": "0",
                    "ts": str(now),
                }
            ],
            "ts": now,
        }

    # --- what the venue shows -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The base view plus what only a Bitget ticker carries; sizes are coins (contract size 1)."""
        state = super().state()
        for entry in state["symbols"].values():
            book = self.books[entry["id"]]
            entry["contract_size"] = 1
            entry["last"] = book.price(_last_ticks(book))
            entry["volume_24h"] = book.size(self.day_stats[entry["id"]].volume_steps)
        return state


# --- wire helpers -------------------------------------------------------------------------------


def _ok(data: Any) -> web.Response:
    return _json({"code": SUCCESS_CODE, "msg": "success", "requestTime": now_ms(), "data": data})


def _error(code: str, message: str, status: int) -> web.Response:
    """Bitget's error body; ccxt maps the code to an exception class."""
    return _json({"code": code, "msg": message, "requestTime": now_ms(), "data": None}, status=status)


def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _normalized_arg(raw: Any) -> dict[str, str]:
    """Bitget accepts a lowercase instId and echoes it uppercased."""
    if not isinstance(raw, dict):
        return {}
    arg = {key: str(value) for key, value in raw.items()}
    if "instId" in arg:
        arg["instId"] = arg["instId"].upper()
    return arg


def _funding_rate(book: SimulatedBook) -> str:
    """Bitget prints six decimals: "0.000010"."""
    return f"{book.funding.rate:.6f}"


def _last_ticks(book: SimulatedBook) -> int:
    return (book.best_bid + book.best_ask) // 2


def _wire_levels(book: SimulatedBook, levels: Iterable[tuple[int, int]], descending: bool) -> list[list[str]]:
    return [
        [book.price(ticks), book.size(steps) if steps else ZERO_SIZE]
        for ticks, steps in sorted(levels, reverse=descending)
    ]


def _checksum(book: SimulatedBook, bids: Levels, asks: Levels) -> int:
    """CRC32 of "bid1price:bid1size:ask1price:ask1size:bid2price:..." over the best 25 levels per side (a side
    that runs out is skipped), the numbers exactly as printed, as a signed 32-bit integer."""
    best_bids = sorted(bids, reverse=True)[:CHECKSUM_LEVELS]
    best_asks = sorted(asks)[:CHECKSUM_LEVELS]
    parts: list[str] = []
    for level in range(CHECKSUM_LEVELS):
        if level < len(best_bids):
            price = best_bids[level]
            parts += (book.price(price), book.size(bids[price]))
        if level < len(best_asks):
            price = best_asks[level]
            parts += (book.price(price), book.size(asks[price]))
    unsigned = zlib.crc32(":".join(parts).encode())
    return unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned


def _book_frame(
    stream: BookStream,
    action: str,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    checksum: int,
) -> dict[str, Any]:
    book = stream.book
    return {
        "action": action,
        "arg": stream.arg,
        "data": [
            {
                "asks": _wire_levels(book, asks, descending=False),
                "bids": _wire_levels(book, bids, descending=True),
                "checksum": checksum,
                "seq": stream.seq,
                "ts": str(book.timestamp_ms),
            }
        ],
        "ts": now_ms(),
    }


def _price_step(tick_size: str, decimals: int) -> str:
    """Bitget splits a tick into pricePlace (decimals) and priceEndStep (the step in the last decimal)."""
    return str(int(Decimal(tick_size).scaleb(decimals)))


def _contract(instrument: Instrument) -> dict[str, Any]:
    """One USDT-M perpetual as /api/v2/mix/market/contracts lists it."""
    qty = Decimal(instrument.qty_step)
    major = instrument.base in ("BTC", "ETH")
    return {
        "symbol": instrument.venue_id,
        "baseCoin": instrument.base,
        "quoteCoin": "USDT",
        "buyLimitPriceRatio": "0.01",
        "sellLimitPriceRatio": "0.01",
        "feeRateUpRatio": "0.005",
        "makerFeeRate": "0.0002",
        "takerFeeRate": "0.0006",
        "openCostUpRatio": "0.01",
        "supportMarginCoins": ["USDT"],
        "minTradeNum": instrument.qty_step,
        "priceEndStep": _price_step(instrument.tick_size, instrument.price_decimals),
        "volumePlace": str(instrument.qty_decimals),
        "pricePlace": str(instrument.price_decimals),
        "sizeMultiplier": instrument.qty_step,
        "symbolType": "perpetual",
        "minTradeUSDT": "5",
        "maxSymbolOrderNum": "200",
        "maxProductOrderNum": "400",
        "maxPositionNum": "150",
        "symbolStatus": "normal",
        "offTime": "-1",
        "limitOpenTime": "-1",
        "deliveryTime": "",
        "deliveryStartTime": "",
        "deliveryPeriod": "",
        "launchTime": "",
        "fundInterval": str(instrument.funding_interval_hours),
        "minLever": "1",
        "maxLever": "125" if major else "75",
        "posLimit": "0.05",
        "maintainTime": "",
        "maxMarketOrderQty": str((qty * instrument.lot_size * 500).quantize(qty)),
        "maxOrderQty": str((qty * instrument.lot_size * 2000).quantize(qty)),
    }


def _coin(coin_id: int, coin: str) -> dict[str, Any]:
    """One entry of /api/v2/spot/public/coins, with a single chain."""
    return {
        "coinId": str(coin_id),
        "coin": coin,
        "transfer": "true",
        "chains": [
            {
                "chain": "ERC20",
                "needTag": "false",
                "withdrawable": "true",
                "rechargeable": "true",
                "withdrawFee": "1",
                "extraWithdrawFee": "0",
                "depositConfirm": "12",
                "withdrawConfirm": "64",
                "minDepositAmount": "0.0001",
                "minWithdrawAmount": "0.001",
                "browserUrl": "https://etherscan.io/tx/",
                "contractAddress": None,
                "withdrawStep": "0",
                "withdrawMinScale": "8",
                "congestion": "normal",
            }
        ],
        "areaCoin": "no",
    }


def _day_stats(book: SimulatedBook) -> DayStats:
    mid = _last_ticks(book)
    open_ticks = round(mid * 0.98)
    lot = book.instrument.lot_size
    return DayStats(open_ticks, max(mid, round(mid * 1.01)), min(open_ticks, mid), lot * 30_000, lot * 5_000)


SIMULATOR = BitgetSimulator
