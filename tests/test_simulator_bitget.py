"""Unmodified ccxt.pro.bitget against the Bitget simulator: markets, tickers, checksummed books, keepalive, faults."""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ccxt.pro
import pytest
from ccxt.base.errors import NetworkError

from collectors.venues.bitget import BitgetFutures
from simulator.bitget import BitgetSimulator
from simulator.instruments import INSTRUMENTS
from simulator.server import Simulator
from tests.frame_tops import observe_order_book, observe_quotes

PEPE = next(instrument for instrument in INSTRUMENTS if instrument.coin == "PEPE")
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", PEPE.unified_symbol]
"""Different tick sizes and funding intervals (8 h, 8 h, 4 h)."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["bitget"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def venue(sim: Simulator) -> BitgetSimulator:
    return sim.venues["bitget"]  # type: ignore[return-value]


def make_exchange(sim: Simulator, **overrides: Any) -> ccxt.pro.bitget:
    """As the collector builds it: its defaults under the simulator's URL overrides."""
    config = ccxt.pro.Exchange.deep_extend(BitgetFutures.ccxt_defaults, sim.ccxt_config("bitget"), overrides)
    return ccxt.pro.bitget(config)


@pytest.fixture
async def exchange(sim: Simulator) -> AsyncIterator[ccxt.pro.bitget]:
    client = make_exchange(sim)
    yield client
    await client.close()


async def test_load_markets_lists_linear_perpetuals_in_coins(sim: Simulator, exchange: ccxt.pro.bitget) -> None:
    markets = await exchange.load_markets()
    assert set(markets) == {instrument.unified_symbol for instrument in INSTRUMENTS}
    for instrument in INSTRUMENTS:
        market = markets[instrument.unified_symbol]
        assert (market["id"], market["type"], market["linear"], market["active"], market["settle"]) == (
            instrument.venue_id, "swap", True, True, "USDT",
        )
        assert market["contractSize"] == 1  # Bitget trades coins
        assert market["precision"]["price"] == float(instrument.tick_size)
        assert market["precision"]["amount"] == float(instrument.qty_step)
        assert BitgetFutures().funding_interval_hours(market) == instrument.funding_interval_hours
    plain = ccxt.pro.bitget(sim.ccxt_config("bitget"))  # ccxt's defaults: spot, margin and coin lists too
    try:
        assert set(await plain.load_markets()) == set(markets)
        assert "PEPE" in plain.currencies
    finally:
        await plain.close()


async def test_wire_format_and_checksums(sim: Simulator) -> None:
    args = [{"instType": "USDT-FUTURES", "channel": channel, "instId": "BTCUSDT"} for channel in ("books", "ticker")]
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sim.ws_base}/bitget/v2/ws/public") as ws:
        await ws.send_json({"op": "subscribe", "args": args})
        frames = [await ws.receive_json() for _ in range(40)]
        assert [frame for frame in frames if "event" in frame] == [{"event": "subscribe", "arg": arg} for arg in args]
        books = [frame for frame in frames if frame.get("arg") == args[0] and "action" in frame]
        assert [frame["action"] for frame in books[:2]] == ["snapshot", "update"]
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        for index, frame in enumerate(books):
            data = frame["data"][0]
            assert set(data) == {"asks", "bids", "checksum", "seq", "ts"}  # Bitget v2's fields (pseq is v3/UTA only)
            assert index == 0 or books[index - 1]["data"][0]["seq"] < data["seq"]
            for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
                for price, size in levels:
                    if size == "0":
                        del side[price]
                    else:
                        side[price] = size
            assert data["checksum"] == _checksum(bids, asks)
        tickers = [frame["data"][0] for frame in frames if frame.get("arg") == args[1] and "data" in frame]
        assert {"bidPr", "askSz", "fundingRate", "nextFundingTime", "markPrice", "indexPrice"} <= set(tickers[0])
        await ws.send_str("ping")
        async with asyncio.timeout(2):
            while (message := await ws.receive()).data != "pong":
                pass
        wrong = [{**args[0], "channel": "books50"}, {**args[0], "instId": "NO"}]
        await ws.send_json({"op": "subscribe", "args": wrong})
        errors = []
        async with asyncio.timeout(2):
            while len(errors) < 2:
                if "event" in (message := await ws.receive_json()):
                    errors.append((message["event"], message["code"], message["msg"]))
        assert errors[0] == ("error", 30016, "Param error")
        assert errors[1] == ("error", 30001, "instType:USDT-FUTURES,channel:books,instId:NO doesn't exist")


