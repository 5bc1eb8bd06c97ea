"""Spread engine and tracker end to end: a price shift on one venue opens an opportunity, the tracker
records it every 200 ms, the shift ending closes it; restarts resume; stale legs open nothing; a leg whose
quote stream went quiet is judged by the quote's own age, and an open opportunity with a stale leg closes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from consumers.quotes import quote_from
from consumers.spread_engine import SpreadEngine
from consumers.spread_tracker import SpreadTracker
from consumers.tracks import TrackEntry, TrackStore
from models.analytics import OpportunityEvent, SpreadSnapshot
from models.config import AppConfig
from models.futures_data import FuturesData
from models.universe import read_universe
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, delete_analytics, discover_on, running, valid

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
    config.universe_dir = await discover_on(simulator, ["BTC/USDT:USDT"], tmp_path)
    config.spreads = config.spreads.model_copy(update={
        "analytics_exchange": f"{exchange_name}_analytics", "entry_pct": 0.3, "exit_pct": 0.1, "confirm_ticks": 2,
        "max_quote_age_ms": 1500, "max_leg_skew_ms": 5000,
    })
    config.tracker = config.tracker.model_copy(update={"directory": str(tmp_path / "tracks")})
    yield config
    await delete_analytics(broker.url, config, f"{exchange_name}_tracker")


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


def test_a_quote_carries_its_own_times_and_a_message_from_an_older_collector_falls_back() -> None:
    message = {
        "exchange": "binance", "symbol": "1000PEPE/USDT:USDT", "coin": "PEPE", "base_multiplier": 1000,
        "timestamp": 9_000, "received_timestamp": 9_050, "published_timestamp": 9_060,
        "ticker": {"bid": 0.01, "ask": 0.0101, "bid_size": 5.0, "ask_size": 6.0, "last": None, "volume_24h": None,
                   "timestamp": 1_000, "received_timestamp": 1_010},
        "orderbook": None, "funding_rate": None, "next_funding_time": None, "funding_interval_hours": None,
        "mark_price": None, "index_price": None,
    }
    quote = quote_from(FuturesData.model_validate(message))
    assert quote is not None and (quote.timestamp, quote.received) == (1_000, 1_010) and not quote.has_depth
    for key in ("timestamp", "received_timestamp"):
        del message["ticker"][key]  # type: ignore[attr-defined]
    older = quote_from(FuturesData.model_validate(message))
    assert older is not None and (older.timestamp, older.received) == (9_000, 9_050)


async def test_a_shift_opens_an_opportunity_the_tracker_records_it_and_its_end_closes_it(
    simulator: Simulator, broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    config = setup
    analytics = await analytics_consumer(broker, config)
    tracker = SpreadTracker(config, read_universe(config.universe_dir), events_queue=f"{exchange_name}_tracker")
    try:
        async with running(config), service(SpreadEngine(config)), service(tracker):
            # both books in: the engine judges the opening on the depth it sweeps
            assert await analytics.wait_until(lambda: any(k.startswith("spread.BTCUSDT.okx.binance")
                                                          and body["fully_fillable"]
                                                          for k, body, _ in analytics.messages), timeout=30)
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


async def test_a_silenced_quote_stream_ages_the_quote_and_the_engine_drops_that_leg(
    simulator: Simulator, broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    """Binance's bookTicker goes quiet while its depth, markPrice and miniTicker streams run on: the messages keep
    coming with a fresh top-level received_timestamp, but the quote's own receipt time stops, and the engine stops
    using Binance's legs once that quote is older than max_quote_age_ms."""
    config = setup
    max_age = config.spreads.max_quote_age_ms
    analytics = await analytics_consumer(broker, config)
    binance = Consumer(broker.url, exchange_name, binding="futures.binance.BTCUSDT")
    await binance.start()
    engine = SpreadEngine(config)

    def quote_age(body: dict) -> int:
        return body["received_timestamp"] - body["ticker"]["received_timestamp"]

    try:
        async with running(config) as app, service(engine):
            assert await analytics.wait_until(lambda: any(k.startswith("spread.BTCUSDT.") and "binance" in k
                                                          for k, _, _ in analytics.messages), timeout=30)
            binance_stats = next(c.stats for c in app.collectors if c.venue.source_id == "binance")
            assert await binance.wait_until(lambda: "BTC/USDT:USDT" not in binance_stats.stale_symbols, timeout=10)
            silenced_ms = int(time.time() * 1000)
            await simulator.apply_fault("binance", "silent", stream="bookTicker")
            skipped = engine.evaluator.counters.skipped_stale
            # the other streams keep Binance's messages coming until the silenced quote is 3 x max_age old
            assert await binance.wait_until(
                lambda: quote_age(binance.messages[-1][1]) > 3 * max_age, timeout=20
            ), f"quote age stayed {quote_age(binance.messages[-1][1])} ms"
            assert engine.evaluator.counters.skipped_stale > skipped
            # get_statistics names the symbol whose quote went quiet, though its messages keep coming
            assert await binance.wait_until(lambda: "BTC/USDT:USDT" in binance_stats.stale_symbols, timeout=15)
    finally:
        await analytics.close()
        await binance.close()
    last_quote_ms = binance.messages[-1][1]["ticker"]["received_timestamp"]
    assert last_quote_ms < silenced_ms + 3000  # the quote stopped when its stream did (a loaded box lags)
    later = [body for _, body, _ in binance.messages if body["received_timestamp"] > last_quote_ms]
    assert len(later) >= 10 and all(body["ticker"]["received_timestamp"] == last_quote_ms for body in later)
    assert {valid(body).ticker.timestamp for body in later} == {binance.messages[-1][1]["ticker"]["timestamp"]}
    snapshots = [SpreadSnapshot.model_validate(body) for key, body, _ in analytics.messages
                 if key.startswith("spread.BTCUSDT.") and "binance" in key]
    assert any(snapshot.timestamp > silenced_ms for snapshot in snapshots)  # used until it went stale ...
    assert all(snapshot.timestamp <= last_quote_ms + max_age for snapshot in snapshots)  # ... and not after


