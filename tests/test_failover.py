"""A collector on a RabbitMQ cluster (three nodes on this machine, started by this module) when the node it
publishes through stops: it fails over to the next node within seconds, and its control queue, a quorum queue,
answers the commands sent meanwhile. Three nodes, because a quorum queue needs a majority of its members: on two
nodes, one node's loss leaves the control queue without a leader until it returns (RabbitMQ holds the commands
sent meanwhile, answers none). Skipped only where the rabbitmq-server binary is missing."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest

from control.client import ControlClient, new_request
from models.config import AppConfig, ControlConfig, RabbitMQConfig
from publishers.durable_queues import QueueSettingsChanged, declare_durable_queue
from simulator.server import Simulator
from tests.helpers import Consumer, collector_config, delete_names, running
from tests.rabbit_cluster import Cluster, rabbit_cluster, server_binary

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(server_binary() is None, reason="no rabbitmq-server binary on this machine: no cluster"),
]

FAILOVER_SECONDS = 10.0
"""The issue's bound: publishing resumes on another node within this after the node in use stops."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with rabbit_cluster(size=3) as started:
        yield started


@pytest.fixture
async def names(cluster: Cluster) -> AsyncIterator[str]:
    """A prefix for this test's exchanges and queues, deleted afterwards (the cluster lives for the module)."""
    prefix = f"failover_test_{uuid.uuid4().hex[:8]}"
    yield prefix
    await delete_names(cluster.urls[-1], [prefix, f"{prefix}_responses", f"{prefix}_status"], [f"{prefix}_control"])


def cluster_config(simulator: Simulator, cluster: Cluster, prefix: str) -> AppConfig:
    config = collector_config(simulator, cluster.urls[0], prefix, status_interval_seconds=1)
    config.rabbitmq = RabbitMQConfig.model_validate({
        "urls": cluster.urls, "exchange": prefix, "queue_type": "quorum", "connection_name": prefix,
        "status_exchange": f"{prefix}_status",
    })
    config.control = ControlConfig(enabled=True, queue=f"{prefix}_control", responses_exchange=f"{prefix}_responses",
                                   state_file=None)
    return config


def publisher_log(caplog: pytest.LogCaptureFixture, level: int, text: str = "") -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "rabbitmq" and record.levelno == level and text in record.getMessage()]


def published_after(consumer: Consumer, moment_ms: int) -> list[str]:
    return [key for key, body, _ in consumer.messages if body.get("published_timestamp", 0) > moment_ms]


async def test_publishing_fails_over_to_the_next_node_and_commands_are_answered_meanwhile(
    simulator: Simulator, cluster: Cluster, names: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    node_a, node_b, _ = cluster.nodes
    config = cluster_config(simulator, cluster, names)
    market = Consumer(node_b.url, names)  # on node B: the collector publishes through A, the cluster routes
    heartbeats = Consumer(node_b.url, f"{names}_status", binding="status.#")
    await market.start()
    await heartbeats.start()
    client = ControlClient(cluster.urls, config.control.queue, connection_name=f"{names} client")
    stopped = False
    try:
        async with running(config) as app:
            assert await market.wait_until(lambda: len(market.messages) >= 10, timeout=30)
            (connected,) = publisher_log(caplog, logging.INFO, "connected to RabbitMQ at")
            assert f":{node_a.port}/" in connected, connected
            reply = await client.request(new_request("get_symbols"), wait_seconds=15)  # the client dials A
            assert reply["success"] and reply["data"]["symbols"] == config.symbols
            queues = await asyncio.to_thread(node_b.ctl, "list_queues", "--no-table-headers", "name", "type")
            assert f"{config.control.queue}\tquorum" in queues.splitlines(), queues

            await asyncio.to_thread(node_a.stop_app)
            stopped = True
            stopped_ms = time.time_ns() // 1_000_000
            assert await market.wait_until(lambda: len(published_after(market, stopped_ms)) >= 5,
                                           timeout=FAILOVER_SECONDS), "nothing published through node B after A stopped"
            assert app.publisher.stats.connected and app.publisher.stats.reconnects == 1
            restored = publisher_log(caplog, logging.INFO, "publishing restored")
            assert len(restored) == 1 and f":{node_b.port}/" in restored[0], restored
            outage_errors = publisher_log(caplog, logging.ERROR)
            assert len(outage_errors) == 1, outage_errors  # one per outage, not one per dial

            reply = await client.request(new_request("get_symbols"), wait_seconds=20)  # A is still down
            assert reply["success"] and reply["data"]["symbols"] == config.symbols
            assert await heartbeats.wait_until(
                lambda: any(body["sent_at"] > stopped_ms for _, body, _ in heartbeats.messages), timeout=15
            ), "no status heartbeat after node A stopped"
    finally:
        await client.close()
        await heartbeats.close()
        await market.close()
        if stopped:
            await asyncio.to_thread(node_a.start_app)


async def test_a_queue_declared_with_the_other_type_is_one_clear_error(cluster: Cluster, names: str) -> None:
    queue = f"{names}_control"
    connection = await aio_pika.connect(cluster.urls[0])
    try:
        await declare_durable_queue(await connection.channel(), queue, "classic")
        with pytest.raises(QueueSettingsChanged) as raised:
            await declare_durable_queue(await connection.channel(), queue, "quorum")
        assert str(raised.value) == (
            f"RabbitMQ keeps the durable queue '{queue}' as a classic queue, but rabbitmq.queue_type is 'quorum' and "
            f"a queue's type cannot change: delete it (rabbitmqctl delete_queue {queue}, or the management UI; the "
            "messages in it go with it) and start again, or set rabbitmq.queue_type back to 'classic'"
        )
    finally:
        await connection.close()
