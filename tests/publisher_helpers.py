"""What the publisher tests share: updates to publish, a steady feed, and a consumer that binds only to an
exchange that already exists (so it proves the publisher declared it, and accepts its settings as they are)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import orjson

from publishers.rabbitmq_publisher import RabbitMQPublisher
from tests.helpers import Consumer


@dataclass
class Update:
    routing_key: str
    value: int
    received_ms: int = 0
    received_ns: int = 0

    def __post_init__(self) -> None:
        self.received_ms = self.received_ms or time.time_ns() // 1_000_000
        self.received_ns = time.perf_counter_ns()

    def to_json(self, published_ms: int) -> bytes:
        return orjson.dumps({"value": self.value, "published": published_ms})


async def start_publisher(url: str, exchange: str, **kwargs: object) -> RabbitMQPublisher:
    publisher = RabbitMQPublisher(url, exchange, **{"max_message_age_ms": 5000, "retry_delays": [0.2], **kwargs})
    await publisher.start()
    return publisher


@contextlib.asynccontextmanager
async def feeding(publisher: RabbitMQPublisher, keys: int = 20, interval: float = 0.01) -> AsyncIterator[None]:
    """Every key gets a new value every `interval`, as a venue feed would."""

    async def feed() -> None:
        value = 0
        while True:
            for key in range(keys):
                publisher.submit(Update(f"futures.test.K{key}", value))
            value += 1
            await asyncio.sleep(interval)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ExistingExchangeConsumer(Consumer):
    """Binds to the exchange only if it exists (passive declare), whatever its type or durability."""

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        exchange = await channel.get_exchange(self.exchange, ensure=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, self.binding)
        await queue.consume(self._on_message, no_ack=True)
