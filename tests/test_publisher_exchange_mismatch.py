"""The exchange already exists with other settings than the durable topic exchange the collector declares.

Only its lifetime differs (non-durable): one WARNING, then publish to it as it is. Another type (a fanout)
routes messages elsewhere than consumers bind for: one ERROR, and `python main.py` refuses to start (exit 2).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import aio_pika
import pytest

from tests.broker import Broker
from tests.publisher_helpers import ExistingExchangeConsumer, feeding, start_publisher

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


async def declare(broker: Broker, name: str, kind: aio_pika.ExchangeType, durable: bool) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(name, kind, durable=durable)


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno == level]


async def test_a_non_durable_exchange_is_published_to_as_it_is_after_one_warning(
    broker: Broker, exchange_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await declare(broker, exchange_name, aio_pika.ExchangeType.TOPIC, durable=False)
    publisher = await start_publisher(broker.url, exchange_name)
    consumer = ExistingExchangeConsumer(broker.url, exchange_name, binding="futures.#")
    try:
        await asyncio.wait_for(publisher.wait_connected(), 10)
        await consumer.start()
        async with feeding(publisher):
            assert await consumer.wait_until(lambda: len(consumer.messages) >= 20, timeout=10)
    finally:
        await publisher.close()
        await consumer.close()
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"rabbitmq: RabbitMQ exchange '{exchange_name}' exists with other settings")
    assert "inequivalent arg 'durable'" in warnings[0] and "publishing to it as it is" in warnings[0]
    assert logged(caplog, logging.ERROR) == []


async def test_an_exchange_of_another_type_is_refused_with_one_error(
    broker: Broker, exchange_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await declare(broker, exchange_name, aio_pika.ExchangeType.FANOUT, durable=True)
    publisher = await start_publisher(broker.url, exchange_name)
    try:
        refusal = await asyncio.wait_for(publisher.wait_refused(), 10)
        await asyncio.sleep(0.5)  # a retrying publisher would log again meanwhile (retry_delays are 0.2 s)
    finally:
        await publisher.close()
    assert f"'{exchange_name}'" in str(refusal)
    assert "inequivalent arg 'type'" in str(refusal) and "current is 'fanout'" in str(refusal)
    errors = logged(caplog, logging.ERROR)
    assert errors == [f"rabbitmq: {refusal}"]
    assert not publisher.stats.connected


async def test_main_exits_with_code_2_when_the_exchange_is_of_another_type(
    tmp_path: Path, broker: Broker, exchange_name: str
) -> None:
    await declare(broker, exchange_name, aio_pika.ExchangeType.FANOUT, durable=True)
    config = json.loads((ROOT / "config.example.json").read_text())
    config.update(
        rabbitmq={"exchange": exchange_name},
        exchanges=["binance"],
        markets=["futures"],
        logging={"level": "INFO", "file": None},
        control={"enabled": False, "state_file": None},
        api_keys_file=None,
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--demo", "--demo-port", "0", "--config", str(path),
        cwd=ROOT, env={**os.environ, "RABBITMQ_URL": broker.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 40)
    finally:
        if process.returncode is None:
            process.kill()
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 2, output[-3000:]
    assert f"[ERROR] [rabbitmq] RabbitMQ exchange '{exchange_name}' exists with settings" in output
    assert "current is 'fanout'" in output and "Traceback" not in output
