"""Unmodified ccxt.pro.okx against the OKX simulator: markets, quotes, tickers, mark/funding/index, order books,
keepalive and faults, for the swaps and the spot pairs."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.pro
import pytest
from ccxt.base.errors import NetworkError

from collectors.venues.okx import OkxFutures, OkxSpot
from simulator.okx import CONTRACTS, OkxSimulator
from simulator.server import Simulator

pytestmark = pytest.mark.timeout(60)

SWAPS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "PEPE/USDT:USDT"]
"""ctVal 0.01, 0.1 and 10000000 (PEPE listed per coin); funding every 8, 8 and 4 h."""
PAIRS = [symbol.split(":")[0] for symbol in SWAPS]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["okx"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


def venue(sim: Simulator) -> OkxSimulator:
    simulator = sim.venues["okx"]
    assert isinstance(simulator, OkxSimulator)
    return simulator


@pytest.fixture
async def swaps(sim: Simulator) -> AsyncIterator[ccxt.pro.okx]:
    exchange = ccxt.pro.okx({**OkxFutures.ccxt_defaults, **sim.ccxt_config("okx")})
    yield exchange
    await exchange.close()


@pytest.fixture
async def spot(sim: Simulator) -> AsyncIterator[ccxt.pro.okx]:
    exchange = ccxt.pro.okx({**OkxSpot.ccxt_defaults, **sim.ccxt_config("okx")})
    yield exchange
    await exchange.close()


async def test_load_markets_lists_swaps_in_contracts_and_spot_in_coins(
    sim: Simulator, swaps: ccxt.pro.okx, spot: ccxt.pro.okx
) -> None:
    markets, spot_markets = await swaps.load_markets(), await spot.load_markets()
    assert len(markets) == len(spot_markets) == 25 and "1000PEPE/USDT:USDT" not in markets
    for symbol, market in markets.items():
        coin = market["base"]
        contract_value, lot = CONTRACTS[coin]
        assert (market["id"], market["type"], market["linear"], market["active"]) == (f"{coin}-USDT-SWAP", "swap",
                                                                                      True, True)
        assert market["contractSize"] == float(contract_value) and market["precision"]["amount"] == float(lot)
        assert market["precision"]["price"] == float(venue(sim).listings[market["id"]].tick_size), symbol
    assert markets["PEPE/USDT:USDT"]["precision"]["price"] == 1e-10  # 1000PEPE's tick of 1e-7, per coin
    assert spot_markets["BTC/USDT"]["id"] == "BTC-USDT" and spot_markets["BTC/USDT"]["spot"]
    assert spot_markets["BTC/USDT"]["precision"] == {"amount": 0.001, "price": 0.1}


async def test_wire_format_books_chain_and_checksum(sim: Simulator) -> None:
    url = f"{sim.ws_base}/okx/ws/v5/public"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        args = [{"channel": "books", "instId": "ETH-USDT-SWAP"}, {"channel": "bbo-tbt", "instId": "ETH-USDT-SWAP"}]
        await ws.send_json({"id": "7", "op": "subscribe", "args": args})
        frames = [await ws.receive_json() for _ in range(60)]
        acks = [frame for frame in frames if "event" in frame]
        assert [(ack["id"], ack["event"], ack["arg"]) for ack in acks] == [("7", "subscribe", arg) for arg in args]
        books = [frame for frame in frames if frame.get("arg", {}).get("channel") == "books" and "data" in frame]
        assert [frame["action"] for frame in books] == ["snapshot"] + ["update"] * (len(books) - 1)
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        previous = -1
        for frame in books:
            (data,) = frame["data"]
            assert data["prevSeqId"] == previous and data["seqId"] > previous
            previous = data["seqId"]
            for levels, held in ((data["bids"], bids), (data["asks"], asks)):
                for price, size, _, _ in levels:
                    held.pop(price) if size == "0" else held.__setitem__(price, size)
            assert data["checksum"] == okx_checksum(bids, asks)
        assert len(books) >= 3 and all("." not in price or not price.endswith("0") for price in bids)  # "97000"
        bbo = next(f for f in frames if f.get("arg", {}).get("channel") == "bbo-tbt" and "data" in f)["data"][0]
        assert set(bbo) == {"asks", "bids", "ts", "seqId"} and len(bbo["bids"]) == len(bbo["asks"]) == 1
        await ws.send_str("ping")
        async with asyncio.timeout(2):
            while (await ws.receive()).data != "pong":
                pass
        await ws.send_json({"op": "subscribe", "args": [{"channel": "trades-x", "instId": "BTC-USDT"}]})
        async with asyncio.timeout(2):
            while (error := await ws.receive_json()).get("event") != "error":
                pass
        assert error["code"] == "60018" and "trades-x" in error["msg"]


def okx_checksum(bids: dict[str, str], asks: dict[str, str]) -> int:
    """OKX's documented checksum, computed independently: best 25 levels per side, interleaved."""
    best_bids = sorted(bids.items(), key=lambda level: -Decimal(level[0]))[:25]
    best_asks = sorted(asks.items(), key=lambda level: Decimal(level[0]))[:25]
    parts = []
    for index in range(max(len(best_bids), len(best_asks))):
        parts += [f"{p}:{s}" for p, s in (best_bids[index:index + 1] + best_asks[index:index + 1])]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


