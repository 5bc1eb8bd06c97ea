"""End to end: simulator (real wire formats) → ccxt.pro → collector → RabbitMQ → a queue consumer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from models.futures_data import FuturesData
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, collector_config, running, valid

pytestmark = pytest.mark.timeout(90)

VENUES = ("binance", "bybit")


def keys_for(symbols: list[str]) -> set[str]:
    return {f"futures.{venue}.{symbol.split(':')[0].replace('/', '')}" for venue in VENUES for symbol in symbols}


def complete(body: dict) -> bool:
    return (
        body["funding_rate"] is not None
        and body["mark_price"] is not None
        and body["ticker"]["last"] is not None
        and body["funding_interval_hours"] is not None
        and body["orderbook"] is not None
    )


async def test_consumer_gets_the_values_each_venue_sent(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    symbols = [*SYMBOLS, "1000PEPE/USDT:USDT", "NOPE/USDT:USDT"]
    config = collector_config(simulator, broker.url, exchange_name)
    config.symbols = symbols
    listed = symbols[:-1]
    expected_keys = keys_for(listed)
    caplog.set_level(logging.INFO)

    async with running(config):
        assert await consumer.wait_until(
            lambda: expected_keys <= set(consumer.latest)
            and all(complete(consumer.latest[key]) for key in expected_keys),
            timeout=30,
        ), f"incomplete: {sorted(expected_keys - {k for k, b in consumer.latest.items() if complete(b)})}"

        for venue in VENUES:
            await simulator.apply_fault(venue, "freeze")
        await asyncio.sleep(2.0)  # every stream has sent its frozen values by now (slowest: 1 s mark price)
        sent = {venue: simulator.venues[venue].state()["symbols"] for venue in VENUES}

    for venue in VENUES:
        for symbol in listed:
            key = f"futures.{venue}.{symbol.split(':')[0].replace('/', '')}"
            message = valid(consumer.latest[key])
            venue_sent = sent[venue][symbol]
            assert message.exchange == venue and message.symbol == symbol
            assert message.ticker.bid == float(venue_sent["bid"]), key
            assert message.ticker.ask == float(venue_sent["ask"]), key
            assert message.ticker.bid_size == float(venue_sent["bid_size"]), key
            assert message.ticker.ask_size == float(venue_sent["ask_size"]), key
            assert message.funding_rate == float(venue_sent["funding_rate"]), key
            assert message.next_funding_time == venue_sent["next_funding_time"], key
            assert message.funding_interval_hours == venue_sent["funding_interval_hours"], key
            assert message.mark_price == float(venue_sent["mark_price"]), key
            assert message.index_price == float(venue_sent["index_price"]), key
            book = message.orderbook
            assert book is not None and len(book.bids) == 20 and len(book.asks) == 20, key
            assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size), key
            assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size), key
            assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
            assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
            assert message.received_timestamp >= message.timestamp - 1000
            assert message.published_timestamp >= message.received_timestamp

    assert sent["binance"]["1000PEPE/USDT:USDT"]["funding_interval_hours"] == 4  # a non-default interval
    for key, body, _ in consumer.messages:
        assert key in expected_keys
        valid(body)
    skipped = [r for r in caplog.records if r.levelno >= logging.WARNING and "NOPE/USDT:USDT" in r.getMessage()]
    assert sorted((r.name, r.levelname) for r in skipped) == [("binance", "WARNING"), ("bybit", "WARNING")]


async def test_without_depth_messages_carry_best_bid_ask_only(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, orderbook_depth=0)
    expected_keys = keys_for(SYMBOLS)
    async with running(config):
        assert await consumer.wait_until(lambda: expected_keys <= set(consumer.latest), timeout=30)
    for body in consumer.latest.values():
        message = FuturesData.model_validate(body)
        assert message.orderbook is None
        assert message.ticker.bid is not None and message.ticker.bid < message.ticker.ask
