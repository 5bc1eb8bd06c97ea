"""Unmodified ccxt.pro.kucoinfutures against the KuCoin simulator: markets, BBO, trades, books, keepalive, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ccxt.pro
import pytest
from ccxt.base.errors import NetworkError

from simulator.instruments import INSTRUMENTS
from simulator.kucoin import CONTRACT_MULTIPLIERS, KucoinSimulator
from simulator.server import Simulator
from tests.frame_tops import observe_order_book, observe_quotes, past_the_snapshot

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "1000PEPE/USDT:USDT"]
"""Contracts of 0.001 BTC, 0.01 ETH and 10 x 1000PEPE; funding every 8, 8 and 4 h."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["kucoin"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def venue(sim: Simulator) -> KucoinSimulator:
    venue = sim.venues["kucoin"]
    assert isinstance(venue, KucoinSimulator)
    return venue


@pytest.fixture
async def exchange(sim: Simulator) -> AsyncIterator[Any]:
    exchange = ccxt.pro.kucoinfutures(sim.ccxt_config("kucoin"))
    yield exchange
    await exchange.close()


async def test_load_markets_lists_contracts_with_their_multipliers(exchange: Any) -> None:
    markets = await exchange.load_markets()
    assert set(markets) == {instrument.unified_symbol for instrument in INSTRUMENTS}
    for instrument in INSTRUMENTS:
        market = markets[instrument.unified_symbol]
        assert (market["type"], market["linear"], market["active"], market["settle"]) == ("swap", True, True, "USDT")
        assert market["contractSize"] == float(CONTRACT_MULTIPLIERS[instrument.base])
        assert market["precision"] == {"amount": 1.0, "price": float(instrument.tick_size)}
        assert market["info"]["fundingRateGranularity"] == instrument.funding_interval_hours * 3_600_000
    assert markets["BTC/USDT:USDT"]["id"] == "XBTUSDTM" and markets["BTC/USDT:USDT"]["contractSize"] == 0.001
    assert markets["1000PEPE/USDT:USDT"]["id"] == "1000PEPEUSDTM"


async def test_wire_format(sim: Simulator, venue: KucoinSimulator) -> None:
    base = f"{sim.http_base}/kucoin"
    async with asyncio.timeout(10), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/v1/bullet-public") as response:
            bullet = (await response.json())["data"]
        server = bullet["instanceServers"][0]
        assert server["pingInterval"] == 18_000 and server["endpoint"].startswith(sim.ws_base)
        async with http.ws_connect(f"{server['endpoint']}?token=expired&connectId=x") as ws:
            assert (await ws.receive_json())["data"] == "token is expired"
        async with http.ws_connect(f"{server['endpoint']}?token={bullet['token']}&connectId=c1") as ws:
            assert await ws.receive_json() == {"id": "c1", "type": "welcome"}
            topic = "/contractMarket/level2:XBTUSDTM"
            for request_id, channel in (("1", topic), ("2", "/contractMarket/tickerV2:XBTUSDTM,ETHUSDTM")):
                await ws.send_json({"id": request_id, "type": "subscribe", "topic": channel, "response": True})
                assert await _reply(ws, request_id) == {"id": request_id, "type": "ack"}
            frames = [await ws.receive_json() for _ in range(60)]
            changes = [frame["data"] for frame in frames if frame["topic"] == topic]
            assert [change["sequence"] for change in changes] == list(
                range(changes[0]["sequence"], changes[0]["sequence"] + len(changes))
            )
            price, side, size = changes[0]["change"].split(",")
            assert side in ("buy", "sell") and float(price) > 0 and int(size) >= 0
            last_change = {}
            for frame in frames:  # tickerV2 carries the sequence of the level2 change it follows
                if frame["topic"] == topic:
                    last_change = frame["data"]
                elif frame["topic"] == "/contractMarket/tickerV2:XBTUSDTM" and last_change:
                    assert frame["data"]["sequence"] == last_change["sequence"]
            await ws.send_json({"id": "3", "type": "ping"})
            assert (await _reply(ws, "3"))["type"] == "pong"
            await ws.send_json({"id": "4", "type": "subscribe", "topic": "/contractMarket/level2:NOPEUSDTM"})
            assert (await _reply(ws, "4"))["code"] == 404
        async with http.get(f"{base}/api/v1/level2/snapshot", params={"symbol": "XBTUSDTM"}) as response:
            snapshot = (await response.json())["data"]
        assert venue.feeds["XBTUSDTM"].sequence >= snapshot["sequence"] >= changes[-1]["sequence"]
        assert all(isinstance(size, int) and size >= 1 for _, size in snapshot["bids"] + snapshot["asks"])


async def _reply(ws: aiohttp.ClientWebSocketResponse, request_id: str) -> dict[str, Any]:
    """The control reply to `request_id`, skipping market data."""
    async with asyncio.timeout(2):
        while (message := await ws.receive_json()).get("id") != request_id:
            pass
    return message


