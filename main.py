"""futures-scan: stream perpetual-futures market data from many venues into RabbitMQ.

    python main.py                      # collect with config.json
    python main.py --demo               # offline: the built-in exchange simulator, started as a child process
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

from collectors.exchange_collector import ExchangeCollector
from collectors.venues import sources_for
from control.listener import ControlListener
from control.registry import SymbolRegistry
from control.service import ControlService
from control.state_store import StateStore
from discovery.follower import UniverseFollower
from models.config import AppConfig, ExchangeConfig
from models.universe import read_universe
from publishers.durable_queues import QueueSettingsChanged
from publishers.rabbitmq_publisher import RabbitMQPublisher
from publishers.status_heartbeat import StatusHeartbeat
from simulator.process import SimulatorExited, SimulatorProcess
from simulator.server import DEFAULT_PORT
from utils.config_loader import ConfigError, config_path, load_api_keys, load_config
from utils.logger import setup_logging
from utils.prometheus_metrics import MetricsServer
from utils.statistics import Statistics

log = logging.getLogger("main")

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
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="override logging.level from the config",
    )
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> AppConfig:
    config = load_config(config_path(args.config, example_if_missing=args.demo))
    if args.log_level:
        config.logging.level = args.log_level
    return config


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
        self.registry = SymbolRegistry(base, StateStore(control.state_file) if control.state_file else None)
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
                control.max_message_bytes, connection_name=f"{config.rabbitmq.connection_name} control",
                queue_type=config.rabbitmq.queue_type,
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
        log.info(
            "collecting %s from %s",
            ", ".join(self.registry.symbols),
            ", ".join(collector.venue.source_id for collector in self.collectors),
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


async def run(config: AppConfig, args: argparse.Namespace) -> int:
    simulator: SimulatorProcess | None = None
    if args.demo:
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
            return 1
        point_at_simulator(config, simulator)
        log.info(
            "demo: exchanges point at the simulator on %s; move prices with POST %s/admin/shift "
            '{"exchange": "binance", "symbol": "BTC/USDT:USDT", "bps": 50, "seconds": 60}',
            simulator.http_base, simulator.http_base,
        )

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
    return 0


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
    setup_logging(config.logging)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(config, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
