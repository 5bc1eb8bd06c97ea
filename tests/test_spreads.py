"""Spread engine and tracker end to end: a price shift on one venue opens an opportunity, the tracker
records it every 200 ms, the shift ending closes it; restarts resume; stale legs open nothing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import pytest

from consumers.spread_engine import SpreadEngine
from consumers.spread_tracker import SpreadTracker
from consumers.tracks import TrackEntry, TrackStore
from discovery.build import build_universe, load_sources
from discovery.output import write_generated
from main import point_at_simulator
from models.analytics import OpportunityEvent, SpreadSnapshot
from models.config import AppConfig
from models.universe import read_universe
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, running

pytestmark = pytest.mark.timeout(120)

SHIFTED = ("binance", "BTC/USDT:USDT")


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["binance", "okx"], port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def setup(simulator: Simulator, broker: Broker, exchange_name: str, tmp_path: Path) -> AsyncIterator[AppConfig]:
    """A universe discovered on the simulator, and a config for the collector, the engine and the tracker."""
    config = collector_config(simulator, broker.url, exchange_name, max_message_age_ms=60_000)
    config.symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    discovery = AppConfig.model_validate({"exchanges": ["binance", "okx"], "symbols": ["BTC/USDT:USDT"],
                                          "api_keys_file": None})
    point_at_simulator(discovery, simulator)
    loaded, failed = await load_sources(discovery, lambda _: None, minimum_sources=2)
    write_generated(tmp_path / "generated", build_universe(loaded, failed), None)
    config.universe_dir = str(tmp_path / "generated")
    config.spreads = config.spreads.model_copy(update={
        "analytics_exchange": f"{exchange_name}_analytics", "entry_pct": 0.3, "exit_pct": 0.1, "confirm_ticks": 2,
        "max_quote_age_ms": 1500, "max_leg_skew_ms": 5000,
    })
    config.tracker = config.tracker.model_copy(update={"directory": str(tmp_path / "tracks")})
    yield config
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(config.spreads.analytics_exchange)
        await channel.queue_delete(f"{exchange_name}_tracker")


@asynccontextmanager
async def service(component: SpreadEngine | SpreadTracker) -> AsyncIterator[None]:
    await component.start()
    try:
        yield
    finally:
        await component.stop()


async def analytics_consumer(broker: Broker, config: AppConfig) -> Consumer:
    consumer = Consumer(broker.url, config.spreads.analytics_exchange, binding="#")
    await consumer.start()
    return consumer


def events(consumer: Consumer, kind: str) -> list[OpportunityEvent]:
    return [OpportunityEvent.model_validate(body) for key, body, _ in consumer.messages
            if key.startswith(f"opportunity.{kind}.")]


async def test_a_shift_opens_an_opportunity_the_tracker_records_it_and_its_end_closes_it(
    simulator: Simulator, broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    config = setup
    analytics = await analytics_consumer(broker, config)
    tracker = SpreadTracker(config, read_universe(config.universe_dir), events_queue=f"{exchange_name}_tracker")
    try:
        async with running(config), service(SpreadEngine(config)), service(tracker):
            assert await analytics.wait_until(lambda: any(k.startswith("spread.BTCUSDT.okx.binance")
                                                          for k, _, _ in analytics.messages), timeout=30)
            assert not events(analytics, "open")  # calm prices: no opportunity
            simulator.shift(*SHIFTED, bps=80, seconds=4)
            assert await analytics.wait_until(lambda: events(analytics, "open"), timeout=15)
            opened = events(analytics, "open")[0]
            assert (opened.symbol, opened.buy, opened.sell) == ("BTC/USDT", "okx", "binance")
            assert opened.snapshot.net_pct >= 0.3 and opened.snapshot.spread_pct > opened.snapshot.net_pct
            assert opened.snapshot.vwap_buy is not None and opened.snapshot.fully_fillable
            assert await analytics.wait_until(lambda: events(analytics, "close"), timeout=20)
            await asyncio.sleep(0.5)
    finally:
        await analytics.close()
    closed = events(analytics, "close")[0]
    assert closed.opportunity_id == opened.opportunity_id and closed.snapshot.net_pct <= 0.1
    assert closed.peak_net_pct >= opened.snapshot.net_pct
    for key, body, _ in analytics.messages:
        if key.startswith("spread."):
            SpreadSnapshot.model_validate(body)

    store = TrackStore(config.tracker.directory)
    entry = store.load_index()[opened.opportunity_id]
    assert entry.closed_at is not None and entry.reason is not None
    rows = store.rows(entry)
    times = [row["t"] for row in rows]
    assert len(rows) >= 5 and times == sorted(set(times))
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert 150 <= gaps[len(gaps) // 2] <= 300  # about every 200 ms
    assert rows[0]["net_pct"] >= 0.1 and entry.peak_net_pct >= 0.3


async def test_a_restarted_tracker_resumes_its_open_track_without_duplicates(
    simulator: Simulator, broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    config = setup
    universe = read_universe(config.universe_dir)
    events_queue = f"{exchange_name}_tracker"
    analytics = await analytics_consumer(broker, config)
    try:
        async with running(config), service(SpreadEngine(config)):
            async with service(SpreadTracker(config, universe, events_queue=events_queue)):
                await asyncio.sleep(2)
                simulator.shift(*SHIFTED, bps=80, seconds=8)
                assert await analytics.wait_until(lambda: events(analytics, "open"), timeout=15)
                await asyncio.sleep(1.5)
            opportunity_id = events(analytics, "open")[0].opportunity_id
            store = TrackStore(config.tracker.directory)
            before = store.rows(store.load_index()[opportunity_id])
            await asyncio.sleep(1.0)  # the tracker is down
            async with service(SpreadTracker(config, universe, events_queue=events_queue)):
                await asyncio.sleep(1.5)
                assert await analytics.wait_until(lambda: events(analytics, "close"), timeout=20)
                await asyncio.sleep(0.5)
    finally:
        await analytics.close()
    entry = store.load_index()[opportunity_id]
    rows = store.rows(entry)
    times = [row["t"] for row in rows]
    assert rows[: len(before)] == before and len(rows) > len(before) + 3
    assert times == sorted(set(times))  # no duplicates, in order
    (gap,) = [row for row in rows if "gap_from" in row]
    assert gap["gap_from"] == before[-1]["t"] and gap["t"] - gap["gap_from"] >= 900
    assert entry.closed_at is not None


async def test_stale_legs_do_not_open_opportunities(
    simulator: Simulator, broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    config = setup
    analytics = await analytics_consumer(broker, config)
    engine = SpreadEngine(config)
    try:
        async with running(config), service(engine):
            assert await analytics.wait_until(lambda: any(k.startswith("spread.") for k, _, _ in analytics.messages),
                                              timeout=30)
            await simulator.apply_fault("okx", "silent")
            await asyncio.sleep(2.0)  # okx's last quotes are now older than max_quote_age_ms
            skipped = engine.evaluator.counters.skipped_stale
            simulator.shift(*SHIFTED, bps=80, seconds=3)
            started = time.monotonic()
            while time.monotonic() - started < 4:
                await asyncio.sleep(0.1)
            assert engine.evaluator.counters.skipped_stale > skipped
    finally:
        await analytics.close()
    assert not events(analytics, "open")


async def test_after_a_restart_tracks_past_their_time_limit_close_as_expired(
    broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    config = setup
    store = TrackStore(config.tracker.directory)
    four_hours_ago = int(time.time() * 1000) - 4 * 3600 * 1000
    old = TrackEntry(opportunity_id="old", symbol="BTC/USDT", buy="okx", sell="binance", opened_at=four_hours_ago,
                     file="old.jsonl")
    recent = TrackEntry(opportunity_id="recent", symbol="BTC/USDT", buy="okx", sell="binance",
                        opened_at=int(time.time() * 1000) - 60_000, file="recent.jsonl")
    store.append(old, {"t": four_hours_ago + 200, "net_pct": 0.5})
    store.append(recent, {"t": recent.opened_at + 200, "net_pct": 0.5})
    store.save_index({"old": old, "recent": recent})
    tracker = SpreadTracker(config, read_universe(config.universe_dir), events_queue=f"{exchange_name}_tracker")
    async with service(tracker):
        assert set(tracker.open) == {"recent"}
    entries = store.load_index()
    assert (entries["old"].reason, entries["old"].closed_at) == ("expired", four_hours_ago + 200)
    assert entries["recent"].closed_at is None
    assert [row.get("gap_from") for row in store.rows(entries["recent"])] == [None, recent.opened_at + 200]
