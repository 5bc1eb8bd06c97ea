"""The optional market-data log: a RabbitMQ stream bound to the market-data exchange, declared by the collector.

Market data is transient on purpose (latest wins), so a consumer that was down has lost it. With
`rabbitmq.log_stream` set, the collector declares a durable stream (`x-queue-type: stream`) bound to
`rabbitmq.exchange` with each of its bindings: the broker then appends a copy of every message to disk and keeps it
for `max_age` / up to `max_bytes`, and scripts/replay.py reads it back from a point in time. The stream is declared
once; it and its bindings are durable, so they outlive the collector and its reconnects.

The log is optional: whatever goes wrong with it (a stream of that name with other arguments, a broker that refuses),
the collector logs it and keeps publishing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq

from models.config import LogStreamConfig, RabbitMQConfig
from publishers.aiormq_seams import broker_reply_text
from publishers.broker_addresses import AddressRing

log = logging.getLogger("log_stream")

RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Pauses between attempts while the broker is away; the last repeats."""
DECLARE_TIMEOUT_SECONDS = 10.0

ARGUMENT_SETTINGS = {
    "x-max-age": "max_age",
    "x-max-length-bytes": "max_bytes",
    "x-stream-max-segment-size-bytes": "max_segment_bytes",
}
"""The stream argument each rabbitmq.log_stream setting becomes; RabbitMQ names the first that differs."""
_DIFFERING_ARGUMENT = re.compile(r"inequivalent arg '([^']+)'")


class LogStreamMismatch(Exception):
    """A queue of the stream's name exists with other arguments: redeclaring cannot help, a person must choose."""


def stream_arguments(settings: LogStreamConfig) -> dict[str, Any]:
    """The queue arguments that make the stream, from the config."""
    arguments: dict[str, Any] = {
        "x-queue-type": "stream",
        "x-max-age": settings.max_age,
        "x-max-length-bytes": settings.max_bytes,
    }
    if settings.max_segment_bytes is not None:
        arguments["x-stream-max-segment-size-bytes"] = settings.max_segment_bytes
    return arguments


def mismatch_message(settings: LogStreamConfig, broker_reply: str) -> str:
    """One error naming the setting that differs and the ways out."""
    differing = _DIFFERING_ARGUMENT.search(broker_reply)
    argument = differing.group(1) if differing else ""
    setting = ARGUMENT_SETTINGS.get(argument)
    if setting is not None:
        what = f"rabbitmq.log_stream.{setting} differs from the existing queue's {argument}"
        fix = f"set rabbitmq.log_stream.{setting} to the existing value, or "
    else:
        what = f"a queue named '{settings.name}' exists that is not this stream ({argument or 'its settings differ'})"
        fix = ""
    return (
        f"market-data log not declared: {what} (RabbitMQ: {broker_reply}). To fix: {fix}delete that queue to have it "
        f"redeclared (rabbitmqctl delete_queue {settings.name}; its log is lost), or set rabbitmq.log_stream.name to "
        "another name. Publishing market data goes on without it"
    )


async def declare_log_stream(url: str, exchange: str, settings: LogStreamConfig,
                             connection_name: str = "futures-scan log stream") -> None:
    """Declare the durable stream and bind it to `exchange` (which must exist) with each binding.

    Raises LogStreamMismatch when a queue of that name exists with other arguments; connection and other broker
    errors propagate (the caller retries)."""
    connection = await asyncio.wait_for(
        aiormq.connect(url, client_properties={"connection_name": connection_name}), DECLARE_TIMEOUT_SECONDS
    )
    try:
        async with asyncio.timeout(DECLARE_TIMEOUT_SECONDS):
            channel = await connection.channel()
            try:
                await channel.queue_declare(settings.name, durable=True, arguments=stream_arguments(settings))
            except aiormq.exceptions.ChannelPreconditionFailed as error:
                raise LogStreamMismatch(mismatch_message(settings, broker_reply_text(error))) from None
            for binding in settings.bindings:
                await channel.queue_bind(settings.name, exchange, routing_key=binding)
    finally:
        await connection.close()


async def keep_log_stream(rabbitmq: RabbitMQConfig, publisher_connected: Callable[[], Awaitable[None]]) -> None:
    """Declare the stream once the publisher is connected (it has declared the exchange the stream binds to),
    retrying while the broker is away, on each node of rabbitmq.urls in turn; one ERROR and no more attempts on a
    mismatch."""
    settings = rabbitmq.log_stream
    assert settings is not None
    nodes = AddressRing(rabbitmq.amqp_urls())
    attempt = 0
    while True:
        await publisher_connected()
        try:
            await declare_log_stream(nodes.next(), rabbitmq.exchange, settings,
                                     f"{rabbitmq.connection_name} log stream")
        except LogStreamMismatch as error:
            log.error("%s", error)
            return
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as error:
            delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            reason = broker_reply_text(error) if isinstance(error, aiormq.exceptions.AMQPError) else repr(error)
            (log.warning if attempt == 0 else log.debug)(
                "market-data log '%s' not declared yet (%s); retrying in %.0f s", settings.name, reason, delay
            )
            attempt += 1
            await asyncio.sleep(delay)
            continue
        log.info(
            "market-data log: stream '%s' (max age %s, max %s bytes%s) bound to exchange '%s' with %s",
            settings.name, settings.max_age, f"{settings.max_bytes:,}",
            f", segments of {settings.max_segment_bytes:,} bytes" if settings.max_segment_bytes else "",
            rabbitmq.exchange, ", ".join(settings.bindings),
        )
        return


def log_stream_tasks(rabbitmq: RabbitMQConfig,
                     publisher_connected: Callable[[], Awaitable[None]]) -> list[asyncio.Task[None]]:
    """The background declaration when rabbitmq.log_stream is set (none otherwise), for the collector's tasks."""
    if rabbitmq.log_stream is None:
        return []
    return [asyncio.create_task(keep_log_stream(rabbitmq, publisher_connected), name="log-stream")]
