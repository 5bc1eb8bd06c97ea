"""Unmodified ccxt.pro.bybit against the Bybit simulator: markets, tickers, order books, keepalive and faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.pro
import pytest
from aiohttp import web
from ccxt.base.errors import BadRequest, NetworkError

from simulator.book import ReferenceMarket
from simulator.bybit import BybitSimulator
from simulator.instruments import INSTRUMENTS
from tests.frame_tops import observe_order_book, observe_quotes

PEPE = next(instrument for instrument in INSTRUMENTS if instrument.coin.endswith("PEPE"))
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", PEPE.unified_symbol]
"""Different tick sizes and funding intervals (8 h, 8 h, 4 h)."""


@dataclass
class Venue:
    sim: BybitSimulator
    http_base: str
    ws_base: str

    def exchange(self, **overrides: Any) -> ccxt.pro.bybit:
        return ccxt.pro.bybit({**self.sim.ccxt_config(self.http_base, self.ws_base), **overrides})


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    # Without volatility the index price holds still, so a frozen venue shows constant values.
    reference = ReferenceMarket(seed=7, volatility_per_sqrt_second=0.0)
    sim = BybitSimulator(INSTRUMENTS, reference, rate=20.0, seed=7)
    app, sub = web.Application(), web.Application()
    sub.add_routes(sim.routes())
    app.add_subapp("/bybit/", sub)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    feed = asyncio.create_task(sim.run())
    yield Venue(sim, f"http://127.0.0.1:{port}/bybit", f"ws://127.0.0.1:{port}/bybit")
    feed.cancel()
    await sim.drop_connections()
    await runner.cleanup()


@pytest.fixture
async def exchange(venue: Venue) -> AsyncIterator[ccxt.pro.bybit]:
    exchange = venue.exchange()
    yield exchange
    await exchange.close()


async def test_load_markets_lists_linear_perpetuals(exchange: ccxt.pro.bybit) -> None:
    markets = await exchange.load_markets()
    linear = {symbol for symbol, market in markets.items() if market["linear"]}
    assert linear == {instrument.unified_symbol for instrument in INSTRUMENTS}
    for instrument in INSTRUMENTS:
        market = markets[instrument.unified_symbol]
        assert (market["id"], market["type"], market["linear"], market["active"]) == (
            instrument.venue_id,
            "swap",
            True,
            True,
        )
        assert market["contractSize"] == 1
        assert market["precision"]["price"] == float(instrument.tick_size)
        assert market["precision"]["amount"] == float(instrument.qty_step)
        assert market["info"]["fundingInterval"] == instrument.funding_interval_hours * 60
    funding = await exchange.fetch_funding_rates(SYMBOLS)
    assert [funding[symbol]["interval"] for symbol in SYMBOLS] == ["8h", "8h", "4h"]


async def test_wire_format(venue: Venue) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{venue.ws_base}/v5/public/linear") as ws:
        await ws.send_json({"op": "subscribe", "req_id": "7", "args": ["tickers.BTCUSDT", "orderbook.50.BTCUSDT"]})
        ack = await ws.receive_json()
        assert (ack["success"], ack["op"], ack["req_id"], ack["ret_msg"]) == (True, "subscribe", "7", "")
        frames = [await ws.receive_json() for _ in range(30)]
        tickers = [frame for frame in frames if frame["topic"] == "tickers.BTCUSDT"]
        assert tickers[0]["type"] == "snapshot" and {"fundingRate", "nextFundingTime"} <= set(tickers[0]["data"])
        assert all(frame["type"] == "delta" and frame["data"]["symbol"] == "BTCUSDT" for frame in tickers[1:])
        assert any("fundingRate" not in frame["data"] for frame in tickers[1:])
        books = [frame for frame in frames if frame["topic"] == "orderbook.50.BTCUSDT"]
        assert books[0]["type"] == "snapshot" and len(books[0]["data"]["b"]) == len(books[0]["data"]["a"]) == 50
        assert [frame["type"] for frame in books[1:]] == ["delta"] * (len(books) - 1)
        assert [frame["data"]["u"] for frame in books] == list(
            range(books[0]["data"]["u"], books[0]["data"]["u"] + len(books))
        )
        await ws.send_json({"op": "ping", "req_id": "8"})
        pong = await _reply(ws, "8")
        assert (pong["success"], pong["ret_msg"], pong["op"]) == (True, "pong", "ping")
        await ws.send_json({"op": "subscribe", "req_id": "9", "args": ["kline.1.BTCUSDT"]})
        failure = await _reply(ws, "9")
        assert failure["success"] is False and failure["ret_msg"].startswith("error:handler not found")


async def _reply(ws: aiohttp.ClientWebSocketResponse, req_id: str) -> dict[str, Any]:
    """The control reply to `req_id`, skipping market data."""
    async with asyncio.timeout(2):
        while "topic" in (message := await ws.receive_json()) or message.get("req_id") != req_id:
            pass
    return message


async def test_watch_tickers_match_the_venue_exactly(venue: Venue, exchange: ccxt.pro.bybit) -> None:
    seen: set[str] = set()
    async with asyncio.timeout(5):
        for updates in range(1000):
            for symbol, ticker in (await exchange.watch_tickers(SYMBOLS)).items():
                seen.add(symbol)
                # mostly deltas: each still yields a complete ticker, merged into the previous one
                assert None not in (ticker["bid"], ticker["ask"], ticker["last"], ticker["indexPrice"])
                assert {"fundingRate", "nextFundingTime", "markPrice"} <= set(ticker["info"])
            if seen == set(SYMBOLS) and updates >= 20:
                break
    venue.sim.faults.frozen = True
    await asyncio.sleep(0.3)
    state = venue.sim.state()["symbols"]
    for symbol in SYMBOLS:
        ticker, expected = exchange.tickers[symbol], state[symbol]
        assert ticker["info"]["bid1Price"] == expected["bid"] and ticker["info"]["ask1Size"] == expected["ask_size"]
        assert ticker["bid"] == float(expected["bid"]) and ticker["bidVolume"] == float(expected["bid_size"])
        assert ticker["ask"] == float(expected["ask"]) and ticker["askVolume"] == float(expected["ask_size"])
        assert ticker["last"] == ticker["markPrice"] == float(expected["mark_price"])
        assert ticker["info"]["indexPrice"] == expected["index_price"]
        assert Decimal(ticker["info"]["fundingRate"]) == Decimal(expected["funding_rate"])
        assert int(ticker["info"]["nextFundingTime"]) == expected["next_funding_time"]


@pytest.mark.parametrize("limit", [1, 50, 200])
async def test_order_books_sync_with_the_venue(venue: Venue, exchange: ccxt.pro.bybit, limit: int) -> None:
    await exchange.load_markets()
    with pytest.raises(BadRequest):  # linear books come in depths 1, 50, 200, 1000 only
        await exchange.watch_order_book_for_symbols(SYMBOLS, limit=20)
    async with asyncio.timeout(5):  # each call returns one book; frames arriving together update the others
        while not set(SYMBOLS) <= set(exchange.orderbooks):
            await exchange.watch_order_book_for_symbols(SYMBOLS, limit=limit)
    venue.sim.faults.frozen = True
    await asyncio.sleep(0.4)  # longer than the slowest cadence (200: 100 ms)
    for symbol in SYMBOLS:
        book = venue.sim.books[exchange.market(symbol)["id"]]
        depth = min(limit, 50)
        bids = [[float(book.price(tick)), float(book.size(step))] for tick, step in book.bids(depth).items()]
        asks = [[float(book.price(tick)), float(book.size(step))] for tick, step in book.asks(depth).items()]
        orderbook = exchange.orderbooks[symbol]
        assert [list(level) for level in orderbook["bids"]] == bids
        assert [list(level) for level in orderbook["asks"]] == asks


async def test_ping_pong_keeps_a_silent_connection(venue: Venue) -> None:
    exchange = venue.exchange(streaming={"keepAlive": 1000})
    try:
        await exchange.watch_ticker("BTC/USDT:USDT")
        client = exchange.clients[f"{venue.ws_base}/v5/public/linear"]
        connection = client.connection
        venue.sim.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(venue.sim.sessions) == 1
        venue.sim.faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT:USDT"), 3)
        assert ticker["bid"] < ticker["ask"] and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(venue: Venue, exchange: ccxt.pro.bybit) -> None:
    await exchange.watch_ticker("ETH/USDT:USDT")
    venue.sim.faults.silent = True
    pending = asyncio.create_task(exchange.watch_ticker("ETH/USDT:USDT"))
    await asyncio.sleep(0.1)
    assert await venue.sim.drop_connections() == 1
    venue.sim.faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    ticker = await asyncio.wait_for(exchange.watch_ticker("ETH/USDT:USDT"), 5)
    assert ticker["bid"] < ticker["ask"] and len(venue.sim.sessions) == 1


@pytest.mark.parametrize("stream", ["ticker", "order book"])
async def test_crossed_fault_shows_then_heals(venue: Venue, exchange: ccxt.pro.bybit, stream: str) -> None:
    if stream == "ticker":
        frames = await observe_quotes(exchange, "SOL/USDT:USDT", via="ticker")
    else:
        frames = await observe_order_book(exchange, "SOL/USDT:USDT", 50)
    venue.sim.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert venue.sim.faults.crossed_pending == 0
