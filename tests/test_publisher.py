"""The publisher against a real broker: latest wins per key, stale updates expire, outages are survived."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import io
import logging
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import aiormq
import pytest
from pamqp import commands, frame
from pamqp.header import ContentHeader

from publishers.aiormq_seams import PINNED_AIORMQ_VERSION
from publishers.amqp_frames import PublishFrameEncoder
from publishers.confirm_window import ConfirmWindow
from tests.broker import Broker
from tests.helpers import Consumer
from tests.publisher_helpers import Update, start_publisher
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)


def unmarshal_all(data: bytes) -> list[object]:
    frames = []
    stream = io.BytesIO(data)
    while chunk := stream.read(7):
        size = int.from_bytes(chunk[3:7], "big")
        raw = chunk + stream.read(size + 1)
        frames.append(frame.unmarshal(raw)[2])
    return frames


@pytest.mark.parametrize("body_size", [0, 200, 5000, 300_000])
def test_hand_encoded_frames_are_what_pamqp_reads(body_size: int) -> None:
    encoder = PublishFrameEncoder(channel=3, exchange="futures_data", frame_max=4096)
    body = bytes(range(256)) * (body_size // 256) + b"x" * (body_size % 256)
    out: list[bytes] = []
    encoder.encode("futures.binance.BTCUSDT", body, out)
    method, header, *bodies = unmarshal_all(b"".join(out))
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory) == ("futures_data", "futures.binance.BTCUSDT", False)
    assert isinstance(header, ContentHeader)
    assert header.body_size == body_size
    assert header.properties.content_type == "application/json"
    assert header.properties.delivery_mode == 1
    assert b"".join(part.value for part in bodies) == body
    assert all(len(part.value) <= 4096 - 8 for part in bodies)


async def test_latest_update_per_key_wins(broker: Broker, exchange_name: str, consumer: Consumer) -> None:
    publisher = await start_publisher(broker.url, exchange_name)
    try:
        await publisher.wait_connected()
        for value in range(100):  # no await in between: the flush cannot run, updates conflate
            publisher.submit(Update("futures.test.A", value))
            if value < 50:
                publisher.submit(Update("futures.test.B", value))
        assert await consumer.wait_until(lambda: len(consumer.messages) >= 2)
        await asyncio.sleep(0.3)
    finally:
        await publisher.close()
    assert {key: body["value"] for key, body, _ in consumer.messages} == {"futures.test.A": 99, "futures.test.B": 49}
    assert len(consumer.messages) == 2
    assert (publisher.stats.published, publisher.stats.conflated) == (2, 148)


async def test_updates_older_than_the_max_age_are_dropped(
    broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    publisher = await start_publisher(broker.url, exchange_name, max_message_age_ms=1000)
    try:
        await publisher.wait_connected()
        publisher.submit(Update("futures.test.OLD", 1, received_ms=time.time_ns() // 1_000_000 - 1500))
        publisher.submit(Update("futures.test.NEW", 2))
        assert await consumer.wait_until(lambda: len(consumer.messages) >= 1)
        await asyncio.sleep(0.3)
    finally:
        await publisher.close()
    assert [key for key, _, _ in consumer.messages] == ["futures.test.NEW"]
    assert publisher.stats.expired == 1


async def test_broker_outage_keeps_latest_per_key_logs_once_and_resumes(
    broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    parts = urlsplit(broker.url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.up()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    publisher = await start_publisher(
        urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), exchange_name, max_message_age_ms=2000
    )
    try:
        await publisher.wait_connected()
        publisher.submit(Update("futures.test.BEFORE", 0))
        # stamped a minute ahead so it stays younger than max_message_age_ms through the outage
        publisher.submit(Update("futures.test.RECENT", 0, received_ms=time.time_ns() // 1_000_000 + 60_000))
        assert await consumer.wait_until(lambda: len(consumer.messages) == 2)

        await proxy.down()
        assert await consumer.wait_until(lambda: not publisher.stats.connected, timeout=10)
        for value in range(300):
            publisher.submit(Update("futures.test.EARLY", value))
        await asyncio.sleep(2.5)  # several reconnect attempts fail meanwhile; EARLY ages past 2 s
        for value in range(300):
            publisher.submit(Update(f"futures.test.LATE{value % 3}", value))
        assert publisher.pending == 4, "memory is bounded by the number of keys"

        await proxy.up()
        assert await consumer.wait_until(lambda: len(consumer.messages) == 6, timeout=10)
        await asyncio.sleep(0.5)
    finally:
        await publisher.close()
        await proxy.down()
    after = {key: body["value"] for key, body, _ in consumer.messages[2:]}
    # RECENT is sent again (whatever was in flight at the break may be lost), BEFORE and EARLY are too old.
    assert after == {
        "futures.test.LATE0": 297, "futures.test.LATE1": 298, "futures.test.LATE2": 299, "futures.test.RECENT": 0
    }
    assert publisher.stats.expired == 2
    assert publisher.stats.conflated == 299 + 297
    assert publisher.stats.reconnects == 1
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("rabbitmq: "), errors
    assert any("restored" in r.getMessage() for r in caplog.records if r.name == "rabbitmq")


async def test_confirms_are_decoded_off_the_socket_and_every_publish_is_counted(
    broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    """The publishing channel's acks skip aiormq's per-frame parse (the collector's largest own cost under
    load), yet every publish is confirmed exactly once and the connection stays up past aiormq's watchdog."""
    publisher = await start_publisher(broker.url, exchange_name)
    sent = 0
    try:
        await publisher.wait_connected()
        deadline = time.monotonic() + 2.5  # past PASS_TO_AIORMQ_EVERY_SECONDS: some acks go through aiormq too
        while time.monotonic() < deadline:
            for key in range(5):
                publisher.submit(Update(f"futures.test.K{key}", sent))
            sent += 5
            await asyncio.sleep(0.002)
        assert await consumer.wait_until(lambda: publisher.stats.published == sent - publisher.stats.conflated)
        reader = publisher._reader
        assert reader is not None
        assert reader.diverted > 0, "no confirm was decoded off the socket"
        assert publisher.in_flight == 0 and publisher.stats.failed == 0
        # a confirm can reach the publisher before the delivery reaches the consumer: wait for both
        assert await consumer.wait_until(lambda: len(consumer.messages) == publisher.stats.published), (
            f"{len(consumer.messages)} received, {publisher.stats.published} confirmed")
    finally:
        await publisher.close()


