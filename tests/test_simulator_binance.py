"""The Binance simulator speaks the real wire format: an unmodified ccxt.pro.binanceusdm runs against it."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import ccxt.pro
import pytest
from aiohttp import web

from simulator.binance import BinanceSimulator
from simulator.book import ReferenceMarket, now_ms
from simulator.instruments import INSTRUMENTS
from tests.frame_tops import observe_order_book, observe_quotes, past_the_snapshot

BTC, ETH, SOL = (instrument.unified_symbol for instrument in INSTRUMENTS[:3])


@pytest.fixture
async def served():
    """The venue alone behind an aiohttp server on a free port, laid out like simulator.server does."""
    simulator = BinanceSimulator(INSTRUMENTS, ReferenceMarket(7), rate=20.0, seed=7)
    venue_app = web.Application()
    venue_app.add_routes(simulator.routes())
    app = web.Application()
    app.add_subapp("/binance/", venue_app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    feed = asyncio.create_task(simulator.run())
    yield simulator, f"http://127.0.0.1:{port}/binance", f"ws://127.0.0.1:{port}/binance"
    feed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feed
    await simulator.drop_connections()
    await runner.cleanup()


@pytest.fixture
def venue(served) -> BinanceSimulator:
    return served[0]


@pytest.fixture
async def exchange(served):
    simulator, http_base, ws_base = served
    client = ccxt.pro.binanceusdm(simulator.ccxt_config(http_base, ws_base))
    yield client
    await client.close()


async def frame_after(watch, moment_ms: int, symbol: str = BTC) -> dict:
    """The first update for `symbol` stamped after `moment_ms` (frames in flight before it are skipped)."""
    async with asyncio.timeout(5):
        while True:
            update = (await watch())[symbol]
            if update["timestamp"] > moment_ms:
                return update


def freeze(venue: BinanceSimulator) -> int:
    venue.faults.frozen = True
    return now_ms()


async def test_load_markets_lists_every_instrument_as_a_linear_perpetual(exchange):
    markets = await exchange.load_markets()
    assert set(markets) == {instrument.unified_symbol for instrument in INSTRUMENTS}
    for instrument in INSTRUMENTS:
        market = markets[instrument.unified_symbol]
        assert market["id"] == instrument.venue_id
        assert (market["swap"], market["linear"], market["active"], market["settle"]) == (True, True, True, "USDT")
        assert market["contractSize"] == 1
        assert market["precision"]["price"] == float(instrument.tick_size)
        assert market["precision"]["amount"] == float(instrument.qty_step)


async def test_bids_asks_are_exactly_what_the_venue_shows(venue, exchange):
    await exchange.watch_bids_asks([BTC])
    frozen_at = freeze(venue)
    ticker = await frame_after(lambda: exchange.watch_bids_asks([BTC]), frozen_at)
    shown = venue.state()["symbols"][BTC]
    assert (ticker["bid"], ticker["bidVolume"]) == (float(shown["bid"]), float(shown["bid_size"]))
    assert (ticker["ask"], ticker["askVolume"]) == (float(shown["ask"]), float(shown["ask_size"]))
    assert ticker["info"]["u"] == shown["update_id"]


async def test_order_books_stay_in_sync_with_the_diff_stream(venue, exchange):
    symbols = [BTC, ETH, SOL]
    nonces: dict[str, set[int]] = {symbol: set() for symbol in symbols}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    while loop.time() < deadline:  # a ChecksumError (broken U/u/pu chain) would raise here
        await asyncio.wait_for(exchange.watch_order_book_for_symbols(symbols, limit=50), 5)
        for symbol in symbols:  # one call returns one symbol's book; look at all of them
            if (nonce := exchange.orderbooks.get(symbol, {}).get("nonce")) is not None:
                nonces[symbol].add(nonce)
    assert all(len(seen) > 5 for seen in nonces.values()), nonces
    freeze(venue)
    await asyncio.sleep(0.6)  # the last diffs of every cadence arrive
    for symbol in symbols:
        simulated = venue.books[exchange.market(symbol)["id"]]
        local = exchange.orderbooks[symbol]
        assert local["nonce"] == simulated.update_id
        for side, levels in (("bids", simulated.bids()), ("asks", simulated.asks())):
            expected = [[float(simulated.price(p)), float(simulated.size(s))] for p, s in levels.items()]
            assert [list(level) for level in local[side]] == expected, f"{symbol} {side}"


async def test_crossed_diff_shows_a_bid_above_the_ask_then_heals(venue, exchange):
    frames = await observe_order_book(exchange, BTC)
    await past_the_snapshot(exchange, BTC)
    venue.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)


async def test_mark_price_carries_index_and_funding(venue, exchange):
    await exchange.watch_mark_prices([BTC])
    frozen_at = freeze(venue)
    ticker = await frame_after(lambda: exchange.watch_mark_prices([BTC]), frozen_at)
    shown = venue.state()["symbols"][BTC]
    assert ticker["markPrice"] == float(shown["mark_price"])
    assert ticker["indexPrice"] == float(shown["index_price"])
    assert float(ticker["info"]["r"]) == float(shown["funding_rate"])
    assert ticker["info"]["T"] == shown["next_funding_time"]


async def test_mini_ticker_gives_the_last_price(venue, exchange):
    await exchange.watch_tickers([ETH])
    frozen_at = freeze(venue)
    ticker = await frame_after(lambda: exchange.watch_tickers([ETH]), frozen_at, ETH)
    assert ticker["last"] == float(venue.state()["symbols"][ETH]["last_price"])
    assert ticker["high"] >= ticker["last"] >= ticker["low"]


async def test_dropped_connection_fails_the_pending_watch_and_the_next_one_reconnects(venue, exchange):
    await exchange.watch_bids_asks([BTC])
    venue.faults.silent = True
    await asyncio.sleep(0.1)
    pending = asyncio.create_task(exchange.watch_bids_asks([BTC]))
    await asyncio.sleep(0.1)
    assert await venue.drop_connections() == 1
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, 5)
    venue.faults.silent = False
    tickers = await asyncio.wait_for(exchange.watch_bids_asks([BTC]), 5)
    assert tickers[BTC]["bid"] < tickers[BTC]["ask"]
    assert len(venue.sessions) == 1


async def test_crossed_fault_sends_a_book_ticker_with_bid_above_ask(venue, exchange):
    frames = await observe_quotes(exchange, BTC, via="bids_asks")
    venue.faults.crossed_pending = 1
    await frames.wait_crossed_then_healed(timeout=10)
    assert venue.faults.crossed_pending == 0


async def test_rest_snapshot_funding_intervals_and_premium_index(venue, exchange):
    book = await exchange.fetch_order_book(BTC, limit=5)
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] < book["asks"][0][0]
    intervals = await exchange.fetch_funding_intervals()
    assert {symbol: rate["interval"] for symbol, rate in intervals.items()} == {
        instrument.unified_symbol: f"{instrument.funding_interval_hours}h"
        for instrument in INSTRUMENTS
        if instrument.funding_interval_hours != 8
    }
    rates = await exchange.fetch_funding_rates([BTC, ETH])
    assert set(rates) == {BTC, ETH}
    assert all(rate["fundingTimestamp"] > now_ms() for rate in rates.values())


async def test_websocket_protocol_replies_like_binance(served):
    requests = [
        {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker", "ethusdt@depth@100ms"], "id": 1},
        {"method": "LIST_SUBSCRIPTIONS", "id": 2},
        {"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 3},
        {"method": "SUBSCRIBES", "params": [], "id": 4},
    ]
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{served[2]}/public/ws/0") as ws:
        for request in requests:
            await ws.send_json(request)
        replies, data = [], []
        async with asyncio.timeout(5):
            while len(replies) < len(requests) or len(data) < 2:
                message = await ws.receive_json()
                (replies if "id" in message else data).append(message)
    assert replies[:3] == [
        {"result": None, "id": 1},
        {"result": ["btcusdt@bookTicker", "ethusdt@depth@100ms"], "id": 2},
        {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 3},
    ]
    assert replies[3]["error"]["code"] == 2 and replies[3]["id"] == 4
    assert {frame["e"] for frame in data} <= {"bookTicker", "depthUpdate"}


async def test_combined_stream_path_wraps_every_frame_of_the_streams_in_the_url(served):
    """cryptofeed dials /stream?streams=a/b and reads {"stream": name, "data": frame}; acks stay unwrapped."""
    streams = {"btcusdt@bookTicker": "BTCUSDT", "ethusdt@bookTicker": "ETHUSDT"}
    url = f"{served[2]}/stream?streams={'/'.join(streams)}"
    seen: dict[str, int] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["solusdt@bookTicker"], "id": 7})
        replies = []
        async with asyncio.timeout(10):
            while not replies or set(seen) != {*streams, "solusdt@bookTicker"}:
                message = await ws.receive_json()
                if "id" in message:
                    replies.append(message)
                    continue
                assert set(message) == {"stream", "data"}, message
                assert message["data"]["e"] == "bookTicker"
                assert message["data"]["s"] == message["stream"].partition("@")[0].upper()
                seen[message["stream"]] = seen.get(message["stream"], 0) + 1
    assert replies == [{"result": None, "id": 7}]


async def test_combined_stream_path_refuses_an_unknown_stream_by_name(served):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{served[2]}/stream?streams=btcusdt@bookTicker/btcusdt@nonsense")
        assert refused.value.status == 400
        async with session.get(f"{served[1]}/stream?streams=btcusdt@nonsense") as response:
            assert response.status == 400
            assert "btcusdt@nonsense" in await response.text()
