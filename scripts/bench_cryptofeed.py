"""scripts/bench.py --vs-cryptofeed: this collector beside a peer, cryptofeed 2.4.1, on the same simulated feed.

For each offered rate, one simulator process (`python -m simulator`, Binance only, --symbols N) feeds, one after the
other (back to back):

1. this project's collector (main.py's FuturesScan in its own process, best bid/ask only: orderbook_depth 0,
   futures only, Binance only), publishing to a RabbitMQ exchange of its own;
2. cryptofeed's BinanceFutures feed, TICKER (bookTicker) on the same symbols, with its RabbitMQ backend
   (scripts/cryptofeed_peer.py in the bench's own virtualenv `.venv-bench`, made here on first use; cryptofeed is
   never a dependency of the project).

A consumer in this process binds `#` on each party's exchange and measures what a user of either would see:
messages delivered per second, the feed process's CPU per delivered message (its /proc CPU time over the window),
the latency from the simulator's event time in the payload (Binance's `E`, stamped when the simulator sends the
frame) to receipt here (same host, same clock, 1 ms resolution), and at the end of the window how old the data
still arriving is and what is still waiting (the collector's pending updates; for cryptofeed, frames the
simulator sent that have not reached the consumer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import orjson

from scripts.bench import (
    ROOT,
    Child,
    SimulatorProcess,
    busy,
    collector_config,
    collector_role,
    cpu_seconds,
    delete_exchange,
    fmt,
    machine_busy,
    other_processes,
    rss_mb,
    symbols_for,
)
from utils.latency import LatencyWindow

BENCH_VENV = ROOT / ".venv-bench"
CRYPTOFEED_VERSION = "2.4.1"
CRYPTOFEED_REQUIREMENT = f"cryptofeed[rabbit]=={CRYPTOFEED_VERSION}"
PEER_SCRIPT = ROOT / "scripts" / "cryptofeed_peer.py"
PEER_PACKAGES = ("cryptofeed", "uvloop", "websockets", "aio-pika", "yapic.json")
OUR_PACKAGES = ("ccxt", "aiormq", "aio-pika", "orjson")
FIRST_MESSAGE_WITHIN = 120.0
"""Seconds a party may take from start to its first delivered message (imports, market list, connect)."""
END_SLICE_SECONDS = 1.0
"""The last part of the window whose messages tell how old the data is at the end."""


# --- the bench's own virtualenv ---------------------------------------------------------------------------


def installed_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """Versions of `packages` in the interpreter `python` (its own environment, not this one); {} if it is not there."""
    if not python.exists():
        return {}
    script = ("import importlib.metadata as m, json, sys\n"
              "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    done = subprocess.run([str(python), "-c", script, *packages], capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def ensure_bench_venv() -> Path:
    """`.venv-bench/bin/python` with cryptofeed 2.4.1 and its RabbitMQ extra, made on first use (pip from PyPI)."""
    python = BENCH_VENV / "bin" / "python"
    if installed_versions(python, ("cryptofeed",)).get("cryptofeed") == CRYPTOFEED_VERSION:
        return python
    print(f"making {BENCH_VENV.name}/ with {CRYPTOFEED_REQUIREMENT} (first run only; it compiles a C extension)")
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check",
                    CRYPTOFEED_REQUIREMENT], check=True)
    return python


# --- the consumer ---------------------------------------------------------------------------------------------


@dataclass
class Deliveries:
    """What the consumer saw of one party: counts, event → receipt latency, and the newest messages' ages."""

    times_ms: Callable[[dict[str, Any]], tuple[float, float]]
    """(the simulator's event time, the feed's own receipt time) in ms, from this party's payload."""
    total: int = 0
    window: int = 0
    latency_ms: LatencyWindow = field(default_factory=lambda: LatencyWindow(1 << 20))
    """Event → receipt here."""
    before_feed_ms: LatencyWindow = field(default_factory=lambda: LatencyWindow(1 << 20))
    """Event → the feed's receipt: time in the simulator's socket and in the feed's unread WebSocket frames."""
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=200_000))
    """(receipt on the monotonic clock, age in ms) of the latest messages."""

    def record(self, body: bytes) -> None:
        event, feed_receipt = self.times_ms(orjson.loads(body))
        age = time.time() * 1000 - event
        self.total += 1
        self.window += 1
        self.latency_ms.record(age)
        self.before_feed_ms.record(feed_receipt - event)
        self.recent.append((time.monotonic(), age))

    def start_window(self) -> None:
        self.window = 0
        self.latency_ms.reset()
        self.before_feed_ms.reset()

    def ages_since(self, moment: float) -> list[float]:
        return sorted(age for received, age in self.recent if received >= moment)