def _checksum(bids: dict[str, str], asks: dict[str, str]) -> int:
    """Bitget's recipe, written independently of the simulator."""
    best_bids = sorted(bids.items(), key=lambda level: -float(level[0]))[:25]
    best_asks = sorted(asks.items(), key=lambda level: float(level[0]))[:25]
    parts = []
    for level in range(25):
        for side in (best_bids, best_asks):
            if level < len(side):
                parts += side[level]
    unsigned = binascii.crc32(":".join(parts).encode())
    return unsigned - 2**32 if unsigned >= 2**31 else unsigned


async def test_watch_tickers_match_the_venue_exactly(venue: BitgetSimulator, exchange: ccxt.pro.bitget) -> None:
    async with asyncio.timeout(5):
        while not set(SYMBOLS) <= set(exchange.tickers):
            await exchange.watch_tickers(SYMBOLS)
    venue.faults.frozen = True
    await asyncio.sleep(0.5)  # longer than the ticker cadence (200 ms)
    state = venue.state()["symbols"]
    for symbol in SYMBOLS:
        ticker, expected = exchange.tickers[symbol], state[symbol]
        assert ticker["bid"] == float(expected["bid"]) and ticker["bidVolume"] == float(expected["bid_size"])
        assert ticker["ask"] == float(expected["ask"]) and ticker["askVolume"] == float(expected["ask_size"])
        assert ticker["last"] == float(expected["last"]) and ticker["baseVolume"] == float(expected["volume_24h"])
        info = ticker["info"]
        assert (info["markPrice"], info["indexPrice"]) == (expected["mark_price"], expected["index_price"])
        assert info["fundingRate"] == expected["funding_rate"]
        assert int(info["nextFundingTime"]) == expected["next_funding_time"]


@pytest.mark.parametrize("limit", [None, 15, 1])
async def test_order_books_sync_with_the_venue(
    venue: BitgetSimulator, exchange: ccxt.pro.bitget, limit: int | None
) -> None:
    async with asyncio.timeout(8):  # `books`: a checksum error would reject the watch (and unsubscribe)
        for _ in range(120):  # about 4 s of updates
            await exchange.watch_order_book_for_symbols(SYMBOLS, limit)
        while not set(SYMBOLS) <= set(exchange.orderbooks):
            await exchange.watch_order_book_for_symbols(SYMBOLS, limit)
    venue.faults.frozen = True
    await asyncio.sleep(0.4)  # longer than the slowest cadence (100 ms)
    for symbol in SYMBOLS:
        book = venue.books[exchange.market(symbol)["id"]]
        depth = limit or 50
        bids = [[float(book.price(tick)), float(book.size(step))] for tick, step in book.bids(depth).items()]
        asks = [[float(book.price(tick)), float(book.size(step))] for tick, step in book.asks(depth).items()]
        orderbook = exchange.orderbooks[symbol]
        assert [level[:2] for level in orderbook["bids"]] == bids
        assert [level[:2] for level in orderbook["asks"]] == asks
        assert orderbook["timestamp"] == book.timestamp_ms


async def test_ping_pong_keeps_a_silent_connection(sim: Simulator, venue: BitgetSimulator) -> None:
    exchange = make_exchange(sim, streaming={"keepAlive": 1000})
    try:
        await exchange.watch_ticker("BTC/USDT:USDT")
        client = exchange.clients[f"{sim.ws_base}/bitget/v2/ws/public"]
        connection = client.connection
        venue.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(venue.sessions) == 1
        venue.faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT:USDT"), 3)
        assert ticker["bid"] < ticker["ask"] and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(
    venue: BitgetSimulator, exchange: ccxt.pro.bitget
) -> None:
    await exchange.watch_ticker("ETH/USDT:USDT")
    venue.faults.silent = True
    pending = asyncio.create_task(exchange.watch_ticker("ETH/USDT:USDT"))
    await asyncio.sleep(0.1)
    assert await venue.drop_connections() == 1
    venue.faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    ticker = await asyncio.wait_for(exchange.watch_ticker("ETH/USDT:USDT"), 5)
    assert ticker["bid"] < ticker["ask"] and len(venue.sessions) == 1


@pytest.mark.parametrize("stream", ["ticker", "books", "books5"])
async def test_crossed_fault_shows_then_heals(venue: BitgetSimulator, exchange: ccxt.pro.bitget, stream: str) -> None:
    if stream == "ticker":
        frames = await observe_quotes(exchange, "SOL/USDT:USDT", via="ticker")
    else:
        frames = await observe_order_book(exchange, "SOL/USDT:USDT", 5 if stream == "books5" else None)
    venue.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert venue.faults.crossed_pending == 0
