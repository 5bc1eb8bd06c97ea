"""Benchmark: simulator feed → collector → RabbitMQ → consumer, beside bare ccxt.pro on the same feed.

Each party runs in its own process, as in production: the simulator (python -m simulator), the
collector (or the bare ccxt.pro reference) and, in this process, a queue consumer. CPU is read from
/proc for the collector's process only, so the simulator, broker and consumer do not count.

    python scripts/bench.py                       # default: 20 symbols x 250 updates/s on Binance
    python scripts/bench.py --symbols 20 --rate 250 --seconds 20
    python scripts/bench.py --overload            # publish capacity throttled, feed at 4x of it
    python scripts/bench.py --soak 600            # 2 venues x 20 symbols for 10 min, RSS sampled
    python scripts/bench.py --full-universe --universe-size 300   # 12 sources x 300 symbols, engine + tracker
    python scripts/bench.py --full-universe --universe-size 0     # 12 sources on the default instrument list
    python scripts/bench.py --monitor             # the monitor: CPU per message, API under load, 100 WebSockets
    python scripts/bench.py --history             # the history store: rows/s, 12 h query p99, recorder CPU/message
    python scripts/bench.py --workers             # main.py --workers 1 vs 2 on the 12-source feed, depth 20
    python scripts/bench.py --vs-cryptofeed       # beside cryptofeed 2.4.1 on the same feed, 1,000 and 5,000 msg/s
    python scripts/bench.py --log-stream          # the publish path with and without the market-data log bound

Figures are printed as a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import orjson  # noqa: E402

from simulator.process import SimulatorProcess as SimulatorChild  # noqa: E402
from utils.latency import LatencyWindow  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


# --- process measurements ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the simulator process --------------------------------------------------------------------------


class SimulatorProcess:
    """`python -m simulator` as its own process (simulator/process.py), plus its admin API."""

    def __init__(
        self, venues: list[str], symbols: int | None, rate: float, extra_args: list[str] | None = None
    ) -> None:
        args = ["--symbols", str(symbols)] if symbols else []
        self.child = SimulatorChild(venues, port=0, rate=rate, extra_args=[*args, *(extra_args or [])])

    async def start(self) -> SimulatorProcess:
        await self.child.start(ready_within=120)
        self.port = self.child.port
        self.venues = self.child.venues
        return self

    @property
    def pid(self) -> int:
        return self.child.pid

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/admin/state", timeout=5) as response:
            return json.loads(response.read())

    def frames_sent(self) -> int:
        return sum(venue["frames_sent"] for venue in self.state().values())

    def fault(self, venue: str, fault: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/admin/fault", method="POST",
                                         data=json.dumps({"exchange": venue, "fault": fault}).encode())
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def ccxt_config(self, venue: str) -> dict[str, Any]:
        return self.child.ccxt_config(venue)

    async def stop(self) -> None:
        await self.child.stop()


# --- child processes: the collector and the bare ccxt.pro reference ----------------------------------


def collector_role(config_json: str, pipe: Connection) -> None:
    from main import FuturesScan  # noqa: PLC0415
    from models.config import AppConfig  # noqa: PLC0415
    from utils.logger import setup_logging  # noqa: PLC0415

    async def serve() -> None:
        config = AppConfig.model_validate_json(config_json)
        setup_logging(config.logging)
        app = FuturesScan(config)
        await app.start()
        await app.publisher.wait_connected()
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "reset":
                app.publisher.latency_ms.reset()
            elif command == "stop":
                await app.stop()
            p50, p99 = app.publisher.latency_ms.percentiles(0.5, 0.99)
            pipe.send({
                **app.publisher.stats.as_dict(),
                "pending": app.publisher.pending,
                "receipt_to_publish_p50_ms": p50,
                "receipt_to_publish_p99_ms": p99,
                "updates": sum(c.stats.updates for c in app.collectors),
                "frames": sum(c.stats.frames for c in app.collectors),
            })
            if command == "stop":
                return

    asyncio.run(serve())


def bare_role(ccxt_configs: dict[str, dict[str, Any]], symbols: list[str], pipe: Connection) -> None:
    """Plain ccxt.pro: the same subscriptions, awaited in the usual loops, nothing published."""
    import ccxt.pro  # noqa: PLC0415

    from collectors.venues import futures_source  # noqa: PLC0415

    async def watch_forever(exchange: Any, watch: Any) -> None:
        while True:
            await watch(exchange, symbols)

    async def serve() -> None:
        exchanges = []
        tasks = []
        for venue_name, config in ccxt_configs.items():
            venue = futures_source(venue_name)
            exchange = getattr(ccxt.pro, venue.ccxt_id)(ccxt.Exchange.deep_extend(venue.ccxt_defaults, config))
            await exchange.load_markets()
            exchanges.append(exchange)
            tasks += [asyncio.create_task(watch_forever(exchange, spec.watch)) for spec in venue.streams(0)]
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, pipe.recv) != "stop":
            pipe.send({})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for exchange in exchanges:
            await exchange.close()
        pipe.send({})

    asyncio.run(serve())


class Child:
    def __init__(self, target: Any, *args: Any) -> None:
        self.pipe, child_end = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, child_end))
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def ask(self, command: str) -> dict[str, Any]:
        self.pipe.send(command)
        return self.pipe.recv()

    def stop(self) -> dict[str, Any]:
        result = self.ask("stop")
        self.process.join(15)
        return result


# --- the consumer (this process) ---------------------------------------------------------------------


@dataclass
class ConsumerStats:
    received: int = 0
    publish_to_consume_ms: LatencyWindow = field(default_factory=LatencyWindow)
    staleness_ms: LatencyWindow = field(default_factory=LatencyWindow)
    """consume time - received_timestamp: how old the data is when a consumer gets it."""
    max_staleness_ms: float = 0.0
    queue: Any = None
    """The consumer's queue, for its depth."""

    def reset(self) -> None:
        self.received = 0
        self.max_staleness_ms = 0.0
        self.publish_to_consume_ms.reset()
        self.staleness_ms.reset()