async def consume(broker_url: str, exchange_name: str, deliveries: Deliveries) -> aio_pika.abc.AbstractConnection:
    connection = await aio_pika.connect(broker_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "#")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        deliveries.record(message.body)

    await queue.consume(on_message, no_ack=True)
    return connection


# --- the two parties ------------------------------------------------------------------------------------------


class Party(Protocol):
    name: str

    def times_ms(self, body: dict[str, Any]) -> tuple[float, float]: ...

    async def start(self, sim: SimulatorProcess, broker_url: str, exchange: str, symbols: list[str]) -> None: ...

    @property
    def pid(self) -> int: ...

    async def window_started(self) -> None: ...

    async def waiting_at_end(self, sent_since_start: int, delivered_since_start: int) -> str: ...

    async def stop(self) -> None: ...


class Collector:
    """This project's collector: main.py's FuturesScan in its own process (bench.py's collector_role)."""

    name = "futures-scan collector"

    def __init__(self) -> None:
        self._child: Child | None = None
        self._before: dict[str, Any] = {}

    def times_ms(self, body: dict[str, Any]) -> tuple[float, float]:
        # the venue event time of the newest part of the state and when the collector received it ("The message")
        return body["timestamp"], body["received_timestamp"]

    async def start(self, sim: SimulatorProcess, broker_url: str, exchange: str, symbols: list[str]) -> None:
        self._child = Child(collector_role, collector_config(sim, broker_url, exchange, symbols, 0))

    @property
    def pid(self) -> int:
        assert self._child is not None
        return self._child.pid

    async def window_started(self) -> None:
        assert self._child is not None
        self._before = await asyncio.to_thread(self._child.ask, "reset")

    async def waiting_at_end(self, sent_since_start: int, delivered_since_start: int) -> str:
        assert self._child is not None
        after = await asyncio.to_thread(self._child.ask, "stats")
        conflated = after["conflated"] - self._before["conflated"]
        return f"{after['pending']} pending updates (≤ 1 per symbol); {conflated:,} conflated in the window"

    async def stop(self) -> None:
        if self._child is not None:
            await asyncio.to_thread(self._child.stop)


class Cryptofeed:
    """cryptofeed's BinanceFutures TICKER feed with TickerRabbit, run by scripts/cryptofeed_peer.py."""

    name = f"cryptofeed {CRYPTOFEED_VERSION}"

    def __init__(self, python: Path, loop: str, work: Path) -> None:
        self.python = python
        self.loop = loop
        self.work = work
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: Any = None

    def times_ms(self, body: dict[str, Any]) -> tuple[float, float]:
        # Ticker.timestamp is Binance's `E`; receipt_timestamp is when cryptofeed read the frame; both in seconds
        return body["timestamp"] * 1000, body["receipt_timestamp"] * 1000

    async def start(self, sim: SimulatorProcess, broker_url: str, exchange: str, symbols: list[str]) -> None:
        from simulator.instruments import INSTRUMENTS  # noqa: PLC0415

        venue_ids = {instrument.unified_symbol: instrument.venue_id for instrument in INSTRUMENTS}
        base = f"127.0.0.1:{sim.port}/binance"
        self._stderr = (self.work / "cryptofeed.stderr").open("wb")
        self._process = await asyncio.create_subprocess_exec(
            str(self.python), str(PEER_SCRIPT), "--http", f"http://{base}", "--ws", f"ws://{base}",
            "--amqp", broker_url.removeprefix("amqp://"), "--exchange", exchange,
            "--symbols", ",".join(venue_ids[symbol] for symbol in symbols), "--loop", self.loop,
            "--log-file", str(self.work / "feedhandler.log"),
            cwd=self.work, stdin=asyncio.subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
        )

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def window_started(self) -> None:
        return None

    async def waiting_at_end(self, sent_since_start: int, delivered_since_start: int) -> str:
        return f"{sent_since_start - delivered_since_start:,} frames sent, not yet delivered (it never drops one)"

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 15)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._stderr is not None:
            self._stderr.close()

    def warnings(self) -> list[str]:
        log = self.work / "cryptofeed.stderr"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return [line for line in lines if " : WARNING : " in line or " : ERROR : " in line]


