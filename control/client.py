"""Ask a collector over its control queue and wait for its reply: the requesting side of control/listener.py.

One connection and one exclusive reply queue serve every request; replies are matched by correlation id,
so a long-lived caller (the monitor) can have several requests in flight. Given a cluster's nodes, a dial tries
each in turn, starting after the node dialed last; a connection lost is dialed again at the next request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import orjson
from aio_pika.exceptions import DeliveryError

from publishers.broker_addresses import AddressRing
from publishers.broker_connection import connect_first


class ControlUnreachable(Exception):
    """No control queue of that name: no collector is listening."""


class ControlTimeout(Exception):
    """The request was queued but no reply came in time."""


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