async def consume(url: str, exchange_name: str, stats: ConsumerStats) -> aio_pika.abc.AbstractConnection:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "#")
    stats.queue = queue

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now_ms = time.time() * 1000
        body = orjson.loads(message.body)
        stats.received += 1
        stats.publish_to_consume_ms.record(now_ms - body["published_timestamp"])
        staleness = now_ms - body["received_timestamp"]
        stats.staleness_ms.record(staleness)
        stats.max_staleness_ms = max(stats.max_staleness_ms, staleness)

    await queue.consume(on_message, no_ack=True)
    return connection


# --- a throttled link: "the rate the machine can publish", made small and known ------------------------


class ThrottledProxy:
    """Forwards to the broker at most `bytes_per_second` upstream, so publishing is the bottleneck."""

    def __init__(self, target: tuple[str, int], bytes_per_second: float) -> None:
        self.target = target
        self.rate = bytes_per_second
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer, throttle=True),
            self._pipe(upstream_reader, writer, throttle=False),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, throttle: bool) -> None:
        chunk = 4096 if throttle else 65536
        while data := await reader.read(chunk):
            writer.write(data)
            await writer.drain()
            if throttle:
                await asyncio.sleep(len(data) / self.rate)

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# --- scenarios ------------------------------------------------------------------------------------------


def collector_config(sim: SimulatorProcess, broker_url: str, exchange: str, symbols: list[str], depth: int,
                     log_stream: dict[str, Any] | None = None) -> str:
    """config.json for the collector process, as a user would write it for the simulator."""
    return json.dumps({
        "rabbitmq": {"url": broker_url, "exchange": exchange, "connection_name": "futures-scan bench",
                     "log_stream": log_stream},
        "exchanges": [{"name": venue, "ccxt": sim.ccxt_config(venue)} for venue in sim.venues],
        "symbols": symbols,
        "collection": {"orderbook_depth": depth, "statistics_interval_seconds": 3600, "max_message_age_ms": 60000},
        "logging": {"level": "WARNING", "file": None},
        "control": {"enabled": False, "state_file": None},
        "metrics": {"port": 0},  # no fixed port on a shared machine
        "api_keys_file": None,
    })


def symbols_for(count: int) -> list[str]:
    from simulator.instruments import INSTRUMENTS  # noqa: PLC0415

    return [instrument.unified_symbol for instrument in INSTRUMENTS[:count]]


async def measure_bare(sim: SimulatorProcess, symbols: list[str], warmup: float, seconds: float) -> dict[str, Any]:
    child = Child(bare_role, {venue: sim.ccxt_config(venue) for venue in sim.venues}, symbols)
    await asyncio.sleep(warmup)
    frames0, cpu0, t0 = sim.frames_sent(), cpu_seconds(child.pid), time.monotonic()
    await asyncio.sleep(seconds)
    frames1, cpu1, t1 = sim.frames_sent(), cpu_seconds(child.pid), time.monotonic()
    rss = rss_mb(child.pid)
    await asyncio.to_thread(child.stop)
    frames = frames1 - frames0
    return {
        "in_rate": frames / (t1 - t0),
        "cpu_us_per_message": (cpu1 - cpu0) / max(frames, 1) * 1e6,
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "rss_mb": rss,
    }


