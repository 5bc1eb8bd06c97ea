"""Bybit spot in the simulator: an unmodified ccxt.pro.bybit loads spot pairs and streams their tickers and books."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.pro
import pytest
from ccxt.base.errors import ExchangeError, NetworkError

from collectors.venues.bybit import BybitSpot
from simulator.bybit import BybitSimulator, BybitSpotSimulator
from simulator.instruments import INSTRUMENTS
from simulator.server import Simulator
from tests.frame_tops import observe_order_book

SYMBOLS = ["BTC/USDT", "ETH/USDT", "PEPE/USDT"]
"""PEPE: linear lists 1000PEPEUSDT, spot lists the single coin."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["bybit"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def spot(sim: Simulator) -> BybitSpotSimulator:
    venue = sim.venues["bybit"]
    assert isinstance(venue, BybitSimulator)
    return venue.spot


def spot_exchange(sim: Simulator, **overrides: Any) -> ccxt.pro.bybit:
    """ccxt.bybit as the spot source builds it: its defaults with the simulator's `ccxt` block over them."""
    return ccxt.pro.bybit(ccxt.Exchange.deep_extend(BybitSpot.ccxt_defaults, sim.ccxt_config("bybit"), overrides))


@pytest.fixture
async def exchange(sim: Simulator) -> AsyncIterator[ccxt.pro.bybit]:
    client = spot_exchange(sim)
    yield client
    await client.close()


async def test_load_markets_lists_spot_pairs(exchange: ccxt.pro.bybit) -> None:
    markets = await exchange.load_markets()
    assert set(markets) == {f"{instrument.coin}/USDT" for instrument in INSTRUMENTS}
    for symbol, market in markets.items():
        assert (market["type"], market["spot"], market["active"], market["contractSize"]) == ("spot", True, True, None)
        assert market["id"] == symbol.replace("/", "")
    btc = next(instrument for instrument in INSTRUMENTS if instrument.coin == "BTC")
    assert markets["BTC/USDT"]["precision"] == {**markets["BTC/USDT"]["precision"],
                                                "price": float(btc.tick_size), "amount": float(btc.qty_step)}
    assert markets["PEPE/USDT"]["precision"]["price"] == 1e-08
    ticker = await exchange.fetch_ticker("ETH/USDT")
    assert ticker["bid"] < ticker["ask"] and ticker["markPrice"] is None


async def test_wire_format(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sim.ws_base}/bybit/v5/public/spot") as ws:
        await ws.send_json({"op": "subscribe", "req_id": "1", "args": ["tickers.BTCUSDT", "orderbook.200.BTCUSDT"]})
        ack = await ws.receive_json()
        assert (ack["success"], ack["op"], ack["req_id"]) == (True, "subscribe", "1")
        frames = [await ws.receive_json() for _ in range(12)]
        tickers = [frame for frame in frames if frame["topic"] == "tickers.BTCUSDT"]
        assert tickers and all(frame["type"] == "snapshot" for frame in tickers)
        assert list(tickers[0]["data"]) == ["symbol", "lastPrice", "highPrice24h", "lowPrice24h", "prevPrice24h",
                                            "volume24h", "turnover24h", "price24hPcnt", "usdIndexPrice"]
        books = [frame for frame in frames if frame["topic"] == "orderbook.200.BTCUSDT"]
        assert books[0]["type"] == "snapshot" and len(books[0]["data"]["b"]) == 50  # all the simulator keeps
        eleven = [f"tickers.{instrument.venue_id}" for instrument in INSTRUMENTS[:11]]
        await ws.send_json({"op": "subscribe", "req_id": "2", "args": eleven})
        refused = await _reply(ws, "2")
        assert refused["success"] is False and refused["ret_msg"] == "args size >10"
        await ws.send_json({"op": "subscribe", "req_id": "3", "args": ["tickers.1000PEPEUSDT"]})
        assert (await _reply(ws, "3"))["success"] is False  # bundles exist on linear only


async def _reply(ws: aiohttp.ClientWebSocketResponse, req_id: str) -> dict[str, Any]:
    async with asyncio.timeout(2):
        while "topic" in (message := await ws.receive_json()) or message.get("req_id") != req_id:
            pass
    return message


