"""Talking to a collector's control queue the way a user's program would."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aio_pika
import orjson

from models.config import AppConfig


def enable_control(config: AppConfig, queue: str, responses: str, state_file: str | None) -> AppConfig:
    """Control on this test's own names; the broadcast exchange is `<queue>_all` (tests/conftest.py removes it)."""
    config.control.enabled = True
    config.control.queue = queue
    config.control.broadcast_exchange = f"{queue}_all"
    config.control.responses_exchange = responses
    config.control.state_file = state_file
    return config


class ControlPeer:
    """Sends requests to the control queue; collects every reply published on the responses exchange."""

    def __init__(self, url: str, queue: str, responses_exchange: str) -> None:
        self.url = url
        self.queue = queue
        self.responses_exchange = responses_exchange
        self.replies: list[tuple[str, dict[str, Any]]] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        self._channel = await self._connection.channel()
        exchange = await self._channel.declare_exchange(
            self.responses_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        replies = await self._channel.declare_queue(exclusive=True)
        await replies.bind(exchange, "control.response.#")
        await replies.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.replies.append((message.routing_key or "", orjson.loads(message.body)))

    async def send_raw(self, body: bytes, **properties: Any) -> None:
        assert self._channel is not None
        await self._channel.default_exchange.publish(aio_pika.Message(body, **properties), routing_key=self.queue)

    async def request(self, command: str, timeout: float = 10.0, **arguments: Any) -> dict[str, Any]:
        correlation_id = str(uuid.uuid4())
        body = {"command": command, "correlation_id": correlation_id, "timestamp": int(time.time()), **arguments}
        await self.send_raw(orjson.dumps(body))
        reply = await self.reply_for(correlation_id, timeout)
        assert reply is not None, f"no reply to {command} within {timeout} s"
        return reply

    async def reply_for(self, correlation_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, reply in self.replies:
                if reply.get("correlation_id") == correlation_id:
                    return reply
            await asyncio.sleep(0.02)
        return None

    async def wait_listening(self, timeout: float = 20.0) -> None:
        """The collector declares its queue when it starts listening; ask until it answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            correlation_id = str(uuid.uuid4())
            body = {"command": "get_symbols", "correlation_id": correlation_id}
            await self.send_raw(orjson.dumps(body))
            if await self.reply_for(correlation_id, 0.5) is not None:
                return
        raise AssertionError("the collector never answered on its control queue")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