# --- one party on the feed -------------------------------------------------------------------------------------


async def wait_for_first_message(deliveries: Deliveries, party: Party, process_alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + FIRST_MESSAGE_WITHIN
    while deliveries.total == 0:
        if not process_alive():
            raise RuntimeError(f"{party.name} exited before delivering a message")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{party.name} delivered nothing within {FIRST_MESSAGE_WITHIN:.0f} s")
        await asyncio.sleep(0.1)


def load_average() -> str:
    """1, 5 and 15 minute load averages: other work on a shared machine shows here."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "-"


def machine_row(before: tuple[int, int], after: tuple[int, int], steal: int, bench_cores: float) -> str:
    """How busy the machine was, and how much of that was work outside this bench (other users of a shared box)."""
    total = max(after[1] - before[1], 1)
    outside = (after[0] - before[0]) / total * (os.cpu_count() or 1) - bench_cores
    return f"{busy(before, after)}; outside this bench {max(outside, 0.0):.2f} core; steal {steal / total:.0%}"


def steal_jiffies() -> int:
    """CPU time the hypervisor gave to other guests (all cores, since boot): a shared box's hidden load."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def measure(party: Party, sim: SimulatorProcess, broker_url: str, symbols: list[str], warmup: float,
                  seconds: float) -> dict[str, Any]:
    exchange = f"bench_vs_cryptofeed_{uuid.uuid4().hex[:8]}"
    deliveries = Deliveries(party.times_ms)
    consumer = await consume(broker_url, exchange, deliveries)
    sent_at_start = sim.frames_sent()
    try:
        await party.start(sim, broker_url, exchange, symbols)
        await wait_for_first_message(deliveries, party, lambda: alive(party.pid))
        await asyncio.sleep(warmup)
        await party.window_started()
        deliveries.start_window()
        busy0, steal0 = machine_busy(), steal_jiffies()
        cpu0, sent0, t0 = cpu_seconds(party.pid), sim.frames_sent(), time.monotonic()
        others0 = {name: cpu_seconds(pid) for name, pid in other_processes(sim).items()}
        await asyncio.sleep(seconds)
        cpu1, sent1, t1 = cpu_seconds(party.pid), sim.frames_sent(), time.monotonic()
        busy1, steal1 = machine_busy(), steal_jiffies()
        others = {name: (cpu_seconds(pid) - others0[name]) / (t1 - t0) for name, pid in other_processes(sim).items()}
        delivered, delivered_total = deliveries.window, deliveries.total
        end_ages = deliveries.ages_since(t1 - END_SLICE_SECONDS)
        p50, p99 = deliveries.latency_ms.percentiles(0.5, 0.99)
        before_feed_p50, before_feed_p99 = deliveries.before_feed_ms.percentiles(0.5, 0.99)
        waiting = await party.waiting_at_end(sent1 - sent_at_start, delivered_total)
        rss = rss_mb(party.pid)
    finally:
        await party.stop()
        await consumer.close()
        await delete_exchange(broker_url, exchange)
    elapsed = t1 - t0
    return {
        "offered_per_s": (sent1 - sent0) / elapsed,
        "delivered_per_s": delivered / elapsed,
        "cpu_us_per_delivered": (cpu1 - cpu0) / max(delivered, 1) * 1e6,
        "cpu_us_per_offered": (cpu1 - cpu0) / max(sent1 - sent0, 1) * 1e6,
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "before_feed": f"{fmt(before_feed_p50, 0)} / {fmt(before_feed_p99, 0)}",
        "end_age_p50_ms": end_ages[len(end_ages) // 2] if end_ages else None,
        "end_age_max_ms": end_ages[-1] if end_ages else None,
        "waiting_at_end": waiting,
        "rss_mb": rss,
        "others": " / ".join(f"{share:.0%}" for share in others.values()),
        "others_names": " / ".join(others),
        "machine": machine_row(busy0, busy1, steal1 - steal0, (cpu1 - cpu0) / elapsed + sum(others.values())),
    }


# --- the scenario ----------------------------------------------------------------------------------------------


def side_by_side(rate: float, ours: dict[str, Any], peer: dict[str, Any]) -> list[tuple[str, str, str]]:
    def both(key: str, digits: int = 1, unit: str = "") -> tuple[str, str]:
        return f"{fmt(ours[key], digits)}{unit}", f"{fmt(peer[key], digits)}{unit}"

    at = f"@{rate:,.0f}/s"
    return [
        (f"{at} frames offered by the simulator per s", *both("offered_per_s", 0)),
        (f"{at} messages delivered to the consumer per s", *both("delivered_per_s", 0)),
        (f"{at} CPU µs per delivered message", *both("cpu_us_per_delivered", 0)),
        (f"{at} CPU µs per offered frame", *both("cpu_us_per_offered", 0)),
        (f"{at} feed process CPU (share of one core)", *both("cpu_share", 2)),
        (f"{at} event → consumer latency p50 (ms)", *both("latency_p50_ms", 0)),
        (f"{at} event → consumer latency p99 (ms)", *both("latency_p99_ms", 0)),
        (f"{at} of which event → the feed's own receipt, p50 / p99 (ms)", ours["before_feed"], peer["before_feed"]),
        (f"{at} age of data arriving in the last 1 s, p50 / max (ms)",
         f"{fmt(ours['end_age_p50_ms'], 0)} / {fmt(ours['end_age_max_ms'], 0)}",
         f"{fmt(peer['end_age_p50_ms'], 0)} / {fmt(peer['end_age_max_ms'], 0)}"),
        (f"{at} waiting at the end", ours["waiting_at_end"], peer["waiting_at_end"]),
        (f"{at} feed process RSS (MB)", *both("rss_mb", 0)),
        (f"{at} CPU share of {ours['others_names']}", ours["others"], peer["others"]),
        (f"{at} the machine during the window", ours["machine"], peer["machine"]),
    ]


def print_side_by_side(rows: list[tuple[str, str, str]]) -> None:
    headers = ("measure", Collector.name, Cryptofeed.name)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(3)]
    print()
    print("| " + " | ".join(text.ljust(width) for text, width in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print("| " + " | ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)) + " |")


async def vs_cryptofeed_bench(args: argparse.Namespace) -> None:
    python = await asyncio.to_thread(ensure_bench_venv)
    rates = [float(rate) for rate in args.vs_cryptofeed_rates.split(",") if rate.strip()]
    symbols = symbols_for(args.symbols)
    ours = {name: importlib.metadata.version(name) for name in OUR_PACKAGES}
    theirs = installed_versions(python, PEER_PACKAGES)
    print(f"peer: {', '.join(f'{name} {version}' for name, version in theirs.items())}; "
          f"event loop {args.cryptofeed_loop}")
    print(f"collector: {', '.join(f'{name} {version}' for name, version in ours.items())}; "
          f"Python {sys.version.split()[0]}")
    print(f"load average at the start: {load_average()}")
    print(f"feed: Binance USDⓈ-M bookTicker, {len(symbols)} symbols; offered {', '.join(f'{r:,.0f}' for r in rates)} "
          f"msg/s; warmup {args.warmup:g} s, window {args.seconds:g} s per party, back to back on one simulator")
    rows: list[tuple[str, str, str]] = []
    peer_warnings: list[str] = []
    for rate in rates:
        sim = await SimulatorProcess(["binance"], len(symbols), rate / len(symbols)).start()
        try:
            ours_result = await measure(Collector(), sim, args.broker, symbols, args.warmup, args.seconds)
            with tempfile.TemporaryDirectory(prefix="bench-cryptofeed-") as work:
                peer = Cryptofeed(python, args.cryptofeed_loop, Path(work))
                peer_result = await measure(peer, sim, args.broker, symbols, args.warmup, args.seconds)
                peer_warnings += peer.warnings()
        finally:
            await sim.stop()
        rows += side_by_side(rate, ours_result, peer_result)
    print_side_by_side(rows)
    if peer_warnings:
        print(f"\ncryptofeed logged {len(peer_warnings)} warning(s)/error(s), first: {peer_warnings[0]}")
    print(f"load average at the end: {load_average()}")