async def test_watched_values_match_the_venue_exactly(
    sim: Simulator, swaps: ccxt.pro.okx, spot: ccxt.pro.okx
) -> None:
    stats = ccxt.pro.okx({**OkxFutures.ccxt_defaults, **sim.ccxt_config("okx")})  # ccxt keeps one ticker per
    try:  # symbol for tickers, mark-price and index-tickers alike: one exchange each keeps them apart
        await values_match(sim, swaps, spot, stats)
    finally:
        await stats.close()


async def values_match(sim: Simulator, swaps: ccxt.pro.okx, spot: ccxt.pro.okx, stats: ccxt.pro.okx) -> None:
    await swaps.watch_bids_asks(SWAPS)
    await stats.watch_tickers(SWAPS)
    await swaps.watch_mark_prices(SWAPS)
    await swaps.watch_funding_rates(SWAPS)
    await spot.watch_bids_asks(PAIRS)
    await spot.watch_tickers(PAIRS, {"channel": "index-tickers"})  # OKX's index of each swap, e.g. BTC-USDT
    async with asyncio.timeout(5):
        while not set(SWAPS) <= set(swaps.fundingRates) or len(swaps.bidsasks) < 3 or len(spot.bidsasks) < 3:
            await asyncio.sleep(0.05)
    venue(sim).faults.frozen = True
    await asyncio.sleep(0.5)  # every changed value has been pushed (mark: 200 ms)
    state = venue(sim).state()["symbols"]
    for symbol in SWAPS:
        quote, expected = swaps.bidsasks[symbol], state[symbol]
        contract = swaps.market(symbol)["contractSize"]
        assert (quote["bid"], quote["ask"]) == (float(expected["bid"]), float(expected["ask"]))
        assert (quote["info"]["bids"][0][1], quote["info"]["asks"][0][1]) == (expected["bid_contracts"],
                                                                              expected["ask_contracts"])
        assert quote["bidVolume"] * contract == pytest.approx(float(expected["bid_size"]), rel=1e-12)
        assert swaps.tickers[symbol]["info"]["markPx"] == expected["mark_price"]
        ticker = stats.tickers[symbol]
        assert ticker["last"] == float(expected["last_price"]) and ticker["info"]["volCcy24h"] == expected["volume_24h"]
        assert ticker["baseVolume"] * contract == pytest.approx(float(expected["volume_24h"]))  # vol24h: contracts
        funding = swaps.fundingRates[symbol]
        assert Decimal(funding["info"]["fundingRate"]) == Decimal(expected["funding_rate"])
        assert funding["fundingTimestamp"] == expected["next_funding_time"]
        assert funding["interval"] == f"{expected['funding_interval_hours']}h"
        index = spot.tickers[symbol.split(":")[0]]
        assert index["info"]["idxPx"] == expected["index_price"]
    assert swaps.fundingRates["PEPE/USDT:USDT"]["interval"] == "4h"
    for symbol in PAIRS:
        quote, expected = spot.bidsasks[symbol], state[symbol]
        assert (quote["info"]["bids"][0][:2], quote["info"]["asks"][0][:2]) == (
            [expected["bid"], expected["bid_size"]], [expected["ask"], expected["ask_size"]])