async def measure_collector(
    sim: SimulatorProcess, broker_url: str, symbols: list[str], depth: int, warmup: float, seconds: float,
    proxy_bytes_per_second: float | None = None, log_stream: dict[str, Any] | None = None,
) -> dict[str, Any]:
    exchange = f"futures_data_bench_{uuid.uuid4().hex[:8]}"
    consumer_stats = ConsumerStats()
    consumer = await consume(broker_url, exchange, consumer_stats)
    proxy = None
    collector_url = broker_url
    if proxy_bytes_per_second:
        from urllib.parse import urlsplit, urlunsplit  # noqa: PLC0415

        parts = urlsplit(broker_url)
        proxy = ThrottledProxy((parts.hostname or "127.0.0.1", parts.port or 5672), proxy_bytes_per_second)
        await proxy.start()
        collector_url = urlunsplit(
            (parts.scheme, f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}", parts.path, "", "")
        )
    child = Child(collector_role, collector_config(sim, collector_url, exchange, symbols, depth, log_stream))
    try:
        await asyncio.sleep(warmup)
        before = await asyncio.to_thread(child.ask, "reset")
        consumer_stats.reset()
        frames0, cpu0, t0 = sim.frames_sent(), cpu_seconds(child.pid), time.monotonic()
        others0 = {name: cpu_seconds(pid) for name, pid in other_processes(sim).items()}
        rss_start = rss_mb(child.pid)
        await asyncio.sleep(seconds)
        frames1, cpu1, t1 = sim.frames_sent(), cpu_seconds(child.pid), time.monotonic()
        others = {name: (cpu_seconds(pid) - others0[name]) / (t1 - t0) for name, pid in other_processes(sim).items()}
        after = await asyncio.to_thread(child.ask, "stats")
        rss_end = rss_mb(child.pid)
        received = consumer_stats.received
    finally:
        await asyncio.to_thread(child.stop)
        await consumer.close()
        if proxy is not None:
            await proxy.stop()
        await delete_exchange(broker_url, exchange)
    elapsed = t1 - t0
    published = after["published"] - before["published"]
    p2c50, p2c99 = consumer_stats.publish_to_consume_ms.percentiles(0.5, 0.99)
    stale50, stale99 = consumer_stats.staleness_ms.percentiles(0.5, 0.99)
    return {
        "in_rate": (frames1 - frames0) / elapsed,
        "published_per_s": published / elapsed,
        "conflated_per_s": (after["conflated"] - before["conflated"]) / elapsed,
        "consumed_per_s": received / elapsed,
        "cpu_us_per_published": (cpu1 - cpu0) / max(published, 1) * 1e6,
        "cpu_us_per_frame": (cpu1 - cpu0) / max(frames1 - frames0, 1) * 1e6,
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "receipt_to_publish_p50_ms": after["receipt_to_publish_p50_ms"],
        "receipt_to_publish_p99_ms": after["receipt_to_publish_p99_ms"],
        "publish_to_consume_p50_ms": p2c50,
        "publish_to_consume_p99_ms": p2c99,
        "staleness_p50_ms": stale50,
        "staleness_p99_ms": stale99,
        "staleness_max_ms": consumer_stats.max_staleness_ms,
        "pending_at_end": after["pending"],
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "cpu_share_others": others,
    }


def other_processes(sim: SimulatorProcess) -> dict[str, int]:
    """The processes sharing the machine's cores with the collector during a measurement."""
    processes = {"simulator": sim.pid, "consumer (this process)": os.getpid()}
    beam = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True, check=False).stdout.split()
    if beam:
        processes["rabbitmq (beam.smp)"] = int(beam[0])
    return processes


async def measure_aio_pika_publish(broker_url: str, body_size: int, count: int = 20000) -> float:
    """CPU µs per message of aio-pika's own publish (no confirms, not mandatory), for comparison."""
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.declare_exchange(f"bench_aio_pika_{uuid.uuid4().hex[:8]}",
                                                  aio_pika.ExchangeType.TOPIC, auto_delete=True)
        body = b"x" * body_size
        start = time.process_time()
        for i in range(count):
            await exchange.publish(aio_pika.Message(body), routing_key=f"futures.bench.S{i % 20}", mandatory=False)
        spent = time.process_time() - start
        await exchange.delete()
    return spent / count * 1e6


def measure_encoder(body_size: int, count: int = 200000) -> float:
    from publishers.amqp_frames import PublishFrameEncoder  # noqa: PLC0415

    encoder = PublishFrameEncoder(1, "futures_data", 131072)
    body = b"x" * body_size
    keys = [f"futures.bench.S{i}" for i in range(20)]
    start = time.process_time()
    frames: list[bytes] = []
    for i in range(count):
        encoder.encode(keys[i % 20], body, frames)
        if len(frames) > 3000:
            b"".join(frames)
            frames.clear()
    return (time.process_time() - start) / count * 1e6


# --- the full universe: 12 sources, collector + spread engine + tracker --------------------------------------


SATURATED_CORES = 0.9 * (os.cpu_count() or 1)


def shares_row(collector_share: float, others: dict[str, float]) -> tuple[str, str]:
    """CPU shares of every process on the machine's cores, and whether they add up to saturation."""
    total = collector_share + sum(others.values())
    state = "SATURATED" if total >= SATURATED_CORES else "not saturated"
    return (
        "CPU share: collector / " + " / ".join(others) + f" (sum; {os.cpu_count()} cores)",
        " / ".join(f"{share:.0%}" for share in (collector_share, *others.values())) + f" (sum {total:.0%}: {state})",
    )


async def queue_depths(broker_url: str, queues: list[str]) -> dict[str, int]:
    """message_count of each queue, by passive queue_declare (works without the management plugin)."""
    depths: dict[str, int] = {}
    connection = await aio_pika.connect(broker_url)
    async with connection:
        for name in queues:
            with contextlib.suppress(Exception):
                channel = await connection.channel()
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
    return depths


