"""One running demo stack shared by the monitor's tests: simulator, collector, spread engine, monitor.

Everything real: the simulator speaks each venue's wire format, the collector parses it with ccxt.pro and
publishes to the real RabbitMQ, the engine and the monitor consume from it. Names (exchanges, queues) are the
stack's own, removed afterwards. Tests that change the simulator (a shift) must undo it or wait it out.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from consumers.spread_engine import SpreadEngine
from main import FuturesScan
from models.config import AlertsConfig, AppConfig
from monitor.service import MonitorService
from simulator.server import Simulator
from tests.helpers import collector_config, delete_names, discover_on

VENUES = ["binance", "okx", "bybit"]
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


@dataclass
class MonitorStack:
    simulator: Simulator
    config: AppConfig
    collector: FuturesScan
    engine: SpreadEngine
    monitor: MonitorService

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor.port}"


async def start_stack(broker_url: str, directory: Path, exits: AsyncExitStack,
                      alerts: AlertsConfig | None = None) -> MonitorStack:
    simulator = Simulator(venues=VENUES, port=0, rate=10)
    await simulator.start()
    exits.push_async_callback(simulator.stop)
    name = f"monitor_test_{uuid.uuid4().hex[:10]}"
    config = collector_config(simulator, broker_url, name, max_message_age_ms=60_000,
                              status_interval_seconds=0.5, stale_after_seconds=3)
    config.symbols, config.markets = list(SYMBOLS), ["futures", "spot"]
    config.rabbitmq.connection_name = name
    config.rabbitmq.status_exchange = f"{name}_status"
    config.control = config.control.model_copy(update={
        "enabled": True, "queue": f"{name}_control", "responses_exchange": f"{name}_responses",
        "broadcast_exchange": f"{name}_control_all",  # <queue>_all, removed by remove_names
        "state_file": str(directory / "state.json"),
    })
    config.universe_dir = await discover_on(simulator, SYMBOLS, directory, ["futures", "spot"])
    config.spreads = config.spreads.model_copy(update={
        "analytics_exchange": f"{name}_analytics", "entry_pct": 0.3, "exit_pct": 0.1, "confirm_ticks": 2,
        "max_quote_age_ms": 3000, "max_leg_skew_ms": 5000,
    })
    config.monitor = config.monitor.model_copy(update={"port": 0, "max_ws_clients": 5, "max_top": 50,
                                                       "control_timeout_seconds": 3})
    config.alerts = alerts or AlertsConfig(state_file=None)
    exits.push_async_callback(remove_names, broker_url, config)

    collector = FuturesScan(config)
    await collector.start()
    exits.push_async_callback(collector.stop)
    engine = SpreadEngine(config)
    await engine.start()
    exits.push_async_callback(engine.stop)
    monitor = MonitorService(config)
    await monitor.start()
    exits.push_async_callback(monitor.stop)
    return MonitorStack(simulator, config, collector, engine, monitor)


async def remove_names(broker_url: str, config: AppConfig) -> None:
    await delete_names(broker_url, [config.rabbitmq.exchange, config.rabbitmq.status_exchange,
                                    config.spreads.analytics_exchange, config.control.responses_exchange,
                                    f"{config.control.queue}_all"],
                       [config.control.queue])
