"""Per-connection caps at full scale: the collector opens as many connections as each venue's cap requires, the
simulator refuses past the real cap the way the venue does, and a refusal is logged once without taking down the
healthy streams on the same socket."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from collectors.connection_pool import ConnectionPool
from collectors.venues.bybit import ARGS_CHARS_PER_CONNECTION, Bybit
from collectors.venues.kucoin import KucoinFutures
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, running

pytestmark = pytest.mark.timeout(150)


def listed(sim: Simulator, venue: str) -> list[str]:
    return sorted(book.instrument.unified_symbol for book in sim.venues[venue].books.values())


def keys(prefix: str, consumer: Consumer, since: float) -> set[str]:
    return {key for key, body, _ in consumer.since(since) if key.startswith(prefix) and body["ticker"]["bid"]}


@pytest.fixture
async def capped() -> AsyncIterator[Simulator]:
    """Universes just above each cap: MEXC spot 30 subscriptions, KuCoin 400 topics, Bitget 50 channels."""
    sim = Simulator(venues=["mexc", "kucoin", "bitget"], port=0, rate=0.5, universe_size=210)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.mark.parametrize(
    ("venue", "market", "symbols", "per_connection"),
    [
        ("mexc", "spot", 45, 15),  # 2 streams x 15 symbols = 30 subscriptions per connection
        ("kucoin", "futures", 210, 200),  # 2 topics x 200 symbols = 400 per connection
        ("bitget", "futures", 75, 25),  # 2 channels x 25 symbols = 50 per connection
    ],
)
async def test_enough_connections_and_every_symbol_quotes(
    capped: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture,
    venue: str, market: str, symbols: int, per_connection: int,
) -> None:
    config = collector_config(capped, broker.url, exchange_name, orderbook_depth=0, stale_after_seconds=20)
    config.exchanges = [entry for entry in config.exchanges if entry.name == venue]
    config.markets = [market]
    config.symbols = listed(capped, venue)[:symbols]
    started = time.time()
    with caplog.at_level(logging.INFO):
        async with running(config) as app:
            (collector,) = app.collectors
            assert await consumer.wait_until(lambda: len(collector.states) >= 0.95 * symbols, timeout=30)
            expected = {state.routing_key for state in collector.states.values()}
            assert await consumer.wait_until(lambda: keys(f"{market}.{venue}.", consumer, started) >= expected,
                                             timeout=90), sorted(expected - keys(market, consumer, started))[:10]
            assert collector.connections == math.ceil(len(expected) / per_connection) > 1
    assert not [r for r in caplog.records if "refused" in r.getMessage() or "subscribe attempt" in r.getMessage()]


async def test_simulator_refuses_past_the_real_caps(capped: Simulator) -> None:
    """Each venue's own refusal: KuCoin's error frame at the 401st topic, MEXC spot's `Blocked!` at the 31st."""
    kucoin, mexc = capped.venues["kucoin"], capped.venues["mexc"]
    ids = list(kucoin.feeds)[:201]
    async with aiohttp.ClientSession() as http:
        token = await (await http.post(f"{capped.http_base}/kucoin/api/v1/bullet-public")).json()
        server = token["data"]["instanceServers"][0]
        async with http.ws_connect(f"{server['endpoint']}?token={token['data']['token']}") as ws:
            await ws.receive_json()  # welcome
            for channel in ("/contractMarket/tickerV2", "/contractMarket/ticker"):
                for start in range(0, 200, 100):
                    topic = f"{channel}:{','.join(ids[start:start + 100])}"
                    await ws.send_json({"id": topic, "type": "subscribe", "topic": topic, "response": True})
            refused = f"/contractMarket/tickerV2:{ids[200]}"
            await ws.send_json({"id": "over", "type": "subscribe", "topic": refused, "response": True})
            reply = await _reply(ws, "over")
            assert reply == {"id": "over", "type": "error", "code": 509,
                             "data": "exceed max subscription count limitation of 400 per session"}

        pairs = list(mexc.spot)[:31]
        if True:
            async with http.ws_connect(f"{capped.ws_base}/mexc/ws") as ws:
                topics = [f"spot@public.aggre.bookTicker.v3.api.pb@100ms@{pair}" for pair in pairs]
                await ws.send_json({"method": "SUBSCRIPTION", "params": topics, "id": 1})
                reply = await _reply(ws, 1, blocked=True)
                assert reply["msg"].startswith("Not Subscribed successfully!") and pairs[30] in reply["msg"]


async def _reply(ws: aiohttp.ClientWebSocketResponse, request_id: object, blocked: bool = False) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = await ws.receive(timeout=10)
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        body = orjson.loads(message.data)
        if body.get("id") == request_id and (not blocked or "Blocked" in str(body.get("msg"))):
            return body
    raise AssertionError(f"no reply to {request_id}")


