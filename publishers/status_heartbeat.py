"""The collector's status heartbeat: a CollectorStatus (models/status.py) every `collection.status_interval_seconds`
on the topic exchange `rabbitmq.status_exchange`, routing key `status.<connection_name>`.

It has its own robust aio-pika connection, apart from the publisher's: a publisher blocked by the broker's flow
control must not silence the heartbeat, and the heartbeat must never slow the feed. Heartbeats are transient and
expire after HEARTBEATS_MISSED_BEFORE_DOWN intervals, so a queue never hands out a stale one as news. A broker
outage is reported once (WARNING) and its end once (INFO); aio-pika redials meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar

import aio_pika
import orjson
from aio_pika.abc import AbstractRobustChannel, AbstractRobustExchange
from aio_pika.exceptions import AMQPConnectionError, ChannelInvalidStateError, ChannelPreconditionFailed

from models.status import HEARTBEATS_MISSED_BEFORE_DOWN, CollectorStatus, status_key
from publishers.aio_pika_seams import FailoverRobustConnection
from publishers.broker_connection import robust_connection
from publishers.rabbitmq_publisher import AIORMQ_OUTAGE_REPORTS

log = logging.getLogger("status")

REDIAL_SECONDS = 2.0
"""aio-pika's pause between dials while the broker is away."""
MIN_ATTEMPT_SECONDS = 2.0
MAX_ATTEMPT_SECONDS = 10.0
"""One heartbeat waits this long at most (within the bounds, one interval) for the connection and the confirm."""
CLOSE_TIMEOUT_SECONDS = 2.0
CONNECTION_LOST = (AMQPConnectionError, ChannelInvalidStateError, ConnectionError)
"""What a publish raises when the connection went away under it (a broker restart, a network cut)."""

AIO_PIKA_REDIAL_REPORTS = ("Connection attempt to", "Connection to ")
"""aio-pika's WARNING per failed dial and INFO per lost connection (robust_connection)."""

_OWN_CONNECTION: ContextVar[StatusHeartbeat | None] = ContextVar("status_heartbeat_connection", default=None)
"""Set in the heartbeat's task; aio-pika's and aiormq's tasks for its connection inherit it."""


def _not_our_redial_report(record: logging.LogRecord) -> bool:
    """aio-pika and aiormq log every failed dial (every REDIAL_SECONDS while the broker is away) and every lost
    connection; for its own connection the heartbeat reports an outage once, itself, naming the last dial's error.
    Every other connection in the process keeps those reports."""
    heartbeat = _OWN_CONNECTION.get()
    message = str(record.msg)
    if heartbeat is None or not message.startswith((*AIORMQ_OUTAGE_REPORTS, *AIO_PIKA_REDIAL_REPORTS)):
        return True
    if message.startswith("Connection attempt to"):  # args: (connection, error, reconnect_interval)
        args = record.args if isinstance(record.args, tuple) else ()
        heartbeat.last_dial_failure = str(args[1]) if len(args) > 1 else record.getMessage()
    return False


logging.getLogger("aiormq.connection").addFilter(_not_our_redial_report)
logging.getLogger("aio_pika.robust_connection").addFilter(_not_our_redial_report)


