"""A test's view of the system: a queue consumer like a user's, and a collector pointed at the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import orjson

from discovery.build import build_universe, load_sources
from discovery.output import write_generated
from main import FuturesScan, point_at_simulator
from models.config import AppConfig
from models.futures_data import FuturesData
from simulator.server import Simulator

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]


async def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Whether `condition` holds within `timeout` seconds (checked every 50 ms): wait on a condition, not a sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def delete_names(broker_url: str, exchanges: Iterable[str] = (), queues: Iterable[str] = ()) -> None:
    """Remove the exchanges and queues a test declared, so runs never collide or pile up."""
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
        for queue in queues:
            await channel.queue_delete(queue)


async def delete_analytics(broker_url: str, config: AppConfig, tracker_queue: str) -> None:
    """Remove what a test's spread engine and tracker declared: the analytics exchange and the tracker's queue."""
    await delete_names(broker_url, [config.spreads.analytics_exchange], [tracker_queue])


class Consumer:
    """Binds an exclusive queue to the exchange and keeps every message, as a user's consumer would."""

    def __init__(self, url: str, exchange: str, binding: str = "futures.#") -> None:
        self.url = url
        self.exchange = exchange
        self.binding = binding
        self.messages: list[tuple[str, dict[str, Any], float]] = []
        self.latest: dict[str, dict[str, Any]] = {}
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, self.binding)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        key = message.routing_key or ""
        self.messages.append((key, body, time.time()))
        self.latest[key] = body

    def since(self, moment: float) -> list[tuple[str, dict[str, Any], float]]:
        return [entry for entry in self.messages if entry[2] >= moment]

    def keys_since(self, moment: float) -> set[str]:
        return {key for key, _, _ in self.since(moment)}

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 15.0) -> bool:
        return await eventually(condition, timeout)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def discover_on(simulator: Simulator, symbols: list[str], directory: Path, markets: list[str] | None = None
                      ) -> str:
    """Pair discovery on the simulator's venues, written to directory/generated: its path, for universe_dir."""
    discovery = AppConfig.model_validate({"exchanges": list(simulator.venues), "symbols": symbols,
                                          "markets": markets or ["futures"], "api_keys_file": None})
    point_at_simulator(discovery, simulator)
    loaded, failed = await load_sources(discovery, lambda _: None, minimum_sources=2)
    write_generated(directory / "generated", build_universe(loaded, failed), None)
    return str(directory / "generated")


def collector_config(simulator: Simulator, broker_url: str, exchange: str, **collection: Any) -> AppConfig:
    """The config a user would write, with the simulator's URL overrides and quick test timings; no status
    heartbeat and no /metrics (many collectors share a test run: tests that want them turn them on)."""
    config = AppConfig.model_validate(
        {
            "rabbitmq": {"url": broker_url, "exchange": exchange},
            "exchanges": list(simulator.venues),
            "symbols": SYMBOLS,
            "collection": {
                "stale_after_seconds": 3,
                "retry_delays": [0.2, 0.5, 1],
                "statistics_interval_seconds": 3600,
                "status_interval_seconds": 0,
                **collection,
            },
            "metrics": {"port": 0},
            "logging": {"level": "INFO", "file": None},
            "control": {"enabled": False, "state_file": None},
            "api_keys_file": None,
        }
    )
    point_at_simulator(config, simulator)
    return config


@asynccontextmanager
async def running(config: AppConfig) -> AsyncIterator[FuturesScan]:
    app = FuturesScan(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def all_streams_up(app: FuturesScan, timeout: float = 30.0) -> bool:
    """Every venue runs every stream it should, each having delivered data."""
    depth = app.config.collection.orderbook_depth

    def up() -> bool:
        return all(
            {name.split("#")[0] for name in c.stats.streams_up} == {spec.name for spec in c.venue.streams(depth)}
            and all(c.stats.streams_up.values())
            for c in app.collectors
        )

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not up():
        await asyncio.sleep(0.05)
    return up()


def valid(body: dict[str, Any]) -> FuturesData:
    return FuturesData.model_validate(body)
