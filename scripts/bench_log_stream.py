"""scripts/bench.py --log-stream: what the market-data log (rabbitmq.log_stream) costs on the publish path.

The default scenario's feed (Binance, --symbols x --rate, best bid/ask) from one simulator; the collector measured
alternately without and with the stream bound to its exchange, ROUNDS times each, so both see the same feed and the
same neighbours on the machine. The stream's work (appending to disk) is the broker's: its CPU share is printed
beside the collector's.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import uuid
from typing import Any

import aio_pika

from scripts.bench import SimulatorProcess, fmt, measure_collector, symbols_for

ROUNDS = 2
BROKER = "rabbitmq (beam.smp)"


def stream_length(name: str) -> str:
    """Messages in the stream by rabbitmqctl, where it answers (a local broker), else '-'."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages"], capture_output=True,
                                text=True, timeout=30, check=True).stdout
        for line in listed.splitlines():
            queue, _, messages = line.partition("\t")
            if queue == name:
                return f"{int(messages):,}"
    return "-"


async def delete_stream(broker_url: str, name: str) -> None:
    """The bench's stream gone again: a shared broker keeps nothing of a run."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(broker_url)
        async with connection:
            await (await connection.channel()).queue_delete(name)


def figures(label: str, measured: dict[str, Any]) -> tuple[str, str]:
    broker_share = measured["cpu_share_others"].get(BROKER)
    return (
        f"{label}: in/s → published/s (conflated/s); CPU µs per published message; receipt→publish p99 (ms); "
        "CPU share collector / broker",
        f"{fmt(measured['in_rate'], 0)} → {fmt(measured['published_per_s'], 0)} "
        f"({fmt(measured['conflated_per_s'], 0)}); {fmt(measured['cpu_us_per_published'])}; "
        f"{fmt(measured['receipt_to_publish_p99_ms'], 2)}; {measured['cpu_share']:.0%} / "
        + (f"{broker_share:.0%}" if broker_share is not None else "-"),
    )


async def log_stream_bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    symbols = symbols_for(args.symbols)
    stream = f"futures_data_log_bench_{uuid.uuid4().hex[:8]}"
    log_stream = {"name": stream, "max_age": "1h", "max_bytes": 2_000_000_000}
    print(f"log stream: Binance bookTicker + markPrice + miniTicker, {args.symbols} symbols x {args.rate:g} updates/s; "
          f"collector without / with stream '{stream}' bound, {ROUNDS} rounds")
    sim = await SimulatorProcess(["binance"], args.symbols, args.rate).start()
    rows: list[tuple[str, str]] = []
    try:
        for round_number in range(1, ROUNDS + 1):
            for label, settings in (("without the log", None), ("with the log", log_stream)):
                measured = await measure_collector(sim, args.broker, symbols, 0, args.warmup, args.seconds,
                                                   log_stream=settings)
                rows.append(figures(f"round {round_number}, {label}", measured))
        rows.append(("messages in the stream at the end (rabbitmqctl)", stream_length(stream)))
    finally:
        await sim.stop()
        await delete_stream(args.broker, stream)
    return rows
