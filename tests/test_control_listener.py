"""The control listener when the broker drops its connection (a broker restart looks like that to it)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import aio_pika
import pytest

from control.listener import ControlListener
from control.registry import SymbolRegistry
from control.service import ControlService
from main import FuturesScan
from publishers.rabbitmq_publisher import PublisherStats
from tests.broker import Broker
from tests.control_helpers import ControlPeer
from utils.latency import LatencyWindow
from utils.statistics import Statistics

pytestmark = pytest.mark.timeout(60)


async def test_commands_are_answered_again_after_the_broker_closes_the_listeners_connection(
    broker: Broker, control_names: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    if broker.rabbitmqctl is None:
        pytest.skip("no rabbitmqctl for this broker: cannot close a connection from its side")
    caplog.set_level(logging.INFO)
    queue, responses = control_names
    service = ControlService(
        SymbolRegistry(["BTC/USDT:USDT"]), [], Statistics([], PublisherStats(), LatencyWindow()), 60
    )
    collector = f"futures-scan-test-{uuid.uuid4().hex[:8]}"
    name = f"{collector} control"
    listener = ControlListener(broker.url, queue, responses, service, 65536, collector_name=collector)
    peer = ControlPeer(broker.url, queue, responses)
    await listener.start()
    try:
        await peer.start()
        assert (await peer.request("get_symbols"))["success"]
        assert await asyncio.to_thread(broker.close_connections, name) == 1
        reply = await peer.request("get_symbols", timeout=30)  # aio-pika redials after 5 s
        assert reply["success"] and reply["data"]["symbols"] == ["BTC/USDT:USDT"]
    finally:
        await peer.close()
        await listener.close()
    from_aio_pika = [  # r.msg: aio-pika's callback records can't always be formatted after the fact
        f"{r.name} {r.levelname}: {r.msg}" for r in caplog.records
        if r.name.startswith("aio_pika") and (r.levelno >= logging.ERROR or r.exc_info)
    ]
    assert from_aio_pika == []
    assert any("listening for control commands on queue" in r.getMessage() and "again" in r.getMessage()
               for r in caplog.records if r.name == "control")


async def test_a_control_queue_of_the_other_type_is_one_clear_error_and_the_collector_runs_on(
    broker: Broker, control_names: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """rabbitmq.queue_type changed to quorum over an existing classic control queue: RabbitMQ refuses the
    declaration (PRECONDITION_FAILED) at every try, so the collector says once what to do instead of retrying."""
    queue, responses = control_names
    connection = await aio_pika.connect(broker.url)
    async with connection:
        await (await connection.channel()).declare_queue(queue, durable=True)
    service = ControlService(
        SymbolRegistry(["BTC/USDT:USDT"]), [], Statistics([], PublisherStats(), LatencyWindow()), 60
    )
    listener = ControlListener(broker.url, queue, responses, service, 65536, queue_type="quorum")
    await asyncio.wait_for(FuturesScan._listen(listener), timeout=30)  # returns: no retry loop
    from_main = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "main"]
    assert from_main == [(logging.ERROR, (
        f"RabbitMQ keeps the durable queue '{queue}' as a classic queue, but rabbitmq.queue_type is 'quorum' and a "
        f"queue's type cannot change: delete it (rabbitmqctl delete_queue {queue}, or the management UI; the messages "
        "in it go with it) and start again, or set rabbitmq.queue_type back to 'classic'; the collector runs on "
        "WITHOUT control commands"
    ))]
