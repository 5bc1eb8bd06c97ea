"""Unmodified ccxt.pro.gate against the Gate simulator: markets, quotes, tickers, order books, keepalive, faults."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.pro
import pytest
from ccxt.base.errors import BadRequest, NetworkError

from collectors.venues.gateio import GateioFutures
from simulator.gateio import CONTRACT_MULTIPLIERS, GateioSimulator, per_coin
from simulator.instruments import INSTRUMENTS
from simulator.server import Simulator
from tests.frame_tops import observe_order_book, observe_quotes, past_the_snapshot

pytestmark = pytest.mark.timeout(60)

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "PEPE/USDT:USDT"]
"""Contract sizes 0.0001, 0.01 and ten million coins; funding every 8, 8 and 4 hours."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["gateio"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


def venue_of(sim: Simulator) -> GateioSimulator:
    venue = sim.venues["gateio"]
    assert isinstance(venue, GateioSimulator)
    return venue


def make_exchange(sim: Simulator, **overrides: Any) -> ccxt.pro.gate:
    return ccxt.pro.gate({**ccxt.pro.gate.deep_extend(GateioFutures.ccxt_defaults, sim.ccxt_config("gateio")),
                          **overrides})


@pytest.fixture
async def exchange(sim: Simulator) -> AsyncIterator[ccxt.pro.gate]:
    exchange = make_exchange(sim)
    yield exchange
    await exchange.close()


async def test_load_markets_lists_usdt_perpetuals_in_contracts(sim: Simulator, exchange: ccxt.pro.gate) -> None:
    markets = await exchange.load_markets()
    listed = [per_coin(instrument) for instrument in INSTRUMENTS]
    assert set(markets) == {instrument.unified_symbol for instrument in listed}
    assert "PEPE/USDT:USDT" in markets and "1000PEPE/USDT:USDT" not in markets  # Gate lists PEPE per coin
    for instrument in listed:
        market = markets[instrument.unified_symbol]
        assert (market["id"], market["type"], market["linear"], market["active"], market["settle"]) == (
            f"{instrument.coin}_USDT", "swap", True, True, "USDT",
        )
        assert market["contractSize"] == float(CONTRACT_MULTIPLIERS[instrument.coin])
        assert market["precision"] == {"amount": 1.0, "price": float(instrument.tick_size)}
        assert market["info"]["funding_interval"] == instrument.funding_interval_hours * 3600
    assert markets["BTC/USDT:USDT"]["contractSize"] == 0.0001 and markets["PEPE/USDT:USDT"]["contractSize"] == 1e7
    plain = ccxt.pro.gate(sim.ccxt_config("gateio"))  # ccxt's default market types load too (empty lists)
    try:
        assert set(await plain.load_markets()) == set(markets)
    finally:
        await plain.close()
    funding = await exchange.fetch_funding_rates(SYMBOLS)
    assert [funding[symbol]["interval"] for symbol in SYMBOLS] == ["8h", "8h", "4h"]
    assert all(funding[symbol]["fundingTimestamp"] % 3_600_000 == 0 for symbol in SYMBOLS)


async def test_wire_format(sim: Simulator) -> None:
    url = f"{sim.ws_base}/gateio/v4/ws/usdt"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, headers={"X-Gate-Size-Decimal": "1"}) as ws:
            await ws.send_json({"time": 1, "id": 7, "channel": "futures.order_book_update", "event": "subscribe",
                                "payload": ["BTC_USDT", "100ms", "20"]})
            ack = await ws.receive_json()
            assert (ack["id"], ack["event"], ack["result"], ack["payload"]) == (
                7, "subscribe", {"status": "success"}, ["BTC_USDT", "100ms", "20"])
            updates = [(await ws.receive_json())["result"] for _ in range(5)]
            assert all(update["U"] == previous["u"] + 1 for previous, update in itertools.pairwise(updates))
            assert all(isinstance(level["s"], str) for update in updates for level in update["b"] + update["a"])
            await ws.send_json({"time": 1, "channel": "futures.ping"})
            while (message := await ws.receive_json())["channel"] != "futures.pong":
                pass
            await ws.send_json({"time": 1, "id": 8, "channel": "futures.tickers", "event": "subscribe",
                                "payload": ["NOPE_USDT"]})
            while (message := await ws.receive_json()).get("id") != 8:
                pass
            assert message["error"] == {"code": 2, "message": "unknown contract NOPE_USDT"}
        async with http.ws_connect(url) as ws:  # without the header, sizes are integers
            await ws.send_json({"time": 1, "id": 1, "channel": "futures.book_ticker", "event": "subscribe",
                                "payload": ["ETH_USDT"]})
            assert (await ws.receive_json())["result"] == {"status": "success"}
            ticker = (await ws.receive_json())["result"]
            assert isinstance(ticker["B"], int) and isinstance(ticker["A"], int) and ticker["s"] == "ETH_USDT"


