"""Unmodified ccxt.pro.htx against the HTX simulator: markets, books, details, REST funding, keepalive and faults."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from ccxt.base.errors import NetworkError

from collectors.venues.htx import HtxFutures
from simulator.htx import HtxSimulator
from simulator.instruments import INSTRUMENTS
from simulator.server import Simulator
from tests.frame_tops import observe_order_book, past_the_snapshot

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "1000PEPE/USDT:USDT"]
"""Contract sizes 0.001, 0.01 and 10; funding every 8, 8 and 4 h."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["htx"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


def venue_of(sim: Simulator) -> HtxSimulator:
    venue = sim.venues["htx"]
    assert isinstance(venue, HtxSimulator)
    return venue


def new_exchange(sim: Simulator, **overrides: Any) -> ccxt.pro.htx:
    config = ccxt.pro.htx.deep_extend(HtxFutures.ccxt_defaults, sim.ccxt_config("htx"), overrides)
    return ccxt.pro.htx(config)


@pytest.fixture
async def exchange(sim: Simulator) -> AsyncIterator[ccxt.pro.htx]:
    exchange = new_exchange(sim)
    yield exchange
    await exchange.close()


async def test_load_markets_lists_linear_swaps_in_contracts(sim: Simulator, exchange: ccxt.pro.htx) -> None:
    markets = await exchange.load_markets()
    assert set(markets) == {instrument.unified_symbol for instrument in INSTRUMENTS}
    for instrument in INSTRUMENTS:
        market = markets[instrument.unified_symbol]
        contract = venue_of(sim).contracts[market["id"]]
        assert (market["id"], market["type"], market["linear"], market["active"]) == (
            f"{instrument.base}-USDT", "swap", True, True)
        assert market["contractSize"] == float(contract.size)
        assert market["precision"] == {"price": float(instrument.tick_size), "amount": 1.0, "cost": None}
    assert [markets[symbol]["contractSize"] for symbol in SYMBOLS] == [0.001, 0.01, 10.0]


async def test_wire_format(sim: Simulator) -> None:
    venue_of(sim).ping_interval_ms = 300
    url = f"{sim.ws_base}/htx/linear-swap-ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        topic = "market.ETH-USDT.depth.size_20.high_freq"
        await ws.send_json({"sub": topic, "data_type": "incremental", "id": "7"})
        await ws.send_json({"sub": "market.ETH-USDT.depth.step0", "id": "8"})
        frames = [await _receive(ws) for _ in range(40)]
        acks = {frame["id"]: frame for frame in frames if "id" in frame}
        assert acks["7"]["status"] == "ok" and acks["7"]["subbed"] == topic
        assert (acks["8"]["status"], acks["8"]["err-code"]) == ("error", "bad-request")
        books = [frame["tick"] for frame in frames if frame.get("ch") == topic]
        assert books[0]["event"] == "snapshot" and len(books[0]["bids"]) == len(books[0]["asks"]) == 20
        assert all(book["event"] == "update" for book in books[1:])
        assert [book["version"] for book in books] == list(range(books[0]["version"], books[0]["version"] + len(books)))
        assert all(isinstance(size, int) and size > 0 for _, size in books[0]["bids"])
        assert any("ping" in frame for frame in frames)


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """One frame: every frame is gzip-compressed binary."""
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.BINARY
    return orjson.loads(gzip.decompress(message.data))


@pytest.mark.parametrize("size", [20, 150])
async def test_order_books_sync_exactly(sim: Simulator, exchange: ccxt.pro.htx, size: int) -> None:
    await exchange.load_markets()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 3:  # about 60 increments per symbol, each must chain onto the last version
        await asyncio.gather(*(exchange.watch_order_book(symbol, size) for symbol in SYMBOLS))
    venue = venue_of(sim)
    venue.faults.frozen = True
    await asyncio.sleep(0.3)
    for symbol in SYMBOLS:
        code = exchange.market(symbol)["id"]
        book, contract = venue.by_code[code], venue.contracts[code]
        orderbook = exchange.orderbooks[symbol]
        expected_bids = [[float(book.price(t)), contract.contracts(s)] for t, s in book.bids(size).items()]
        expected_asks = [[float(book.price(t)), contract.contracts(s)] for t, s in book.asks(size).items()]
        assert [list(level) for level in orderbook["bids"]] == expected_bids
        assert [list(level) for level in orderbook["asks"]] == expected_asks
        state = venue.state()["symbols"][symbol]
        assert orderbook["bids"][0][1] * float(state["contract_size"]) == pytest.approx(float(state["bid_size"]))


