"""The alerting that runs inside python -m monitor: the channels config.json and the environment set up, the
notifier in front of them, and the watch that reads the monitor's state once a second."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import aiohttp

from alerts.channel import Channel
from alerts.notifier import Notifier
from alerts.telegram import TOKEN_VARIABLE, TelegramBot
from alerts.watch import AlertWatch
from alerts.webhook import Webhook
from models.config import AppConfig
from monitor.state import MonitorState
from utils.statistics import now_ms
from utils.tasks import cancel_and_wait

log = logging.getLogger("alerts")

CHECK_SECONDS = 1.0
TELEGRAM_MIN_INTERVAL_SECONDS = 1.0
"""The Bot API's pace for one chat: about a message a second."""
TELEGRAM_PER_MINUTE = 20
"""...and at most 20 a minute to a group."""
CHANNELS = ("telegram", "webhook")


class AlertService:
    def __init__(self, config: AppConfig, state: MonitorState, bus_connected: Callable[[], bool]) -> None:
        self.config = config
        self.state = state
        self.bus_connected = bus_connected
        settings = config.alerts
        self.unconfigured: dict[str, str] = {}
        """channel -> why it cannot send (no chat id, no token, no URL): what /api/alerts shows for it."""
        if not settings.telegram.chat_id:
            self.unconfigured["telegram"] = "alerts.telegram.chat_id is not set in config.json"
        elif not os.environ.get(TOKEN_VARIABLE):
            self.unconfigured["telegram"] = f"{TOKEN_VARIABLE} is not set (environment or .env)"
        if not settings.webhook.url:
            self.unconfigured["webhook"] = "alerts.webhook.url is not set in config.json"
        self._session: aiohttp.ClientSession | None = None
        self.notifier: Notifier | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, port: int) -> None:
        """port: the one the monitor listens on (the dashboard's links point there unless alerts.dashboard_url
        says otherwise)."""
        settings = self.config.alerts
        dashboard_url = settings.dashboard_url or f"http://{self.config.monitor.host}:{port}/ui"
        self._session = aiohttp.ClientSession()
        channels = []
        if "telegram" not in self.unconfigured:
            bot = TelegramBot(self._session, settings.telegram.api_base, os.environ[TOKEN_VARIABLE],
                              str(settings.telegram.chat_id), settings.telegram.timeout_seconds)
            channels.append(Channel("telegram", bot.send, settings.telegram.enabled, settings.outbox_size,
                                    TELEGRAM_MIN_INTERVAL_SECONDS, TELEGRAM_PER_MINUTE))
        if "webhook" not in self.unconfigured:
            hook = Webhook(self._session, str(settings.webhook.url), settings.webhook.timeout_seconds)
            channels.append(Channel("webhook", hook.send, settings.webhook.enabled, settings.outbox_size))
        self.notifier = Notifier(settings, channels)
        await self.notifier.start()
        watch = AlertWatch(self.state, self.notifier.notify, settings.min_opportunity_net_pct, dashboard_url,
                           self.bus_connected)
        self._task = asyncio.create_task(self._watch(watch), name="alerts-watch")
        for name, channel in self.notifier.channels.items():
            state = "on" if channel.enabled else f"off (switch on: POST /api/alerts/{name}/toggle)"
            log.info("alerts: %s %s", name, state)
        for name, why in self.unconfigured.items():
            wanted = settings.telegram.chat_id if name == "telegram" else settings.webhook.enabled
            log.log(logging.WARNING if wanted else logging.INFO, "alerts: no %s alerts: %s", name, why)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self.notifier is not None:
            await self.notifier.stop()
        if self._session is not None:
            await self._session.close()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.notifier.status() if self.notifier else {"channels": {}}
        for name, why in self.unconfigured.items():
            status["channels"][name] = {"enabled": False, "configured": False, "why": why}
        for name in status["channels"]:
            status["channels"][name].setdefault("configured", True)
        return status

    async def _watch(self, watch: AlertWatch) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                watch.check(now_ms())
            except Exception:
                log.exception("alerts: the check failed; it runs again in %s s", CHECK_SECONDS)
