"""The collector's status heartbeat: what a monitor bound to `status.#` on the status exchange receives, and how
the heartbeat behaves when the broker goes away or the exchange is not what it declares."""

from __future__ import annotations

import errno
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from itertools import pairwise
from statistics import median
from urllib.parse import urlsplit

import aio_pika
import pytest

from models.status import CollectorStatus, status_key
from publishers.rabbitmq_publisher import PublisherStats
from publishers.status_heartbeat import StatusHeartbeat
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, collector_config, delete_names, eventually, running
from tests.tcp_proxy import TcpProxy
from utils.latency import LatencyWindow
from utils.statistics import Statistics

pytestmark = pytest.mark.timeout(90)

INTERVAL = 0.5


class HeartbeatConsumer(Consumer):
    """Keeps each heartbeat as the model, with the AMQP properties it came with."""

    def __init__(self, url: str, exchange: str) -> None:
        super().__init__(url, exchange, binding="status.#")
        self.heartbeats: list[tuple[str, CollectorStatus, aio_pika.abc.AbstractIncomingMessage, float]] = []

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        status = CollectorStatus.model_validate_json(message.body)
        self.heartbeats.append((message.routing_key or "", status, message, time.monotonic()))

    def statuses(self) -> list[CollectorStatus]:
        return [status for _, status, _, _ in self.heartbeats]


@pytest.fixture
async def status_exchange(broker: Broker, exchange_name: str) -> AsyncIterator[str]:
    name = f"{exchange_name}_status"
    yield name
    await delete_names(broker.url, [name])


@pytest.fixture
async def heartbeats(broker: Broker, status_exchange: str) -> AsyncIterator[HeartbeatConsumer]:
    consumer = HeartbeatConsumer(broker.url, status_exchange)
    await consumer.start()
    yield consumer
    await consumer.close()


def unique_name() -> str:
    return f"futures-scan-test-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def records(caplog: pytest.LogCaptureFixture, logger: str, level: int, containing: str = "") -> list[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.name == logger and r.levelno == level and containing in r.getMessage()
    ]


def amqp_library_reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    """aio-pika's and aiormq's own warnings and errors: the heartbeat reports its outages itself."""
    return [
        f"{r.name} {r.levelname}: {r.msg}" for r in caplog.records
        if r.name.startswith(("aio_pika", "aiormq")) and (r.levelno >= logging.WARNING or r.exc_info)
    ]


async def test_heartbeats_report_every_source_at_the_interval(
    simulator: Simulator, broker: Broker, exchange_name: str, status_exchange: str, heartbeats: HeartbeatConsumer
) -> None:
    name = unique_name()
    config = collector_config(simulator, broker.url, exchange_name, status_interval_seconds=INTERVAL)
    config.rabbitmq.status_exchange = status_exchange
    config.rabbitmq.connection_name = name

    def flowing_for(count: int) -> bool:
        """`count` heartbeats in a row with every source updating."""
        recent = heartbeats.statuses()[-count:]
        return len(recent) == count and all(
            source.updates > 0 for status in recent for source in status.sources.values()
        )

    started = time.monotonic()
    async with running(config):
        assert await eventually(lambda: len(heartbeats.heartbeats) >= 1, timeout=10)
        first_after = heartbeats.heartbeats[0][3] - started
        assert await eventually(lambda: flowing_for(8), timeout=30)

    assert first_after < 2 * INTERVAL + 1, f"the first heartbeat came {first_after:.1f} s after start"
    statuses = heartbeats.statuses()
    assert {key for key, _, _, _ in heartbeats.heartbeats} == {status_key(name)}
    for _, status, message, _ in heartbeats.heartbeats:
        assert status.connection_name == name
        assert status.interval_seconds == INTERVAL and status.stale_after_seconds == 3
        assert set(status.sources) == {"binance", "bybit"}
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
        assert message.expiration == 3 * INTERVAL  # a heartbeat left in a queue dies with its collector's silence

    sent_gaps = [(b.sent_at - a.sent_at) / 1000 for a, b in pairwise(statuses)]
    assert 0.8 * INTERVAL <= median(sent_gaps) <= 1.3 * INTERVAL, sent_gaps
    assert max(sent_gaps) < 3 * INTERVAL, sent_gaps
    arrived = [at for _, _, _, at in heartbeats.heartbeats]
    arrival_gaps = [b - a for a, b in pairwise(arrived)]
    assert 0.8 * INTERVAL <= median(arrival_gaps) <= 1.3 * INTERVAL, arrival_gaps

    first, last = statuses[0], statuses[-1]
    for source in ("binance", "bybit"):
        counts = [status.sources[source].updates for status in statuses]
        assert counts == sorted(counts) and counts[-1] > counts[0], (source, counts)
        latest = last.sources[source]
        assert latest.symbols == len(SYMBOLS)
        assert latest.frames > 0 and latest.errors == 0
        assert latest.messages_per_second > 0
        assert latest.last_update_age_seconds is not None and latest.last_update_age_seconds < 2
        assert latest.stale_symbols == []
        assert latest.streams_up and all(latest.streams_up.values()), latest.streams_up
        assert latest.receipt_minus_venue_ms.p50 is not None and latest.receipt_minus_venue_ms.p99 is not None
    assert last.publisher.connected and last.publisher.failed == 0
    assert last.publisher.published > first.publisher.published
    assert last.uptime_seconds > first.uptime_seconds
    publish_latency = last.publisher.receipt_to_publish_ms
    assert publish_latency.p50 is not None and publish_latency.p99 is not None
    assert 0 <= publish_latency.p50 <= publish_latency.p99 < 1000