async def test_watched_values_match_the_venue_exactly(sim: Simulator, exchange: ccxt.pro.gate) -> None:
    async with asyncio.timeout(10):
        await exchange.watch_bids_asks(SYMBOLS)
        await exchange.watch_tickers(SYMBOLS)
        for symbol in SYMBOLS:
            await exchange.watch_order_book(symbol, 20)
        while not set(SYMBOLS) <= set(exchange.tickers) or not set(SYMBOLS) <= set(exchange.bidsasks):
            await exchange.watch_tickers(SYMBOLS)
    venue = venue_of(sim)
    venue.faults.frozen = True
    await asyncio.sleep(1.3)  # longer than the slowest push (tickers, every second)
    state = venue.state()["symbols"]
    for symbol in SYMBOLS:
        expected, contract = state[symbol], venue.contracts[state[symbol]["id"]]
        quote, ticker = exchange.bidsasks[symbol], exchange.tickers[symbol]
        assert (quote["bid"], quote["ask"]) == (float(expected["bid"]), float(expected["ask"]))
        assert (quote["bidVolume"], quote["askVolume"]) == (expected["bid_contracts"], expected["ask_contracts"])
        assert Decimal(expected["bid_size"]) == expected["bid_contracts"] * Decimal(expected["contract_size"])
        assert ticker["last"] == float(expected["last_price"]) and ticker["baseVolume"] == float(expected["volume_24h"])
        assert ticker["markPrice"] == float(expected["mark_price"]) and ticker["indexPrice"] == float(
            expected["index_price"])
        assert Decimal(ticker["info"]["funding_rate"]) == Decimal(expected["funding_rate"])
        book, orderbook = contract.book, exchange.orderbooks[symbol]
        assert [list(level) for level in orderbook["bids"][:20]] == [
            [float(book.price(price)), float(size)] for price, size in contract.bids(20).items()]
        assert [list(level) for level in orderbook["asks"][:20]] == [
            [float(book.price(price)), float(size)] for price, size in contract.asks(20).items()]


@pytest.mark.parametrize("level", [20, 50, 100])
async def test_order_books_stay_in_sync(sim: Simulator, exchange: ccxt.pro.gate, level: int) -> None:
    """Several seconds of 100 ms diffs at 20 updates/s per symbol: ccxt finds no gap (it raises ChecksumError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    async with asyncio.timeout(10):
        while loop.time() < deadline:
            await asyncio.gather(*(exchange.watch_order_book(symbol, level) for symbol in SYMBOLS))
    venue = venue_of(sim)
    venue.faults.frozen = True
    await asyncio.sleep(0.3)
    for symbol in SYMBOLS:
        contract = venue.contracts[exchange.market(symbol)["id"]]
        orderbook = exchange.orderbooks[symbol]
        assert orderbook["nonce"] == contract.book.update_id
        assert [list(level) for level in orderbook["bids"]] == [
            [float(contract.book.price(price)), float(size)] for price, size in contract.bids(level).items()]
        assert [list(level) for level in orderbook["asks"]] == [
            [float(contract.book.price(price)), float(size)] for price, size in contract.asks(level).items()]
    with pytest.raises(BadRequest):  # Gate offers 20, 50 and 100 levels only
        await exchange.watch_order_book("SOL/USDT:USDT", 30)


async def test_ping_pong_keeps_a_silent_connection(sim: Simulator) -> None:
    exchange = make_exchange(sim, streaming={"keepAlive": 1000})
    try:
        await exchange.watch_ticker("BTC/USDT:USDT")
        client = exchange.clients[f"{sim.ws_base}/gateio/v4/ws/usdt"]
        connection = client.connection
        venue = venue_of(sim)
        venue.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(venue.sessions) == 1
        venue.faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT:USDT"), 3)
        assert ticker["markPrice"] > 0 and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(sim: Simulator, exchange: ccxt.pro.gate) -> None:
    await exchange.watch_bids_asks(["ETH/USDT:USDT"])
    venue = venue_of(sim)
    venue.faults.silent = True
    pending = asyncio.create_task(exchange.watch_bids_asks(["ETH/USDT:USDT"]))
    await asyncio.sleep(0.1)
    assert await venue.drop_connections() == 1
    venue.faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    quotes = await asyncio.wait_for(exchange.watch_bids_asks(["ETH/USDT:USDT"]), 5)
    assert quotes["ETH/USDT:USDT"]["bid"] < quotes["ETH/USDT:USDT"]["ask"] and len(venue.sessions) == 1


@pytest.mark.parametrize("stream", ["book ticker", "order book"])
async def test_crossed_fault_shows_then_heals(sim: Simulator, exchange: ccxt.pro.gate, stream: str) -> None:
    if stream == "book ticker":
        frames = await observe_quotes(exchange, "SOL/USDT:USDT", via="bids_asks")
    else:
        frames = await observe_order_book(exchange, "SOL/USDT:USDT", 20)
        await past_the_snapshot(exchange, "SOL/USDT:USDT")
    venue_of(sim).faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert venue_of(sim).faults.crossed_pending == 0


async def test_each_stream_unsubscribes_one_symbol_and_resubscribes(sim: Simulator, exchange: ccxt.pro.gate) -> None:
    """The collector's unwatch calls (ccxt's gate has no un_watch_tickers / un_watch_bids_asks of its own)."""
    specs, symbols = GateioFutures().streams(20), ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    venue = venue_of(sim)

    def contracts_streamed() -> set[str]:
        return {topic.split("|")[1] for session in venue.sessions for topic in session.topics}

    async with asyncio.timeout(10):
        for spec in specs:
            await spec.watch(exchange, symbols)
        assert contracts_streamed() == {"BTC_USDT", "ETH_USDT"}
        for spec in specs:
            await spec.unwatch(exchange, ["ETH/USDT:USDT"])
        assert contracts_streamed() == {"BTC_USDT"}
        for spec in specs:
            await spec.watch(exchange, ["ETH/USDT:USDT"])
        assert contracts_streamed() == {"BTC_USDT", "ETH_USDT"}
