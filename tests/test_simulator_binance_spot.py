"""Binance spot in the simulator speaks the real wire format: an unmodified ccxt.pro.binance runs against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ccxt.pro
import pytest

from collectors.venues.binance import BinanceSpot
from simulator.binance import BinanceSimulator, BinanceSpotSimulator
from simulator.book import now_ms
from simulator.instruments import INSTRUMENTS
from simulator.server import Simulator
from tests.frame_tops import observe_order_book, observe_quotes, past_the_snapshot

BTC, ETH, PEPE = "BTC/USDT", "ETH/USDT", "PEPE/USDT"
"""PEPE: futures list 1000PEPEUSDT, spot lists the single coin."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["binance"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def spot(sim: Simulator) -> BinanceSpotSimulator:
    venue = sim.venues["binance"]
    assert isinstance(venue, BinanceSimulator)
    return venue.spot


def spot_exchange(sim: Simulator, **overrides: Any) -> ccxt.pro.binance:
    """ccxt.binance as the spot source builds it: its defaults with the simulator's `ccxt` block over them."""
    config = ccxt.Exchange.deep_extend(BinanceSpot.ccxt_defaults, sim.ccxt_config("binance"), overrides)
    return ccxt.pro.binance(config)


@pytest.fixture
async def exchange(sim: Simulator) -> AsyncIterator[ccxt.pro.binance]:
    client = spot_exchange(sim)
    yield client
    await client.close()


async def frozen_update(watch: Any, spot: BinanceSpotSimulator, symbol: str) -> dict[str, Any]:
    """Freeze, then the first update for `symbol` that arrives after everything in flight (> 0.3 s later)."""
    spot.faults.frozen = True
    await asyncio.sleep(0.3)
    settled = now_ms()
    async with asyncio.timeout(5):
        while True:
            update = (await watch())[symbol]
            if now_ms() - settled > 150:
                return update


async def test_load_markets_lists_spot_pairs_from_one_request(exchange: ccxt.pro.binance) -> None:
    markets = await exchange.load_markets()
    expected = {f"{instrument.coin}/USDT" for instrument in INSTRUMENTS}
    assert set(markets) == expected and "1000PEPE/USDT" not in markets
    for symbol, market in markets.items():
        assert (market["type"], market["spot"], market["active"], market["contractSize"]) == ("spot", True, True, None)
        assert market["id"] == symbol.replace("/", "")
    btc = next(instrument for instrument in INSTRUMENTS if instrument.coin == "BTC")
    assert markets[BTC]["precision"]["price"] == float(btc.tick_size)
    assert markets[BTC]["precision"]["amount"] == float(btc.qty_step)
    assert markets[PEPE]["precision"]["price"] == 1e-08 and markets[PEPE]["precision"]["amount"] == 1
    assert markets[BTC]["info"]["filters"][0]["tickSize"] == "0.10000000"  # spot prints 8 decimals


async def test_bids_asks_are_exactly_what_the_venue_shows(spot, exchange) -> None:
    await exchange.watch_bids_asks([BTC, PEPE])
    ticker = await frozen_update(lambda: exchange.watch_bids_asks([BTC]), spot, BTC)
    shown = spot.state()["symbols"][BTC]
    assert (ticker["bid"], ticker["bidVolume"]) == (float(shown["bid"]), float(shown["bid_size"]))
    assert (ticker["ask"], ticker["askVolume"]) == (float(shown["ask"]), float(shown["ask_size"]))
    assert ticker["info"] == {"u": shown["update_id"], "s": "BTCUSDT", "b": shown["bid"], "B": shown["bid_size"],
                              "a": shown["ask"], "A": shown["ask_size"]}
    assert ticker["timestamp"] is None  # spot's bookTicker carries no time
    assert shown["bid"].endswith("0") and len(shown["bid"].split(".")[1]) == 8


async def test_mini_ticker_gives_last_and_volume_in_coins(spot, exchange) -> None:
    await exchange.watch_tickers([ETH])
    ticker = await frozen_update(lambda: exchange.watch_tickers([ETH]), spot, ETH)
    shown = spot.state()["symbols"][ETH]
    assert ticker["last"] == float(shown["last_price"]) and ticker["baseVolume"] == float(shown["volume_24h"])
    assert ticker["timestamp"] == ticker["info"]["E"]
    assert shown["funding_rate"] is shown["mark_price"] is shown["index_price"] is None