async def test_a_silent_venue_shows_growing_age_and_stale_symbols(
    simulator: Simulator, broker: Broker, exchange_name: str, status_exchange: str, heartbeats: HeartbeatConsumer
) -> None:
    config = collector_config(
        simulator, broker.url, exchange_name, status_interval_seconds=INTERVAL, stale_after_seconds=1
    )
    config.rabbitmq.status_exchange = status_exchange
    config.rabbitmq.connection_name = unique_name()

    def stale_in_a_row(count: int) -> bool:
        recent = heartbeats.statuses()[-count:]
        return len(recent) == count and all(
            status.sources["binance"].stale_symbols == sorted(SYMBOLS) for status in recent
        )

    async with running(config):
        assert await eventually(
            lambda: bool(heartbeats.heartbeats)
            and all(source.updates > 0 for source in heartbeats.statuses()[-1].sources.values()),
            timeout=30,
        )
        await simulator.apply_fault("binance", "silent")
        silenced = len(heartbeats.heartbeats)
        assert await eventually(lambda: stale_in_a_row(4), timeout=20)

    after = heartbeats.statuses()[silenced:]
    stale = [status for status in after if status.sources["binance"].stale_symbols]
    ages = [status.sources["binance"].last_update_age_seconds for status in stale]
    assert None not in ages and ages == sorted(ages) and ages[-1] - ages[0] >= 1, ages
    assert ages[-1] > config.collection.stale_after_seconds
    assert any(not all(status.sources["binance"].streams_up.values()) for status in stale)  # lost, redialing
    bybit = stale[-1].sources["bybit"]
    assert bybit.stale_symbols == [] and bybit.last_update_age_seconds is not None
    assert bybit.last_update_age_seconds < 1
    assert stale[-1].sources["bybit"].updates > stale[0].sources["bybit"].updates


async def test_a_broker_outage_is_one_warning_and_its_end_one_info(
    broker: Broker, status_exchange: str, heartbeats: HeartbeatConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    """Down from the start, up, down again, up: the heartbeat keeps trying, logs each outage and each
    recovery once, and aio-pika's and aiormq's per-dial reports stay out of the log."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="status")  # last: it sets the capturing handler's level too
    broker_address = urlsplit(broker.url)
    proxy = TcpProxy(broker_address.hostname or "127.0.0.1", broker_address.port or 5672)
    proxy.port = free_port()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    name = unique_name()
    nothing_collected = Statistics([], PublisherStats(), LatencyWindow())
    heartbeat = StatusHeartbeat(
        url, status_exchange, INTERVAL, name, lambda: nothing_collected.collector_status(name, INTERVAL, 3)
    )
    await heartbeat.start()
    try:
        assert await eventually(lambda: len(records(caplog, "status", logging.DEBUG, "still not")) >= 2, timeout=20)
        assert len(records(caplog, "status", logging.WARNING)) == 1
        (warning,) = records(caplog, "status", logging.WARNING)
        assert f"last dial: [Errno {errno.ECONNREFUSED}]" in warning and str(proxy.port) in warning, warning

        await proxy.up()
        assert await eventually(lambda: len(heartbeats.heartbeats) >= 3, timeout=20)
        assert len(records(caplog, "status", logging.INFO, "published again")) == 1

        await proxy.down()
        assert await eventually(lambda: len(records(caplog, "status", logging.WARNING)) == 2, timeout=20)
        failed_debug = len(records(caplog, "status", logging.DEBUG, "still not"))
        assert await eventually(
            lambda: len(records(caplog, "status", logging.DEBUG, "still not")) >= failed_debug + 2, timeout=20
        )
        received = len(heartbeats.heartbeats)
        await proxy.up()
        assert await eventually(lambda: len(heartbeats.heartbeats) >= received + 3, timeout=20)
    finally:
        await heartbeat.close()
        await proxy.down()
    assert len(records(caplog, "status", logging.WARNING)) == 2
    assert len(records(caplog, "status", logging.INFO, "published again")) == 2
    assert amqp_library_reports(caplog) == []
    assert {key for key, _, _, _ in heartbeats.heartbeats} == {status_key(name)}


async def test_a_status_exchange_of_another_type_is_one_error_and_the_collector_runs_on(
    simulator: Simulator, broker: Broker, exchange_name: str, status_exchange: str, consumer: Consumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(status_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
    config = collector_config(simulator, broker.url, exchange_name, status_interval_seconds=INTERVAL)
    config.rabbitmq.status_exchange = status_exchange
    config.rabbitmq.connection_name = unique_name()

    async with running(config) as app:
        assert await eventually(lambda: bool(records(caplog, "status", logging.ERROR)), timeout=20)
        assert app.heartbeat is not None
        assert await eventually(lambda: not app.heartbeat.active, timeout=10)
        moment = time.time()
        assert await consumer.wait_until(lambda: len(consumer.keys_since(moment)) >= 6, timeout=30)

    (error,) = records(caplog, "status", logging.ERROR)
    assert f"'{status_exchange}'" in error and "rabbitmq.status_exchange" in error and "'fanout'" in error
    assert app.heartbeat.sent == 0
    assert amqp_library_reports(caplog) == []