@pytest.mark.parametrize(("limit", "market"), [(None, "swap"), (None, "spot"), (5, "swap")])
async def test_order_books_sync_with_the_venue(
    sim: Simulator, swaps: ccxt.pro.okx, spot: ccxt.pro.okx, limit: int | None, market: str
) -> None:
    exchange, symbols = (swaps, SWAPS) if market == "swap" else (spot, PAIRS)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3  # at rate 20 every book changes ~60 times: each update is nonce-checked by ccxt
    while loop.time() < deadline or not set(symbols) <= set(exchange.orderbooks):
        await exchange.watch_order_book_for_symbols(symbols, limit)
    venue(sim).faults.frozen = True
    await asyncio.sleep(0.3)
    for symbol in symbols:
        listing = venue(sim).listings[exchange.market(symbol)["id"]]
        depth = limit or 50
        bids = sorted(listing.side(listing.book.bids(depth)).items(), reverse=True)
        asks = sorted(listing.side(listing.book.asks(depth)).items())
        orderbook = exchange.orderbooks[symbol]
        assert [level[:2] for level in orderbook["bids"]] == [[float(listing.price(t)), float(listing.size(u))]
                                                               for t, u in bids]
        assert [level[:2] for level in orderbook["asks"]] == [[float(listing.price(t)), float(listing.size(u))]
                                                               for t, u in asks]


async def test_ping_pong_keeps_a_silent_connection(sim: Simulator) -> None:
    exchange = ccxt.pro.okx({**OkxFutures.ccxt_defaults, **sim.ccxt_config("okx"), "streaming": {"keepAlive": 1000}})
    try:
        await exchange.watch_bids_asks(["BTC/USDT:USDT"])
        client = exchange.clients[f"{sim.ws_base}/okx/ws/v5/public"]
        connection = client.connection
        venue(sim).faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(venue(sim).sessions) == 1
        venue(sim).faults.silent = False
        quotes = await asyncio.wait_for(exchange.watch_bids_asks(["BTC/USDT:USDT"]), 3)
        assert quotes["BTC/USDT:USDT"]["bid"] < quotes["BTC/USDT:USDT"]["ask"] and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(sim: Simulator, swaps: ccxt.pro.okx) -> None:
    await swaps.watch_mark_prices(["ETH/USDT:USDT"])
    venue(sim).faults.silent = True
    pending = asyncio.create_task(swaps.watch_mark_prices(["ETH/USDT:USDT"]))
    await asyncio.sleep(0.1)
    assert await venue(sim).drop_connections() == 1
    venue(sim).faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    marks = await asyncio.wait_for(swaps.watch_mark_prices(["ETH/USDT:USDT"]), 5)
    assert marks["ETH/USDT:USDT"]["markPrice"] > 0 and len(venue(sim).sessions) == 1


@pytest.mark.parametrize("channel", ["bbo-tbt", "books"])
async def test_crossed_fault_shows_then_heals(sim: Simulator, swaps: ccxt.pro.okx, channel: str) -> None:
    async def best_bid_and_ask() -> tuple[float, float]:
        if channel == "bbo-tbt":
            quote: Any = (await swaps.watch_bids_asks(["SOL/USDT:USDT"]))["SOL/USDT:USDT"]
            return quote["bid"], quote["ask"]
        book = await swaps.watch_order_book("SOL/USDT:USDT")
        return book["bids"][0][0], book["asks"][0][0]

    await best_bid_and_ask()
    venue(sim).faults.crossed_pending = 1
    async with asyncio.timeout(5):
        while (quote := await best_bid_and_ask())[0] <= quote[1]:
            pass
        while (quote := await best_bid_and_ask())[0] > quote[1]:
            pass
    assert venue(sim).faults.crossed_pending == 0