async def consumer_queues(broker_url: str) -> list[str]:
    """The queues on the broker, by the management API when enabled (else [])."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(broker_url)
    request = urllib.request.Request(f"http://{parts.hostname or '127.0.0.1'}:15672/api/queues")
    import base64  # noqa: PLC0415

    token = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: ASYNC210 - once, before measuring
            return [queue["name"] for queue in json.loads(response.read())]
    except OSError:
        return []


async def stop_processes(collector: Child | None, others: list[subprocess.Popen[bytes]]) -> None:
    """The collector child (it prints its final statistics), then SIGTERM to the others, 15 s each at most."""
    if collector is not None:
        await asyncio.to_thread(collector.stop)
    for process in others:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 15)


async def discover(work: Path) -> None:
    """scripts/discover.py on work/config.json, as a user runs it: the universe lands in work/generated."""
    discovered = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/discover.py", "--config", str(work / "config.json"),
        "--output", str(work / "generated"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, errors = await discovered.communicate()
    if discovered.returncode != 0:
        raise RuntimeError(f"discovery failed: {errors.decode()[-2000:]}")


async def full_universe(args: argparse.Namespace) -> list[tuple[str, str]]:
    """All 12 sources x N symbols on the simulator; the collector with "symbols": "auto", the spread engine
    and the tracker each in their own process, as a user runs them."""
    import tempfile  # noqa: PLC0415

    from simulator.server import VENUE_NAMES  # noqa: PLC0415

    extra = ["--universe-size", str(args.universe_size)] if args.universe_size else []
    label = f"{args.universe_size} symbols" if args.universe_size else "the default instrument list"
    print(f"full universe: 8 futures + 4 spot sources x {label}, {args.universe_rate:g} updates/s per symbol")
    sim = await SimulatorProcess(list(VENUE_NAMES), None, args.universe_rate, extra).start()
    tag = uuid.uuid4().hex[:8]
    exchange, analytics = f"futures_data_bench_{tag}", f"futures_analytics_bench_{tag}"
    work = Path(tempfile.mkdtemp(prefix="bench-universe-"))
    config = {
        "rabbitmq": {"url": args.broker, "exchange": exchange, "connection_name": "futures-scan bench"},
        "exchanges": [{"name": venue, "ccxt": sim.ccxt_config(venue)} for venue in sim.venues],
        "symbols": "auto", "markets": ["futures", "spot"], "universe_dir": str(work / "generated"),
        "collection": {"orderbook_depth": 20, "statistics_interval_seconds": 3600, "max_message_age_ms": 60000},
        "logging": {"level": "WARNING", "file": None},
        "control": {"enabled": False, "state_file": None},
        "spreads": {"analytics_exchange": analytics},
        "tracker": {"directory": str(work / "tracks")},
        "api_keys_file": None,
    }
    (work / "config.json").write_text(json.dumps(config))
    processes: list[subprocess.Popen[bytes]] = []
    consumer = spreads = None
    child: Child | None = None
    try:
        await discover(work)
        stats = ConsumerStats()
        consumer = await consume(args.broker, exchange, stats)
        spread_latency = LatencyWindow()
        spread_count = [0]
        spreads = await consume_spreads(args.broker, analytics, spread_latency, spread_count)
        child = Child(collector_role, json.dumps(config))
        for module in ("consumers.spread_engine", "consumers.spread_tracker"):
            processes.append(subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [sys.executable, "-m", module, "--config", str(work / "config.json")], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        engine, tracker = processes
        await asyncio.sleep(args.warmup * 3)  # dozens of connections to open
        before = await asyncio.to_thread(child.ask, "reset")
        stats.reset()
        spread_latency.reset()
        spread_count[0] = 0
        pids = {"collector": child.pid, "simulator": sim.pid, "spread engine": engine.pid, "tracker": tracker.pid,
                "consumer (this process)": os.getpid()}
        beam = other_processes(sim).get("rabbitmq (beam.smp)")
        if beam:
            pids["rabbitmq (beam.smp)"] = beam
        from consumers.spread_tracker import EVENTS_QUEUE  # noqa: PLC0415

        managed = [name for name in await consumer_queues(args.broker) if name.startswith("amq.gen")]
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        frames0, t0 = sim.frames_sent(), time.monotonic()
        depth_samples: list[dict[str, int]] = []
        step = max(args.seconds / 6, 1.0)
        while time.monotonic() - t0 < args.seconds:
            await asyncio.sleep(step)
            depths = await queue_depths(args.broker, [EVENTS_QUEUE, *managed])
            with contextlib.suppress(Exception):
                declared = await stats.queue.channel.declare_queue(stats.queue.name, passive=True)
                depths["bench consumer (the engine's bindings)"] = declared.declaration_result.message_count or 0
            depth_samples.append(depths)
        frames1, t1 = sim.frames_sent(), time.monotonic()
        shares = {name: (cpu_seconds(pid) - cpu0[name]) / (t1 - t0) for name, pid in pids.items()}
        after = await asyncio.to_thread(child.ask, "stats")
        rss = {name: rss_mb(pids[name]) for name in ("collector", "spread engine", "tracker")}
    finally:
        await stop_processes(child, processes)
        for connection in (consumer, spreads):
            if connection is not None:
                await connection.close()
        await sim.stop()
        await delete_exchange(args.broker, exchange)
        await delete_exchange(args.broker, analytics)
    elapsed = t1 - t0
    received = frames1 - frames0
    published = after["published"] - before["published"]
    collector_cpu = shares["collector"] * elapsed
    updates = stats.received
    p50, p99 = spread_latency.percentiles(0.5, 0.99)
    collector_share = shares.pop("collector")
    return [
        ("universe: venue messages received/s", fmt(received / elapsed)),
        ("universe: published/s / conflated/s",
         f"{fmt(published / elapsed)} / {fmt((after['conflated'] - before['conflated']) / elapsed)}"),
        ("universe: collector CPU µs per message received / published",
         f"{fmt(collector_cpu / max(received, 1) * 1e6)} / {fmt(collector_cpu / max(published, 1) * 1e6)}"),
        ("universe: receipt→publish p50 / p99 (ms)",
         f"{fmt(after['receipt_to_publish_p50_ms'], 2)} / {fmt(after['receipt_to_publish_p99_ms'], 2)}"),
        ("universe: spread engine CPU µs per quote update",
         fmt(shares["spread engine"] * elapsed / max(updates, 1) * 1e6)),
        ("universe: spread snapshots published/s", fmt(spread_count[0] / elapsed)),
        ("universe: newest leg's receipt → spread evaluated p50 / p99 (ms)", f"{fmt(p50, 0)} / {fmt(p99, 0)}"),
        ("universe: RSS collector / spread engine / tracker (MB)", " / ".join(fmt(mb) for mb in rss.values())),
        ("universe: queue depth over time, max over the consumers' queues (tracker events, a consumer with the "
         "engine's bindings" + (", every queue by the management API" if managed else "") + ")",
         " ".join(str(max(sample.values(), default=0)) for sample in depth_samples)),
        shares_row(collector_share, shares),
    ]


async def consume_spreads(
    url: str, analytics: str, latency: LatencyWindow, count: list[int]
) -> aio_pika.abc.AbstractConnection:
    """Spread snapshots from the engine: newest leg's collector receipt → evaluation time, for snapshots a new
    quote triggered. The engine also re-evaluates a direction when a leg's other parts (mark price, funding)
    update; the quote in such a snapshot is older, and its age is not the engine's latency."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(analytics, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "spread.#")

    newest_seen: dict[str, int] = {}  # routing key (one direction of one symbol) -> newest quote receipt so far

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        count[0] += 1
        legs = [body["buy"].get("received_timestamp"), body["sell"].get("received_timestamp")]
        newest = max((leg for leg in legs if leg is not None), default=None)
        key = message.routing_key or ""
        if newest is not None and newest > newest_seen.get(key, 0):
            newest_seen[key] = newest
            latency.record(body["timestamp"] - newest)

    await queue.consume(on_message, no_ack=True)
    return connection