async def test_bybit_and_binance_caps() -> None:
    """Bybit refuses a connection's `args` past 21,000 characters; Binance closes a connection past 1024 streams.
    The collector's plan splits Bybit before its cap."""
    sim = Simulator(venues=["bybit", "binance"], port=0, rate=0.2, universe_size=300)
    await sim.start()
    try:
        bybit_ids = sorted(sim.venues["bybit"].books)
        topics = [f"{kind}.{venue_id}" for kind in ("tickers", "orderbook.1", "orderbook.50", "orderbook.200",
                                                    "orderbook.1000") for venue_id in bybit_ids]
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{sim.ws_base}/bybit/v5/public/linear") as ws:
                sent = 0
                reply: dict = {}
                for start in range(0, len(topics), 100):
                    chunk = topics[start:start + 100]
                    await ws.send_json({"op": "subscribe", "args": chunk, "req_id": str(start)})
                    reply = await _bybit_reply(ws, str(start))
                    if not reply["success"]:
                        break
                    sent += sum(len(topic) + 3 for topic in chunk)
                assert reply["success"] is False and reply["ret_msg"] == f"args length >{ARGS_CHARS_PER_CONNECTION}"
                assert sent <= ARGS_CHARS_PER_CONNECTION
            binance_ids = sorted(sim.venues["binance"].books)
            streams = [f"{venue_id.lower()}@{kind}" for kind in ("bookTicker", "depth@100ms", "markPrice@1s",
                                                                 "miniTicker") for venue_id in binance_ids]
            assert len(streams) > 1024
            async with http.ws_connect(f"{sim.ws_base}/binance/ws") as ws:
                for start in range(0, len(streams), 200):
                    await ws.send_json({"method": "SUBSCRIBE", "params": streams[start:start + 200], "id": start})
                closed = await ws.receive(timeout=10)
                while closed.type == aiohttp.WSMsgType.TEXT:
                    closed = await ws.receive(timeout=10)
                assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    finally:
        await sim.stop()
    # the plan: 600 long-named symbols need two Bybit connections, each within the cap
    venue = Bybit()
    specs = venue.streams(1000)
    markets = {f"S{i}": {"id": f"LONGNAME{i:05d}USDT"} for i in range(600)}
    pool = ConnectionPool(venue, object(), object)
    placed = pool.place(list(markets), specs, markets)
    assert len(placed) > 1 and all(load <= ARGS_CHARS_PER_CONNECTION for load in pool.load)


async def _bybit_reply(ws: aiohttp.ClientWebSocketResponse, req_id: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = await ws.receive(timeout=10)
        if message.type == aiohttp.WSMsgType.TEXT:
            body = orjson.loads(message.data)
            if body.get("req_id") == req_id and body.get("op") == "subscribe":
                return body
    raise AssertionError(f"no reply to {req_id}")


async def test_refusal_is_logged_once_and_healthy_streams_keep_going(
    broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A collector that put 150 symbols x 3 topics on one KuCoin socket (the cap ignored, as before this fix): the
    venue refuses the batch past 400 topics; that is logged once as a refusal with the venue's words, the socket
    stays up (no redial, no ~31 s teardown cycle) and every symbol keeps streaming."""
    monkeypatch.setattr(KucoinFutures, "connection_budget", None)
    sim = Simulator(venues=["kucoin"], port=0, rate=0.5, universe_size=150)
    await sim.start()
    try:
        config = collector_config(sim, broker.url, exchange_name, orderbook_depth=5, stale_after_seconds=3)
        config.symbols = listed(sim, "kucoin")
        with caplog.at_level(logging.INFO):
            async with running(config) as app:
                (collector,) = app.collectors
                refused = lambda: [r for r in caplog.records if "refused" in r.getMessage()]  # noqa: E731
                assert await consumer.wait_until(lambda: bool(refused()), timeout=60)
                window = time.time()
                connections = sim.venues["kucoin"].connections_accepted
                await asyncio.sleep(12)  # four times stale_after: a teardown cycle would show
                assert keys("futures.kucoin.", consumer, window) == {s.routing_key for s in collector.states.values()}
                assert len(collector.states) >= 140
                assert sim.venues["kucoin"].connections_accepted == connections
        (record,) = refused()
        assert record.levelno == logging.ERROR
        assert "exceed max subscription count limitation of 400 per session" in record.getMessage()
        assert not [r for r in caplog.records if "stream lost" in r.getMessage() or "attempt" in r.getMessage()]
    finally:
        await sim.stop()


async def test_binance_symbol_removed_then_re_added_goes_back_to_the_batch_still_streaming_it(
    broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    """Binance unsubscribes only whole batches, so a symbol removed from a batch keeps arriving on that batch's socket.
    Re-added, it goes back to that batch: no second subscription, no second socket feeding the same state (which
    would also have put the old socket into the new batch's liveness set)."""
    sim = Simulator(venues=["binance"], port=0, rate=2)
    await sim.start()
    try:
        config = collector_config(sim, broker.url, exchange_name, orderbook_depth=0)
        config.symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
        async with running(config) as app:
            (collector,) = app.collectors
            assert await consumer.wait_until(lambda: len(keys("futures.binance.", consumer, 0)) == 3, timeout=30)
            collector.want(["BTC/USDT:USDT", "SOL/USDT:USDT"])
            collector.want(config.symbols)
            readded = time.time()
            assert await consumer.wait_until(
                lambda: "futures.binance.ETHUSDT" in keys("futures.binance.", consumer, readded), timeout=20)
            venue = sim.venues["binance"]
            for stream in ("bookTicker", "markPrice@1s", "miniTicker"):
                assert len(venue.subscribers.get(f"ethusdt@{stream}", ())) == 1, stream
            owners = [s for s in collector._supervisors if "ETH/USDT:USDT" in s.states]
            assert len(owners) == 3 and not [s for s in owners if s.name.split("#")[1].startswith("2")]  # no new batch
    finally:
        await sim.stop()
