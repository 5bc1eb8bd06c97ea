"""End to end for Gate alone: simulator (real wire format) → ccxt.pro.gate → collector → RabbitMQ → a consumer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, all_streams_up, collector_config, running, valid

pytestmark = pytest.mark.timeout(90)

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "PEPE/USDT:USDT"]
"""Contract sizes 0.0001, 0.01, 1 and ten million coins; PEPE settles funding every 4 hours."""
KEYS = {f"futures.gateio.{symbol.split(':')[0].replace('/', '')}" for symbol in SYMBOLS}


@pytest.fixture
async def gate() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["gateio"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


def complete(body: dict) -> bool:
    return None not in (
        body["funding_rate"], body["next_funding_time"], body["funding_interval_hours"], body["mark_price"],
        body["index_price"], body["ticker"]["last"], body["ticker"]["volume_24h"], body["orderbook"],
    )


async def test_consumer_gets_what_gate_sent_in_coins(
    gate: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    config = collector_config(gate, broker.url, exchange_name)
    config.symbols = [*SYMBOLS, "1000PEPE/USDT:USDT"]  # Gate lists PEPE per coin, not 1000PEPE
    caplog.set_level(logging.INFO)
    async with running(config):
        assert await consumer.wait_until(
            lambda: set(consumer.latest) >= KEYS and all(complete(consumer.latest[key]) for key in KEYS), timeout=30
        ), f"incomplete: {sorted(KEYS - {key for key, body in consumer.latest.items() if complete(body)})}"
        await gate.apply_fault("gateio", "freeze")
        await asyncio.sleep(2.0)  # every stream has pushed its frozen values (slowest: tickers, every second)
        sent = gate.venues["gateio"].state()["symbols"]

    assert set(consumer.latest) == KEYS
    for symbol in SYMBOLS:
        key = f"futures.gateio.{symbol.split(':')[0].replace('/', '')}"
        message, expected = valid(consumer.latest[key]), sent[symbol]
        assert (message.exchange, message.market, message.symbol) == ("gateio", "futures", symbol), key
        assert message.ticker.bid == float(expected["bid"]) and message.ticker.ask == float(expected["ask"]), key
        # sizes arrive in contracts and are published in coins: contracts x quanto_multiplier
        assert message.ticker.bid_size == float(expected["bid_size"]), key
        assert message.ticker.ask_size == float(expected["ask_size"]), key
        assert Decimal(expected["bid_size"]) == expected["bid_contracts"] * Decimal(expected["contract_size"]), key
        assert message.ticker.last == float(expected["last_price"]), key
        assert message.ticker.volume_24h == float(expected["volume_24h"]), key
        assert message.funding_rate == float(expected["funding_rate"]), key
        assert message.next_funding_time == expected["next_funding_time"], key
        assert message.funding_interval_hours == expected["funding_interval_hours"], key
        assert message.mark_price == float(expected["mark_price"]), key
        assert message.index_price == float(expected["index_price"]), key
        book = message.orderbook
        assert book is not None and len(book.bids) == len(book.asks) == 20, key
        assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size), key
        assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size), key
        assert message.published_timestamp >= message.received_timestamp >= message.timestamp - 1000
    btc, pepe = valid(consumer.latest["futures.gateio.BTCUSDT"]), valid(consumer.latest["futures.gateio.PEPEUSDT"])
    assert sent["BTC/USDT:USDT"]["contract_size"] == "0.0001" and btc.ticker.bid_size < sent["BTC/USDT:USDT"][
        "bid_contracts"]
    assert (pepe.coin, pepe.base_multiplier, pepe.funding_interval_hours) == ("PEPE", 1, 4.0)
    assert sent["PEPE/USDT:USDT"]["contract_size"] == "10000000"
    for _, body, _ in consumer.messages:
        valid(body)
    skipped = [r for r in caplog.records if r.levelno >= logging.WARNING and "1000PEPE/USDT:USDT" in r.getMessage()]
    assert [(r.name, r.levelname) for r in skipped] == [("gateio", "WARNING")]


async def test_malformed_frames_and_a_drop_are_survived(
    gate: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(gate, broker.url, exchange_name)
    config.symbols = SYMBOLS
    async with running(config) as app:
        assert await all_streams_up(app)
        assert await flowing(consumer)
        (collector,) = app.collectors
        errors_before = collector.stats.errors
        await gate.apply_fault("gateio", "malformed", count=6)
        await asyncio.sleep(1.5)
        assert collector.stats.errors > errors_before
        assert await flowing(consumer), "Gate stopped after malformed frames"
        assert await gate.venues["gateio"].drop_connections() >= 1
        assert await flowing(consumer, timeout=20), "Gate did not recover after a drop"
        assert collector.stats.reconnects >= 1
    for key, body, _ in consumer.messages:
        message = valid(body)
        assert message.ticker.bid < message.ticker.ask, key


async def test_without_depth_the_quote_comes_from_the_book_ticker(
    gate: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(gate, broker.url, exchange_name, orderbook_depth=0)
    config.symbols = SYMBOLS
    async with running(config) as app:
        assert {spec.name for spec in app.collectors[0].venue.streams(0)} == {"book_ticker", "tickers"}
        assert await consumer.wait_until(lambda: set(consumer.latest) >= KEYS, timeout=30)
    for body in consumer.latest.values():
        message = valid(body)
        assert message.orderbook is None and message.ticker.bid < message.ticker.ask


async def flowing(consumer: Consumer, timeout: float = 15.0) -> bool:
    """Every symbol gets a fresh message from now on, within the timeout."""
    start = time.time()
    return await consumer.wait_until(lambda: consumer.keys_since(start) >= KEYS, timeout=timeout)
