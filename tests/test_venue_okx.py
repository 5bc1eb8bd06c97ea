"""End to end for OKX: simulator (OKX's wire format) → ccxt.pro.okx → collector → RabbitMQ → a queue consumer,
swaps and spot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from simulator.okx import OkxSimulator
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, all_streams_up, collector_config, running, valid

pytestmark = pytest.mark.timeout(120)

SWAPS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "PEPE/USDT:USDT"]
"""ctVal 0.01, 0.1, 1 and 10000000; PEPE is listed per coin on OKX, with 4 h funding."""


def key(market: str, symbol: str) -> str:
    return f"{market}.okx.{symbol.split(':', maxsplit=1)[0].replace('/', '')}"


KEYS = {key(market, symbol) for market in ("futures", "spot") for symbol in SWAPS}


def complete(body: dict) -> bool:
    if body["market"] == "spot":
        return body["ticker"]["last"] is not None and body["orderbook"] is not None
    return all(body[field] is not None for field in ("funding_rate", "next_funding_time", "funding_interval_hours",
                                                     "mark_price", "index_price", "orderbook"))


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["okx"], port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


async def test_consumer_gets_exactly_what_okx_sent(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name)
    config.symbols, config.markets = [*SWAPS, "1000PEPE/USDT:USDT"], ["futures", "spot"]
    async with running(config) as app:
        assert await consumer.wait_until(
            lambda: set(consumer.latest) >= KEYS and all(complete(consumer.latest[k]) for k in KEYS), timeout=30
        ), f"incomplete: {sorted(KEYS - {k for k, body in consumer.latest.items() if complete(body)})}"
        assert await all_streams_up(app)
        await simulator.apply_fault("okx", "freeze")
        await asyncio.sleep(2.0)  # longer than any changed value takes to be pushed (mark price: 200 ms)
        sent = simulator.venues["okx"].state()["symbols"]

    assert {k for k, _, _ in consumer.messages} == KEYS  # 1000PEPE is not an OKX symbol
    for market in ("futures", "spot"):
        for swap in SWAPS:
            symbol = swap if market == "futures" else swap.split(":")[0]
            message, venue_sent = valid(consumer.latest[key(market, swap)]), sent[symbol]
            assert (message.exchange, message.market, message.symbol) == ("okx", market, symbol)
            assert (message.coin, message.base_multiplier) == (swap.split("/")[0], 1)
            assert message.ticker.bid == float(venue_sent["bid"]) and message.ticker.ask == float(venue_sent["ask"])
            # swaps: contracts x ctVal, multiplied in floating point by the collector
            assert message.ticker.bid_size == pytest.approx(float(venue_sent["bid_size"]), rel=1e-12), symbol
            assert message.ticker.ask_size == pytest.approx(float(venue_sent["ask_size"]), rel=1e-12), symbol
            assert message.ticker.last == float(venue_sent["last_price"])
            assert message.ticker.volume_24h == float(venue_sent["volume_24h"]), symbol  # coins, not contracts
            book = message.orderbook
            assert book is not None and len(book.bids) == len(book.asks) == 20
            assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size), symbol
            assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size), symbol
            if market == "spot":
                assert message.funding_rate is message.mark_price is message.index_price is None
                continue
            assert message.funding_rate == float(venue_sent["funding_rate"])
            assert message.next_funding_time == venue_sent["next_funding_time"]
            assert message.funding_interval_hours == venue_sent["funding_interval_hours"]
            assert message.mark_price == float(venue_sent["mark_price"])
            assert message.index_price == float(venue_sent["index_price"])
    assert sent["ETH/USDT:USDT"]["contract_size"] == "0.1" and sent["PEPE/USDT:USDT"]["funding_interval_hours"] == 4
    assert float(sent["PEPE/USDT:USDT"]["bid"]) < 0.001  # per coin, not per 1000
    for _, body, _ in consumer.messages:
        valid(body)


async def test_malformed_frames_and_a_drop_are_survived(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, orderbook_depth=10)
    config.markets = ["futures", "spot"]
    keys = {key(market, symbol) for market in ("futures", "spot") for symbol in config.symbols}
    async with running(config) as app:
        assert await consumer.wait_until(lambda: keys <= set(consumer.latest), timeout=30)
        assert await all_streams_up(app)
        await simulator.apply_fault("okx", "malformed", count=30)  # books increments among them: resent snapshots
        await asyncio.sleep(1.0)
        moment = time.time()
        assert await consumer.wait_until(lambda: keys <= consumer.keys_since(moment), timeout=15)
        assert sum(collector.stats.errors for collector in app.collectors) >= 1
        await simulator.apply_fault("okx", "drop")
        await asyncio.sleep(0.5)
        moment = time.time()
        assert await consumer.wait_until(lambda: keys <= consumer.keys_since(moment), timeout=20)
        assert sum(collector.stats.reconnects for collector in app.collectors) >= 1
        assert await all_streams_up(app)
        await simulator.apply_fault("okx", "freeze")
        await asyncio.sleep(1.0)
        venue = simulator.venues["okx"]
        assert isinstance(venue, OkxSimulator)
        for market, symbol in [(market, symbol) for market in ("futures", "spot") for symbol in config.symbols]:
            listing = venue.listings[symbol.split("/")[0] + ("-USDT-SWAP" if market == "futures" else "-USDT")]
            book = valid(consumer.latest[key(market, symbol)]).orderbook
            assert book is not None
            for levels, side in ((book.bids, listing.book.bids(10)), (book.asks, listing.book.asks(10))):
                expected = sorted(listing.side(side).items(), reverse=levels is book.bids)
                assert [price for price, _ in levels] == [float(listing.price(ticks)) for ticks, _ in expected]
                assert [size for _, size in levels] == pytest.approx([float(listing.coins(u)) for _, u in expected])
    for _, body, _ in consumer.messages:
        message = valid(body)
        assert message.ticker.bid is not None and message.ticker.ask is not None
        assert message.ticker.bid < message.ticker.ask
        assert message.orderbook is None or len(message.orderbook.bids) == len(message.orderbook.asks) == 10
