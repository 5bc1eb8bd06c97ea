"""Binance and Bybit spot end to end: simulator → ccxt.pro → collector → RabbitMQ, beside their futures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, all_streams_up, collector_config, running, valid

pytestmark = pytest.mark.timeout(120)

VENUES = ("binance", "bybit")
MARKETS = ("futures", "spot")


def key(market: str, venue: str, symbol: str) -> str:
    return f"{market}.{venue}.{symbol.split(':', maxsplit=1)[0].replace('/', '')}"


ALL_KEYS = {key(market, venue, symbol) for market in MARKETS for venue in VENUES for symbol in SYMBOLS}
SPOT_KEYS = {key("spot", venue, symbol) for venue in VENUES for symbol in SYMBOLS}


def complete(body: dict) -> bool:
    if not body:
        return False
    if body["market"] == "spot":
        return body["ticker"]["last"] is not None and body["ticker"]["volume_24h"] is not None
    return body["mark_price"] is not None and body["funding_interval_hours"] is not None


@pytest.fixture
async def consumer(broker: Broker, exchange_name: str) -> AsyncIterator[Consumer]:
    """Bound to every market (the shared fixture binds futures.# only)."""
    subscriber = Consumer(broker.url, exchange_name, binding="#")
    await subscriber.start()
    yield subscriber
    await subscriber.close()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=list(VENUES), port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


async def test_spot_messages_carry_exactly_what_each_venue_sent(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name)
    config.markets = ["futures", "spot"]
    async with running(config) as app:
        assert sorted(c.venue.source_id for c in app.collectors) == ["binance", "binance.spot", "bybit", "bybit.spot"]
        assert await consumer.wait_until(
            lambda: set(consumer.latest) >= ALL_KEYS and all(complete(consumer.latest[k]) for k in ALL_KEYS),
            timeout=30,
        ), f"missing or incomplete: {sorted(k for k in ALL_KEYS if not complete(consumer.latest.get(k, {})))}"
        for venue in VENUES:
            await simulator.apply_fault(venue, "freeze")
        await asyncio.sleep(2.0)  # every stream has sent its frozen values by now (slowest: 1 s tickers)
        sent = {venue: simulator.venues[venue].state()["symbols"] for venue in VENUES}
        statistics = app.statistics.control_snapshot()["exchanges"]

    assert {"binance.spot", "bybit.spot"} <= set(statistics)
    for venue in VENUES:
        for symbol in SYMBOLS:
            spot_symbol = symbol.split(":")[0]
            message = valid(consumer.latest[key("spot", venue, symbol)])
            shown = sent[venue][spot_symbol]
            assert (message.exchange, message.market, message.symbol) == (venue, "spot", spot_symbol)
            assert (message.coin, message.base_multiplier) == (spot_symbol.split("/")[0], 1)
            assert message.ticker.bid == float(shown["bid"]) and message.ticker.ask == float(shown["ask"])
            assert message.ticker.bid_size == float(shown["bid_size"])
            assert message.ticker.ask_size == float(shown["ask_size"])
            assert message.ticker.last == float(shown["last_price"])
            assert message.ticker.volume_24h == float(shown["volume_24h"])
            assert None is message.funding_rate is message.next_funding_time is message.funding_interval_hours
            assert None is message.mark_price is message.index_price
            book = message.orderbook
            assert book is not None and len(book.bids) == len(book.asks) == 20
            assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size)
            assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size)

            futures = valid(consumer.latest[key("futures", venue, symbol)])
            futures_shown = sent[venue][symbol]
            assert (futures.market, futures.symbol) == ("futures", symbol)
            assert futures.ticker.bid == float(futures_shown["bid"])
            assert futures.funding_rate == float(futures_shown["funding_rate"])
            assert futures.mark_price == float(futures_shown["mark_price"])
    for routing_key, body, _ in consumer.messages:
        message = valid(body)
        assert routing_key == key(message.market, message.exchange, message.symbol)
        assert message.market == "spot" or message.symbol.endswith(":USDT")


async def test_spot_survives_a_malformed_frame_and_a_drop(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name)
    config.markets = ["futures", "spot"]
    config.symbols = SYMBOLS[:2]
    spot_keys = {key("spot", venue, symbol) for venue in VENUES for symbol in config.symbols}
    async with running(config) as app:
        assert await all_streams_up(app)
        spot_stats = {c.venue.name: c.stats for c in app.collectors if c.venue.market == "spot"}
        for venue, stats in spot_stats.items():  # garble frames (futures' too) until spot has met one
            faults, errors_before = simulator.venues[venue].faults, stats.errors
            deadline = time.monotonic() + 10
            while stats.errors == errors_before and time.monotonic() < deadline:
                faults.malformed_pending = 10
                await asyncio.sleep(0.5)
            faults.malformed_pending = 0
            assert stats.errors > errors_before, f"{venue}.spot never met a malformed frame"
        after_garbage = time.time()
        assert await consumer.wait_until(lambda: spot_keys <= consumer.keys_since(after_garbage), timeout=15)

        for venue in VENUES:
            await simulator.apply_fault(venue, "drop")
        dropped_at = time.time()
        assert await consumer.wait_until(lambda: spot_keys <= consumer.keys_since(dropped_at + 1), timeout=30)
        assert await consumer.wait_until(
            lambda: all(stats.reconnects >= 1 for stats in spot_stats.values()), timeout=30
        )
        assert await all_streams_up(app)
