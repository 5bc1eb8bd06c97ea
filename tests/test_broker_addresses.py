"""Several broker addresses whose first one is dead (a cluster node down at start): every kind of connection the
product opens goes on to the next address at once, within one dial, instead of waiting out a backoff."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import pytest

from publishers.broker_addresses import AddressRing
from publishers.broker_connection import connect_first, connect_robust
from tests.broker import Broker
from tests.helpers import Consumer
from tests.publisher_helpers import Update, start_publisher
from tests.rabbit_cluster import free_port

pytestmark = pytest.mark.timeout(60)

BACKOFF_SECONDS = 30.0
"""Longer than any wait below: a connection that waited for a retry instead of trying the next address fails."""


def dead_address() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


def test_the_ring_goes_round_starting_after_the_address_taken_last() -> None:
    ring = AddressRing(["a", "b", "c"])
    assert ring.next() == "a"
    assert list(ring.round()) == ["b", "c", "a"]
    taken = ring.round()
    assert next(taken) == "b"  # the caller stops there: that node answered
    assert list(ring.round()) == ["c", "a", "b"]
    with pytest.raises(ValueError, match="no RabbitMQ address"):
        AddressRing([])


async def test_the_publisher_takes_the_next_address_in_the_same_dial(
    broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = await start_publisher([dead_address(), broker.url], exchange_name, retry_delays=[BACKOFF_SECONDS])
    try:
        await asyncio.wait_for(publisher.wait_connected(), timeout=15)
        publisher.submit(Update("futures.test.X", 1))
        assert await consumer.wait_until(lambda: "futures.test.X" in consumer.latest)
    finally:
        await publisher.close()
    assert [r.getMessage() for r in caplog.records if r.name == "rabbitmq" and r.levelno >= logging.ERROR] == []


async def test_a_robust_connection_takes_the_next_address_in_the_same_dial(broker: Broker) -> None:
    connection = await asyncio.wait_for(
        connect_robust([dead_address(), broker.url], "futures-scan test robust", reconnect_interval=BACKOFF_SECONDS),
        timeout=15,
    )
    try:
        assert connection.url.port == aio_pika.connection.make_url(broker.url).port
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
    finally:
        await connection.close()


async def test_a_plain_connection_raises_the_last_error_when_no_address_answers() -> None:
    with pytest.raises(ConnectionError):
        await connect_first(AddressRing([dead_address(), dead_address()]), "futures-scan test plain")


async def test_a_plain_connection_takes_the_first_address_that_answers(broker: Broker) -> None:
    addresses = AddressRing([dead_address(), broker.url])
    for _ in range(2):  # the second round starts on the dead address again, and goes on to the live one
        connection = await asyncio.wait_for(connect_first(addresses, "futures-scan test plain"), timeout=15)
        await connection.close()
