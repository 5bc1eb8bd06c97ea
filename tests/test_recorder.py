"""The recorder end to end: simulator, collector, spread engine and two recorders (SQLite and PostgreSQL) on
one stack. A price shift must become triggered samples, a merged event that closes, and outcomes; the
market feed must become quote samples and funding rows; spreads must become 5-minute-style bars."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aio_pika
import pytest
from pydantic import SecretStr

from consumers.recorder import Recorder
from consumers.spread_engine import SpreadEngine
from history.rows import SignalEvent
from history.store import HistoryStore
from main import FuturesScan
from models.config import AppConfig
from publishers.durable_queues import QueueSettingsChanged
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import collector_config, delete_analytics, discover_on
from tests.postgres_db import dsn_for

pytestmark = pytest.mark.timeout(150)

SHIFTED = ("binance", "BTC/USDT:USDT")


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["binance", "okx"], port=0, rate=10)
    await sim.start()
    yield sim
    await sim.stop()


def history_settings(config: AppConfig, directory: Path, dsn: str | None, queue: str) -> AppConfig:
    """Seconds instead of minutes, so a test sees events close and outcomes come due."""
    history = config.history.model_copy(update={
        "sqlite_path": str(directory / "history.sqlite"), "postgres_dsn": SecretStr(dsn) if dsn else None,
        "spool_dir": str(directory / "spool"),
        "sample_seconds": 1, "quote_sample_seconds": 1, "funding_check_seconds": 1, "series_bucket_seconds": 10,
        "event_confirm_samples": 2, "event_cooldown_minutes": 0.05, "outcome_horizons_minutes": [0.1],
        "outcome_check_seconds": 0.5, "queue": queue,
    })
    return config.model_copy(update={"history": history})


async def eventually_async(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Whether the async condition holds within timeout (checked every 250 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.25)
    return bool(await condition())


async def closed_event_with_outcome(store: HistoryStore) -> SignalEvent | None:
    for event in await store.events("BTC/USDT", 0, 2**62, 100):
        if event.status == "closed" and event.sell == "binance" and await store.outcomes(event.event_id):
            return event
    return None


async def test_demo_engine_and_recorders_fill_sqlite_and_postgresql(
    simulator: Simulator, broker: Broker, exchange_name: str, tmp_path: Path, database: str
) -> None:
    config = collector_config(simulator, broker.url, exchange_name, max_message_age_ms=60_000)
    config.symbols, config.markets = ["BTC/USDT:USDT", "ETH/USDT:USDT"], ["futures", "spot"]
    config.universe_dir = await discover_on(simulator, ["BTC/USDT:USDT"], tmp_path, ["futures", "spot"])
    config.spreads = config.spreads.model_copy(update={
        "analytics_exchange": f"{exchange_name}_analytics", "entry_pct": 0.3, "exit_pct": 0.1, "confirm_ticks": 2,
        "max_quote_age_ms": 3000, "max_leg_skew_ms": 5000,
    })
    async with AsyncExitStack() as exits:
        dsn = dsn_for(database)
        sqlite = Recorder(history_settings(config, tmp_path / "sqlite", None, f"{exchange_name}_rec1"))
        postgres = Recorder(history_settings(config, tmp_path / "pg", dsn, f"{exchange_name}_rec2"))
        exits.push_async_callback(delete_analytics, broker.url, config, f"{exchange_name}_rec1")
        exits.push_async_callback(delete_analytics, broker.url, config, f"{exchange_name}_rec2")
        for component in (FuturesScan(config), SpreadEngine(config), sqlite, postgres):
            await component.start()
            exits.push_async_callback(component.stop)
        stores = (sqlite.store, postgres.store)

        async def all_tables_fill() -> bool:
            for store in stores:
                counts = await store.row_counts()
                if not all(counts[table] for table in ("watch_signal_raw", "market_quote_sample", "funding_change",
                                                        "watchlist_series_agg")):
                    return False
            return True

        assert await eventually_async(all_tables_fill, 30), [await store.row_counts() for store in stores]
        for store in stores:  # calm prices: samples, but nothing triggered
            assert await store.events(None, 0, 2**62, 10) == []
        simulator.shift(*SHIFTED, bps=80, seconds=6)

        async def both_have_an_outcome() -> bool:
            return all([await closed_event_with_outcome(store) for store in stores])

        assert await eventually_async(both_have_an_outcome, 60)
        for store in stores:
            event = await closed_event_with_outcome(store)
            assert event is not None and event.samples >= 2
            assert event.features_agg["net_pct"]["max"] >= 0.3
            samples = await store.signal_samples(event.symbol, event.buy, event.sell, event.start_ts, event.end_ts)
            assert samples[0].triggered and samples[0].ts == event.start_ts
            assert all(later.ts > earlier.ts for earlier, later in itertools.pairwise(samples))
            assert all(sample.ts % 1000 == 0 for sample in samples)  # one per 1 s slot
            (outcome,) = await store.outcomes(event.event_id)
            assert (outcome.horizon_min, outcome.status) == (0.1, "ok")
            assert outcome.spread_start == samples[0].spread_pct
            assert outcome.label in {"converged", "flat", "diverged"}
            bars = await store.series(event.symbol, event.buy, event.sell, 0, 2**62)
            assert bars and all(bar.ts % 10_000 == 0 and bar.net_low <= bar.net_mean <= bar.net_high for bar in bars)
        assert "postgresql" in postgres.store.description and "sqlite" in sqlite.store.description


async def test_a_queue_length_changed_in_config_is_a_clear_error(
    broker: Broker, exchange_name: str, tmp_path: Path
) -> None:
    """RabbitMQ refuses to redeclare a durable queue with another x-max-length (406 PRECONDITION_FAILED)."""
    queue = f"{exchange_name}_recorder"
    config = AppConfig.model_validate({"rabbitmq": {"url": broker.url, "exchange": exchange_name},
                                       "exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"],
                                       "spreads": {"analytics_exchange": f"{exchange_name}_analytics"},
                                       "api_keys_file": None})
    config = history_settings(config, tmp_path, None, queue)
    connection = await aio_pika.connect(broker.url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments={"x-max-length": 5, "x-overflow": "drop-head"})
        recorder = Recorder(config)
        with pytest.raises(QueueSettingsChanged, match=f"delete it \\(rabbitmqctl delete_queue {queue}"):
            await recorder.start()
        await recorder.stop()
    finally:
        await connection.close()
        await delete_analytics(broker.url, config, queue)
