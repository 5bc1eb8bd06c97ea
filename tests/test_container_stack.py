"""The `stack` profile's wiring, run on this host without Docker: the simulator as a process of its own, discovery
and the collector started through docker/entrypoint.sh with the config scripts/stack_config.py writes (pointed at
127.0.0.1 and this test's port instead of the `simulator` service), and market data arriving in RabbitMQ.

What only a Docker engine can show (the image, the compose network's names, the volumes) is not covered here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from scripts.stack_config import EXAMPLE, stack_config
from tests.broker import Broker
from tests.helpers import Consumer, delete_names, eventually

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
VENUES = ["binance", "okx"]


async def start_role(role: str, *args: str, log: Path) -> asyncio.subprocess.Process:
    """One container's process, as the image starts it: the entrypoint with a role, cwd = the app's root."""
    return await asyncio.create_subprocess_exec(
        str(ENTRYPOINT), role, *args, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable},
        stdin=asyncio.subprocess.DEVNULL, stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT,
    )


async def stop(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, as `docker compose down` sends; SIGKILL only if it does not end within 30 s."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    return process.returncode if process.returncode is not None else -1


async def test_discovery_and_the_collector_reach_a_simulator_of_their_own_through_the_stack_config(
        broker: Broker, exchange_name: str, control_names: tuple[str, str], consumer: Consumer, tmp_path: Path
) -> None:
    port_file = tmp_path / "simulator.port"
    simulator = await start_role("simulator", "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
                                 "--venues", ",".join(VENUES), "--rate", "5", log=tmp_path / "simulator.log")
    collector = None
    try:
        assert await eventually(port_file.exists, timeout=60), (tmp_path / "simulator.log").read_text()
        config = stack_config(json.loads(EXAMPLE.read_text()), "127.0.0.1", int(port_file.read_text()))
        config["exchanges"] = [entry for entry in config["exchanges"] if entry["name"] in VENUES]
        config["markets"] = ["futures"]
        config["rabbitmq"].update({"url": broker.url, "exchange": exchange_name, "connection_name": exchange_name,
                                   "status_exchange": f"{exchange_name}_status"})
        config["control"].update({"queue": control_names[0], "responses_exchange": control_names[1],
                                  "broadcast_exchange": f"{control_names[0]}_all",
                                  "state_file": str(tmp_path / "state.json")})
        config["universe_dir"] = str(tmp_path / "generated")
        config["metrics"]["port"] = 0
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))

        discover = await start_role("discover", "--config", str(config_file), "--output", config["universe_dir"],
                                    log=tmp_path / "discover.log")
        assert await asyncio.wait_for(discover.wait(), 120) == 0, (tmp_path / "discover.log").read_text()
        universe = json.loads((tmp_path / "generated" / "universe.json").read_text())
        assert universe, "discovery wrote an empty universe"

        collector = await start_role("collector", "--config", str(config_file), log=tmp_path / "collector.log")
        venues_seen = lambda: {key.split(".")[1] for key, _, _ in consumer.messages}  # noqa: E731
        assert await eventually(lambda: venues_seen() >= set(VENUES), timeout=90), \
            (venues_seen(), (tmp_path / "collector.log").read_text()[-3000:])
        assert await stop(collector) == 0, (tmp_path / "collector.log").read_text()[-3000:]
    finally:
        if collector is not None:
            await stop(collector)
        await stop(simulator)
        await delete_names(broker.url, [f"{exchange_name}_status"])
