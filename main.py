"""futures-scan: stream perpetual-futures market data from many venues into RabbitMQ.

    python main.py                      # collect with config.json
    python main.py --demo               # offline: the built-in exchange simulator, started as a child process
    python main.py --shard 2/4          # one of four processes, each streaming its share of the symbols
    python main.py --workers 2          # two such processes on this host under this one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from collectors.exchange_collector import ExchangeCollector
from collectors.venues import sources_for
from control import merge
from control.listener import ControlListener
from control.registry import SymbolRegistry
from control.service import ControlService
from control.state_store import StateStore
from discovery.follower import UniverseFollower
from models.config import AppConfig, ExchangeConfig
from models.shard import MAX_SHARDS, Shard
from models.universe import read_universe
from publishers.durable_queues import QueueSettingsChanged
from publishers.log_stream import log_stream_tasks
from publishers.rabbitmq_publisher import RabbitMQPublisher
from publishers.status_heartbeat import StatusHeartbeat
from simulator.process import SimulatorExited, SimulatorProcess
from simulator.server import DEFAULT_PORT
from utils.config_loader import ConfigError, config_path, load_api_keys, load_config
from utils.logger import setup_logging
from utils.prometheus_metrics import MetricsServer
from utils.statistics import Statistics
from utils.worker_pool import Worker, WorkerPool

log = logging.getLogger("main")

MAIN = Path(__file__).resolve()

COLLECTOR_RESTART_SECONDS = 5.0
DEMO_RATE = 5.0
"""--demo's book updates per symbol per second on the default 25-perpetual list."""
DEMO_BOOK_UPDATES_PER_VENUE = 125.0
"""--demo-universe N keeps each venue's book feed at the default one's (25 x 5 per second)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description=(
            "Stream best bid/ask, order books, funding and mark prices of crypto perpetual futures from "
            "several exchanges through ccxt.pro, normalize them into one JSON contract and publish them to "
            "RabbitMQ (topic exchange futures_data, routing key futures.<exchange>.<SYMBOL>)."
        ),
        epilog="Stop with Ctrl+C or SIGTERM: streams close, final statistics are printed, exit code 0.",
    )
    parser.add_argument(
        "--config",
        default="config.json",
        metavar="PATH",
        help="config file (default: config.json; with --demo, config.example.json when config.json is missing)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="offline demo: start the built-in exchange simulator as a child process (python -m simulator) and "
        "point every configured exchange at it through ccxt URL overrides; it stops with this process "
        "(RabbitMQ is still the real one from the config)",
    )
    parser.add_argument(
        "--demo-port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"port of the simulator started by --demo (default {DEFAULT_PORT}; 0 = any free port)",
    )
    parser.add_argument(
        "--demo-rate",
        type=float,
        default=None,
        metavar="N",
        help=f"simulator book updates per symbol per second with --demo (default {DEMO_RATE:g}; with "
        f"--demo-universe N: {DEMO_BOOK_UPDATES_PER_VENUE:g} / N, so a big universe feeds as busily as the default "
        "one and the demo shows what the collector does, not a saturated box)",
    )
    parser.add_argument(
        "--demo-universe",
        type=int,
        default=None,
        metavar="N",
        help="with --demo: the simulator lists N perpetuals per venue (realistic names, e.g. 300; default: 25 majors)",
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="stream only shard K of N of the symbols (a stable hash of each symbol decides; shards never overlap "
        "and together cover the set); this process gets its own connection name, control queue, state file and "
        "metrics port (<name>-shard-K-of-N, metrics port + K - 1). Wins over config.json's \"shard\"",
    )
    parser.add_argument(
        "--workers",
        type=workers_count,
        metavar="N",
        help="run N collector processes on this host, shards 1/N..N/N (as --shard), under this one: it forwards "
        "Ctrl+C/SIGTERM, restarts a crashed one with a growing pause, and prints the merged final statistics. "
        "With --demo they share one simulator",
    )
    parser.add_argument("--simulator-endpoints", help=argparse.SUPPRESS)  # --workers --demo: the shared simulator
    parser.add_argument("--final-statistics", help=argparse.SUPPRESS)  # --workers: where a shard leaves its totals
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="override logging.level from the config",
    )
    return parser.parse_args(argv)


def workers_count(text: str) -> int:
    count = int(text) if text.isdigit() else 0
    if not 1 <= count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes, 1..{MAX_SHARDS}")
    return count


def resolve_config(args: argparse.Namespace) -> AppConfig:
    config = load_config(config_path(args.config, example_if_missing=args.demo))
    if args.log_level:
        config.logging.level = args.log_level
    if args.workers is not None and (args.shard is not None or config.shard is not None):
        raise ConfigError("--workers N starts shards 1/N..N/N itself: drop --shard and config.json's \"shard\"")
    if args.shard is not None:
        try:
            config.shard = str(Shard.parse(args.shard))
        except ValueError as error:
            raise ConfigError(f"--shard: {error}") from None
    name_shard(config)
    return config


def name_shard(config: AppConfig) -> None:
    """A shard's own connection name, control queue, state file and metrics port, so several run side by side
    (on one host or many) without answering each other's commands or overwriting each other's state."""
    shard = config.shard_of()
    if shard.count == 1:
        return
    config.rabbitmq.connection_name = f"{config.rabbitmq.connection_name}-{shard.label}"
    config.control.queue = f"{config.control.queue}.{shard.label}"
    if config.control.state_file:
        state_file = Path(config.control.state_file)
        config.control.state_file = str(state_file.with_name(f"{state_file.stem}.{shard.label}{state_file.suffix}"))
    if config.metrics.port:
        config.metrics.port += shard.index - 1


def check_universe(config: AppConfig) -> None:
    """"symbols": "auto" needs a universe from scripts/discover.py."""
    if config.symbols != "auto":
        return
    try:
        universe = read_universe(config.universe_dir)
    except FileNotFoundError:
        raise ConfigError(
            f'"symbols" is "auto" but {config.universe_dir}/universe.json is missing: run '
            "python scripts/discover.py first (add --demo to discover on the simulator)"
        ) from None
    except ValueError as error:
        raise ConfigError(f"{config.universe_dir}/universe.json is not a universe: {error}") from None
    if not universe.futures_symbols():
        raise ConfigError(f"{config.universe_dir}/universe.json lists no perpetuals")


class SimulatorEndpoints(Protocol):
    """What point_at_simulator needs: an in-process Simulator or a SimulatorProcess both provide it."""

    @property
    def venues(self) -> Any: ...

    def ccxt_config(self, venue: str) -> dict[str, Any]: ...


def demo_rate(args: argparse.Namespace) -> float:
    """Book updates per symbol per second: as asked, else the default, spread over a bigger universe."""
    if args.demo_rate is not None:
        return args.demo_rate
    return DEMO_BOOK_UPDATES_PER_VENUE / args.demo_universe if args.demo_universe else DEMO_RATE


def demo_simulator_args(args: argparse.Namespace) -> list[str]:
    """Extra `python -m simulator` arguments for --demo (beyond venues, port and rate)."""
    return ["--universe-size", str(args.demo_universe)] if args.demo_universe else []


def point_at_simulator(config: AppConfig, simulator: SimulatorEndpoints) -> None:
    """Replace each exchange's ccxt block by the URL overrides that reach the simulator; keep the
    demo's symbol changes apart from the real collector's, and the real API keys out of it."""
    config.api_keys_file = None
    if config.control.state_file:
        state_file = Path(config.control.state_file)
        config.control.state_file = str(state_file.with_name(f"{state_file.stem}.demo{state_file.suffix}"))
    config.exchanges = [
        ExchangeConfig(name=exchange.name, ccxt=simulator.ccxt_config(exchange.name))
        for exchange in config.exchanges
        if exchange.name in simulator.venues
    ]


class FuturesScan:
    """The running product: one shared publisher, one task per venue, periodic statistics."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.publisher = RabbitMQPublisher(
            urls=config.rabbitmq.amqp_urls(),
            exchange=config.rabbitmq.exchange,
            max_message_age_ms=config.collection.max_message_age_ms,
            retry_delays=config.collection.retry_delays,
            max_in_flight=config.rabbitmq.max_in_flight,
            connection_name=f"{config.rabbitmq.connection_name} publisher",
        )
        control = config.control
        universe_symbols = None
        if config.symbols == "auto":
            universe_dir = config.universe_dir

            def universe_symbols() -> list[str]:
                return read_universe(universe_dir).futures_symbols()

        base = universe_symbols() if universe_symbols is not None else config.symbols
        self.registry = SymbolRegistry(
            base, StateStore(control.state_file) if control.state_file else None, config.shard_of()
        )
        if self.registry.restore():
            log.info("restored symbol changes and watchlist from %s", control.state_file)
        keys = load_api_keys(config.api_keys_file, [exchange.name for exchange in config.exchanges])
        self.collectors = [
            ExchangeCollector(
                source, exchange, self.registry.wanted(source.source_id), config.collection, self.publisher,
                keys.get(exchange.name),
            )
            for exchange in config.exchanges
            for source in sources_for(exchange.name, config.markets)
        ]
        if "spot" in config.markets:
            without_spot = [e.name for e in config.exchanges if len(sources_for(e.name, ["spot"])) == 0]
            if without_spot:
                log.warning("no spot source for %s; collecting their futures only", ", ".join(without_spot))
        self.statistics = Statistics(
            [collector.stats for collector in self.collectors], self.publisher.stats, self.publisher.latency_ms,
            self.publisher.status_latency_ms,
        )
        self.control = ControlService(
            self.registry, self.collectors, self.statistics, control.default_watch_ttl_seconds, universe_symbols
        )
        self.listener = (
            ControlListener(
                config.rabbitmq.amqp_urls(), control.queue, control.responses_exchange, self.control,
                control.max_message_bytes, collector_name=config.rabbitmq.connection_name,
                broadcast_exchange=control.broadcast_exchange, queue_type=config.rabbitmq.queue_type,
            )
            if control.enabled
            else None
        )
        self.universe_follower = (
            UniverseFollower(config.universe_dir, config.discovery.watch_seconds, self.control.follow_universe,
                             read_universe(config.universe_dir), log)
            if universe_symbols is not None
            else None
        )
        """With "auto": a rediscovered universe is picked up while running (scripts/discover.py --every)."""
        self.heartbeat = self._status_heartbeat(config) if config.collection.status_interval_seconds > 0 else None
        self.metrics = (
            MetricsServer(self.statistics, config.metrics.host, config.metrics.port) if config.metrics.port else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    def _status_heartbeat(self, config: AppConfig) -> StatusHeartbeat:
        name, interval = config.rabbitmq.connection_name, config.collection.status_interval_seconds
        stale_after = config.collection.stale_after_seconds
        return StatusHeartbeat(
            config.rabbitmq.amqp_urls(), config.rabbitmq.status_exchange, interval, name,
            lambda: self.statistics.collector_status(name, interval, stale_after),
        )

    async def start(self) -> None:
        await self.publisher.start()
        if self.metrics is not None and await self.metrics.start():
            self.publisher.observe_latency_seconds = self.metrics.receipt_to_publish.observe
        shard = self.registry.shard
        owned = [symbol for symbol in self.registry.symbols if shard.owns(symbol)]
        log.info(
            "collecting %s from %s%s",
            ", ".join(owned) or "nothing yet",
            ", ".join(collector.venue.source_id for collector in self.collectors),
            f" (shard {shard}: {len(owned)} of the {len(self.registry.symbols)} symbols)" if shard.count > 1 else "",
        )
        self._tasks = [
            asyncio.create_task(keep_running(collector), name=collector.venue.source_id)
            for collector in self.collectors
        ]
        interval = self.config.collection.statistics_interval_seconds
        self._tasks += [
            asyncio.create_task(self.statistics.report_forever(interval), name="statistics"),
            asyncio.create_task(self.statistics.sample_forever(), name="statistics-sampler"),
            asyncio.create_task(self.control.expire_forever(), name="watchlist-expiry"),
        ]
        self._tasks += log_stream_tasks(self.config.rabbitmq, self.publisher.wait_connected)
        if self.listener is not None:
            self._tasks.append(asyncio.create_task(self._listen(self.listener), name="control"))
        if self.universe_follower is not None:
            self._tasks.append(asyncio.create_task(self.universe_follower.run(), name="universe-follower"))
        if self.heartbeat is not None:
            await self.heartbeat.start()

    async def stop(self) -> None:
        """Stop listening, heartbeats and streaming (each venue closes its ccxt exchange), then flush and close
        RabbitMQ; /metrics last, so it counts to the end."""
        if self.listener is not None:
            await self.listener.close()
        if self.heartbeat is not None:
            await self.heartbeat.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.publisher.close()
        if self.metrics is not None:
            await self.metrics.close()

    @staticmethod
    async def _listen(listener: ControlListener) -> None:
        """Start the control listener once RabbitMQ answers; aio-pika's robust connection keeps it after."""
        delay = 1.0
        while True:
            try:
                await listener.start()
                return
            except QueueSettingsChanged as error:
                log.error("%s; the collector runs on WITHOUT control commands", error)
                return
            except Exception as error:
                log.warning("control listener not started yet (%s: %s); retrying in %.0f s",
                            type(error).__name__, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


async def start_demo_simulator(config: AppConfig, args: argparse.Namespace) -> SimulatorProcess | None:
    """--demo: the simulator as a child process, every configured exchange pointed at it; None if it failed."""
    simulator = SimulatorProcess(
        venues=[exchange.name for exchange in config.exchanges],
        port=args.demo_port,
        rate=demo_rate(args),
        extra_args=demo_simulator_args(args),
    )
    try:
        await simulator.start()
    except (SimulatorExited, TimeoutError) as error:
        log.error("demo: the exchange simulator did not start: %s", error or "no answer within 60 s")
        return None
    point_at_simulator(config, simulator)
    log.info(
        "demo: exchanges point at the simulator on %s; move prices with POST %s/admin/shift "
        '{"exchange": "binance", "symbol": "BTC/USDT:USDT", "bps": 50, "seconds": 60}',
        simulator.http_base, simulator.http_base,
    )
    return simulator


@dataclass
class AttachedSimulator:
    """A simulator another process started (the --workers parent's): its ccxt overrides, read from a file."""

    ccxt: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, path: str) -> AttachedSimulator:
        return cls(orjson.loads(Path(path).read_bytes())["ccxt"])

    @property
    def venues(self) -> list[str]:
        return list(self.ccxt)

    def ccxt_config(self, venue: str) -> dict[str, Any]:
        return self.ccxt[venue]


async def run(config: AppConfig, args: argparse.Namespace) -> int:
    simulator: SimulatorProcess | None = None
    if args.demo:
        simulator = await start_demo_simulator(config, args)
        if simulator is None:
            return 1
    elif args.simulator_endpoints:
        point_at_simulator(config, AttachedSimulator.read(args.simulator_endpoints))

    try:
        app = FuturesScan(config)
        await app.start()
        stop_signal = asyncio.create_task(wait_for_stop_signal())
        refused = asyncio.create_task(app.publisher.wait_refused())
        waits = {stop_signal, refused}
        simulator_died = asyncio.create_task(simulator.wait_exited()) if simulator is not None else None
        if simulator_died is not None:
            waits.add(simulator_died)
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if simulator_died is not None and simulator_died.done() and not simulator_died.cancelled():
            assert simulator is not None
            log.error(
                "demo: the exchange simulator (process %d) exited with code %s; nothing left to stream, stopping",
                simulator.pid, simulator_died.result(),
            )
        log.info("shutting down")
        await app.stop()
    finally:
        if simulator is not None:
            await simulator.stop()
    if simulator_died is not None and simulator_died.done() and not simulator_died.cancelled():
        return 1
    if app.publisher.refusal is not None:
        return 2  # like a configuration error: the publisher logged which exchange setting to fix
    log.info("\n%s", app.statistics.render(final=True))
    if args.final_statistics:
        await asyncio.to_thread(Path(args.final_statistics).write_bytes,
                                orjson.dumps(app.statistics.control_snapshot()))
    return 0


async def run_workers(config: AppConfig, args: argparse.Namespace) -> int:
    """--workers N: shards 1/N..N/N of this config as child processes (utils/worker_pool.py), sharing one
    simulator with --demo; the merged final statistics when they stop."""
    count = args.workers
    simulator: SimulatorProcess | None = None
    with tempfile.TemporaryDirectory(prefix="futures-scan-workers-") as scratch:
        common = ["--config", str(config_path(args.config, example_if_missing=args.demo))]
        if args.log_level:
            common += ["--log-level", args.log_level]
        if args.demo:
            simulator = await start_demo_simulator(config, args)
            if simulator is None:
                return 1
            endpoints = Path(scratch, "simulator.json")
            await asyncio.to_thread(endpoints.write_bytes, orjson.dumps({"ccxt": simulator.ccxt}))
            common += ["--simulator-endpoints", str(endpoints)]
        statistics = {index: Path(scratch, f"shard-{index}.json") for index in range(1, count + 1)}
        pool = WorkerPool([
            Worker(f"shard {index}/{count}", [sys.executable, str(MAIN), *common, "--shard", f"{index}/{count}",
                                              "--final-statistics", str(path)])
            for index, path in statistics.items()
        ])
        log.info("starting %d collector processes, one per shard of the symbols", count)
        stops = [asyncio.create_task(wait_for_stop_signal())]
        if simulator is not None:
            stops.append(asyncio.create_task(simulator.wait_exited()))
        for stop in stops:
            stop.add_done_callback(lambda _: pool.stop())
        try:
            code = await pool.run()
        finally:
            for stop in stops:
                stop.cancel()
            simulator_died = simulator is not None and simulator.process is not None and (
                simulator.process.returncode is not None)
            if simulator is not None:
                await simulator.stop()
        if simulator_died:
            log.error("demo: the exchange simulator exited; nothing left to stream, the workers were stopped")
            code = 1
        finals = await asyncio.to_thread(read_finals, statistics, count)
    if finals:
        log.info("\n%s", merge.render_totals(finals, expected=count))
    return code


def read_finals(statistics: dict[int, Path], count: int) -> dict[str, dict[str, Any]]:
    return {f"shard {index}/{count}": orjson.loads(path.read_bytes())
            for index, path in statistics.items() if path.exists()}


async def keep_running(collector: ExchangeCollector) -> None:
    """A bug in one venue's task is logged and that venue restarted; the others never notice."""
    while True:
        try:
            await collector.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            collector.stats.errors += 1
            log.exception(
                "%s collector crashed; restarting in %.0f s", collector.venue.source_id, COLLECTOR_RESTART_SECONDS
            )
            await asyncio.sleep(COLLECTOR_RESTART_SECONDS)


async def wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = resolve_config(args)
        check_universe(config)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    shard = config.shard_of()
    setup_logging(config.logging, shard.label if shard.count > 1 else None)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_workers(config, args) if args.workers else run(config, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
