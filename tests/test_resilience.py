"""Failures users meet in production: a venue drops, stalls or sends garbage; the broker kicks us out."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, all_streams_up, collector_config, eventually, running, valid

pytestmark = pytest.mark.timeout(120)


def venue_keys(venue: str) -> set[str]:
    return {f"futures.{venue}.{symbol.split(':')[0].replace('/', '')}" for symbol in SYMBOLS}


ALL_KEYS = venue_keys("binance") | venue_keys("bybit")


async def flowing(consumer: Consumer, keys: set[str], timeout: float = 20.0) -> bool:
    """Every key gets a fresh message from now on, within the timeout."""
    start = time.time()
    return await consumer.wait_until(lambda: keys <= consumer.keys_since(start), timeout=timeout)


def crossed_warnings(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {r.name for r in caplog.records if r.levelno == logging.WARNING and "crossed" in r.getMessage()}


async def crossed_frame_seen(
    simulator: Simulator, venue: str, caplog: pytest.LogCaptureFixture, timeout: float = 20.0
) -> bool:
    """Cross the venue's top of book until the collector warns about it. A crossed fault lands on whichever
    push comes next; on Bybit that can be the ticker's bid1Price, which the collector does not quote from
    (its best bid/ask is the book's), so one round of the fault may pass unnoticed, and rightly so."""
    faults = simulator.venues[venue].faults
    deadline = time.monotonic() + timeout
    while venue not in crossed_warnings(caplog) and time.monotonic() < deadline:
        if faults.crossed_pending == 0:
            await simulator.apply_fault(venue, "crossed", count=4)
        await asyncio.sleep(0.05)
    return venue in crossed_warnings(caplog)


async def test_venue_outage_leaves_the_other_venue_flowing_and_recovers(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name)
    async with running(config) as app:
        assert await all_streams_up(app)
        await simulator.apply_fault("bybit", "outage", seconds=4)
        outage_started = time.time()
        assert await flowing(consumer, venue_keys("binance"), timeout=3)
        await asyncio.sleep(max(0.0, outage_started + 3 - time.time()))
        during = [key for key, _, at in consumer.since(outage_started + 0.5) if at < outage_started + 3]
        assert not venue_keys("bybit") & set(during), "bybit cannot send while its sockets are refused"
        assert venue_keys("binance") <= set(during)
        assert await flowing(consumer, venue_keys("bybit"), timeout=20), "bybit did not recover after the outage"
        bybit = next(c.stats for c in app.collectors if c.venue.name == "bybit")
        assert bybit.reconnects >= 1


async def test_stalled_connection_is_redialed_by_the_watchdog(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    """The socket stays open and answers pings but carries no data: only the watchdog can notice."""
    config = collector_config(simulator, broker.url, exchange_name, stale_after_seconds=2)
    async with running(config) as app:
        assert await all_streams_up(app)
        binance = next(c.stats for c in app.collectors if c.venue.name == "binance")
        accepted = simulator.venues["binance"].connections_accepted
        stalled = await simulator.apply_fault("binance", "stall")
        assert stalled["stalled"] == len(binance.streams_up)  # one connection per Binance stream
        assert await flowing(consumer, venue_keys("bybit"), timeout=3)
        assert await consumer.wait_until(lambda: binance.reconnects == stalled["stalled"], timeout=10)
        assert await flowing(consumer, venue_keys("binance"), timeout=20), "binance stayed silent"
        assert await all_streams_up(app)
        assert simulator.venues["binance"].connections_accepted == accepted + stalled["stalled"]
    assert any("silent for" in r.getMessage() and r.name == "binance" for r in caplog.records)


async def test_silent_venue_recovers_when_data_returns(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, stale_after_seconds=2)
    async with running(config):
        assert await flowing(consumer, ALL_KEYS)
        await simulator.apply_fault("binance", "silent")
        await asyncio.sleep(5)
        assert await flowing(consumer, venue_keys("bybit"), timeout=3)
        await simulator.apply_fault("binance", "resume")
        assert await flowing(consumer, venue_keys("binance"), timeout=20)


async def test_malformed_and_crossed_frames_are_logged_and_skipped(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    config = collector_config(simulator, broker.url, exchange_name)
    async with running(config) as app:
        assert await flowing(consumer, ALL_KEYS)
        errors_before = {c.venue.name: c.stats.errors for c in app.collectors}
        for venue in ("binance", "bybit"):
            await simulator.apply_fault(venue, "malformed", count=6)
        garbling = [simulator.venues[venue].faults for venue in ("binance", "bybit")]
        assert await eventually(lambda: all(faults.malformed_pending == 0 for faults in garbling), timeout=20)
        for venue in ("binance", "bybit"):
            assert await crossed_frame_seen(simulator, venue, caplog), f"{venue}: no crossed frame was noticed"
        assert await flowing(consumer, ALL_KEYS), "a venue stopped after bad frames"
        for collector in app.collectors:
            assert collector.stats.errors > errors_before[collector.venue.name], collector.venue.name
    for key, body, _ in consumer.messages:
        message = valid(body)
        assert message.ticker.bid < message.ticker.ask, f"crossed quote published on {key}"
        if message.orderbook is not None:
            assert message.orderbook.bids[0][0] < message.orderbook.asks[0][0], f"crossed book published on {key}"
    logged = {(r.name, r.levelname) for r in caplog.records if "skipped a frame" in r.getMessage()}
    assert {("binance", "WARNING"), ("bybit", "WARNING")} <= logged
    assert crossed_warnings(caplog) == {"binance", "bybit"}


async def test_a_book_ccxt_drops_after_a_sequence_gap_comes_back(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    """A garbled depth diff is lost (the next one's `pu` no longer chains: ChecksumError) or fails halfway
    (TypeError). Either way ccxt's binance forgets that symbol's book while the socket stays open. The
    collector must resync it rather than keep publishing the last book it saw next to fresh quotes."""
    config = collector_config(simulator, broker.url, exchange_name)
    async with running(config) as app:
        assert await flowing(consumer, ALL_KEYS)
        await simulator.apply_fault("binance", "malformed", count=40)
        fault_ms = time.time() * 1000
        faults = simulator.venues["binance"].faults
        assert await consumer.wait_until(lambda: faults.malformed_pending == 0, timeout=10)

        def books_fresh() -> bool:
            return all(
                (book := consumer.latest.get(key, {}).get("orderbook")) is not None and book["timestamp"] > fault_ms
                for key in venue_keys("binance")
            )

        assert await consumer.wait_until(books_fresh, timeout=20), {
            key: (consumer.latest[key]["orderbook"] or {}).get("timestamp") for key in venue_keys("binance")
        }
        assert await all_streams_up(app)
    desyncs = [r for r in caplog.records if r.name == "binance" and "out of sync" in r.getMessage()]
    assert desyncs, "ccxt dropped no book: the fault did not test a gap"
    assert all(r.levelno == logging.WARNING for r in desyncs)


async def test_publishing_resumes_after_the_broker_closes_our_connection(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    if broker.rabbitmqctl is None:
        pytest.skip("no admin access to this broker (rabbitmqctl); cannot close connections from its side")
    config = collector_config(simulator, broker.url, exchange_name)
    config.rabbitmq.connection_name = f"futures-scan-test-{uuid.uuid4().hex[:8]}"
    async with running(config) as app:
        assert await flowing(consumer, ALL_KEYS)
        publisher_name = f"{config.rabbitmq.connection_name} publisher"
        assert await asyncio.to_thread(broker.close_connections, publisher_name) == 1
        assert await flowing(consumer, ALL_KEYS, timeout=20), "publishing did not resume"
        assert app.publisher.stats.reconnects == 1
        assert app.publisher.stats.connected
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("rabbitmq: "), errors
