"""Unmodified ccxt.pro.mexc against the MEXC simulator: market lists, contract and spot streams, keepalive, faults."""

from __future__ import annotations

import asyncio
import importlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ccxt
import ccxt.pro
import pytest
from ccxt.base.errors import NetworkError

from collectors.venues.mexc import MexcFutures, MexcSpot
from simulator.mexc import CONTRACT_SIZES, SPOT_STREAMS_AVAILABLE, MexcSimulator
from simulator.server import Simulator

pytestmark = pytest.mark.timeout(30)

FUTURES = ["BTC/USDT:USDT", "ETH/USDT:USDT", "PEPE/USDT:USDT"]
"""Contract sizes 0.0001, 0.01 and 100000; PEPE is listed per coin (funding every 4 h)."""
SPOT = ["BTC/USDT", "PEPE/USDT"]
needs_protobuf = pytest.mark.skipif(
    not SPOT_STREAMS_AVAILABLE,
    reason="ccxt decodes MEXC spot frames with the protobuf package",
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["mexc"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


def venue(sim: Simulator) -> MexcSimulator:
    return sim.venues["mexc"]  # type: ignore[return-value]


def make(sim: Simulator, spot: bool = False, **overrides: Any) -> ccxt.pro.mexc:
    """The collector's options; no client-side rate limit (ccxt would hold the first request after the 100-weight
    contract list for 5 s)."""
    defaults = (MexcSpot if spot else MexcFutures).ccxt_defaults
    config = ccxt.Exchange.deep_extend(defaults, sim.ccxt_config("mexc"), {"enableRateLimit": False}, overrides)
    return ccxt.pro.mexc(config)


@pytest.fixture
async def futures(sim: Simulator) -> AsyncIterator[ccxt.pro.mexc]:
    exchange = make(sim)
    yield exchange
    await exchange.close()


@pytest.fixture
async def spot(sim: Simulator) -> AsyncIterator[ccxt.pro.mexc]:
    exchange = make(sim, spot=True)
    yield exchange
    await exchange.close()


async def test_load_markets_lists_contracts_and_pairs(sim: Simulator, futures: ccxt.pro.mexc) -> None:
    markets = await futures.load_markets()
    for listing, _ in venue(sim).futures.values():
        market = markets[listing.futures_symbol]
        assert (market["id"], market["type"], market["linear"], market["active"]) == (
            listing.futures_id, "swap", True, True)
        assert market["contractSize"] == float(CONTRACT_SIZES[listing.coin])
        assert market["precision"] == {"amount": 1.0, "price": float(listing.price_step)}
        pair = markets[listing.spot_symbol]
        assert (pair["id"], pair["spot"], pair["active"], pair["precision"]["price"]) == (
            listing.spot_id, True, True, float(listing.price_step))
    assert markets["PEPE/USDT:USDT"]["contractSize"] == 100000 and "1000PEPE/USDT:USDT" not in markets
    intervals = [await futures.fetch_funding_interval(s) for s in (*FUTURES, "TIA/USDT:USDT")]
    assert [interval["interval"] for interval in intervals] == ["8h", "8h", "4h", "1h"]


async def test_futures_streams_match_the_venue(sim: Simulator, futures: ccxt.pro.mexc) -> None:
    await futures.load_markets()
    async with asyncio.timeout(10):
        await asyncio.gather(*(futures.watch_order_book(s) for s in FUTURES),
                             *(futures.watch_ticker(s) for s in FUTURES),
                             *(futures.watch_funding_rate(s) for s in FUTURES))
    await asyncio.sleep(2.0)  # books keep syncing at rate 20
    venue(sim).faults.frozen = True
    await asyncio.sleep(1.3)  # longer than the ticker's 1 s and the book's 200 ms cadence
    state = venue(sim).state()["symbols"]
    for symbol in FUTURES:
        expected, market = state[symbol], futures.market(symbol)
        ticker, funding, book = futures.tickers[symbol], futures.fundingRates[symbol], futures.orderbooks[symbol]
        assert (ticker["bid"], ticker["ask"]) == (float(expected["bid"]), float(expected["ask"]))
        assert ticker["last"] == float(expected["last_price"]) and ticker["baseVolume"] == expected["volume_24h"]
        assert ticker["info"]["fairPrice"] == float(expected["mark_price"])
        assert ticker["info"]["indexPrice"] == float(expected["index_price"])
        assert ticker["info"]["fundingRate"] == funding["fundingRate"] == float(expected["funding_rate"])
        assert funding["fundingTimestamp"] == expected["next_funding_time"]
        assert book["bids"][0][:2] == [float(expected["bid"]), expected["bid_contracts"]]
        assert book["asks"][0][:2] == [float(expected["ask"]), expected["ask_contracts"]]
        assert round(book["bids"][0][1] * market["contractSize"], 12) == expected["bid_size"]
        listing, sim_book = venue(sim).futures[market["id"]]
        assert [level[:2] for level in book["bids"]] == [
            [float(listing.price(t)), listing.contracts(s)] for t, s in sim_book.bids().items()]
        assert [level[:2] for level in book["asks"]] == [
            [float(listing.price(t)), listing.contracts(s)] for t, s in sim_book.asks().items()]


@needs_protobuf
async def test_spot_streams_match_the_venue(sim: Simulator, spot: ccxt.pro.mexc) -> None:
    await spot.load_markets()
    async with asyncio.timeout(10):
        await asyncio.gather(*(spot.watch_order_book(s) for s in SPOT), *(spot.watch_ticker(s) for s in SPOT),
                             *(spot.watch_trades(s) for s in SPOT))
    await asyncio.sleep(1.0)
    venue(sim).faults.frozen = True
    await asyncio.sleep(0.3)  # longer than the 100 ms cadence
    state = venue(sim).state()["spot_symbols"]
    for symbol in SPOT:
        expected, ticker, book = state[symbol], spot.tickers[symbol], spot.orderbooks[symbol]
        assert (ticker["bid"], ticker["bidVolume"]) == (float(expected["bid"]), float(expected["bid_size"]))
        assert (ticker["ask"], ticker["askVolume"]) == (float(expected["ask"]), float(expected["ask_size"]))
        assert spot.trades[symbol][-1]["price"] == float(expected["last_price"])
        assert (await spot.fetch_tickers(SPOT))[symbol]["baseVolume"] == float(expected["volume_24h"])
        listing, sim_book = venue(sim).spot[spot.market(symbol)["id"]]
        assert book["bids"] == [[float(listing.price(t)), float(listing.coins(s))] for t, s in sim_book.bids().items()]
        assert book["asks"] == [[float(listing.price(t)), float(listing.coins(s))] for t, s in sim_book.asks().items()]


async def test_contract_wire_format(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sim.ws_base}/mexc/edge") as ws:
        await ws.send_json({"method": "sub.depth", "param": {"symbol": "BTC_USDT"}})
        assert (await ws.receive_json())["channel"] == "rs.sub.depth"
        frames = [await ws.receive_json() for _ in range(5)]
        assert [f["channel"] for f in frames] == ["push.depth"] * 5
        assert all(set(f["data"]) == {"asks", "bids", "version", "cts"} for f in frames)  # the documented fields
        assert all(b["data"]["version"] == a["data"]["version"] + 1 for a, b in itertools.pairwise(frames))
        await ws.send_json({"method": "sub.ticker", "param": {"symbol": "NOPE_USDT"}})
        await ws.send_json({"method": "ping"})
        replies = [m async for m in _until(ws, lambda m: m.get("channel") == "pong")]
        assert {"channel": "rs.error", "data": "Contract [NOPE_USDT] not exists"}.items() <= replies[-2].items()


@needs_protobuf
async def test_spot_wire_format(sim: Simulator) -> None:
    protobuf = importlib.import_module("ccxt.protobuf.mexc.PushDataV3ApiWrapper_pb2")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sim.ws_base}/mexc/ws") as ws:
        topics = [f"spot@public.aggre.{c}.v3.api.pb@100ms@{p}USDT" for c in ("bookTicker", "depth", "deals")
                  for p in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LINK", "BNB", "AVAX", "DOT", "LTC")]
        await ws.send_json({"method": "SUBSCRIPTION", "params": topics})
        acks = [m["msg"] async for m in _until(ws, lambda m: m["msg"].startswith("Not Subscribed"))]
        refused = f"Not Subscribed successfully! [{','.join(topics[30:])}].  Reason： Blocked! "
        assert acks == [",".join(topics[:30]), refused]  # 30 subscriptions per connection
        frame = await ws.receive_bytes()
        wrapper = protobuf.PushDataV3ApiWrapper.FromString(frame)
        assert wrapper.channel in topics and wrapper.sendTime > 0
        await ws.send_json({"method": "PING"})
        assert [m async for m in _until(ws, lambda m: m.get("msg") == "PONG")]


async def _until(ws: aiohttp.ClientWebSocketResponse, done: Any) -> AsyncIterator[dict[str, Any]]:
    """Text replies up to the first one `done` accepts, skipping binary market data."""
    async with asyncio.timeout(3):
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT and "push." not in message.data:
                reply = message.json()
                yield reply
                if done(reply):
                    return


@pytest.mark.parametrize("market", ["futures", pytest.param("spot", marks=needs_protobuf)])
async def test_ping_pong_keeps_a_silent_connection(sim: Simulator, market: str) -> None:
    exchange = make(sim, spot=market == "spot", streaming={"keepAlive": 1000})
    symbol = "BTC/USDT" if market == "spot" else "BTC/USDT:USDT"
    try:
        await exchange.watch_ticker(symbol)
        (client,) = exchange.clients.values()
        connection = client.connection
        venue(sim).faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed()
        venue(sim).faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_ticker(symbol), 3)
        assert ticker["bid"] < ticker["ask"] and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(sim: Simulator, futures: ccxt.pro.mexc) -> None:
    await futures.watch_ticker("ETH/USDT:USDT")
    venue(sim).faults.silent = True
    pending = asyncio.create_task(futures.watch_ticker("ETH/USDT:USDT"))
    await asyncio.sleep(0.1)
    assert await venue(sim).drop_connections() == 1
    venue(sim).faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    ticker = await asyncio.wait_for(futures.watch_ticker("ETH/USDT:USDT"), 5)
    assert ticker["bid"] < ticker["ask"] and len(venue(sim).sessions) == 1


@pytest.mark.parametrize("market", ["futures book", pytest.param("spot ticker", marks=needs_protobuf)])
async def test_crossed_fault_shows_then_heals(sim: Simulator, market: str) -> None:
    exchange = make(sim, spot=market.startswith("spot"))

    async def best_bid_and_ask() -> tuple[float, float]:
        if market == "spot ticker":
            ticker = await exchange.watch_ticker("SOL/USDT")
            return ticker["bid"], ticker["ask"]
        book = await exchange.watch_order_book("SOL/USDT:USDT")
        return book["bids"][0][0], book["asks"][0][0]

    try:
        await best_bid_and_ask()
        venue(sim).faults.crossed_pending = 1
        async with asyncio.timeout(5):
            while (quote := await best_bid_and_ask())[0] <= quote[1]:
                pass
            while (quote := await best_bid_and_ask())[0] > quote[1]:
                pass
        assert venue(sim).faults.crossed_pending == 0
    finally:
        await exchange.close()