async def test_details_match_the_venue(sim: Simulator, exchange: ccxt.pro.htx) -> None:
    for symbol in SYMBOLS:
        ticker = await exchange.watch_ticker(symbol)
        assert ticker["symbol"] == symbol and ticker["last"] > 0
    venue = venue_of(sim)
    venue.faults.frozen = True
    await asyncio.sleep(1.2)  # details are checked every 0.5 s
    state = venue.state()["symbols"]
    for symbol in SYMBOLS:
        ticker = exchange.tickers[symbol]
        assert ticker["last"] == float(state[symbol]["last_price"])
        assert ticker["baseVolume"] == float(state[symbol]["volume_24h"])  # coins (HTX `amount`), not contracts


async def test_funding_mark_and_index_over_rest(sim: Simulator, exchange: ccxt.pro.htx) -> None:
    await exchange.load_markets()
    venue = venue_of(sim)
    venue.faults.frozen = True
    snapshots = await HtxFutures().poll_funding(exchange, SYMBOLS)
    state = venue.state()["symbols"]
    for symbol in SYMBOLS:
        snapshot, expected = snapshots[symbol], state[symbol]
        assert snapshot.rate == float(expected["funding_rate"])
        assert snapshot.next_time == expected["next_funding_time"]
        assert snapshot.interval_hours == expected["funding_interval_hours"]
        assert snapshot.mark_price == float(expected["mark_price"])
        assert snapshot.index_price == float(expected["index_price"])
    assert [snapshots[symbol].interval_hours for symbol in SYMBOLS] == [8, 8, 4]


async def test_heartbeat_keeps_a_silent_connection(sim: Simulator) -> None:
    venue = venue_of(sim)
    venue.ping_interval_ms, venue.max_unanswered_pings = 200, 2
    exchange = new_exchange(sim, streaming={"keepAlive": 1000})
    try:
        await exchange.watch_ticker("BTC/USDT:USDT")
        client = exchange.clients[f"{sim.ws_base}/htx/linear-swap-ws"]
        connection, pongs = client.connection, venue.pongs_received
        venue.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # ccxt: 3 keepalive intervals; venue: 17 pings, 2 unanswered close the socket
        assert venue.pongs_received - pongs >= 10 and client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(venue.sessions) == 1
        venue.faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT:USDT"), 3)
        assert ticker["last"] > 0 and client.connection is connection
    finally:
        await exchange.close()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sim.ws_base}/htx/linear-swap-ws") as ws:
        async with asyncio.timeout(3):  # a client that never answers is dropped
            while (await ws.receive()).type == aiohttp.WSMsgType.BINARY:
                pass
        assert ws.closed


async def test_dropped_connection_fails_the_watch_and_reconnects(sim: Simulator, exchange: ccxt.pro.htx) -> None:
    venue = venue_of(sim)
    await exchange.watch_order_book("ETH/USDT:USDT")
    venue.faults.silent = True
    pending = asyncio.create_task(exchange.watch_order_book("ETH/USDT:USDT"))
    await asyncio.sleep(0.1)
    assert await venue.drop_connections() == 1
    venue.faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    orderbook = await asyncio.wait_for(exchange.watch_order_book("ETH/USDT:USDT"), 5)
    assert orderbook["bids"][0][0] < orderbook["asks"][0][0] and len(venue.sessions) == 1


async def test_crossed_fault_shows_then_heals(sim: Simulator, exchange: ccxt.pro.htx) -> None:
    frames = await observe_order_book(exchange, "SOL/USDT:USDT", 20)
    await past_the_snapshot(exchange, "SOL/USDT:USDT")
    venue = venue_of(sim)
    venue.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert venue.faults.crossed_pending == 0
