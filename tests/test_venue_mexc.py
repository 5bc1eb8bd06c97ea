"""End to end for MEXC, futures and spot: simulator → ccxt.pro → collector → RabbitMQ → a queue consumer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from models.futures_data import FuturesData
from simulator.mexc import SPOT_STREAMS_AVAILABLE
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, running, valid

pytestmark = pytest.mark.timeout(120)

SPOT = SPOT_STREAMS_AVAILABLE
"""ccxt decodes MEXC spot frames with the protobuf package; without it only futures are checked."""
LISTED = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "PEPE/USDT:USDT"]
"""Contract sizes 0.0001, 0.01, 0.1, 1 and 100000; MEXC lists PEPE per coin (funding every 4 h)."""
SYMBOLS = [*LISTED, "1000PEPE/USDT:USDT"]
"""1000PEPE is how other venues bundle PEPE; MEXC doesn't list it."""
FUTURES_KEYS = {f"futures.mexc.{symbol.split('/')[0]}USDT" for symbol in LISTED}
SPOT_KEYS = {f"spot.mexc.{symbol.split('/')[0]}USDT" for symbol in LISTED} if SPOT else set()
STALE_AFTER_SECONDS = 15
"""ccxt holds the first REST call after the 100-weight contract list for about 5 s, and the books wait for it."""


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["mexc"], port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def spot_consumer(broker: Broker, exchange_name: str) -> AsyncIterator[Consumer]:
    subscriber = Consumer(broker.url, exchange_name, binding="spot.#")
    await subscriber.start()
    yield subscriber
    await subscriber.close()


def mexc_config(simulator: Simulator, broker: Broker, exchange_name: str) -> Any:
    config = collector_config(
        simulator, broker.url, exchange_name, stale_after_seconds=STALE_AFTER_SECONDS, funding_poll_seconds=1
    )
    config.markets = ["futures", "spot"] if SPOT else ["futures"]
    config.symbols = SYMBOLS
    return config


def complete(body: dict[str, Any]) -> bool:
    ticker = body["ticker"]
    if None in (ticker["last"], ticker["volume_24h"], body["orderbook"]):
        return False
    if body["market"] == "spot":
        return True
    return None not in (
        body["funding_rate"],
        body["next_funding_time"],
        body["funding_interval_hours"],
        body["mark_price"],
        body["index_price"],
    )


async def all_complete(futures: Consumer, spot: Consumer, timeout: float = 60) -> bool:
    def done() -> bool:
        latest = {**futures.latest, **spot.latest}
        return all(key in latest and complete(latest[key]) for key in FUTURES_KEYS | SPOT_KEYS)

    return await futures.wait_until(done, timeout=timeout)


async def test_consumer_gets_what_mexc_sent(
    simulator: Simulator,
    broker: Broker,
    exchange_name: str,
    consumer: Consumer,
    spot_consumer: Consumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running(mexc_config(simulator, broker, exchange_name)):
        assert await all_complete(consumer, spot_consumer), (sorted(consumer.latest), sorted(spot_consumer.latest))
        await simulator.apply_fault("mexc", "freeze")
        await asyncio.sleep(2.0)  # every stream has sent its frozen values by now (slowest: the 1 s ticker)
        state = simulator.venues["mexc"].state()

    for symbol in LISTED:
        key = f"futures.mexc.{symbol.split('/')[0]}USDT"
        message, sent = valid(consumer.latest[key]), state["symbols"][symbol]
        assert (message.exchange, message.market, message.symbol) == ("mexc", "futures", symbol)
        assert (message.coin, message.base_multiplier) == (symbol.split("/")[0], 1)
        assert (message.ticker.bid, message.ticker.ask) == (float(sent["bid"]), float(sent["ask"])), key
        # sizes in coins: contracts x contract size (BTC 0.0001, ETH 0.01, SOL 0.1, PEPE 100000)
        assert (message.ticker.bid_size, message.ticker.ask_size) == (sent["bid_size"], sent["ask_size"]), key
        assert message.ticker.last == float(sent["last_price"]) and message.ticker.volume_24h == sent["volume_24h"]
        assert message.funding_rate == float(sent["funding_rate"]), key
        assert message.next_funding_time == sent["next_funding_time"], key
        assert message.funding_interval_hours == sent["funding_interval_hours"], key
        assert (message.mark_price, message.index_price) == (float(sent["mark_price"]), float(sent["index_price"]))
        assert_book(message, sent["contract_size"])
    assert state["symbols"]["PEPE/USDT:USDT"]["funding_interval_hours"] == 4
    assert state["symbols"]["BTC/USDT:USDT"]["contract_size"] == 0.0001
    assert state["symbols"]["XRP/USDT:USDT"]["contract_size"] == 1  # levels come as [price, contracts, orders]

    for symbol in LISTED if SPOT else []:
        spot_symbol = symbol.split(":")[0]
        key = f"spot.mexc.{spot_symbol.replace('/', '')}"
        message, sent = valid(spot_consumer.latest[key]), state["spot_symbols"][spot_symbol]
        assert (message.exchange, message.market, message.symbol) == ("mexc", "spot", spot_symbol)
        assert (message.ticker.bid, message.ticker.ask) == (float(sent["bid"]), float(sent["ask"])), key
        assert (message.ticker.bid_size, message.ticker.ask_size) == (float(sent["bid_size"]), float(sent["ask_size"]))
        assert message.ticker.last == float(sent["last_price"]), key
        assert message.ticker.volume_24h == float(sent["volume_24h"]), key  # over REST
        assert None is message.funding_rate is message.next_funding_time is message.mark_price
        assert_book(message, None)

    for key, body, _ in consumer.messages + spot_consumer.messages:
        assert key in FUTURES_KEYS | SPOT_KEYS
        valid(body)
    unlisted = [r for r in caplog.records if "1000PEPE/USDT" in r.getMessage() and r.levelno == logging.WARNING]
    assert [r.name for r in unlisted] == ["mexc"]  # spot trades it as PEPE/USDT


def assert_book(message: FuturesData, contract_size: float | None) -> None:
    book = message.orderbook
    assert book is not None and len(book.bids) == len(book.asks) == 20, message.symbol
    assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size)
    assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size)
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
    if contract_size is not None:  # whole contracts, in coins
        assert all(round(size / contract_size, 6).is_integer() for _, size in book.bids + book.asks)


async def test_malformed_frames_and_a_drop_are_survived(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, spot_consumer: Consumer
) -> None:
    async def flowing(timeout: float = 30) -> bool:
        start = time.time()
        return await consumer.wait_until(
            lambda: consumer.keys_since(start) >= FUTURES_KEYS and spot_consumer.keys_since(start) >= SPOT_KEYS,
            timeout=timeout,
        )

    async with running(mexc_config(simulator, broker, exchange_name)) as app:
        assert await all_complete(consumer, spot_consumer)
        await simulator.apply_fault("mexc", "malformed", count=8)
        assert await flowing(), "messages stopped after malformed frames"
        assert simulator.venues["mexc"].faults.malformed_pending == 0
        assert sum(collector.stats.errors for collector in app.collectors) >= 1
        await simulator.apply_fault("mexc", "drop")
        assert await consumer.wait_until(
            lambda: all(collector.stats.reconnects >= 1 for collector in app.collectors), timeout=30
        ), "the drop was not noticed on every source"
        assert await flowing(), "messages stopped after a drop"
