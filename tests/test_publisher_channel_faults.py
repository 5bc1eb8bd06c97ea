"""The broker closes only the publishing channel (exchange deleted, write permission revoked): the publisher
says why once, reopens a channel on the same connection and resumes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import aio_pika
import pytest

from tests.broker import Broker
from tests.helpers import Consumer, eventually
from tests.publisher_helpers import ExistingExchangeConsumer, Update, feeding, start_publisher

pytestmark = pytest.mark.timeout(60)


def records(caplog: pytest.LogCaptureFixture, level: int, name: str | None = None) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno == level and name in (None, r.name)
    ]


async def test_exchange_deleted_mid_stream_is_declared_again_on_the_same_connection(
    broker: Broker, exchange_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="rabbitmq")  # a torn-down connection would show there
    publisher = await start_publisher(broker.url, exchange_name)
    first = ExistingExchangeConsumer(broker.url, exchange_name, binding="#")
    again = ExistingExchangeConsumer(broker.url, exchange_name, binding="#")
    try:
        await publisher.wait_connected()
        async with feeding(publisher, interval=0):
            await first.start()
            assert await first.wait_until(lambda: len(first.messages) > 0, timeout=10)
            connection = await aio_pika.connect(broker.url)
            async with connection:
                channel = await connection.channel()
                await channel.exchange_delete(exchange_name)
            deleted = time.monotonic()

            def restored() -> bool:
                return any("publishing restored" in message for message in records(caplog, logging.INFO, "rabbitmq"))

            assert await eventually(restored, timeout=10), records(caplog, logging.ERROR)
            await again.start()  # only binds if the publisher declared the exchange again
            within = max(0.0, deleted + 10 - time.monotonic())
            assert await again.wait_until(lambda: len(again.messages) > 0, timeout=within)
    finally:
        await publisher.close()
        await first.close()
        await again.close()
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert f"NOT_FOUND - no exchange '{exchange_name}' in vhost '/'" in errors[0]
    assert not [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert publisher.stats.connected and publisher.stats.reconnects == 1


@contextlib.asynccontextmanager
async def own_vhost_and_user(broker: Broker) -> AsyncIterator[tuple[str, str, str]]:
    """(url, vhost, user) of a vhost and user created for this test alone, deleted afterwards: revoking
    permissions must never touch `guest` or the default vhost that other tests use."""
    assert broker.rabbitmqctl is not None
    ctl = broker.rabbitmqctl
    name = f"futures_scan_test_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    await asyncio.gather(
        asyncio.to_thread(ctl, ["add_vhost", name]), asyncio.to_thread(ctl, ["add_user", name, password])
    )
    try:
        await asyncio.to_thread(ctl, ["set_permissions", "-p", name, name, ".*", ".*", ".*"])
        parts = urlsplit(broker.url)
        yield f"amqp://{name}:{password}@{parts.hostname}:{parts.port or 5672}/{quote(name, safe='')}", name, name
    finally:
        await asyncio.gather(
            asyncio.to_thread(ctl, ["delete_vhost", name]), asyncio.to_thread(ctl, ["delete_user", name]),
            return_exceptions=True,
        )


async def test_write_permission_revoked_then_restored_resumes_without_log_spam(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """RabbitMQ caches a channel's vhost permission checks (a revoked write permission reaches new channels
    only) but checks topic permissions per routing key beyond a small cache: with many keys, revoking both
    makes the broker refuse the live channel at once (403), and every reopened one until restored."""
    if broker.rabbitmqctl is None:
        pytest.skip("no rabbitmqctl for this broker: cannot create a vhost and user of this test's own")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="rabbitmq")  # its retries, to count them
    ctl = broker.rabbitmqctl
    exchange = "futures_data"
    async with own_vhost_and_user(broker) as (url, vhost, user):
        publisher = await start_publisher(url, exchange, retry_delays=[0.2, 0.5])
        consumer = Consumer(url, exchange, binding="#")
        try:
            await publisher.wait_connected()
            await consumer.start()
            async with feeding(publisher, keys=50):
                assert await consumer.wait_until(lambda: len(consumer.messages) > 0, timeout=10)
                await asyncio.gather(
                    asyncio.to_thread(ctl, ["set_permissions", "-p", vhost, user, ".*", "", ".*"]),
                    asyncio.to_thread(ctl, ["set_topic_permissions", "-p", vhost, user, exchange, "^$", "^$"]),
                )
                assert await eventually(lambda: not publisher.stats.connected), "the refusal went unnoticed"

                def retries() -> int:
                    return sum("still unavailable" in m for m in records(caplog, logging.DEBUG, "rabbitmq"))

                assert await eventually(lambda: retries() >= 3), "no retry while refused"
                assert not publisher.stats.connected
                await asyncio.gather(
                    asyncio.to_thread(ctl, ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"]),
                    asyncio.to_thread(ctl, ["clear_topic_permissions", "-p", vhost, user]),
                )
                restored = time.time()
                assert await consumer.wait_until(lambda: len(consumer.since(restored)) > 0, timeout=10)
                assert await eventually(lambda: publisher.stats.connected)
        finally:
            await publisher.close()
            await consumer.close()
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert errors[0].startswith("rabbitmq: ") and "ACCESS_REFUSED" in errors[0], errors
    assert records(caplog, logging.WARNING) == []
    assert any("publishing restored" in m for m in records(caplog, logging.INFO, "rabbitmq"))


def methods_by_channel(data: bytes) -> list[tuple[int, tuple[int, int] | None]]:
    """(channel, (class, method) of a method frame, else None) for each AMQP frame in `data`."""
    found = []
    offset = 0
    while offset + 7 <= len(data):
        frame_type, channel, size = struct.unpack_from(">BHI", data, offset)
        is_method = frame_type == 1 and size >= 4
        found.append((channel, struct.unpack_from(">HH", data, offset + 7) if is_method else None))
        offset += size + 8
    return found


CHANNEL_OPEN, CHANNEL_CLOSE_OK = (20, 10), (20, 41)


async def test_an_update_arriving_while_the_broker_closes_the_channel_is_not_written_on_it(
    broker: Broker, exchange_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aiormq answers the broker's Channel.Close with CloseOk a few loop turns before it marks the channel
    closed. A publish written on that channel after the CloseOk makes the broker close the whole connection
    (`CHANNEL_ERROR - expected 'channel.open'`). White-box: watch the publisher's socket and flush an update
    right after the CloseOk, as a burst of venue frames would."""
    caplog.set_level(logging.INFO)
    publisher = await start_publisher(broker.url, exchange_name)
    written_after_close_ok: list[tuple[int, tuple[int, int] | None]] = []
    try:
        await publisher.wait_connected()
        writer = publisher._writer
        assert writer is not None
        write = writer.write
        closed_channels: set[int] = set()

        def watching_write(data: bytes | bytearray | memoryview) -> None:
            frames = methods_by_channel(bytes(data))
            write(data)
            for channel, method in frames:
                if method == CHANNEL_CLOSE_OK:
                    closed_channels.add(channel)
                    publisher.submit(Update("futures.test.RACE", 1))
                    publisher._flush()
                elif method == CHANNEL_OPEN:
                    closed_channels.discard(channel)
                elif channel in closed_channels:
                    written_after_close_ok.append((channel, method))

        writer.write = watching_write  # type: ignore[method-assign]
        publisher.submit(Update("futures.test.BEFORE", 0))
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(exchange_name)
        publisher.submit(Update("futures.test.AFTER", 0))  # the publish the broker refuses

        def restored() -> bool:
            return any("publishing restored" in message for message in records(caplog, logging.INFO, "rabbitmq"))

        assert await eventually(restored, timeout=10), records(caplog, logging.ERROR)
    finally:
        await publisher.close()
    assert written_after_close_ok == []
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1 and "NOT_FOUND" in errors[0], errors
