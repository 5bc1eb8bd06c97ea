"""scripts/bench.py --workers: one collector process against `python main.py --workers 2` on the same feed.

The feed: every source of the simulator (8 futures + 4 spot) on the default instrument list, depth 20, in its
own process. Each run is `python main.py --workers N` exactly as a user starts it, with status heartbeats every
second on the bench's own exchange: conflated comes from them (summed over the shards); delivered and receipt ->
publish from a queue consumer in this process (each message's own timestamps), CPU from /proc for the parent
and every shard (the simulator, RabbitMQ and this consumer are listed beside them: on 2 cores they compete).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import orjson

from models.status import CollectorStatus
from scripts.bench import (
    ROOT,
    SimulatorProcess,
    busy,
    cpu_seconds,
    delete_exchange,
    fmt,
    machine_busy,
    other_processes,
    rss_mb,
    symbols_for,
)
from utils.latency import LatencyWindow


def children_of(pid: int) -> list[int]:
    listed = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(child) for child in listed.split()]


class Watch:
    """This process's consumer of the market data and of the shards' heartbeats."""

    def __init__(self) -> None:
        self.received = 0
        self.receipt_to_publish_ms = LatencyWindow(200_000)
        self.heartbeats: dict[str, CollectorStatus] = {}

    async def on_data(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        self.received += 1
        self.receipt_to_publish_ms.record(body["published_timestamp"] - body["received_timestamp"])

    async def on_status(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        status = CollectorStatus.model_validate_json(message.body)
        self.heartbeats[status.connection_name] = status

    def conflated(self) -> dict[str, tuple[int, int]]:
        """Per shard: (heartbeat sent_at ms, conflated) of its latest heartbeat."""
        return {name: (status.sent_at, status.publisher.conflated) for name, status in self.heartbeats.items()}

    def reset(self) -> None:
        self.received = 0
        self.receipt_to_publish_ms.reset()


async def measure(args: argparse.Namespace, sim: SimulatorProcess, workers: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    exchange, status_exchange = f"futures_data_bench_{tag}", f"futures_status_bench_{tag}"
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    config = {
        "rabbitmq": {"url": args.broker, "exchange": exchange, "status_exchange": status_exchange,
                     "connection_name": f"bench-{tag}"},
        "exchanges": [{"name": venue, "ccxt": sim.ccxt_config(venue)} for venue in sim.venues],
        "symbols": symbols_for(25), "markets": ["futures", "spot"],
        "collection": {"orderbook_depth": 20, "statistics_interval_seconds": 3600, "max_message_age_ms": 60000,
                       "status_interval_seconds": 1},
        "logging": {"level": "WARNING", "file": None},
        "control": {"enabled": False, "state_file": None},
        "metrics": {"port": 0},
        "api_keys_file": None,
    }
    (work / "config.json").write_text(json.dumps(config))
    watch = Watch()
    connection = await aio_pika.connect(args.broker)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=2000)
    data = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    statuses = await channel.declare_exchange(status_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    data_queue = await channel.declare_queue(exclusive=True)
    await data_queue.bind(data, "#")
    await data_queue.consume(watch.on_data, no_ack=True)
    status_queue = await channel.declare_queue(exclusive=True)
    await status_queue.bind(statuses, "status.#")
    await status_queue.consume(watch.on_status, no_ack=True)
    parent = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [sys.executable, "main.py", "--config", str(work / "config.json"), "--workers", str(workers)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(args.warmup * 3)  # dozens of connections to open per shard
        shards = children_of(parent.pid)
        pids = {"parent": parent.pid, **{f"shard {index + 1}": pid for index, pid in enumerate(shards)},
                **other_processes(sim)}
        watch.reset()
        conflated0 = watch.conflated()
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        frames0, machine0, t0 = sim.frames_sent(), machine_busy(), time.monotonic()
        await asyncio.sleep(args.seconds)
        frames1, machine1, t1 = sim.frames_sent(), machine_busy(), time.monotonic()
        shares = {name: (cpu_seconds(pid) - cpu0[name]) / (t1 - t0) for name, pid in pids.items()}
        await asyncio.sleep(1.5)  # the heartbeat that covers the window's end
        conflated1 = watch.conflated()
        rss = [rss_mb(pid) for pid in shards]
        received = watch.received
    finally:
        parent.send_signal(signal.SIGTERM)
        await asyncio.to_thread(parent.wait, 60)
        await connection.close()
        await delete_exchange(args.broker, exchange)
        await delete_exchange(args.broker, status_exchange)
    elapsed = t1 - t0
    shard_cpu = sum(share for name, share in shares.items() if name.startswith("shard")) * elapsed
    conflated_per_s = per_second(conflated0, conflated1)
    p50, p99 = watch.receipt_to_publish_ms.percentiles(0.5, 0.99)
    return {
        "shards": len(shards),
        "in_rate": (frames1 - frames0) / elapsed,
        "conflated_per_s": conflated_per_s,
        "consumed_per_s": received / elapsed,
        "cpu_us_per_frame": shard_cpu / max(frames1 - frames0, 1) * 1e6,
        "cpu_us_per_delivered": shard_cpu / max(received, 1) * 1e6,
        "receipt_to_publish": (p50, p99),
        "shares": shares,
        "machine": busy(machine0, machine1),
        "rss": rss,
    }


def per_second(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """A heartbeat counter's rate summed over the shards, each over the span between its own two heartbeats."""
    rate = 0.0
    for name, (sent1, count1) in after.items():
        sent0, count0 = before.get(name, (sent1, count1))
        rate += (count1 - count0) / (max(sent1 - sent0, 1) / 1000)
    return rate


async def workers_bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    from simulator.server import VENUE_NAMES  # noqa: PLC0415

    print(f"--workers scaling: 8 futures + 4 spot sources x the default instrument list, depth 20, "
          f"{args.workers_rate:g} book updates/s per symbol, simulator in its own process, {os.cpu_count()} cores")
    sim = await SimulatorProcess(list(VENUE_NAMES), None, args.workers_rate).start()
    rows: list[tuple[str, str]] = []
    try:
        for workers in (1, 2):
            result = await measure(args, sim, workers)
            p50, p99 = result["receipt_to_publish"]
            name = f"--workers {workers}"
            rows += [
                (f"{name}: venue messages received/s", fmt(result["in_rate"])),
                (f"{name}: delivered to the consumer/s", fmt(result["consumed_per_s"])),
                (f"{name}: conflated/s (from the shards' heartbeats)", fmt(result["conflated_per_s"])),
                (f"{name}: shards' CPU µs per message received / delivered",
                 f"{fmt(result['cpu_us_per_frame'])} / {fmt(result['cpu_us_per_delivered'])}"),
                (f"{name}: receipt→publish p50 / p99 (ms, 1 ms resolution)", f"{fmt(p50, 0)} / {fmt(p99, 0)}"),
                (f"{name}: CPU share per process (1.0 = one core)",
                 ", ".join(f"{process} {share:.2f}" for process, share in result["shares"].items())),
                (f"{name}: machine", result["machine"]),
                (f"{name}: shard RSS (MB)", " / ".join(fmt(mb) for mb in result["rss"])),
            ]
    finally:
        await sim.stop()
    return rows
