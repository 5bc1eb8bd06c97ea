"""The collector as users run it: `python main.py ...` in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from collectors.venues import VENUE_NAMES, sources_for
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, eventually, valid

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / "config.example.json").read_text())


def with_changes(**sections: object) -> dict:
    config = json.loads(json.dumps(EXAMPLE))
    config.update(sections)
    return config


async def run_main(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "main.py", *args,
        cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (with_changes(exchanges=["binance", "kraken"]), "exchanges[1].name: Input should be 'binance', 'bybit',"),
        (with_changes(symbols=["BTC/USDT:USDT", "BTCUSDT"]), "symbols: Value error, 'BTCUSDT' is not a ccxt unified"),
        (with_changes(collection={"orderbook_depth": "twenty"}), "collection.orderbook_depth: Input should be a valid"),
        (with_changes(collection={"retry_delays": []}), "collection.retry_delays: Value error, needs at least one"),
        (with_changes(rabbitmq={"port": 70000}), "rabbitmq.port: Input should be less than or equal to 65535"),
        (with_changes(colection={}), "colection: Extra inputs are not permitted"),
        (with_changes(symbols=[]), "symbols: Value error, needs at least one symbol"),
        (with_changes(symbols="everything"), 'symbols: Value error, must be a list of ccxt unified symbols, or "auto"'),
        ("{not json", "not valid JSON"),
        (None, "file not found"),
    ],
)
async def test_bad_config_exits_non_zero_naming_the_field(tmp_path: Path, config: object, expected: str) -> None:
    path = tmp_path / "config.json"
    if isinstance(config, dict):
        path.write_text(json.dumps(config))
    elif isinstance(config, str):
        path.write_text(config)
    process = await run_main("--config", str(path))
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert stderr.decode().startswith(f"configuration error: {path}")
    assert expected in stderr.decode()
    assert stdout == b""


async def test_help_documents_every_flag() -> None:
    process = await run_main("--help")
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    for flag in ("--config", "--demo", "--demo-port", "--demo-rate", "--shard", "--workers", "--log-level"):
        assert flag in stdout.decode()


async def test_demo_publishes_every_source_and_sigterm_exits_cleanly_with_final_statistics(
    tmp_path: Path, broker: Broker, exchange_name: str, consumer: Consumer, control_names: tuple[str, str]
) -> None:
    log_file = tmp_path / "app.log"
    queue, responses = control_names
    config = with_changes(
        rabbitmq={"exchange": exchange_name},
        logging={"level": "INFO", "file": str(log_file)},
        collection={"statistics_interval_seconds": 2},
        control={"queue": queue, "responses_exchange": responses, "broadcast_exchange": f"{queue}_all",
                 "state_file": str(tmp_path / "state.json")},
        api_keys_file=None,
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    process = await run_main(
        "--demo", "--demo-port", "0", "--config", str(path), env={"RABBITMQ_URL": broker.url}
    )
    sources = [source for name in VENUE_NAMES for source in sources_for(name, ["futures", "spot"])]
    expected = {
        f"{source.market}.{source.name}.{source.symbol_for(symbol).split(':')[0].replace('/', '')}"
        for source in sources
        for symbol in SYMBOLS
    }
    try:
        assert await consumer.wait_until(lambda: expected <= set(consumer.latest), timeout=60), sorted(
            expected - set(consumer.latest)
        )
        await asyncio.sleep(2.5)  # at least one periodic statistics block
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 0, output[-3000:]
    for body in consumer.latest.values():
        valid(body)
    assert "=== Statistics (last" in output
    final = output[output.index("=== Final statistics ===") :]
    assert all(f"{source.source_id}:" in final for source in sources) and "RabbitMQ:" in final
    for noise in ("Unclosed client session", "Unclosed connector", "Traceback", "Task was destroyed"):
        assert noise not in output
    logged = log_file.read_text()
    assert "[INFO] [main] shutting down" in logged
    assert "[INFO] [binance] closed" in logged and "[INFO] [bybit] closed" in logged
    simulator_pid, port = simulator_of(logged)
    assert simulator_pid != process.pid, "the demo's simulator must run in its own process"
    assert not alive(simulator_pid) and not listening(port), "the simulator outlived main.py"


SIMULATOR_STARTED = re.compile(r"exchange simulator running as process (\d+) on http://127\.0\.0\.1:(\d+)")


def simulator_of(logged: str) -> tuple[int, int]:
    """The simulator child's pid and port, from main.py's log."""
    match = SIMULATOR_STARTED.search(logged)
    assert match, "main.py --demo did not log its simulator process"
    return int(match.group(1)), int(match.group(2))


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def start_binance_demo(tmp_path: Path, broker: Broker, exchange_name: str) -> tuple[
    asyncio.subprocess.Process, Path
]:
    """main.py --demo with Binance only, its log in tmp_path, once its simulator child is up."""
    log_file = tmp_path / "app.log"
    config = with_changes(
        exchanges=["binance"], markets=["futures"], rabbitmq={"exchange": exchange_name},
        logging={"level": "INFO", "file": str(log_file)}, control={"enabled": False, "state_file": None},
        api_keys_file=None,
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    process = await run_main("--demo", "--demo-port", "0", "--config", str(path), env={"RABBITMQ_URL": broker.url})
    started = await eventually(
        lambda: log_file.exists() and SIMULATOR_STARTED.search(log_file.read_text()) is not None, timeout=30
    )
    if not started:
        process.kill()
        output = b"".join(await asyncio.wait_for(process.communicate(), 30)).decode()
        raise AssertionError(f"no simulator process logged: {output[-3000:]}")
    return process, log_file


async def test_demo_simulator_dies_with_main_even_when_main_is_killed(
    tmp_path: Path, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    process, log_file = await start_binance_demo(tmp_path, broker, exchange_name)
    simulator_pid, port = simulator_of(log_file.read_text())
    assert await consumer.wait_until(lambda: bool(consumer.latest), timeout=60), "the demo streamed nothing"
    assert alive(simulator_pid) and listening(port)
    process.kill()  # no chance to clean up: the child must notice on its own
    await asyncio.wait_for(process.communicate(), 30)
    assert await eventually(lambda: not alive(simulator_pid) and not listening(port), timeout=30), (
        f"simulator {simulator_pid} left holding port {port} after main.py was killed"
    )


async def test_demo_stops_with_an_error_when_its_simulator_dies(
    tmp_path: Path, broker: Broker, exchange_name: str, consumer: Consumer
) -> None:
    process, log_file = await start_binance_demo(tmp_path, broker, exchange_name)
    simulator_pid, _ = simulator_of(log_file.read_text())
    assert await consumer.wait_until(lambda: bool(consumer.latest), timeout=60), "the demo streamed nothing"
    os.kill(simulator_pid, signal.SIGKILL)
    try:
        await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1, (stdout + stderr).decode()[-3000:]
    assert re.search(
        rf"\[ERROR\] \[main\] demo: the exchange simulator \(process {simulator_pid}\) exited with code -9",
        log_file.read_text(),
    )
