"""End to end with KuCoin only: simulator → ccxt.pro.kucoinfutures → collector → RabbitMQ → a queue consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from collectors.market_state import MarketState
from collectors.venues.base import NonceSequenceCheck
from collectors.venues.htx import VersionGapCheck
from collectors.venues.kucoin import _next_funding_time
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, collector_config, running, valid

pytestmark = pytest.mark.timeout(90)

LISTED = [*SYMBOLS, "1000PEPE/USDT:USDT"]


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["kucoin"], port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


def key(symbol: str) -> str:
    return f"futures.kucoin.{symbol.split(':', maxsplit=1)[0].replace('/', '')}"


def complete(body: dict[str, Any]) -> bool:
    return None not in (body["funding_rate"], body["mark_price"], body["ticker"]["last"], body["orderbook"])


async def wait_complete(consumer: Consumer, keys: set[str]) -> None:
    assert await consumer.wait_until(
        lambda: keys <= set(consumer.latest) and all(complete(consumer.latest[k]) for k in keys), timeout=30
    ), f"incomplete: {sorted(k for k in keys if not complete(consumer.latest.get(k, {'ticker': {}})))}"


@pytest.mark.parametrize("depth", [20, 100])
async def test_consumer_gets_the_values_kucoin_sent(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, depth: int
) -> None:
    """Depth 20 reads level2Depth50 snapshots, depth 100 the incremental level2 on a REST snapshot (50 levels here)."""
    config = collector_config(simulator, broker.url, exchange_name, orderbook_depth=depth, funding_poll_seconds=1)
    config.symbols = LISTED
    async with running(config):
        await wait_complete(consumer, {key(symbol) for symbol in LISTED})
        await simulator.apply_fault("kucoin", "freeze")
        await asyncio.sleep(2.0)  # every stream has sent its frozen values, and funding was polled since
        sent = simulator.venues["kucoin"].state()["symbols"]

    for symbol in LISTED:
        message, venue_sent = valid(consumer.latest[key(symbol)]), sent[symbol]
        assert (message.exchange, message.market, message.symbol) == ("kucoin", "futures", symbol)
        assert (message.ticker.bid, message.ticker.ask) == (float(venue_sent["bid"]), float(venue_sent["ask"]))
        # in coins: contracts as printed x the contract's multiplier (0.001 BTC, 0.01 ETH, 0.1 SOL, 10 x 1000PEPE)
        assert (message.ticker.bid_size, message.ticker.ask_size) == (venue_sent["bid_size"], venue_sent["ask_size"])
        assert message.ticker.last == float(venue_sent["last_price"])
        assert message.ticker.volume_24h == venue_sent["volume_24h"]  # coins, from the REST poll
        assert message.funding_rate == venue_sent["funding_rate"]
        assert message.next_funding_time == venue_sent["next_funding_time"]
        assert message.funding_interval_hours == venue_sent["funding_interval_hours"]
        assert (message.mark_price, message.index_price) == (venue_sent["mark_price"], venue_sent["index_price"])
        book = message.orderbook
        assert book is not None and len(book.bids) == len(book.asks) == min(depth, 50)
        assert book.bids[0] == (message.ticker.bid, message.ticker.bid_size)
        assert book.asks[0] == (message.ticker.ask, message.ticker.ask_size)
        feed = simulator.venues["kucoin"].feeds[venue_sent["id"]]
        contracts = feed.contract.side(feed.book.bids(len(book.bids)))
        assert [size for _, size in book.bids] == [feed.contract.coins(c) for c in contracts.values()]
        assert message.received_timestamp >= message.timestamp - 1000
    assert sent["BTC/USDT:USDT"]["contract_size"] == 0.001 and sent["1000PEPE/USDT:USDT"]["funding_interval_hours"] == 4
    pepe = valid(consumer.latest[key("1000PEPE/USDT:USDT")])
    assert (pepe.coin, pepe.base_multiplier) == ("PEPE", 1000)
    assert {routing_key for routing_key, _, _ in consumer.messages} == {key(symbol) for symbol in LISTED}
    for _, body, _ in consumer.messages:
        valid(body)


async def test_malformed_frames_a_drop_and_an_expired_token_are_survived(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, funding_poll_seconds=1)
    keys = {key(symbol) for symbol in SYMBOLS}
    venue = simulator.venues["kucoin"]
    async with running(config) as app:
        await wait_complete(consumer, keys)
        await simulator.apply_fault("kucoin", "malformed", count=5)
        await asyncio.sleep(1.0)
        venue.tokens.clear()  # the redial's token is refused as expired; ccxt then asks bullet-public for a new one
        await simulator.apply_fault("kucoin", "drop")
        after_drop = time.time()
        assert await consumer.wait_until(lambda: keys <= consumer.keys_since(after_drop + 1.0), timeout=30)
        (collector,) = app.collectors
        assert collector.stats.errors >= 1 and collector.stats.reconnects >= 1
        assert venue.connections_accepted >= 2 and len(venue.tokens) == 1
    for _, body, _ in consumer.since(after_drop + 1.0):
        message = valid(body)
        assert message.ticker.bid is not None and message.ticker.bid < message.ticker.ask


def test_next_funding_time_from_either_field() -> None:
    """contracts/active lists the settlement time; older answers only the milliseconds left (rounded to the minute)."""
    assert _next_funding_time({"nextFundingRateDateTime": 1_795_334_400_000, "nextFundingRateTime": 5}, 0) == (
        1_795_334_400_000
    )
    assert _next_funding_time({"nextFundingRateTime": 1_816_952}, 1_795_332_583_130) == 1_795_334_400_000
    assert _next_funding_time({}, 1_795_332_583_130) is None


def test_an_update_ccxt_skipped_as_older_than_its_book_is_not_a_gap() -> None:
    """KuCoin and MEXC: ccxt skips a diff older than its book (common right after a snapshot newer than diffs still
    in flight, and on a busy host). That leaves the book right, so it must not redial: on a loaded box each redial
    fetched a newer snapshot and met older diffs again, a loop in which those books never came back."""
    state = MarketState("mexc", "BTC/USDT:USDT", contract_size=1, depth=20)
    check = NonceSequenceCheck()
    assert check(state, {"nonce": 100}, None) is None  # the snapshot: where the sequence stands
    assert check(state, {"nonce": 100}, None) is None  # an older diff, skipped by ccxt: the nonce did not move
    assert check(state, {"nonce": 101}, None) is None
    assert check(state, {"nonce": 103}, None) == "update 103 after 101"  # one lost: a gap
    assert not VersionGapCheck.ccxt_skips_stale  # HTX: ccxt applies whatever comes, so an old one is still caught
