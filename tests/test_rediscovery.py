"""Periodic rediscovery end to end: scripts/discover.py --every on the simulator notices a delisting and a new
listing, writes the new universe and says what changed; the collector ("symbols": "auto"), the spread engine and
the tracker pick it up while running, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest

from consumers.spread_engine import SpreadEngine
from consumers.spread_tracker import SpreadTracker
from consumers.tracks import TrackStore
from discovery.follower import UniverseFollower, same_universe
from discovery.rediscover import discover
from main import point_at_simulator
from models.analytics import OpportunityEvent
from models.config import AppConfig
from models.universe import Universe, read_universe
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, eventually, running

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
DELISTED = ("binance", "ETH/USDT:USDT")
NEWLY_LISTED = ("bybit", "SOL/USDT:USDT")


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["binance", "bybit"], port=0, rate=20, symbols=4)
    await sim.start()
    yield sim
    await sim.stop()


class Discovery:
    """scripts/discover.py --every as a user runs it, its stderr kept line by line."""

    def __init__(self, config_file: Path, output: Path) -> None:
        self.args = [sys.executable, "scripts/discover.py", "--config", str(config_file), "--output", str(output),
                     "--every", "1.5"]
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.args, cwd=ROOT, env={**os.environ}, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        async for line in self._process.stderr:
            self.lines.append(line.decode().rstrip())

    def said(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), 10)
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode


def listed_on(universe: Universe, source: str, symbol: str) -> bool:
    return any(listing.source == source and listing.symbol == symbol
               for entry in universe.symbols for listing in entry.listings)


def events(consumer: Consumer, kind: str) -> list[OpportunityEvent]:
    return [OpportunityEvent.model_validate(body) for key, body, _ in consumer.messages
            if key.startswith(f"opportunity.{kind}.")]


async def test_a_rediscovered_universe_is_followed_by_the_collector_the_engine_and_the_tracker(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, tmp_path: Path
) -> None:
    simulator.set_listing(NEWLY_LISTED[0], "futures", NEWLY_LISTED[1], listed=False)  # listed later
    output = tmp_path / "generated"
    config = collector_config(simulator, broker.url, exchange_name, max_message_age_ms=60_000)
    config.symbols, config.universe_dir, config.markets = "auto", str(output), ["futures"]
    config.discovery = config.discovery.model_copy(update={"watch_seconds": 0.2})
    config.spreads = config.spreads.model_copy(update={
        "analytics_exchange": f"{exchange_name}_analytics", "entry_pct": 0.3, "exit_pct": 0.1, "confirm_ticks": 2,
        "max_quote_age_ms": 30_000, "max_leg_skew_ms": 5000, "open_on": "top",  # delisted, not stale, closes it
    })
    config.tracker = config.tracker.model_copy(update={"directory": str(tmp_path / "tracks")})
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.model_dump(mode="json") | {"rabbitmq": {"url": broker.url}}))

    discovery = Discovery(config_file, output)
    await discovery.start()
    analytics = Consumer(broker.url, config.spreads.analytics_exchange, binding="#")
    await analytics.start()
    tracker_queue = f"{exchange_name}_tracker"
    try:
        assert await eventually(lambda: discovery.said("round 1: wrote the universe"), 60), discovery.lines[-20:]
        first = read_universe(output)
        assert listed_on(first, *DELISTED) and not listed_on(first, *NEWLY_LISTED)
        engine = SpreadEngine(config)
        tracker = SpreadTracker(config, first, events_queue=tracker_queue)
        async with running(config) as app:
            await engine.start()
            await tracker.start()
            binance, bybit = app.collectors
            # before: binance streams ETH, bybit does not list SOL; the engine evaluates no SOL direction
            assert await consumer.wait_until(lambda: "futures.binance.ETHUSDT" in consumer.latest
                                             and "futures.bybit.ETHUSDT" in consumer.latest, timeout=30)
            assert "SOL/USDT:USDT" not in bybit.states
            simulator.shift(*DELISTED, bps=80, seconds=60)
            assert await analytics.wait_until(lambda: events(analytics, "open"), timeout=20)
            opened = events(analytics, "open")[0]
            assert (opened.symbol, opened.buy, opened.sell) == ("ETH/USDT", "bybit", "binance")
            assert await eventually(lambda: opened.opportunity_id in tracker.open, 10)
            rounds = len(discovery.said("universe unchanged"))
            assert await eventually(lambda: len(discovery.said("universe unchanged")) > rounds, 15)  # nothing rewritten

            # the venues delist one listing and list a new one; the next round notices
            simulator.set_listing(DELISTED[0], "futures", DELISTED[1], listed=False)
            simulator.set_listing(NEWLY_LISTED[0], "futures", NEWLY_LISTED[1], listed=True)
            assert await eventually(lambda: discovery.said("universe changed"), 20), discovery.lines[-20:]
            (change,) = discovery.said("universe changed")
            assert "removed listings: binance: ETH/USDT:USDT" in change
            assert "added listings: bybit: SOL/USDT:USDT" in change
            second = read_universe(output)
            assert not listed_on(second, *DELISTED) and listed_on(second, *NEWLY_LISTED)

            # the collector: binance stops ETH (its publisher key forgotten), bybit starts SOL, no restart
            assert await eventually(lambda: "ETH/USDT:USDT" not in binance.states, 20)
            stopped = time.time()
            assert await consumer.wait_until(lambda: "futures.bybit.SOLUSDT" in consumer.keys_since(stopped), 20)
            assert "SOL/USDT:USDT" in bybit.states and "ETH/USDT:USDT" in bybit.states
            assert "futures.binance.ETHUSDT" not in consumer.keys_since(stopped + 1.0)
            assert "futures.binance.SOLUSDT" in consumer.keys_since(stopped)  # the others stream on

            # the engine: the removed direction's opportunity closes as delisted; the new one is evaluated
            assert await analytics.wait_until(lambda: events(analytics, "close"), timeout=10)
            closed = events(analytics, "close")[0]
            assert (closed.opportunity_id, closed.reason) == (opened.opportunity_id, "delisted")
            assert await analytics.wait_until(
                lambda: any(key.startswith("spread.SOLUSDT.bybit.binance") for key, _, _ in analytics.messages), 15)
            # the tracker: the track ended as delisted, and the new listing's fee is known
            assert await eventually(lambda: opened.opportunity_id not in tracker.open, 10)
            assert ("bybit", "SOL/USDT") in tracker.fees
            await tracker.stop()
            await engine.stop()
        entry = TrackStore(config.tracker.directory).load_index()[opened.opportunity_id]
        assert entry.reason in ("delisted", "closed by engine (delisted)")
    finally:
        await discovery.stop()
        await analytics.close()
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(tracker_queue)
            await channel.exchange_delete(config.spreads.analytics_exchange)
    assert discovery.said("a round every 1.5 s")  # the warning for an interval shorter than venues like
    assert discovery.returncode == 0 and discovery.said("stopped")  # SIGINT ends it cleanly


async def test_the_follower_keeps_the_universe_in_use_when_the_file_is_broken(tmp_path: Path) -> None:
    universe = Universe(generated_at=1, sources=["binance"], failed_sources={}, symbols=[], directions=[])
    (tmp_path / "universe.json").write_bytes(universe.model_dump_json().encode())
    seen: list[Universe] = []

    async def record(old: Universe, new: Universe, change: object) -> None:
        seen.append(new)

    follower = UniverseFollower(tmp_path, 0.1, record, universe, logging.getLogger("test"))
    assert not await follower.check()  # same content
    newer = universe.model_copy(update={"generated_at": 2})
    (tmp_path / "universe.json").write_bytes(newer.model_dump_json().encode())
    assert not await follower.check()  # only the generation time differs
    (tmp_path / "universe.json").write_text("{not json")
    assert not await follower.check() and follower.current is universe
    changed = universe.model_copy(update={"sources": ["binance", "okx"]})
    (tmp_path / "universe.json").write_bytes(changed.model_dump_json().encode())
    assert await follower.check() and seen == [changed]


def test_the_interval_has_a_floor_and_zero_means_off() -> None:
    base = {"exchanges": ["binance"], "symbols": "auto"}
    assert AppConfig.model_validate(base).discovery.interval_seconds == 21600
    assert AppConfig.model_validate({**base, "discovery": {"interval_seconds": 0}}).discovery.interval_seconds == 0
    with pytest.raises(ValueError, match="must be 0 \\(off\\) or at least 60 s, not 5"):
        AppConfig.model_validate({**base, "discovery": {"interval_seconds": 5}})


async def test_a_source_that_fails_a_round_keeps_its_previous_listings(simulator: Simulator) -> None:
    config = AppConfig.model_validate({"exchanges": ["binance", "bybit"], "symbols": "auto", "api_keys_file": None,
                                       "collection": {"retry_attempts": 1, "retry_delays": [0.2]}})
    point_at_simulator(config, simulator)
    previous, _ = await discover(config, 2, None, lambda _: None)
    assert listed_on(previous, "bybit", "BTC/USDT:USDT")
    bybit = next(exchange for exchange in config.exchanges if exchange.name == "bybit")
    api = bybit.ccxt["urls"]["api"]
    bybit.ccxt["urls"]["api"] = {key: "http://127.0.0.1:9" if isinstance(value, str) else value
                                 for key, value in api.items()}  # nothing listens there
    said: list[str] = []
    kept, _ = await discover(config, 1, None, said.append, previous)
    assert list(kept.failed_sources) == ["bybit"] and same_universe(previous, kept)
    assert "bybit: market list failed this round; keeping its 4 previous listings" in said
    alone, _ = await discover(config, 1, None, lambda _: None)  # no previous universe: left out
    assert not listed_on(alone, "bybit", "BTC/USDT:USDT") and alone.sources == ["binance"]


async def test_the_simulator_delists_and_lists_over_its_admin_api(simulator: Simulator) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{simulator.http_base}/admin/listing"
        body = {"exchange": "binance", "market": "futures", "symbol": "ETH/USDT:USDT", "listed": False}
        async with session.post(url, json=body) as response:
            assert response.status == 200 and (await response.json())["changed"] == ["ETHUSDT"]
        async with session.get(f"{simulator.http_base}/binance/fapi/v1/exchangeInfo") as response:
            statuses = {entry["symbol"]: entry["status"] for entry in (await response.json())["symbols"]}
        assert statuses["ETHUSDT"] == "SETTLING" and statuses["BTCUSDT"] == "TRADING"
        async with session.post(url, json={**body, "exchange": "bybit", "symbol": "BTC/USDT"}) as response:
            assert response.status == 400 and "not a futures symbol" in (await response.json())["error"]
        async with session.post(url, json={**body, "market": "spot", "symbol": "BTC/USDT"}) as response:
            assert response.status == 400 and "cannot delist" in (await response.json())["error"]