async def test_order_books_stay_in_sync_with_the_diff_stream(spot, exchange) -> None:
    symbols = [BTC, ETH, PEPE]
    nonces: dict[str, set[int]] = {symbol: set() for symbol in symbols}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    while loop.time() < deadline:  # a ChecksumError (a gap in the U/u chain) would raise here
        await asyncio.wait_for(exchange.watch_order_book_for_symbols(symbols, limit=100), 5)
        for symbol in symbols:
            if (nonce := exchange.orderbooks.get(symbol, {}).get("nonce")) is not None:
                nonces[symbol].add(nonce)
    assert all(len(seen) > 5 for seen in nonces.values()), nonces
    spot.faults.frozen = True
    await asyncio.sleep(1.2)  # the last diffs arrive
    for symbol in symbols:
        simulated = spot.books[exchange.market(symbol)["id"]]
        local = exchange.orderbooks[symbol]
        assert local["nonce"] == simulated.update_id
        for side, levels in (("bids", simulated.bids()), ("asks", simulated.asks())):
            expected = [[float(simulated.price(p)), float(simulated.size(s))] for p, s in levels.items()]
            assert [list(level) for level in local[side]] == expected, f"{symbol} {side}"


@pytest.mark.parametrize("stream", ["bookTicker", "depth"])
async def test_crossed_fault_shows_then_heals(spot, exchange, stream: str) -> None:
    if stream == "bookTicker":
        frames = await observe_quotes(exchange, BTC, via="bids_asks")
    else:
        frames = await observe_order_book(exchange, BTC, 100)
        await past_the_snapshot(exchange, BTC)
    spot.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=15)  # generous: CI runs the whole suite on two busy cores
    assert spot.faults.crossed_pending == 0


async def test_protocol_pings_keep_a_silent_connection(sim: Simulator, spot) -> None:
    exchange = spot_exchange(sim, streaming={"keepAlive": 1000})
    try:
        await exchange.watch_bids_asks([BTC])
        (client,) = exchange.clients.values()
        assert "/stream/ws/" in client.url
        connection = client.connection
        spot.faults.silent = True
        silent_since = exchange.milliseconds()
        await asyncio.sleep(3.5)  # without pongs ccxt gives up after 2 keepalive intervals
        assert client.lastPong > silent_since + 1500
        assert client.connection is connection and not client.closed() and len(spot.sessions) == 1
        spot.faults.silent = False
        ticker = await asyncio.wait_for(exchange.watch_bids_asks([BTC]), 3)
        assert ticker[BTC]["bid"] < ticker[BTC]["ask"] and client.connection is connection
    finally:
        await exchange.close()


async def test_dropped_connection_fails_the_pending_watch_and_the_next_one_reconnects(sim, spot, exchange) -> None:
    await exchange.watch_bids_asks([BTC])
    spot.faults.silent = True
    pending = asyncio.create_task(exchange.watch_bids_asks([BTC]))
    await asyncio.sleep(0.1)
    assert await sim.venues["binance"].drop_connections() == 1  # the futures side has no client here
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, 5)
    spot.faults.silent = False
    tickers = await asyncio.wait_for(exchange.watch_bids_asks([BTC]), 5)
    assert tickers[BTC]["bid"] < tickers[BTC]["ask"] and len(spot.sessions) == 1


async def test_spot_and_futures_streams_of_one_name_stay_apart(sim: Simulator) -> None:
    """`btcusdt@bookTicker` on the spot stream is the spot book, on fstream the futures book."""
    base = f"{sim.ws_base}/binance"
    request = {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/stream/ws/0") as spot_ws, \
            http.ws_connect(f"{base}/public/ws/0") as futures_ws:
        frames = {}
        for name, ws in (("spot", spot_ws), ("futures", futures_ws)):
            await ws.send_json(request)
            assert await ws.receive_json() == {"result": None, "id": 1}
            frames[name] = await asyncio.wait_for(ws.receive_json(), 5)
        await spot_ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 2})
        async with asyncio.timeout(5):
            while "id" not in (reply := await spot_ws.receive_json()):
                pass
        assert reply == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 2}  # no mark price
    assert set(frames["spot"]) == {"u", "s", "b", "B", "a", "A"}
    assert {"e", "E", "T"} <= set(frames["futures"])
