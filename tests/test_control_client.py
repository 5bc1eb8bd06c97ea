"""scripts/control_client.py as users run it, against a running collector."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aio_pika
import pytest

from simulator.server import Simulator
from tests.broker import Broker
from tests.control_helpers import ControlPeer, enable_control
from tests.helpers import Consumer, collector_config, running

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_ERROR_REPLY, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 3, 4


async def client(broker: Broker, queue: str, *args: str) -> tuple[int, dict]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/control_client.py", "--queue", queue, *args,
        cwd=ROOT, env={**os.environ, "RABBITMQ_URL": broker.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, json.loads(stdout or b"{}")


async def test_the_readme_commands_work_against_a_running_collector(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], consumer: Consumer
) -> None:
    queue, responses = control_names
    config = enable_control(collector_config(simulator, broker.url, exchange_name), queue, responses, None)
    peer = ControlPeer(broker.url, queue, responses)
    await peer.start()
    try:
        async with running(config):
            await peer.wait_listening()
            status, reply = await client(broker, queue, "add_symbol", "LINK/USDT:USDT")
            assert status == EXIT_OK and reply["success"] and reply["data"]["listed_on"] == ["binance", "bybit"]
            keys = {"futures.binance.LINKUSDT", "futures.bybit.LINKUSDT"}
            assert await consumer.wait_until(lambda: keys <= set(consumer.latest), timeout=15)

            status, reply = await client(broker, queue, "add_symbol", "LINK/USDT:USDT")
            assert (status, reply["error"]) == (EXIT_ERROR_REPLY, "duplicate_symbol")
            status, reply = await client(broker, queue, "set_symbols", "BTC/USDT:USDT,LINK/USDT:USDT")
            assert status == EXIT_OK and reply["data"]["current_symbols"] == ["BTC/USDT:USDT", "LINK/USDT:USDT"]
            status, reply = await client(broker, queue, "remove_symbol", "LINK/USDT:USDT")
            assert status == EXIT_OK
            status, reply = await client(broker, queue, "get_symbols")
            assert status == EXIT_OK and reply["data"]["symbols"] == ["BTC/USDT:USDT"]
            status, reply = await client(broker, queue, "watch_add", "DOGE/USDT:USDT", "--exchanges", "bybit",
                                         "--ttl", "600")
            assert status == EXIT_OK and reply["data"]["added"] == ["bybit"] and reply["data"]["ttl_seconds"] == 600
            status, reply = await client(broker, queue, "watch_touch", "bybit", "DOGE/USDT:USDT")
            assert status == EXIT_OK and reply["data"]["remaining_seconds"] > 590
            status, reply = await client(broker, queue, "get_watchlist")
            assert status == EXIT_OK and reply["data"]["count"] == 1
            status, reply = await client(broker, queue, "watch_remove", "DOGE/USDT:USDT")
            assert status == EXIT_OK and reply["data"]["removed_from"] == ["bybit"]
            status, reply = await client(broker, queue, "get_statistics")
            assert status == EXIT_OK and "rabbitmq_published" in reply["data"]
    finally:
        await peer.close()


async def test_no_collector_means_a_clear_error_and_a_non_zero_exit(broker: Broker, exchange_name: str) -> None:
    status, reply = await client(broker, f"{exchange_name}_nobody", "get_symbols")
    assert (status, reply["error"]) == (EXIT_UNREACHABLE, "unreachable")
    assert "is a collector running?" in reply["message"]

    connection = await aio_pika.connect(broker.url)  # a queue nobody reads: the request is never answered
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{exchange_name}_silent", auto_delete=False)
        try:
            status, reply = await client(broker, queue.name, "--timeout", "1", "get_symbols")
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    assert (status, reply["error"]) == (EXIT_TIMEOUT, "timeout")


async def test_help_lists_every_command_with_an_example() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/control_client.py", "--help", cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await process.communicate()
    text = stdout.decode()
    for command in ("add_symbol", "remove_symbol", "set_symbols", "get_symbols", "get_statistics", "watch_add",
                    "watch_touch", "watch_remove", "get_watchlist", "reload_universe"):
        assert f"control_client.py {command}" in text, command
    assert "--url" in text and "--timeout" in text
