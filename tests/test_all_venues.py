"""Every venue and market at once, as `python main.py --demo` runs them."""

from __future__ import annotations

import pytest

from collectors.venues import VENUE_NAMES, sources_for
from models.futures_data import FuturesData
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, running

pytestmark = pytest.mark.timeout(180)

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


def expected_keys() -> set[str]:
    keys = set()
    for name in VENUE_NAMES:
        for source in sources_for(name, ["futures", "spot"]):
            keys |= {f"{source.market}.{name}.{symbol.split(':')[0].replace('/', '')}" for symbol in SYMBOLS}
    return keys


def complete(body: dict) -> bool:
    if not body:
        return False
    if body["market"] == "spot":
        return body["ticker"]["last"] is not None
    return all(body[field] is not None for field in ("funding_rate", "next_funding_time", "funding_interval_hours",
                                                     "mark_price", "index_price"))


async def test_every_venue_and_market_publishes_complete_contract_messages(broker: Broker, exchange_name: str,
                                                                         consumer: Consumer) -> None:
    simulator = Simulator(venues=list(VENUE_NAMES), port=0, rate=5)
    await simulator.start()
    try:
        config = collector_config(simulator, broker.url, exchange_name, funding_poll_seconds=5)
        config.symbols = SYMBOLS
        config.markets = ["futures", "spot"]
        keys = expected_keys()
        assert len([key for key in keys if key.startswith("spot.")]) >= 4 * len(SYMBOLS)
        async with running(config) as app:
            assert await consumer.wait_until(
                lambda: keys <= set(consumer.latest) and all(complete(consumer.latest[key]) for key in keys),
                timeout=90,
            ), f"missing or incomplete: {sorted(k for k in keys if not complete(consumer.latest.get(k, {})))}"
            statistics = app.statistics.control_snapshot()["exchanges"]
    finally:
        await simulator.stop()
    assert set(statistics) == {source.source_id for name in VENUE_NAMES
                               for source in sources_for(name, ["futures", "spot"])}
    for source_id, venue in statistics.items():
        assert venue["symbols"] == len(SYMBOLS), source_id
        assert venue["updates"] > 0 and venue["clock_skew_ms"] is not None, source_id
    for key, body, _ in consumer.messages:
        message = FuturesData.model_validate(body)
        assert key == f"{message.market}.{message.exchange}.{message.symbol.split(':')[0].replace('/', '')}"
        assert message.ticker.bid is not None and message.ticker.ask is not None
        assert message.ticker.bid < message.ticker.ask
        if message.market == "spot":
            assert message.funding_rate is None and message.mark_price is None
        assert_part_times(message)


def assert_part_times(message: FuturesData) -> None:
    """Every part present carries its own times, received no later than the newest part."""
    ticker, book, received = message.ticker, message.orderbook, message.received_timestamp
    parts = {"quote": (ticker.timestamp, ticker.received_timestamp)}
    if ticker.last is not None or ticker.volume_24h is not None:
        parts["stats"] = (ticker.stats_timestamp, ticker.stats_received_timestamp)
    if book is not None:
        parts["book"] = (book.timestamp, book.received_timestamp)
    if any(value is not None for value in (message.funding_rate, message.next_funding_time, message.mark_price,
                                           message.index_price)):
        parts["funding"] = (message.funding_timestamp, message.funding_received_timestamp)
    for part, (venue_ms, received_ms) in parts.items():
        where = f"{message.market}.{message.exchange} {message.symbol} {part}"
        assert venue_ms is not None and received_ms is not None, where
        assert 0 < received_ms <= received, where
        assert abs(venue_ms - received_ms) < 60_000, where  # ms since epoch, both
