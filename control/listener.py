"""Reads control requests from a durable queue and answers each one.

It has its own connection, apart from the publisher's: a publisher blocked by the broker's flow
control must not starve the control plane. One request at a time (prefetch 1), in arrival order,
acknowledged only after its reply is sent. A request that makes the handler fail is still answered
and acknowledged, so a poison message is never redelivered forever.

Replies go to the topic exchange `futures_collector_responses` under `control.response.<command>`,
and also to the request's `reply_to` queue when it names one (the usual RPC shape). Each reply names the
collector that sent it, since a command sent to the broadcast exchange (every collector's queue is bound to
it) gets one reply per collector.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from control.protocol import ControlError, Reply, parse_request
from control.service import ControlService
from publishers.broker_connection import connect_robust
from publishers.durable_queues import QueueType, declare_durable_queue

log = logging.getLogger("control")


class ControlListener:
    def __init__(
        self,
        urls: str | Sequence[str],
        queue: str,
        responses_exchange: str,
        service: ControlService,
        max_message_bytes: int,
        collector_name: str = "futures-scan",
        broadcast_exchange: str | None = None,
        queue_type: QueueType = "classic",
    ) -> None:
        """`urls`: one broker address, or a cluster's nodes in failover order. `collector_name` is
        rabbitmq.connection_name; the queue is also bound to `broadcast_exchange` (fanout). `queue_type`:
        rabbitmq.queue_type."""
        self._urls = urls
        self._queue_type: QueueType = queue_type
        self._queue_name = queue
        self._broadcast_name = broadcast_exchange
        self._collector_name = collector_name
        self._responses_name = responses_exchange
        self._service = service
        self._max_bytes = max_message_bytes
        self._connection_name = f"{collector_name} control"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._responses: AbstractExchange | None = None

    async def start(self) -> None:
        """Listening once it returns; raises QueueSettingsChanged when the queue exists with another type (which
        no retry can fix)."""
        self._connection = await connect_robust(self._urls, self._connection_name)
        self._connection.reconnect_callbacks.add(self._on_reconnected)
        try:
            await self._subscribe(self._connection)
        except BaseException:
            await self._connection.close()
            raise
        log.info("listening for control commands on queue %s%s", self._queue_name,
                 f" and exchange {self._broadcast_name} (to all collectors)" if self._broadcast_name else "")

    async def _subscribe(self, connection: AbstractRobustConnection) -> None:
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=1)
        self._responses = await self._channel.declare_exchange(
            self._responses_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await declare_durable_queue(self._channel, self._queue_name, self._queue_type)
        if self._broadcast_name is not None:
            broadcast = await self._channel.declare_exchange(
                self._broadcast_name, aio_pika.ExchangeType.FANOUT, durable=True
            )
            await queue.bind(broadcast)
        await queue.consume(self._on_message)

    def _on_reconnected(self, _connection: AbstractRobustConnection) -> None:
        log.info("reconnected to RabbitMQ; listening for control commands on queue %s again", self._queue_name)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        reply = await self._handle(message)
        reply.collector = self._collector_name
        try:
            await self._send(reply, message)
        except Exception as error:
            # Most likely the broker went away: the request comes back once and is answered then.
            # A second failure drops it, so no request can circle forever.
            retry = not message.redelivered
            log.warning("could not send the %s reply (%s); %s", reply.routing_key(), error,
                        "the request will be redelivered" if retry else "dropping the request")
            with contextlib.suppress(Exception):
                await message.nack(requeue=retry)
            return
        await message.ack()
        log.info(
            "%s (%s): %s in %.1f ms", reply.command or "?", reply.correlation_id,
            "ok" if reply.success else f"{reply.error}: {reply.message}", (time.perf_counter() - started) * 1000,
        )

    async def _handle(self, message: AbstractIncomingMessage) -> Reply:
        correlation_id = _correlation_id(message, self._max_bytes)
        try:
            request = parse_request(message.body, self._max_bytes)
        except ControlError as error:
            log.warning(
                "refused a control message (%s: %s): %.120r", error.code, error.message, message.body[:120]
            )
            return _reply(correlation_id, error.command, error=error)
        try:
            text, data = await self._service.execute(request)
        except ControlError as error:
            return _reply(request.correlation_id, request.command, error=error)
        except Exception:
            log.exception("%s failed", request.command)
            failure = ControlError("internal_error", f"{request.command} failed inside the collector; see its log")
            return _reply(request.correlation_id, request.command, error=failure)
        return _reply(request.correlation_id, request.command, text=text, data=data)

    async def _send(self, reply: Reply, request: AbstractIncomingMessage) -> None:
        assert self._channel is not None and self._responses is not None
        body = reply.to_json()
        await self._responses.publish(
            aio_pika.Message(body, content_type="application/json", correlation_id=reply.correlation_id),
            routing_key=reply.routing_key(),
        )
        if request.reply_to:
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    correlation_id=request.correlation_id or reply.correlation_id,
                ),
                routing_key=request.reply_to,
            )


def _correlation_id(message: AbstractIncomingMessage, max_bytes: int) -> str | None:
    """From the body when it has one, else the AMQP property: for replies to requests we can't parse."""
    with contextlib.suppress(Exception):
        if len(message.body) > max_bytes:
            raise ValueError("too large to look into")
        document = orjson.loads(message.body)
        value = document.get("correlation_id") if isinstance(document, dict) else None
        if isinstance(value, str) and 0 < len(value) <= 200:
            return value
    return message.correlation_id


def _reply(
    correlation_id: str | None,
    command: str | None,
    text: str = "",
    data: dict | None = None,
    error: ControlError | None = None,
) -> Reply:
    now = time.time_ns() // 1_000_000
    if error is not None:
        return Reply(
            correlation_id=correlation_id, success=False, command=command, message=error.message,
            error=error.code, timestamp=now,
        )
    return Reply(correlation_id=correlation_id, success=True, command=command, message=text, data=data, timestamp=now)
