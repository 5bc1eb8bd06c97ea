"""The monitor's side of RabbitMQ: three bounded queues feeding MonitorState.

Each queue is exclusive (it goes with the monitor) and holds at most `monitor.queue_max_length` messages;
beyond that RabbitMQ drops the oldest, so a monitor that falls behind catches up on the newest data instead
of replaying the past. A message that does not validate against its model is counted and logged once per
kind, never trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aio_pika
from aio_pika.exceptions import AMQPError
from pydantic import ValidationError

from models.analytics import OpportunityEvent, SpreadSnapshot
from models.config import AppConfig
from models.futures_data import FuturesData
from models.status import CollectorStatus
from monitor.state import MonitorState, now_ms
from publishers.aio_pika_seams import QuietRobustConnection

log = logging.getLogger("monitor")

PREFETCH = 500
"""Messages RabbitMQ hands out before the monitor acknowledges them. The rest wait in the broker's queue, where
its length cap drops the oldest: a monitor that falls behind holds at most this many old messages (a fraction
of a second of the full feed), never an ever-growing backlog of its own."""
ACK_EVERY = 100
"""Acknowledged together (multiple=True), and whatever is left every ACK_FLUSH_SECONDS."""
ACK_FLUSH_SECONDS = 0.2


class MonitorBus:
    def __init__(self, config: AppConfig, state: MonitorState) -> None:
        self.config = config
        self.state = state
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._logged_invalid: set[str] = set()
        self._unacked: dict[str, aio_pika.abc.AbstractIncomingMessage] = {}
        """Per kind, the newest message handled and not yet acknowledged."""
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rabbitmq = self.config.rabbitmq
        self._connection = await aio_pika.connect_robust(
            rabbitmq.amqp_url(), client_properties={"connection_name": f"{rabbitmq.connection_name} monitor"},
            connection_class=QuietRobustConnection,
        )
        try:
            analytics = self.config.spreads.analytics_exchange
            await self._consume(rabbitmq.exchange, ("futures.#", "spot.#"), "market", self._on_market)
            await self._consume(analytics, ("spread.#",), "spread", self._on_spread)
            await self._consume(analytics, ("opportunity.#",), "opportunity", self._on_opportunity)
            await self._consume(rabbitmq.status_exchange, ("status.#",), "status", self._on_status)
        except BaseException:
            await self.stop()
            raise
        self._flusher = asyncio.create_task(self._flush_acks_forever(), name="monitor-acks")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _flush_acks_forever(self) -> None:
        while True:
            await asyncio.sleep(ACK_FLUSH_SECONDS)
            for kind in tuple(self._unacked):
                await self._ack(kind)

    async def _ack(self, kind: str) -> None:
        message = self._unacked.pop(kind, None)
        if message is not None:
            with contextlib.suppress(AMQPError, RuntimeError):  # a channel lost meanwhile: RabbitMQ requeued them
                await message.ack(multiple=True)

    async def _consume(
        self, exchange_name: str, bindings: tuple[str, ...], kind: str,
        handle: Callable[[aio_pika.abc.AbstractIncomingMessage], None],
    ) -> None:
        """A channel of its own per queue: acknowledging `multiple` covers every earlier delivery on a channel."""
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(
            exclusive=True,
            arguments={"x-max-length": self.config.monitor.queue_max_length, "x-overflow": "drop-head"},
        )
        for binding in bindings:
            await queue.bind(exchange, binding)

        handled = 0

        async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal handled
            try:
                handle(message)
            except ValidationError as error:
                self._invalid(kind, message.routing_key or "", error)
            handled += 1
            self._unacked[kind] = message
            if handled % ACK_EVERY == 0:
                await self._ack(kind)

        await queue.consume(deliver)

    def _invalid(self, kind: str, routing_key: str, error: ValidationError) -> None:
        self.state.invalid[kind] += 1
        if kind not in self._logged_invalid:
            self._logged_invalid.add(kind)
            log.warning("ignoring an invalid %s message on %s (further ones are only counted): %s",
                        kind, routing_key, error.errors()[:3])

    def _on_market(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.state.add_market(FuturesData.model_validate_json(message.body), now_ms())

    def _on_spread(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.state.add_spread(message.routing_key or "", SpreadSnapshot.model_validate_json(message.body), now_ms())

    def _on_opportunity(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.state.add_opportunity(OpportunityEvent.model_validate_json(message.body))

    def _on_status(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.state.add_heartbeat(CollectorStatus.model_validate_json(message.body), now_ms())

