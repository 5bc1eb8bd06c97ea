"""Bitget end to end: simulator (real wire format) → ccxt.pro.bitget → collector → RabbitMQ → a queue consumer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, all_streams_up, collector_config, running, valid

pytestmark = pytest.mark.timeout(120)

LISTED = [*SYMBOLS, "1000PEPE/USDT:USDT"]
KEYS = {f"futures.bitget.{symbol.split(':')[0].replace('/', '')}": symbol for symbol in LISTED}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["bitget"], port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


def complete(body: dict) -> bool:
    return None not in (
        body["funding_rate"],
        body["next_funding_time"],
        body["funding_interval_hours"],
        body["mark_price"],
        body["index_price"],
        body["ticker"]["last"],
        body["ticker"]["volume_24h"],
        body["orderbook"],
    )


async def flowing(consumer: Consumer, timeout: float = 20.0) -> bool:
    """Every symbol gets a fresh complete message from now on."""
    start = time.time()
    return await consumer.wait_until(
        lambda: set(KEYS) <= {key for key, body, _ in consumer.since(start) if complete(body)}, timeout=timeout
    )


@pytest.mark.parametrize("depth", [20, 5])
async def test_consumer_gets_exactly_what_bitget_sent(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, depth: int
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, orderbook_depth=depth)
    config.symbols = LISTED
    async with running(config) as app:
        assert await all_streams_up(app)
        assert await flowing(consumer, timeout=30)
        await simulator.apply_fault("bitget", "freeze")
        await asyncio.sleep(2.0)  # every stream has sent its frozen values by now (slowest: ticker, 200 ms)
        sent = simulator.venues["bitget"].state()["symbols"]
        await asyncio.sleep(0.3)

    for key, symbol in KEYS.items():
        message, venue = valid(consumer.latest[key]), sent[symbol]
        assert (message.exchange, message.market, message.symbol) == ("bitget", "futures", symbol)
        assert venue["contract_size"] == 1  # Bitget sizes are coins: published as sent
        assert (message.ticker.bid, message.ticker.ask) == (float(venue["bid"]), float(venue["ask"])), key
        assert message.ticker.bid_size == float(venue["bid_size"]), key
        assert message.ticker.ask_size == float(venue["ask_size"]), key
        assert message.ticker.last == float(venue["last"]), key
        assert message.ticker.volume_24h == float(venue["volume_24h"]), key
        assert message.funding_rate == float(venue["funding_rate"]), key
        assert message.next_funding_time == venue["next_funding_time"], key
        assert message.funding_interval_hours == venue["funding_interval_hours"], key
        assert message.mark_price == float(venue["mark_price"]), key
        assert message.index_price == float(venue["index_price"]), key
        book = message.orderbook
        assert book is not None and len(book.bids) == len(book.asks) == depth, key
        assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size), key
        assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size), key
        assert book.timestamp == venue["timestamp"] and message.timestamp >= venue["timestamp"], key
        assert message.published_timestamp >= message.received_timestamp
    pepe = valid(consumer.latest["futures.bitget.1000PEPEUSDT"])
    assert (pepe.symbol, pepe.coin, pepe.base_multiplier) == ("1000PEPE/USDT:USDT", "PEPE", 1000)
    assert pepe.funding_interval_hours == 4
    for key, body, _ in consumer.messages:
        assert key in KEYS
        valid(body)


async def test_best_bid_ask_only_comes_from_books1(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, orderbook_depth=0)
    config.symbols = LISTED
    async with running(config) as app:
        assert {spec.name for spec in app.collectors[0].venue.streams(0)} == {"ticker", "books1"}
        assert await consumer.wait_until(lambda: set(KEYS) <= set(consumer.latest), timeout=30)
    for body in consumer.latest.values():
        message = valid(body)
        assert message.orderbook is None and message.ticker.bid < message.ticker.ask


async def test_malformed_frames_and_a_drop_are_survived(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = collector_config(simulator, broker.url, exchange_name)
    config.symbols = LISTED
    async with running(config) as app:
        assert await flowing(consumer, timeout=30)
        stats = app.collectors[0].stats
        errors_before = stats.errors
        await simulator.apply_fault("bitget", "malformed", count=6)
        assert await consumer.wait_until(lambda: stats.errors > errors_before, timeout=20), "no bad frame was counted"
        assert await flowing(consumer), "bitget stopped after malformed frames"
        await simulator.apply_fault("bitget", "crossed", count=4)
        await asyncio.sleep(1.0)
        await simulator.apply_fault("bitget", "drop")
        assert await consumer.wait_until(lambda: stats.reconnects >= 1, timeout=30), "the drop was not noticed"
        assert await flowing(consumer, timeout=30), "bitget did not come back after a drop"
        await simulator.apply_fault("bitget", "freeze")
        await asyncio.sleep(1.5)
        sent = simulator.venues["bitget"].state()["symbols"]
        await asyncio.sleep(0.3)
    for key, symbol in KEYS.items():  # the resubscribed `books` started afresh: exact top of book again
        book = valid(consumer.latest[key]).orderbook
        assert book is not None and book.bids[0] == (float(sent[symbol]["bid"]), float(sent[symbol]["bid_size"]))
    for key, body, _ in consumer.messages:
        message = valid(body)
        assert message.ticker.bid < message.ticker.ask, f"crossed quote published on {key}"
    assert not [r for r in caplog.records if "checksum" in r.getMessage().lower()]
    assert any("skipped a frame" in r.getMessage() for r in caplog.records)


async def test_a_removed_symbol_is_unsubscribed_and_can_come_back(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name)
    config.symbols = LISTED
    venue = simulator.venues["bitget"]
    topics = ("ticker.ETHUSDT", "books.ETHUSDT")
    async with running(config) as app:
        assert await flowing(consumer, timeout=30)
        collector = app.collectors[0]
        collector.want([symbol for symbol in LISTED if symbol != "ETH/USDT:USDT"])
        assert await consumer.wait_until(lambda: not any(venue.has_subscribers(topic) for topic in topics), 5)
        collector.want(LISTED)  # a batch of its own; ccxt dropped the book when the unsubscribe was acked
        assert await flowing(consumer, timeout=20)
        assert all(venue.has_subscribers(topic) for topic in topics)