async def test_watch_tickers_match_the_venue_exactly(spot: BybitSpotSimulator, exchange: ccxt.pro.bybit) -> None:
    async with asyncio.timeout(5):
        while not set(SYMBOLS) <= set(exchange.tickers):
            await exchange.watch_tickers(SYMBOLS)
    spot.faults.frozen = True
    await asyncio.sleep(0.3)
    state = spot.state()["symbols"]
    for symbol in SYMBOLS:
        ticker, shown = exchange.tickers[symbol], state[symbol]
        assert ticker["last"] == float(shown["last_price"]) and ticker["baseVolume"] == float(shown["volume_24h"])
        assert ticker["bid"] is ticker["markPrice"] is ticker["indexPrice"] is None  # spot tickers carry none
        assert shown["funding_rate"] is shown["next_funding_time"] is shown["mark_price"] is None
        assert Decimal(ticker["info"]["usdIndexPrice"]) > 0


@pytest.mark.parametrize("limit", [1, 50, 200])
async def test_order_books_sync_with_the_venue(spot: BybitSpotSimulator, exchange: ccxt.pro.bybit, limit: int) -> None:
    async with asyncio.timeout(5):
        while not set(SYMBOLS) <= set(exchange.orderbooks):
            await exchange.watch_order_book_for_symbols(SYMBOLS, limit=limit)
        for _ in range(20):
            await exchange.watch_order_book_for_symbols(SYMBOLS, limit=limit)
    spot.faults.frozen = True
    await asyncio.sleep(0.6)  # longer than the slowest spot cadence (200: 200 ms)
    state = spot.state()["symbols"]
    for symbol in SYMBOLS:
        book = spot.books[exchange.market(symbol)["id"]]
        depth = min(limit, 50)
        bids = [[float(book.price(tick)), float(book.size(step))] for tick, step in book.bids(depth).items()]
        asks = [[float(book.price(tick)), float(book.size(step))] for tick, step in book.asks(depth).items()]
        orderbook = exchange.orderbooks[symbol]
        assert [list(level) for level in orderbook["bids"]] == bids
        assert [list(level) for level in orderbook["asks"]] == asks
        assert (bids[0][0], bids[0][1]) == (float(state[symbol]["bid"]), float(state[symbol]["bid_size"]))


async def test_ping_pong_keeps_a_silent_connection(sim: Simulator, spot: BybitSpotSimulator) -> None:
    exchange = spot_exchange(sim, streaming={"keepAlive": 1000})
    try:
        await exchange.watch_ticker("BTC/USDT")
        client = exchange.clients[f"{sim.ws_base}/bybit/v5/public/spot"]
        connection = client.connection
        spot.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(spot.sessions) == 1
        spot.faults.silent = False
        book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT", 50), 3)
        assert book["bids"][0][0] < book["asks"][0][0] and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(sim, spot, exchange) -> None:
    await exchange.watch_order_book("ETH/USDT", 50)
    spot.faults.silent = True
    pending = asyncio.create_task(exchange.watch_order_book("ETH/USDT", 50))
    await asyncio.sleep(0.1)
    assert await sim.venues["bybit"].drop_connections() == 1  # the linear side has no client here
    spot.faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    book = await asyncio.wait_for(exchange.watch_order_book("ETH/USDT", 50), 5)
    assert book["bids"][0][0] < book["asks"][0][0] and len(spot.sessions) == 1


async def test_crossed_book_shows_then_heals(spot: BybitSpotSimulator, exchange: ccxt.pro.bybit) -> None:
    frames = await observe_order_book(exchange, "SOL/USDT", 50)
    spot.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert spot.faults.crossed_pending == 0


async def test_more_than_ten_symbols_in_one_request_are_refused(exchange: ccxt.pro.bybit) -> None:
    await exchange.load_markets()
    eleven = [f"{instrument.coin}/USDT" for instrument in INSTRUMENTS[:11]]
    with pytest.raises(ExchangeError, match="args size"):
        await asyncio.wait_for(exchange.watch_tickers(eleven), 5)
