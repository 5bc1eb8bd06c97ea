"""Ask a collector over its control queue and wait for its reply: the requesting side of control/listener.py.

One connection and one exclusive reply queue serve every request; replies are matched by correlation id,
so a long-lived caller (the monitor) can have several requests in flight. Given a cluster's nodes, a dial tries
each in turn, starting after the node dialed last; a connection lost is dialed again at the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from aio_pika.exceptions import ChannelNotFoundEntity, DeliveryError

from models.status import CollectorStatus
from publishers.broker_addresses import AddressRing
from publishers.broker_connection import connect_first


class ControlUnreachable(Exception):
    """No control queue of that name: no collector is listening."""


class ControlTimeout(Exception):
    """The request was queued but no reply came in time."""


ALL_POLL_SECONDS = 0.05
DEFAULT_HEARTBEAT_SECONDS = 5.0
"""How long to listen for heartbeats before any arrived: collection.status_interval_seconds' default."""
HEARTBEAT_WINDOW_MARGIN = 1.5
"""Every live collector beats within one interval; the margin covers a late one."""


@dataclass
class AllReplies:
    """Replies to one command sent to all collectors, keyed by collector, and who is alive to send one."""

    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: dict[str, float] = field(default_factory=dict)
    """Collectors whose status heartbeat arrived, with their heartbeat interval in seconds."""
    unreadable: int = 0

    def replied(self, body: bytes) -> None:
        try:
            reply = orjson.loads(body)
            name = reply.get("collector") or f"unnamed-{len(self.replies) + 1}"
        except (orjson.JSONDecodeError, AttributeError):
            self.unreadable += 1
            return
        self.replies[name] = reply

    async def on_heartbeat(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        with contextlib.suppress(ValueError):
            status = CollectorStatus.model_validate_json(message.body)
            self.live[status.connection_name] = status.interval_seconds

    @property
    def missing(self) -> list[str]:
        """Live collectors that have not answered."""
        return sorted(set(self.live) - set(self.replies))

    def complete(self, elapsed: float, expect: int | None) -> bool:
        if expect is not None:
            return len(self.replies) >= expect
        window = max(self.live.values(), default=DEFAULT_HEARTBEAT_SECONDS) * HEARTBEAT_WINDOW_MARGIN
        return elapsed >= window and bool(self.replies) and not self.missing


def new_request(command: str, **fields: Any) -> dict[str, Any]:
    return {
        "command": command,
        "correlation_id": str(uuid.uuid4()),
        "timestamp": time.time_ns() // 1_000_000,
        **{name: value for name, value in fields.items() if value is not None},
    }


class ControlClient:
    def __init__(
        self, urls: str | Sequence[str], queue: str, connection_name: str = "futures-scan control client"
    ) -> None:
        """`urls`: one broker address, or a cluster's nodes in failover order."""
        self.addresses = AddressRing(urls)
        self.queue = queue
        self.connection_name = connection_name
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._replies: aio_pika.abc.AbstractQueue | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._gathering: dict[str, AllReplies] = {}
        self._lock = asyncio.Lock()

    async def request(self, request: dict[str, Any], wait_seconds: float) -> dict[str, Any]:
        """The collector's reply (a control/protocol.py Reply as JSON), success or error alike."""
        channel, replies = await self._ready()
        correlation_id = request["correlation_id"]
        answer = self._waiting[correlation_id] = asyncio.get_running_loop().create_future()
        try:
            try:
                await channel.default_exchange.publish(
                    aio_pika.Message(orjson.dumps(request), content_type="application/json",
                                     correlation_id=correlation_id, reply_to=replies.name),
                    routing_key=self.queue,
                    mandatory=True,
                )
            except DeliveryError:
                raise ControlUnreachable(f"no queue {self.queue!r}: is a collector running?") from None
            try:
                return await asyncio.wait_for(answer, wait_seconds)
            except TimeoutError:
                raise ControlTimeout(f"no reply within {wait_seconds:g} s on queue {self.queue!r}") from None
        finally:
            self._waiting.pop(correlation_id, None)

    async def request_all(
        self, request: dict[str, Any], broadcast_exchange: str, status_exchange: str, wait_seconds: float,
        expect: int | None = None,
    ) -> AllReplies:
        """Send to every collector at once (their queues are bound to the fanout `broadcast_exchange`) and gather
        the replies: until every live collector answered (live: its status heartbeat arrived on `status_exchange`
        within one heartbeat interval), until `expect` replies when given, or until `wait_seconds`."""
        channel, replies = await self._ready()
        try:
            exchange = await channel.get_exchange(broadcast_exchange, ensure=True)
        except ChannelNotFoundEntity:
            await self.close()
            raise ControlUnreachable(f"no exchange {broadcast_exchange!r}: no collector has listened yet") from None
        gathered = AllReplies()
        # Declared as the collectors' heartbeats declare it, so listening works before any collector started.
        status = await channel.declare_exchange(status_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        heartbeats = await channel.declare_queue(exclusive=True, auto_delete=True)
        await heartbeats.bind(status, routing_key="status.#")
        listening = await heartbeats.consume(gathered.on_heartbeat, no_ack=True)
        correlation_id = request["correlation_id"]
        self._gathering[correlation_id] = gathered
        started = time.monotonic()
        try:
            try:
                await exchange.publish(
                    aio_pika.Message(orjson.dumps(request), content_type="application/json",
                                     correlation_id=correlation_id, reply_to=replies.name),
                    routing_key="",
                    mandatory=True,
                )
            except DeliveryError:
                raise ControlUnreachable(f"no control queue is bound to {broadcast_exchange!r}: no collector") from None
            while time.monotonic() - started < wait_seconds:
                if gathered.complete(time.monotonic() - started, expect):
                    break
                await asyncio.sleep(ALL_POLL_SECONDS)
        finally:
            self._gathering.pop(correlation_id, None)
            with contextlib.suppress(Exception):  # the broker would otherwise cancel the consumer, loudly
                await heartbeats.cancel(listening)
                await heartbeats.delete(if_unused=False, if_empty=False)
        return gathered

    async def _ready(self) -> tuple[aio_pika.abc.AbstractChannel, aio_pika.abc.AbstractQueue]:
        async with self._lock:
            if self._channel is None or self._channel.is_closed or self._replies is None:
                await self.close()
                self._connection = await connect_first(self.addresses, self.connection_name)
                self._channel = await self._connection.channel(on_return_raises=True)
                self._replies = await self._channel.declare_queue(exclusive=True, auto_delete=True)
                await self._replies.consume(self._on_reply, no_ack=True)
            return self._channel, self._replies

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        gathered = self._gathering.get(message.correlation_id or "")
        if gathered is not None:
            gathered.replied(message.body)
            return
        answer = self._waiting.get(message.correlation_id or "")
        if answer is None or answer.done():
            return
        try:
            answer.set_result(orjson.loads(message.body))
        except orjson.JSONDecodeError as error:
            answer.set_exception(ValueError(f"the collector's reply is not JSON: {error}"))

    async def close(self) -> None:
        connection, self._connection, self._channel, self._replies = self._connection, None, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()