def test_confirm_window_counts_single_multiple_and_out_of_order_acks() -> None:
    window = ConfirmWindow()
    window.sent(5)
    assert window.in_flight == 5
    assert window.confirm(3, multiple=False) == 1  # out of order: 3 before 1 and 2
    assert window.confirm(2, multiple=True) == 2  # 1 and 2
    assert window.in_flight == 2
    assert window.confirm(3, multiple=True) == 0  # already settled
    assert window.confirm(5, multiple=True) == 2  # 4 and 5
    assert window.in_flight == 0
    window.reset()
    window.sent(2)
    assert window.confirm(2, multiple=False) == 1 and window.confirm(1, multiple=False) == 1
    assert window.in_flight == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_aiormq_outage_reports_are_hidden_only_for_the_publishers_own_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The publisher reports its own outages once; another connection in the process (a consumer, the
    control listener) keeps aiormq's report of its failure."""
    caplog.set_level(logging.DEBUG)
    nobody_listens = f"amqp://guest:guest@127.0.0.1:{_free_port()}/"
    publisher = await start_publisher(nobody_listens, "futures_data_unreachable", retry_delays=[0.05])

    def still_unavailable() -> int:
        return sum("still unavailable" in r.getMessage() for r in caplog.records if r.name == "rabbitmq")

    try:
        deadline = time.monotonic() + 10
        while still_unavailable() < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert still_unavailable() >= 3, "the publisher did not retry"
        with pytest.raises(ConnectionError):
            await aiormq.connect(nobody_listens)
    finally:
        await publisher.close()
    reports = [
        r for r in caplog.records
        if r.name == "aiormq.connection" and r.getMessage().startswith("error when creating transport")
    ]
    assert len(reports) == 1, [r.getMessage() for r in reports]
    errors = [r.getMessage() for r in caplog.records if r.name == "rabbitmq" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot connect" in errors[0], errors


def test_aiormq_is_the_version_the_channel_seams_were_written_for() -> None:
    """publishers/aiormq_seams.py replaces methods of aiormq's Channel: another aiormq needs a new look."""
    assert importlib.metadata.version("aiormq") == PINNED_AIORMQ_VERSION
    for method in ("_on_confirm_frame", "_on_close_frame"):
        assert inspect.iscoroutinefunction(getattr(aiormq.Channel, method))