# --- the monitor: consumption, HTTP under load, 100 WebSocket clients ---------------------------------------


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy(before: tuple[int, int], after: tuple[int, int]) -> str:
    """The machine's CPU use between two machine_busy() readings, e.g. '97% of 2 cores: SATURATED'."""
    share = (after[0] - before[0]) / max(after[1] - before[1], 1)
    return f"{share:.0%} of {os.cpu_count()} cores" + (": SATURATED" if share >= 0.9 else "")


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def http_latencies(base: str, paths: list[str], rate: float, seconds: float) -> dict[str, LatencyWindow]:
    """GET the paths in turn, `rate` requests per second in all (0: one after another, 200 each), in ms."""
    import aiohttp  # noqa: PLC0415

    windows = {path: LatencyWindow() for path in paths}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        async def one(path: str) -> None:
            start = time.perf_counter()
            async with session.get(base + path) as response:
                await response.read()
            windows[path].record((time.perf_counter() - start) * 1000)

        if rate == 0:
            for _ in range(200):
                for path in paths:
                    await one(path)
            return windows
        tasks = []
        start = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                tasks.append(asyncio.create_task(one(paths[sent % len(paths)])))
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    return windows


async def websocket_clients(base: str, clients: int, seconds: float) -> list[list[float]]:
    """`clients` WebSocket clients at 1 Hz for `seconds`: each one's frame arrival times."""
    import aiohttp  # noqa: PLC0415

    arrivals: list[list[float]] = [[] for _ in range(clients)]
    async with aiohttp.ClientSession() as session:
        async def client(times: list[float]) -> None:
            async with session.ws_connect(base.replace("http", "ws") + "/ws/stream?top=20&interval_ms=1000") as ws:
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await ws.receive(timeout=left)
                        times.append(time.monotonic())

        await asyncio.gather(*(client(times) for times in arrivals))
    return arrivals


