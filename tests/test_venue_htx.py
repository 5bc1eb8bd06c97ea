"""End to end with HTX alone: simulator → ccxt.pro htx → collector → RabbitMQ → a queue consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, all_streams_up, collector_config, running, valid

pytestmark = pytest.mark.timeout(90)

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "1000PEPE/USDT:USDT"]
"""Contract sizes 0.001, 0.01, 1 and 10; funding every 8, 8, 8 and 4 h."""
KEYS = {symbol: f"futures.htx.{symbol.split(':')[0].replace('/', '')}" for symbol in SYMBOLS}


@pytest.fixture
async def htx() -> AsyncIterator[Simulator]:
    simulator = Simulator(venues=["htx"], port=0, rate=20)
    await simulator.start()
    yield simulator
    await simulator.stop()


def complete(body: dict[str, Any]) -> bool:
    fields = ("funding_rate", "next_funding_time", "funding_interval_hours", "mark_price", "index_price", "orderbook")
    return all(body[field] is not None for field in fields) and None not in body["ticker"].values()


def book_updates_since(consumer: Consumer, moment_ms: int) -> set[str]:
    """Keys whose order book moved after `moment_ms` (funding polls alone don't count)."""
    return {key for key, body, _ in consumer.messages if (body["orderbook"] or {}).get("timestamp", 0) > moment_ms}


async def test_consumer_gets_what_htx_sent(
    htx: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(htx, broker.url, exchange_name, funding_poll_seconds=1)
    config.symbols = SYMBOLS
    venue = htx.venues["htx"]
    async with running(config) as app:
        assert await all_streams_up(app)
        assert await consumer.wait_until(
            lambda: (
                set(KEYS.values()) <= set(consumer.latest)
                and all(complete(consumer.latest[key]) for key in KEYS.values())
            ),
            timeout=30,
        ), f"incomplete: {[k for k in KEYS.values() if not complete(consumer.latest.get(k, {'ticker': {}}))]}"

        await htx.apply_fault("htx", "freeze")
        await asyncio.sleep(2.5)  # book pushes within 30 ms, details within 0.5 s, the REST poll every 1 s
        sent = venue.state()["symbols"]
        latest = dict(consumer.latest)
        for symbol, key in KEYS.items():
            message, expected = valid(latest[key]), sent[symbol]
            assert (message.exchange, message.market, message.symbol) == ("htx", "futures", symbol)
            assert message.ticker.bid == float(expected["bid"]) and message.ticker.ask == float(expected["ask"]), key
            # sizes in coins: contracts printed x contract size (float products, hence approx)
            assert message.ticker.bid_size == pytest.approx(float(expected["bid_size"]), rel=1e-12), key
            assert message.ticker.ask_size == pytest.approx(float(expected["ask_size"]), rel=1e-12), key
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
            assert [price for price, _ in book.bids] == sorted((price for price, _ in book.bids), reverse=True)
            assert message.received_timestamp >= message.timestamp - 1000
        assert float(sent["ETH/USDT:USDT"]["contract_size"]) == 0.01
        assert latest[KEYS["ETH/USDT:USDT"]]["ticker"]["bid_size"] == pytest.approx(
            sent["ETH/USDT:USDT"]["bid_contracts"] * 0.01, rel=1e-12
        )
        pepe = valid(latest[KEYS["1000PEPE/USDT:USDT"]])
        assert (pepe.symbol, pepe.coin, pepe.base_multiplier, pepe.funding_interval_hours) == (
            "1000PEPE/USDT:USDT",
            "PEPE",
            1000,
            4,
        )

        await htx.apply_fault("htx", "unfreeze")
        errors = app.collectors[0].stats.errors
        moment = int(time.time() * 1000)
        await htx.apply_fault("htx", "malformed", count=6)
        assert await consumer.wait_until(lambda: set(KEYS.values()) <= book_updates_since(consumer, moment + 500))
        assert app.collectors[0].stats.errors > errors

        moment = int(time.time() * 1000)
        await htx.apply_fault("htx", "drop")
        assert await consumer.wait_until(lambda: set(KEYS.values()) <= book_updates_since(consumer, moment + 500))
        # both streams share the dropped connection
        assert await consumer.wait_until(lambda: app.collectors[0].stats.reconnects >= 2, timeout=30)

        # ccxt skips a book update whose version doesn't follow, silently; the collector resubscribes
        reconnects, moment = app.collectors[0].stats.reconnects, int(time.time() * 1000)
        venue.book_streams["market.BTC-USDT.depth.size_20.high_freq"].version += 3
        assert await consumer.wait_until(lambda: app.collectors[0].stats.reconnects > reconnects)
        assert await consumer.wait_until(lambda: set(KEYS.values()) <= book_updates_since(consumer, moment + 500))

    for key, body, _ in consumer.messages:
        assert key in KEYS.values()
        valid(body)
