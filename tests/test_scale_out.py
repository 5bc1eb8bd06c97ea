"""Several collectors as one system: split by venue and by symbol shard, steered by one `control_client.py --all`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from main import FuturesScan, name_shard, parse_args, resolve_config
from models.config import AlertsConfig, AppConfig
from models.futures_data import routing_key
from models.shard import Shard
from monitor.service import MonitorService
from simulator.instruments import INSTRUMENTS
from simulator.server import Simulator
from tests.broker import Broker
from tests.control_helpers import enable_control
from tests.helpers import SYMBOLS, Consumer, collector_config, delete_names, eventually, running

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


def test_shards_never_overlap_and_cover_every_symbol() -> None:
    symbols = [instrument.unified_symbol for instrument in INSTRUMENTS] + [f"C{i}/USDT:USDT" for i in range(500)]
    for count in (1, 2, 3, 5):
        owners = [[index for index in range(1, count + 1) if Shard(index, count).owns(s)] for s in symbols]
        assert all(len(owner) == 1 for owner in owners)
        shares = [sum(owner == [index] for owner in owners) for index in range(1, count + 1)]
        assert min(shares) > len(symbols) / count * 0.7  # the hash spreads the load


@pytest.mark.parametrize(("text", "error"), [
    ("0/2", "K must be 1..2"), ("3/2", "K must be 1..2"), ("1/0", "N must be 1..256"), ("half", "is not K/N"),
])
def test_a_bad_shard_is_refused_with_what_to_write(text: str, error: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=error):
        Shard.parse(text)
    config = tmp_path / "config.json"
    config.write_bytes(orjson.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "shard": text}))
    completed = _run([sys.executable, "main.py", "--config", str(config)])
    assert completed[0] == 2 and "shard" in completed[1] and error in completed[1]


def test_a_shard_gets_its_own_names(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(orjson.dumps({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"]}))
    resolved = resolve_config(parse_args(["--config", str(config), "--shard", "2/3"]))
    assert resolved.shard == "2/3"
    assert resolved.rabbitmq.connection_name == "futures-scan-shard-2-of-3"
    assert resolved.control.queue == "futures_collector_control.shard-2-of-3"
    assert resolved.control.state_file == str(Path("state/collector_state.shard-2-of-3.json"))
    assert resolved.metrics.port == 9465
    whole = resolve_config(parse_args(["--config", str(config)]))
    assert whole.control.queue == "futures_collector_control" and whole.rabbitmq.connection_name == "futures-scan"


def _run(command: list[str]) -> tuple[int, str]:
    completed = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    return completed.returncode, completed.stdout + completed.stderr


class Fleet:
    """Three collectors on one broker: binance whole, bybit in two symbol shards."""

    def __init__(self, simulator: Simulator, broker: Broker, exchange: str, state_dir: Path) -> None:
        self.simulator, self.broker, self.exchange, self.state_dir = simulator, broker, exchange, state_dir
        self.broadcast, self.status = f"{exchange}_all", f"{exchange}_status"
        self.responses = f"{exchange}_responses"
        self.apps: dict[str, FuturesScan] = {}

    def config(self, venue: str, shard: str | None) -> AppConfig:
        config = collector_config(self.simulator, self.broker.url, self.exchange, status_interval_seconds=1)
        config.exchanges = [exchange for exchange in config.exchanges if exchange.name == venue]
        config.rabbitmq.connection_name = f"{self.exchange}-{venue}"
        config.rabbitmq.status_exchange = self.status
        enable_control(config, f"{self.exchange}_control_{venue}", self.responses,
                       str(self.state_dir / f"{venue}.json"))
        config.control.broadcast_exchange = self.broadcast
        config.shard = shard
        name_shard(config)
        return config

    def names(self) -> tuple[list[str], list[str]]:
        """(exchanges, queues) the fleet and a monitor on it declare, for removal."""
        queues = [f"{self.exchange}_control_binance"] + [
            f"{self.exchange}_control_bybit.shard-{k}-of-2" for k in (1, 2)
        ]
        return [self.broadcast, self.status, self.responses, f"{self.exchange}_analytics"], queues

    async def start(self, stack: AsyncExitStack) -> None:
        """Binance whole, bybit in two symbol shards."""
        for name, venue, shard in (("binance", "binance", None), ("bybit-1", "bybit", "1/2"),
                                   ("bybit-2", "bybit", "2/2")):
            self.apps[name] = await stack.enter_async_context(running(self.config(venue, shard)))

    async def control_client(self, *arguments: str, timeout: float = 20) -> tuple[int, dict[str, Any]]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "scripts/control_client.py", "--url", self.broker.url, "--timeout", str(timeout),
            "--broadcast-exchange", self.broadcast, "--status-exchange", self.status, *arguments,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, orjson.loads(out)


@pytest.fixture
async def fleet(simulator: Simulator, broker: Broker, exchange_name: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    fleet = Fleet(simulator, broker, exchange_name, tmp_path)
    yield fleet
    exchanges, queues = fleet.names()
    await delete_names(broker.url, exchanges, queues)


async def test_collectors_split_by_venue_and_symbol_answer_one_command_as_one_system(
    fleet: Fleet, consumer: Consumer
) -> None:
    added = "XRP/USDT:USDT"  # shard 2 of 2 owns it, like BTC and ETH; SOL falls to shard 1
    assert Shard(2, 2).owns(added) and Shard(1, 2).owns("SOL/USDT:USDT")
    async with AsyncExitStack() as stack:
        for name, venue, shard in (("binance", "binance", None), ("bybit-1", "bybit", "1/2")):
            fleet.apps[name] = await stack.enter_async_context(running(fleet.config(venue, shard)))
        shard_two = fleet.apps["bybit-2"] = FuturesScan(fleet.config("bybit", "2/2"))
        stack.push_async_callback(lambda: shard_two.stop() if "bybit-2" in fleet.apps else asyncio.sleep(0))
        await shard_two.start()
        every_key = {routing_key(venue, symbol) for venue in ("binance", "bybit") for symbol in SYMBOLS}
        assert await consumer.wait_until(lambda: every_key <= consumer.keys_since(0), timeout=45)

        status, symbols = await fleet.control_client("--all", "get_symbols")
        assert status == 0, symbols
        names = ["binance", "bybit-shard-1-of-2", "bybit-shard-2-of-2"]
        assert symbols["collectors"] == [f"{fleet.exchange}-{name}" for name in names]
        by_collector = symbols["data"]["streaming_by_collector"]["bybit"]
        assert by_collector == {
            f"{fleet.exchange}-bybit-shard-1-of-2": ["SOL/USDT:USDT"],
            f"{fleet.exchange}-bybit-shard-2-of-2": ["BTC/USDT:USDT", "ETH/USDT:USDT"],
        }
        assert symbols["data"]["streaming"]["binance"] == sorted(SYMBOLS)

        status, reply = await fleet.control_client("--all", "add_symbol", added)
        assert status == 0, reply
        assert reply["data"]["streamed_by"] == {
            "binance": [f"{fleet.exchange}-binance"], "bybit": [f"{fleet.exchange}-bybit-shard-2-of-2"]
        }
        new_keys = {"futures.binance.XRPUSDT", "futures.bybit.XRPUSDT"}
        assert await consumer.wait_until(lambda: new_keys <= consumer.keys_since(0), timeout=30)
        assert "XRP/USDT:USDT" not in fleet.apps["bybit-1"].collectors[0].states

        status, statistics = await fleet.control_client("--all", "get_statistics")
        assert status == 0
        merged = statistics["data"]
        parts = [reply["data"]["exchange_success"].get("bybit", 0) for reply in statistics["replies"].values()]
        assert merged["exchange_success"]["bybit"] == sum(parts) > 0
        assert set(merged["collectors"]) == set(statistics["collectors"])

        direct = await fleet.control_client("--queue", f"{fleet.exchange}_control_bybit.shard-1-of-2", "get_symbols")
        assert direct[0] == 0 and direct[1]["collector"] == f"{fleet.exchange}-bybit-shard-1-of-2"
        assert direct[1]["data"]["streaming"] == {"bybit": ["SOL/USDT:USDT"]}

        await fleet.apps.pop("bybit-2").stop()  # shard 2 stops; restarted, it resumes its share from its state file
        restarted_at = time.time()
        restarted = await stack.enter_async_context(running(fleet.config("bybit", "2/2")))
        assert restarted.collectors[0].wanted == {"BTC/USDT:USDT", "ETH/USDT:USDT", added}
        assert await consumer.wait_until(
            lambda: "futures.bybit.XRPUSDT" in consumer.keys_since(restarted_at), timeout=30
        )


WORKER_STARTED = re.compile(r"shard (\d)/2 started \(pid (\d+)\)")


async def test_workers_share_the_feed_restart_a_killed_one_and_merge_their_final_statistics(
    tmp_path: Path, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    log_file = tmp_path / "app.log"
    names = {"queue": f"{exchange_name}_control", "responses_exchange": f"{exchange_name}_responses",
             "broadcast_exchange": f"{exchange_name}_all"}
    config = {
        "exchanges": ["binance"], "symbols": SYMBOLS, "markets": ["futures"], "api_keys_file": None,
        "rabbitmq": {"exchange": exchange_name, "status_exchange": f"{exchange_name}_status"},
        "control": {**names, "state_file": str(tmp_path / "state.json")},
        "logging": {"level": "INFO", "file": str(log_file)}, "metrics": {"port": 0},
    }
    path = tmp_path / "config.json"
    path.write_bytes(orjson.dumps(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--demo", "--demo-port", "0", "--workers", "2", "--config", str(path),
        cwd=ROOT, env={**os.environ, "RABBITMQ_URL": broker.url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    keys = {routing_key("binance", symbol) for symbol in SYMBOLS}
    sol = routing_key("binance", "SOL/USDT:USDT")  # shard 1 of 2 streams SOL, shard 2 BTC and ETH
    try:
        assert await consumer.wait_until(lambda: keys <= set(consumer.latest), timeout=60)
        first = dict(WORKER_STARTED.findall(log_file.read_text()))
        os.kill(int(first["1"]), signal.SIGKILL)
        killed_at = time.time()
        assert await eventually(lambda: len(WORKER_STARTED.findall(log_file.read_text())) == 3, timeout=30)
        assert await consumer.wait_until(lambda: sol in consumer.keys_since(killed_at + 1), timeout=45)
        children = [int(pid) for _, pid in WORKER_STARTED.findall(log_file.read_text())[1:]]
    finally:
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
        exchanges = [names["responses_exchange"], names["broadcast_exchange"], f"{exchange_name}_status"]
        await delete_names(broker.url, exchanges, [f"{names['queue']}.shard-{k}-of-2" for k in (1, 2)])
    assert process.returncode == 0, output[-3000:]
    assert re.search(r"shard 1/2 \(pid \d+\) exited with code -9 after \d+ s; restarting it in 1 s", output)
    final = output[output.index("=== Final statistics of 2 workers ===") :]
    assert re.search(r"binance: \d+ updates, 0 errors \(shard 1/2 \d+, shard 2/2 \d+\)", final), final
    assert "[shard-1-of-2] [binance]" in log_file.read_text()
    assert not any(running_pid(pid) for pid in children), "a worker outlived its parent's stop"


def running_pid(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def monitor_on(fleet: Fleet, stack: AsyncExitStack, collectors: int) -> aiohttp.ClientSession:
    """The monitor on the fleet's bus (its control.queue: the binance collector's), once it hears `collectors`."""
    config = fleet.config("binance", None)
    config.monitor = config.monitor.model_copy(update={"port": 0, "control_timeout_seconds": 10})
    config.spreads = config.spreads.model_copy(update={"analytics_exchange": f"{fleet.exchange}_analytics"})
    config.alerts = AlertsConfig(state_file=None)
    monitor = MonitorService(config)
    await monitor.start()
    stack.push_async_callback(monitor.stop)
    session = await stack.enter_async_context(aiohttp.ClientSession(f"http://127.0.0.1:{monitor.port}"))

    async def live_collectors() -> int:
        async with session.get("/health") as response:
            return sum(row["status"] == "ok" for row in (await response.json())["collectors"])

    deadline = time.monotonic() + 30
    while await live_collectors() < collectors and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return session


async def test_the_monitor_s_watchlist_reaches_every_collector_of_a_fleet(fleet: Fleet, consumer: Consumer) -> None:
    async with AsyncExitStack() as stack:
        await fleet.start(stack)
        session = await monitor_on(fleet, stack, 3)
        doge = "DOGE/USDT:USDT"  # shard 2 of 2 owns it
        async with session.post("/api/watchlist", json={"symbol": doge, "exchanges": ["bybit"]}) as response:
            added = await response.json()
        assert response.status == 200, added
        assert added["collectors"] == sorted(fleet.apps[name].config.rabbitmq.connection_name for name in fleet.apps)
        assert added["replies"][f"{fleet.exchange}-binance"]["error"] == "invalid_command"  # no bybit there
        assert await consumer.wait_until(lambda: routing_key("bybit", doge) in consumer.latest, timeout=30)

        async def doge_status() -> str | None:
            async with session.get("/api/watchlist") as response:
                entries = (await response.json())["data"]["watchlist"]
            return next((entry["status"] for entry in entries if entry["symbol"] == doge), None)

        deadline = time.monotonic() + 20
        while await doge_status() != "streaming" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await doge_status() == "streaming"  # shard 1 records the pair too, but shard 2 streams it


async def test_control_client_all_says_when_no_collector_listens(broker: Broker, exchange_name: str) -> None:
    command = [sys.executable, "scripts/control_client.py", "--url", broker.url, "--all",
               "--broadcast-exchange", f"{exchange_name}_all", "get_symbols"]
    code, output = await asyncio.to_thread(_run, command)
    assert code == 4 and f"no exchange '{exchange_name}_all': no collector has listened yet" in output
    code, output = await asyncio.to_thread(_run, [*command[:2], "--expect", "2", "get_symbols"])
    assert code == 2 and "--expect only applies with --all" in output


async def test_the_monitor_reaches_a_lone_shard_that_is_not_on_its_control_queue(fleet: Fleet) -> None:
    async with AsyncExitStack() as stack:
        shard = await stack.enter_async_context(running(fleet.config("bybit", "2/2")))
        session = await monitor_on(fleet, stack, 1)
        async with session.get("/api/watchlist") as response:
            answer = await response.json()
        assert response.status == 200, answer
        assert answer["collectors"] == [shard.config.rabbitmq.connection_name]