async def test_best_bid_ask_trades_and_funding_match_the_venue(venue: KucoinSimulator, exchange: Any) -> None:
    async with asyncio.timeout(5):
        while not set(SYMBOLS) <= set(exchange.bidsasks) or not set(SYMBOLS) <= set(exchange.tickers):
            await asyncio.gather(exchange.watch_bids_asks(SYMBOLS), exchange.watch_tickers(SYMBOLS))
    venue.faults.frozen = True
    await asyncio.sleep(0.3)
    state = venue.state()["symbols"]
    polled = await exchange.fetch_tickers(SYMBOLS)  # contracts/active, as the collector polls it
    for symbol in SYMBOLS:
        quote, expected, size = exchange.bidsasks[symbol], state[symbol], exchange.market(symbol)["contractSize"]
        assert (quote["bid"], quote["ask"]) == (float(expected["bid"]), float(expected["ask"]))
        assert (quote["bidVolume"], quote["askVolume"]) == (expected["bid_contracts"], expected["ask_contracts"])
        coins = round(quote["bidVolume"] * size, 12), round(quote["askVolume"] * size, 12)
        assert coins == (expected["bid_size"], expected["ask_size"])
        assert exchange.tickers[symbol]["last"] == float(expected["last_price"])
        ticker, info = polled[symbol], polled[symbol]["info"]
        assert (ticker["markPrice"], ticker["indexPrice"]) == (expected["mark_price"], expected["index_price"])
        assert ticker["baseVolume"] == expected["volume_24h"]
        assert info["fundingFeeRate"] == expected["funding_rate"]
        assert info["nextFundingRateDateTime"] == expected["next_funding_time"]
        assert info["fundingRateGranularity"] == expected["funding_interval_hours"] * 3_600_000
    assert state["BTC/USDT:USDT"]["contract_size"] == 0.001


@pytest.mark.parametrize("limit", [None, 5, 50])
async def test_order_books_sync_with_the_venue(venue: KucoinSimulator, exchange: Any, limit: int | None) -> None:
    """None: level2 changes synced to the REST snapshot by sequence; 5, 50: the level2Depth<N> snapshots."""
    loop = asyncio.get_running_loop()
    until = loop.time() + 3
    async with asyncio.timeout(8):  # every update of a few seconds at rate 20 applies without an error
        while loop.time() < until or not set(SYMBOLS) <= set(exchange.orderbooks):
            book = await exchange.watch_order_book_for_symbols(SYMBOLS, limit)
            assert book["bids"][0][0] < book["asks"][0][0]  # applied one change at a time, never crossed
    venue.faults.frozen = True
    await asyncio.sleep(0.3)
    for symbol in SYMBOLS:
        feed = venue.feeds[exchange.market(symbol)["id"]]
        depth = limit or 50
        bids = [[float(feed.book.price(t)), float(c)] for t, c in feed.contract.side(feed.book.bids(depth)).items()]
        asks = [[float(feed.book.price(t)), float(c)] for t, c in feed.contract.side(feed.book.asks(depth)).items()]
        orderbook = exchange.orderbooks[symbol]
        assert [list(level) for level in orderbook["bids"]] == bids, symbol
        assert [list(level) for level in orderbook["asks"]] == asks, symbol
        if limit is None:
            assert orderbook["nonce"] == feed.sequence


async def test_ping_pong_keeps_a_silent_connection(sim: Simulator, venue: KucoinSimulator) -> None:
    venue.ping_interval_ms = 1000  # ccxt pings at the interval bullet-public announces
    exchange = ccxt.pro.kucoinfutures({**sim.ccxt_config("kucoin"), "streaming": {"keepAlive": 1000}})
    try:
        await exchange.watch_bids_asks(["BTC/USDT:USDT"])
        (client,) = exchange.clients.values()
        connection = client.connection
        venue.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.keepAlive == 1000 and client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(venue.sessions) == 1
        venue.faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_bids_asks(["BTC/USDT:USDT"]), 3)
        assert ticker and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_watch_and_reconnects(venue: KucoinSimulator, exchange: Any) -> None:
    await exchange.watch_bids_asks(["ETH/USDT:USDT"])
    venue.faults.silent = True
    pending = asyncio.create_task(exchange.watch_bids_asks(["ETH/USDT:USDT"]))
    await asyncio.sleep(0.1)
    assert await venue.drop_connections() == 1
    venue.faults.silent = False
    with pytest.raises(NetworkError):
        await asyncio.wait_for(pending, 5)
    quote = (await asyncio.wait_for(exchange.watch_bids_asks(["ETH/USDT:USDT"]), 5))["ETH/USDT:USDT"]
    assert quote["bid"] < quote["ask"] and len(venue.sessions) == 1 and len(venue.tokens) == 1  # same token


@pytest.mark.parametrize("stream", ["tickerV2", "level2Depth50", "level2"])
async def test_crossed_fault_shows_then_heals(venue: KucoinSimulator, exchange: Any, stream: str) -> None:
    if stream == "tickerV2":
        frames = await asyncio.wait_for(observe_quotes(exchange, "SOL/USDT:USDT", via="bids_asks"), 8)
    else:
        limit = 50 if stream == "level2Depth50" else None
        frames = await asyncio.wait_for(observe_order_book(exchange, "SOL/USDT:USDT", limit), 8)
        await past_the_snapshot(exchange, "SOL/USDT:USDT")
    venue.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert venue.faults.crossed_pending == 0
