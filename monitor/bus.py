"""The monitor's side of RabbitMQ: three bounded queues feeding MonitorState.

Each queue is exclusive (it goes with the monitor) and holds at most `monitor.queue_max_length` messages;
beyond that RabbitMQ drops the oldest, so a monitor that falls behind catches up on the newest data instead
of replaying the past. A message that does not validate against its model is counted and logged once per
kind, never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aio_pika
from pydantic import ValidationError

from consumers.grouped_acks import GroupedAcks
from models.analytics import OpportunityEvent, SpreadSnapshot
from models.config import AppConfig
from models.futures_data import FuturesData
from models.status import CollectorStatus
from monitor.state import MonitorState, now_ms
from publishers.broker_connection import connect_robust

log = logging.getLogger("monitor")


class MonitorBus:
    def __init__(self, config: AppConfig, state: MonitorState) -> None:
        self.config = config
        self.state = state
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._logged_invalid: set[str] = set()
        self._acks = GroupedAcks()
        self.connected = False
        """Whether the monitor's own connection to RabbitMQ is up now (the alerts say so when it is not)."""

    async def start(self) -> None:
        rabbitmq = self.config.rabbitmq
        self._connection = await connect_robust(rabbitmq.amqp_urls(), f"{rabbitmq.connection_name} monitor")
        self.connected = True
        self._connection.close_callbacks.add(self._lost)
        self._connection.reconnect_callbacks.add(self._restored)  # type: ignore[attr-defined]
        try:
            analytics = self.config.spreads.analytics_exchange
            await self._consume(rabbitmq.exchange, ("futures.#", "spot.#"), "market", self._on_market)
            await self._consume(analytics, ("spread.#",), "spread", self._on_spread)
            await self._consume(analytics, ("opportunity.#",), "opportunity", self._on_opportunity)
            await self._consume(rabbitmq.status_exchange, ("status.#",), "status", self._on_status)
        except BaseException:
            await self.stop()
            raise

    def _lost(self, *_: object) -> None:
        self.connected = False

    def _restored(self, *_: object) -> None:
        self.connected = True

    async def stop(self) -> None:
        await self._acks.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _consume(
        self, exchange_name: str, bindings: tuple[str, ...], kind: str,
        handle: Callable[[aio_pika.abc.AbstractIncomingMessage], None],
    ) -> None:
        assert self._connection is not None

        def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            try:
                handle(message)
            except ValidationError as error:
                self._invalid(kind, message.routing_key or "", error)

        await self._acks.consume(self._connection, exchange_name, bindings, kind, deliver,
                                 self.config.monitor.queue_max_length)

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

