"""Consume a queue with acknowledgements sent in groups: the broker-side backlog pattern.

With no_ack, RabbitMQ pushes everything at once and a consumer that falls behind holds the backlog in its
own memory, where no length cap applies. With a prefetch and acknowledgements, the backlog stays in the
queue, where `x-max-length` + drop-head keeps only the newest. Acknowledging every delivery costs a frame
each; acknowledging the newest with multiple=True every ACK_EVERY deliveries (and whatever is left every
ACK_FLUSH_SECONDS) costs almost nothing. One channel per queue: multiple=True covers every earlier
delivery on its channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aio_pika
from aio_pika.exceptions import AMQPError

from publishers.durable_queues import QueueType, declare_durable_queue

PREFETCH = 500
ACK_EVERY = 100
ACK_FLUSH_SECONDS = 0.2


class GroupedAcks:
    def __init__(self) -> None:
        self._unacked: dict[str, aio_pika.abc.AbstractIncomingMessage] = {}
        """Per queue, the newest message handled and not yet acknowledged."""
        self._flusher: asyncio.Task[None] | None = None

    async def consume(
        self, connection: aio_pika.abc.AbstractRobustConnection, exchange_name: str, bindings: tuple[str, ...],
        kind: str, handle: Callable[[aio_pika.abc.AbstractIncomingMessage], None], max_length: int,
        durable_queue: str | None = None, queue_type: QueueType = "classic",
    ) -> None:
        """Bind a queue (exclusive, or the durable one named, of `queue_type`) to the topic exchange and hand each
        message to `handle`, which must not raise: what it cannot read, it counts itself. Raises
        QueueSettingsChanged when the durable queue exists with other settings."""
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        arguments = {"x-max-length": max_length, "x-overflow": "drop-head"}
        if durable_queue is None:
            queue = await channel.declare_queue(exclusive=True, arguments=arguments)
        else:
            queue = await declare_durable_queue(channel, durable_queue, queue_type, arguments,
                                                own_settings=f"x-max-length={max_length}")
        for binding in bindings:
            await queue.bind(exchange, binding)
        handled = 0

        async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal handled
            handle(message)
            handled += 1
            self._unacked[kind] = message
            if handled % ACK_EVERY == 0:
                await self._ack(kind)

        await queue.consume(deliver)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever(), name=f"acks-{kind}")

    async def close(self) -> None:
        """Stop the periodic flush and acknowledge what was handled: a durable queue would otherwise deliver
        it again to the next start."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for kind in tuple(self._unacked):
            await self._ack(kind)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(ACK_FLUSH_SECONDS)
            for kind in tuple(self._unacked):
                await self._ack(kind)

    async def _ack(self, kind: str) -> None:
        message = self._unacked.pop(kind, None)
        if message is not None:
            with contextlib.suppress(AMQPError, RuntimeError):  # a channel lost meanwhile: RabbitMQ requeued them
                await message.ack(multiple=True)
