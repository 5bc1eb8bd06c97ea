"""python -m monitor: the HTTP/WebSocket API, the dashboard and /metrics, fed by the bus like any consumer.

It consumes futures.# and spot.# (futures_data), spread.# and opportunity.# (futures_analytics) and the
collectors' status heartbeats (futures_collector_status), keeps the newest of each in memory and serves:

    GET  /health  /snapshot  /api/spreads  /api/spreads/history  /api/opportunities  /api/exchanges
    GET|POST|DELETE /api/watchlist   POST /api/watchlist/touch   (forwarded to the collector's control queue)
    GET  /api/history/spreads  /api/events  /api/events/{event_id}  /api/funding/history   (the recorder's store)
    GET  /api/alerts   POST /api/alerts/{telegram|webhook}/toggle   (Telegram and webhook alerts: config alerts)
    WS   /ws/stream   GET /ui  /ui/data   GET /metrics

Listens on config.json's monitor.host:monitor.port (127.0.0.1:8080 by default).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import web
from prometheus_client import CollectorRegistry

from alerts.service import AlertService
from consumers.runner import run_main
from control.client import ControlClient
from models.config import AppConfig
from monitor.alerts_api import AlertsApi
from monitor.api import Api
from monitor.bus import MonitorBus
from monitor.health import heartbeat_fresh
from monitor.history_api import HistoryApi
from monitor.metrics import MonitorMetrics
from monitor.state import MonitorState
from monitor.stream import StreamHub
from monitor.watchlist import Watchlist
from utils.prometheus_metrics import metrics_handler
from utils.statistics import now_ms

log = logging.getLogger("monitor")

BUS_START_WAIT_SECONDS = 10.0
"""start() returns once the queues are consumed, or after this long with RabbitMQ still being retried."""


class MonitorService:
    log = log

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        settings = config.monitor
        self.state = MonitorState(closed_kept=settings.closed_opportunities,
                                  spread_max_age_ms=config.spreads.max_quote_age_ms)
        self.bus = MonitorBus(config, self.state)
        self.alerts = AlertService(config, self.state, lambda: self.bus.connected)
        self.api = Api(config, self.state)
        self.hub = StreamHub(self.api.frame, settings.max_ws_clients, settings.max_top)
        self.control = ControlClient(config.rabbitmq.amqp_urls(), config.control.queue,
                                     connection_name=f"{config.rabbitmq.connection_name} monitor control")
        watchlist = Watchlist(self.control, settings.control_timeout_seconds, self._live_collectors,
                              config.control.broadcast_exchange, config.rabbitmq.status_exchange)
        metrics = MonitorMetrics(self.state, lambda: (len(self.hub.clients), self.hub.frames_sent,
                                                      self.hub.frames_dropped))
        self.app = web.Application(client_max_size=64 * 1024)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        history = HistoryApi(config, self.state)
        self.app.add_routes([*self.api.routes(), *watchlist.routes(), *history.routes(),
                             *AlertsApi(self.alerts).routes(),
                             web.get("/ws/stream", self.hub.handle), web.get("/metrics", metrics_handler(registry))])
        self.app.on_shutdown.append(lambda _: self.hub.close())
        self.app.on_cleanup.append(lambda _: history.close())
        self.app.on_response_prepare.append(_revalidate_dashboard)
        self._runner: web.AppRunner | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.port: int | None = None
        """The port listened on (monitor.port, or the one the system chose for 0)."""

    def _live_collectors(self) -> int:
        """Collectors whose status heartbeats are fresh: how many answer a command sent to all."""
        at = now_ms()
        return sum(heartbeat_fresh(entry, at) for entry in self.state.collectors.values())

    async def start(self) -> None:
        """Listen first (a taken port fails at once), then reach RabbitMQ: until it answers, /health says 503."""
        settings = self.config.monitor
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, settings.host, settings.port).start()
        except OSError as error:
            await self._runner.cleanup()
            log.error("monitor: cannot listen on %s:%d (%s); set monitor.host / monitor.port in the config",
                      settings.host, settings.port, error.strerror or error)
            raise SystemExit(2) from None
        self.port = self._runner.addresses[0][1]
        log.info("monitor: dashboard on http://%s:%d/ui, API and /metrics on the same port",
                 settings.host, self.port)
        await self.alerts.start(self.port)
        self._connecting = asyncio.create_task(self._connect_bus(), name="monitor-bus")
        await asyncio.wait({self._connecting}, timeout=BUS_START_WAIT_SECONDS)

    async def _connect_bus(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.bus.start()
                return
            except Exception as error:
                log.warning("monitor: RabbitMQ at %s not reached yet (%s: %s); retrying in %.0f s",
                            ", ".join(self.config.rabbitmq.safe_urls()), type(error).__name__, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        await self.alerts.stop()
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.control.close()
        await self.bus.stop()

    def report(self) -> str:
        state = self.state
        p50, p99 = state.queue_lag_ms.percentiles(0.5, 0.99)
        lag = f", queue lag p50 {p50:.0f} ms p99 {p99:.0f} ms" if p50 is not None and p99 is not None else ""
        return (f"monitor: {state.consumed['market']} market, {state.consumed['spread']} spread, "
                f"{state.consumed['opportunity']} opportunity, {state.consumed['status']} status messages; "
                f"{len(state.open)} open, {len(self.hub.clients)} WebSocket clients{lag}")


async def _revalidate_dashboard(request: web.Request, response: web.StreamResponse) -> None:
    """The page and its scripts are checked with the monitor on each load: after an upgrade no browser keeps
    running the old script against the new API."""
    if request.path.startswith("/ui"):
        response.headers["Cache-Control"] = "no-cache"


def main(argv: list[str] | None = None) -> int:
    return run_main(argv, "python -m monitor", __doc__ or "", MonitorService, needs_universe=False)


if __name__ == "__main__":
    sys.exit(main())