async def test_an_open_opportunity_closes_as_stale_when_its_legs_go_quiet(
    simulator: Simulator, broker: Broker, exchange_name: str, setup: AppConfig
) -> None:
    """No message arrives for either leg once both venues fall silent: the engine's sweep closes it."""
    config = setup
    # no redial (whose fresh REST snapshot would be an update) while the test waits: nothing arrives at all
    config.collection = config.collection.model_copy(update={"stale_after_seconds": 60})
    analytics = await analytics_consumer(broker, config)
    try:
        async with running(config), service(SpreadEngine(config)):
            assert await analytics.wait_until(lambda: any(k.startswith("spread.BTCUSDT.okx.binance")
                                                          for k, _, _ in analytics.messages), timeout=30)
            simulator.shift(*SHIFTED, bps=80, seconds=120)  # the spread itself never converges
            assert await analytics.wait_until(lambda: events(analytics, "open"), timeout=15)
            await simulator.apply_fault("binance", "silent")
            await simulator.apply_fault("okx", "silent")
            assert await analytics.wait_until(lambda: events(analytics, "close"), timeout=10)
    finally:
        await analytics.close()
    opened, closed = events(analytics, "open")[0], events(analytics, "close")[0]
    assert (closed.opportunity_id, closed.reason) == (opened.opportunity_id, "stale")
    assert closed.snapshot.net_pct > config.spreads.exit_pct  # not converged: stale
    newest_leg = max(leg.received_timestamp or 0 for leg in (closed.snapshot.buy, closed.snapshot.sell))
    assert closed.snapshot.timestamp - newest_leg > config.spreads.max_quote_age_ms


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