class StatusHeartbeat:
    """Publishes `build_status()` every interval_seconds, first at once; never raises into the collector."""

    def __init__(
        self,
        urls: str | Sequence[str],
        exchange: str,
        interval_seconds: float,
        collector_name: str,
        build_status: Callable[[], CollectorStatus],
    ) -> None:
        """`urls`: one broker address, or a cluster's nodes in failover order. `collector_name` is
        rabbitmq.connection_name: it names the routing key and the AMQP connection."""
        self._urls = urls
        self._exchange_name = exchange
        self._interval = interval_seconds
        self._attempt_seconds = min(max(interval_seconds, MIN_ATTEMPT_SECONDS), MAX_ATTEMPT_SECONDS)
        self._connection_name = f"{collector_name} status"
        self.routing_key = status_key(collector_name)
        self._build_status = build_status
        self._connection: FailoverRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._published_any = False
        self.last_dial_failure: str | None = None
        """aio-pika's words about the latest failed dial: the reason an outage report gives."""
        self.sent = 0
        """Heartbeats the broker confirmed."""

    async def start(self) -> None:
        """Returns at once; the first heartbeat goes out as soon as the broker answers."""
        self._task = asyncio.create_task(self._run(), name="status-heartbeat")

    @property
    def active(self) -> bool:
        """False once it gave up (the exchange is unusable) or was closed."""
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), timeout=CLOSE_TIMEOUT_SECONDS)

    async def _run(self) -> None:
        _OWN_CONNECTION.set(self)  # before the connection starts its tasks, so they inherit it
        self._connection = robust_connection(
            self._urls, self._connection_name, fail_fast=False, reconnect_interval=REDIAL_SECONDS
        )
        connecting = asyncio.ensure_future(self._connection.connect())
        loop = asyncio.get_running_loop()
        try:
            due = loop.time()
            while await self._beat(connecting):
                due = max(due + self._interval, loop.time())
                await asyncio.sleep(due - loop.time())
        finally:
            connecting.cancel()
        await self._connection.close()

    async def _beat(self, connecting: asyncio.Future[None]) -> bool:
        """Publish one heartbeat; False once the exchange turned out unusable (then there are no more)."""
        try:
            async with asyncio.timeout(self._attempt_seconds):
                await asyncio.shield(connecting)
                exchange = await self._declared_exchange()
                status = self._build_status()
                await exchange.publish(
                    aio_pika.Message(
                        orjson.dumps(status.model_dump()),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                        expiration=HEARTBEATS_MISSED_BEFORE_DOWN * self._interval,
                    ),
                    routing_key=self.routing_key,
                    mandatory=False,
                )
        except ChannelPreconditionFailed as error:
            log.error(
                "RabbitMQ exchange '%s' (rabbitmq.status_exchange) exists with other settings than the durable topic "
                "exchange the status heartbeat declares (%s); the collector runs on WITHOUT status heartbeats. "
                "Delete that exchange or set rabbitmq.status_exchange to another name.",
                self._exchange_name, error,
            )
            return False
        except Exception as error:
            self._failed(error)
        else:
            self._published()
        return True

    async def _declared_exchange(self) -> AbstractRobustExchange:
        """Declared once; the robust channel declares it again after each reconnect."""
        if self._exchange is None:
            assert self._connection is not None
            if self._channel is None:
                self._channel = await self._connection.channel()
            self._exchange = await self._channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self._exchange

    def _published(self) -> None:
        self.sent += 1
        if self._failing_since is not None:
            log.info(
                "status heartbeats published again after %.1f s (exchange %s)",
                time.monotonic() - self._failing_since, self._exchange_name,
            )
            self._failing_since = None
        elif not self._published_any:
            log.info(
                "status heartbeat every %g s on exchange %s, routing key %s",
                self._interval, self._exchange_name, self.routing_key,
            )
        self._published_any = True

    def _failed(self, error: Exception) -> None:
        """One WARNING per outage; the heartbeats that fail during it only at DEBUG."""
        reason = self._reason(error)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "status heartbeat not published to exchange %s (%s); the collector runs on, heartbeats resume "
                "when RabbitMQ takes them again", self._exchange_name, reason,
            )
        else:
            log.debug("status heartbeat still not published: %s", reason)

    def _reason(self, error: Exception) -> str:
        if isinstance(error, TimeoutError):
            reason = f"RabbitMQ at {self._node()} did not take it within {self._attempt_seconds:g} s"
            if self.last_dial_failure is not None and not self._is_connected():
                reason += f"; last dial: {self.last_dial_failure}"
            return reason
        if isinstance(error, CONNECTION_LOST):
            return f"connection to RabbitMQ at {self._node()} lost ({type(error).__name__})"
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

    def _node(self) -> str:
        """The address dialed last, password masked (aio-pika's str of a connection)."""
        return str(self._connection) if self._connection is not None else "?"

    def _is_connected(self) -> bool:
        return self._connection is not None and self._connection.connected.is_set()
