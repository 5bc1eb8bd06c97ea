"""Full scale, as the README tells a user to try it: `scripts/discover.py --demo --demo-universe 300`, then
`python main.py --demo --demo-universe 300` with `"symbols": "auto"` in its own process (the simulator in a child
of its own). Every symbol on every one of the 12 sources delivers quotes, each venue within its per-connection
cap, and the log shows no retry loop. What the collector says about itself is read over the control plane
(`get_statistics`), as `scripts/control_client.py` does: per source, its symbols and the ones whose quote has not
arrived within `stale_after_seconds`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker
from tests.control_helpers import ControlPeer
from tests.helpers import eventually
from tests.test_process import with_changes

pytestmark = pytest.mark.timeout(420)

ROOT = Path(__file__).resolve().parent.parent
UNIVERSE = "300"
SOURCES = 12
RETRY_WORDS = ("refused", "subscribe attempt", "stream lost", "out of sync")


async def test_auto_on_a_300_symbol_universe_streams_every_symbol_on_every_source(
    tmp_path: Path, broker: Broker, exchange_name: str, control_names: tuple[str, str]
) -> None:
    queue, responses = control_names
    log_file = tmp_path / "app.log"
    config = with_changes(
        rabbitmq={"exchange": exchange_name}, symbols="auto", universe_dir=str(tmp_path / "generated"),
        logging={"level": "INFO", "file": str(log_file)},
        control={"queue": queue, "responses_exchange": responses, "broadcast_exchange": f"{queue}_all",
                 "state_file": None}, api_keys_file=None,
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "RABBITMQ_URL": broker.url}
    discover = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/discover.py", "--demo", "--demo-universe", UNIVERSE, "--config", str(path),
        "--output", str(tmp_path / "generated"), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(discover.communicate(), 120)
    assert discover.returncode == 0, stderr.decode()[-2000:]

    # stdout to nowhere: 12 sources x 300 symbols log more than a pipe holds, and an unread pipe would block it
    collector = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "--demo", "--demo-port", "0", "--demo-universe", UNIVERSE, "--config", str(path),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    control = ControlPeer(broker.url, queue, responses)
    await control.start()
    statistics: dict[str, Any] = {}
    try:
        listening = f"listening for control commands on queue {queue}"
        assert await eventually(lambda: log_file.exists() and listening in log_file.read_text(), timeout=60)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert collector.returncode is None, f"main.py exited with {collector.returncode}"
            statistics = await sources_of(control)
            if len(statistics) == SOURCES and all(complete(source) for source in statistics.values()):
                break
            await asyncio.sleep(5)
        lagging = {name: (source.get("symbols"), source.get("stale_symbols", [])[:5])
                   for name, source in statistics.items() if not complete(source)}
        assert len(statistics) == SOURCES and not lagging, f"symbols, and some not quoting: {lagging}"
        settled = len(log_file.read_text().splitlines())
        await asyncio.sleep(20)  # quotes keep coming, and nothing redials in a loop
        statistics = await sources_of(control)
        assert all(complete(source) for source in statistics.values()), statistics
    finally:
        await control.close()
        collector.send_signal(signal.SIGTERM)
        await asyncio.wait_for(collector.wait(), 60)
    assert collector.returncode == 0
    lines = log_file.read_text().splitlines()
    assert not [line for line in lines if "refused" in line], "a venue refused a subscription: over its cap"
    retries_since = [line for line in lines[settled:] if any(word in line for word in RETRY_WORDS)]
    assert not retries_since, retries_since[:5]
    print(f"\nsymbols per source: { {name: source['symbols'] for name, source in statistics.items()} }")


async def sources_of(control: ControlPeer) -> dict[str, Any]:
    """get_statistics' per-source part: symbols streamed, and those whose quote has not arrived lately."""
    reply = await control.request("get_statistics", timeout=30)
    return (reply.get("data") or {}).get("exchanges", {})


def complete(source: dict[str, Any]) -> bool:
    """At least 90 % of the universe listed here is streamed, and every one of its quotes has arrived lately."""
    return source["symbols"] >= 0.9 * int(UNIVERSE) and not source["stale_symbols"]