def demo_stack_config(broker: str, sim: SimulatorProcess, work: Path, tag: str, rabbitmq: dict[str, Any],
                      collection: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """The demo stack's config.json on the simulator's 12 sources ("symbols": "auto", depth 20), on the bench's
    own exchanges (rabbitmq) and intervals (collection), with the scenario's extra sections."""
    return {
        "rabbitmq": {"url": broker, "connection_name": f"futures-scan bench {tag}", **rabbitmq},
        "exchanges": [{"name": venue, "ccxt": sim.ccxt_config(venue)} for venue in sim.venues],
        "symbols": "auto", "markets": ["futures", "spot"], "universe_dir": str(work / "generated"),
        "collection": {"orderbook_depth": 20, "max_message_age_ms": 60000, **collection},
        "logging": {"level": "WARNING", "file": None},
        "control": {"enabled": False, "state_file": None},
        "metrics": {"port": 0},
        "api_keys_file": None,
        **sections,
    }


async def monitor_bench(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The demo stack on the default instrument list (12 sources), the monitor as `python -m monitor`."""
    import tempfile  # noqa: PLC0415

    from simulator.server import VENUE_NAMES  # noqa: PLC0415

    rate = args.monitor_feed_rate
    print(f"monitor: 8 futures + 4 spot sources x the default instrument list, {rate:g} updates/s per symbol")
    sim = await SimulatorProcess(list(VENUE_NAMES), None, rate).start()
    tag = uuid.uuid4().hex[:8]
    exchange, analytics, status = (f"{name}_bench_{tag}" for name in ("futures_data", "futures_analytics", "status"))
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = demo_stack_config(
        args.broker, sim, work, tag, {"exchange": exchange, "status_exchange": status},
        {"statistics_interval_seconds": 3600, "status_interval_seconds": 1},
        spreads={"analytics_exchange": analytics}, monitor={"port": port, "max_ws_clients": 200},
    )
    (work / "config.json").write_text(json.dumps(config))
    processes: list[subprocess.Popen[bytes]] = []
    child: Child | None = None
    rows: list[tuple[str, str]] = []
    try:
        await discover(work)
        child = Child(collector_role, json.dumps(config))
        for module in ("consumers.spread_engine", "monitor"):
            processes.append(subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [sys.executable, "-m", module, "--config", str(work / "config.json")], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        monitor_pid = processes[1].pid
        await asyncio.sleep(args.warmup * 3)

        def health() -> dict[str, Any]:
            """/health's monitor part; a 503 (no fresh heartbeat, nothing ok) still carries it."""
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as response:
                    return json.loads(response.read())["monitor"]
            except urllib.error.HTTPError as error:
                return json.loads(error.read())["monitor"]

        def consumed() -> int:
            return sum(health()["consumed"].values())

        def lag_p99() -> str:
            """How far behind the feed the monitor is: its receipt minus the collector's publish time."""
            return fmt(health()["queue_lag_ms"]["p99"], 0)
        # 1. consuming the whole feed, nobody asking
        engine_pid = processes[0].pid
        cpu0, engine0, box0 = cpu_seconds(monitor_pid), cpu_seconds(engine_pid), machine_busy()
        count0, t0 = await asyncio.to_thread(consumed), time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu1, engine1, box1 = cpu_seconds(monitor_pid), cpu_seconds(engine_pid), machine_busy()
        count1, t1 = await asyncio.to_thread(consumed), time.monotonic()
        messages = count1 - count0
        rows += [
            ("monitor: messages consumed/s (market + spread + opportunity + status)", fmt(messages / (t1 - t0))),
            ("monitor: CPU µs per consumed message, nobody asking", fmt((cpu1 - cpu0) / max(messages, 1) * 1e6)),
            ("monitor: CPU share consuming the feed; spread engine's on the same feed; machine busy",
             f"{(cpu1 - cpu0) / (t1 - t0):.0%}; {(engine1 - engine0) / (t1 - t0):.0%}; {busy(box0, box1)}"),
            ("monitor: queue lag p99 (ms), nobody asking", await asyncio.to_thread(lag_p99)),
        ]
        # 2. the API: one request at a time, then a few hundred a second with the feed running, then frozen
        paths = ["/snapshot?exchange=binance&symbol=BTCUSDT", "/api/spreads?top=20"]
        idle = await http_latencies(base, paths, 0, 0)
        for label in ("feed running", "feed frozen"):
            if label == "feed frozen":
                for venue in sim.venues:
                    await asyncio.to_thread(sim.fault, venue, "freeze")
                await asyncio.sleep(2)
            count0, cpu0, box0, t0 = await asyncio.to_thread(consumed), cpu_seconds(monitor_pid), machine_busy(), \
                time.monotonic()
            loaded = await http_latencies(base, paths, args.monitor_rps, args.seconds)
            count1, cpu1, box1, t1 = await asyncio.to_thread(consumed), cpu_seconds(monitor_pid), machine_busy(), \
                time.monotonic()
            for path in paths:
                p50, p99 = idle[path].percentiles(0.5, 0.99)
                l50, l99 = loaded[path].percentiles(0.5, 0.99)
                rows.append((f"monitor: GET {path} p50 / p99 ms: one at a time → {args.monitor_rps:g} req/s, "
                             f"{label} (p99 ratio)",
                             f"{fmt(p50, 2)} / {fmt(p99, 2)} → {fmt(l50, 2)} / {fmt(l99, 2)} "
                             f"({(l99 or 0) / max(p99 or 1e-9, 1e-9):.1f}x)"))
            served = sum(len(window) for window in loaded.values())
            rows.append((f"monitor: {label}: requests served/s ({args.monitor_rps:g} asked); messages consumed/s; "
                         "queue lag p99 (ms); monitor CPU share; machine busy",
                         f"{fmt(served / (t1 - t0))}; {fmt((count1 - count0) / (t1 - t0))}; "
                         f"{await asyncio.to_thread(lag_p99)}; {(cpu1 - cpu0) / (t1 - t0):.0%}; {busy(box0, box1)}"))
        for venue in sim.venues:
            await asyncio.to_thread(sim.fault, venue, "unfreeze")
        # 3. 100 WebSocket clients at 1 Hz
        cpu0, box0, t0 = cpu_seconds(monitor_pid), machine_busy(), time.monotonic()
        arrivals = await websocket_clients(base, args.monitor_clients, args.seconds)
        cpu1, box1, t1 = cpu_seconds(monitor_pid), machine_busy(), time.monotonic()
        counts = [len(times) for times in arrivals]
        gaps = [max((b - a for a, b in itertools.pairwise(times)), default=0.0) for times in arrivals]
        behind = sum(1 for count, gap in zip(counts, gaps, strict=True) if count < args.seconds - 2 or gap > 2.5)
        rows += [
            (f"monitor: {args.monitor_clients} WebSocket clients at 1 Hz: frames per client min / max over "
             f"{args.seconds:g} s", f"{min(counts)} / {max(counts)}"),
            (f"monitor: {args.monitor_clients} WebSocket clients: longest gap between frames (s); clients behind "
             "(a gap > 2.5 s or frames missing)", f"{max(gaps):.2f}; {behind}"),
            (f"monitor: CPU share with {args.monitor_clients} WebSocket clients and the feed; machine busy",
             f"{(cpu1 - cpu0) / (t1 - t0):.0%}; {busy(box0, box1)}"),
            ("monitor: RSS (MB)", fmt(rss_mb(monitor_pid))),
        ]
    finally:
        await stop_processes(child, processes)
        await sim.stop()
        for name in (exchange, analytics, status):
            await delete_exchange(args.broker, name)
    return rows


# --- report ----------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default=os.environ.get("RABBITMQ_URL", DEFAULT_BROKER), help="AMQP URL")
    parser.add_argument("--symbols", type=int, default=20, help="symbols streamed (default 20)")
    parser.add_argument("--rate", type=float, default=250, help="book updates per symbol per second (default 250)")
    parser.add_argument("--seconds", type=float, default=15, help="measurement window per scenario (default 15)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before each window (default 5)")
    parser.add_argument("--overload", action="store_true", help="also run the throttled-publishing scenario")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                        help="also run 2 venues x 20 symbols for this long, sampling the collector's RSS")
    parser.add_argument("--full-universe", action="store_true",
                        help="only the full-universe scenario: 8 futures + 4 spot sources x --universe-size "
                             "symbols, collector (\"symbols\": \"auto\") + spread engine + tracker")
    parser.add_argument("--universe-size", type=int, default=300, metavar="N",
                        help="symbols per venue in --full-universe, passed to the simulator as --universe-size "
                             "(default 300; 0 = the simulator's default instrument list, no flag passed)")
    parser.add_argument("--universe-rate", type=float, default=1.0, metavar="R",
                        help="book updates per symbol per second in --full-universe (default 1)")
    parser.add_argument("--monitor", action="store_true",
                        help="only the monitor scenario: the demo stack on 12 sources with python -m monitor; its "
                             "CPU per consumed message, API latency under load, WebSocket clients")
    parser.add_argument("--monitor-rps", type=float, default=300, metavar="N",
                        help="requests per second of the --monitor load generator (default 300)")
    parser.add_argument("--monitor-feed-rate", type=float, default=5.0, metavar="R",
                        help="book updates per symbol per second in --monitor (default 5: main.py --demo's rate)")
    parser.add_argument("--monitor-clients", type=int, default=100, metavar="N",
                        help="WebSocket clients at 1 Hz in --monitor (default 100)")
    parser.add_argument("--history", action="store_true",
                        help="the history store: rows/s into SQLite and PostgreSQL, the 12 h series query's p99, "
                             "the recorder's CPU per message on the demo feed")
    parser.add_argument("--history-rows", type=int, default=200_000, metavar="N",
                        help="watch_signal_raw rows written per backend in --history (default 200000)")
    parser.add_argument("--history-directions", type=int, default=1000, metavar="N",
                        help="directions with 7 days of 5-minute bars in --history (default 1000)")
    parser.add_argument("--history-admin-dsn", default=os.environ.get(
                        "TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"), metavar="DSN",
                        help="a PostgreSQL role that may create the bench's scratch database")
    parser.add_argument("--workers", action="store_true",
                        help="main.py --workers 1 and 2 on the 12-source feed, depth 20: throughput, conflation, "
                        "CPU per message, receipt→publish")
    parser.add_argument("--workers-rate", type=float, default=10.0, metavar="R",
                        help="with --workers: book updates per symbol per second (default 10)")
    parser.add_argument("--vs-cryptofeed", action="store_true",
                        help="only the peer comparison: this collector and cryptofeed 2.4.1 (its BinanceFutures "
                             "best bid/ask with its RabbitMQ backend, in .venv-bench) back to back on one simulator")
    parser.add_argument("--vs-cryptofeed-rates", default="1000,5000", metavar="R1,R2",
                        help="total bookTicker messages/s offered in --vs-cryptofeed, one simulator per rate "
                             "(default 1000,5000)")
    parser.add_argument("--cryptofeed-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="cryptofeed's event loop in --vs-cryptofeed (default uvloop, cryptofeed's own default)")
    parser.add_argument("--log-stream", action="store_true",
                        help="only the market-data log's cost: the default scenario's collector measured without and "
                             "with rabbitmq.log_stream bound, alternately, on one simulator")
    args = parser.parse_args()
    if args.workers:
        from scripts.bench_workers import workers_bench  # noqa: PLC0415

        print_table(await workers_bench(args))
        return
    if args.vs_cryptofeed:
        from scripts.bench_cryptofeed import vs_cryptofeed_bench  # noqa: PLC0415 - its own scenario module

        await vs_cryptofeed_bench(args)
        return
    if args.log_stream:
        from scripts.bench_log_stream import log_stream_bench  # noqa: PLC0415

        print_table(await log_stream_bench(args))
        return
    if args.history:
        from scripts.bench_history import history_bench  # noqa: PLC0415 - asyncpg only for this scenario

        print_table(await history_bench(args))
        return
    if args.monitor:
        print_table(await monitor_bench(args))
        return
    if args.full_universe:
        print_table(await full_universe(args))
        return
    symbols = symbols_for(args.symbols)
    rows: list[tuple[str, str]] = []

    print(f"feed: Binance bookTicker + markPrice + miniTicker, {args.symbols} symbols x {args.rate:g} updates/s")
    sim = await SimulatorProcess(["binance"], args.symbols, args.rate).start()
    try:
        bare = await measure_bare(sim, symbols, args.warmup, args.seconds)
        collector = await measure_collector(sim, args.broker, symbols, 0, args.warmup, args.seconds)
    finally:
        await sim.stop()
    ratio = collector["cpu_us_per_published"] / bare["cpu_us_per_message"]
    ratio_received = collector["cpu_us_per_frame"] / bare["cpu_us_per_message"]
    rows += [
        ("bare ccxt.pro: in-rate (msg/s)", fmt(bare["in_rate"])),
        ("bare ccxt.pro: CPU µs per message", fmt(bare["cpu_us_per_message"])),
        ("collector: in-rate (msg/s)", fmt(collector["in_rate"])),
        ("collector: published/s", fmt(collector["published_per_s"])),
        ("collector: conflated/s", fmt(collector["conflated_per_s"])),
        ("collector: CPU µs per published message", fmt(collector["cpu_us_per_published"])),
        ("collector: CPU µs per venue message received", fmt(collector["cpu_us_per_frame"])),
        ("collector CPU per message / bare ccxt.pro", f"{ratio:.2f}x"),
        ("collector CPU per message received / bare ccxt.pro", f"{ratio_received:.2f}x"),
        ("receipt→publish p50 / p99 (ms)",
         f"{fmt(collector['receipt_to_publish_p50_ms'], 3)} / {fmt(collector['receipt_to_publish_p99_ms'], 3)}"),
        ("publish→consume p50 / p99 (ms, 1 ms resolution)",
         f"{fmt(collector['publish_to_consume_p50_ms'], 0)} / {fmt(collector['publish_to_consume_p99_ms'], 0)}"),
        ("consumer received/s", fmt(collector["consumed_per_s"])),
        ("collector RSS (MB)", fmt(collector["rss_end_mb"])),
        shares_row(collector["cpu_share"], collector["cpu_share_others"]),
    ]
    body_size = 330
    aio_pika_us = await measure_aio_pika_publish(args.broker, body_size)
    encoder_us = measure_encoder(body_size)
    rows += [
        (f"aio-pika publish, CPU µs per {body_size}-byte message", fmt(aio_pika_us)),
        (f"futures-scan frame encoder, CPU µs per {body_size}-byte message", fmt(encoder_us, 2)),
    ]

    if args.overload:
        capacity = 1000.0
        bytes_per_message = 480  # ~330-byte body plus AMQP framing
        rate = 4 * capacity / args.symbols
        print(f"overload: publishing throttled to ~{capacity:.0f} msg/s, feed at {4 * capacity:.0f} updates/s")
        sim = await SimulatorProcess(["binance"], args.symbols, rate).start()
        try:
            overload = await measure_collector(
                sim, args.broker, symbols, 0, args.warmup, args.seconds,
                proxy_bytes_per_second=capacity * bytes_per_message,
            )
        finally:
            await sim.stop()
        rows += [
            ("overload: in-rate (msg/s)", fmt(overload["in_rate"])),
            ("overload: published/s", fmt(overload["published_per_s"])),
            ("overload: conflated/s", fmt(overload["conflated_per_s"])),
            ("overload: staleness at consumer p50 / p99 / max (ms)",
             f"{fmt(overload['staleness_p50_ms'], 0)} / {fmt(overload['staleness_p99_ms'], 0)} / "
             f"{fmt(overload['staleness_max_ms'], 0)}"),
            ("overload: pending updates at end (≤ symbols)", fmt(overload["pending_at_end"])),
            ("overload: RSS start → end (MB)", f"{fmt(overload['rss_start_mb'])} → {fmt(overload['rss_end_mb'])}"),
        ]

    if args.soak:
        print(f"soak: binance + bybit, 20 symbols, depth 20, {args.soak:.0f} s")
        sim = await SimulatorProcess(["binance", "bybit"], 20, 10).start()
        try:
            samples = await soak(sim, args.broker, symbols_for(20), args.soak)
        finally:
            await sim.stop()
        rows.append(("soak: collector RSS samples (MB)", " ".join(f"{mb:.0f}" for _, mb in samples)))

    print_table(rows)


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print()
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


async def soak(sim: SimulatorProcess, broker_url: str, symbols: list[str], seconds: float) -> list[tuple[float, float]]:
    exchange = f"futures_data_bench_{uuid.uuid4().hex[:8]}"
    stats = ConsumerStats()
    consumer = await consume(broker_url, exchange, stats)
    child = Child(collector_role, collector_config(sim, broker_url, exchange, symbols, 20))
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    try:
        step = max(seconds / 20, 1.0)
        while (elapsed := time.monotonic() - started) < seconds:
            await asyncio.sleep(step)
            samples.append((elapsed, rss_mb(child.pid)))
    finally:
        await asyncio.to_thread(child.stop)
        await consumer.close()
        await delete_exchange(broker_url, exchange)
    return samples


async def delete_exchange(broker_url: str, exchange: str, queue: str | None = None) -> None:
    """The bench's own exchange (and durable queue) gone again: a shared broker keeps nothing of a run."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(broker_url)
        async with connection:
            channel = await connection.channel()
            if queue is not None:
                await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)


if __name__ == "__main__":
    asyncio.run(main())
