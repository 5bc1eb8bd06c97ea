"""Which alerts go out, and how many: the kind switches, the same key at most once per alerts.repeat_seconds,
at most alerts.max_per_minute a minute with the rest summed up in one digest; then every channel that is on.
The channels' on/off switches are kept in alerts.state_file, so a switch survives a restart."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.channel import Channel
from alerts.messages import Alert, AlertKind, Held
from models.config import AlertsConfig
from utils.atomic_file import write_atomically
from utils.statistics import now_ms as wall_now_ms
from utils.tasks import cancel_and_wait

log = logging.getLogger("alerts")

SWITCHED_BY: dict[AlertKind, str] = {
    "opportunity_opened": "opportunity_opened", "opportunity_closed": "opportunity_closed",
    "source_stale": "source_stale", "source_back": "source_stale", "broker_lost": "broker",
    "broker_restored": "broker", "heartbeats_stopped": "heartbeats", "heartbeats_resumed": "heartbeats",
}
"""The alerts.kinds switch of each kind (a pair's two halves share one)."""


class Notifier:
    """Statistics: raised, repeats_suppressed, held (over the per-minute limit, waiting for the digest), digests."""

    def __init__(self, config: AlertsConfig, channels: list[Channel],
                 now_ms: Callable[[], int] = wall_now_ms) -> None:
        self.config = config
        self.channels = {channel.name: channel for channel in channels}
        self._now_ms = now_ms
        self._last_sent: dict[str, int] = {}
        self._window: deque[int] = deque()
        """When each alert of the last minute went out (ms)."""
        self._held = Held()
        self._digest_task: asyncio.Task[None] | None = None
        self.raised = 0
        self.repeats_suppressed = 0
        self.held = 0
        self.digests = 0

    # --- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        saved = await asyncio.to_thread(self._load_switches)
        for name, enabled in saved.items():
            if name in self.channels:
                self.channels[name].enabled = enabled
        for channel in self.channels.values():
            channel.start()
        self._digest_task = asyncio.create_task(self._send_digests(), name="alerts-digest")

    async def stop(self) -> None:
        if self._digest_task is not None:
            await cancel_and_wait(self._digest_task)
        for channel in self.channels.values():
            await channel.stop()

    def status(self) -> dict[str, Any]:
        return {"channels": {name: channel.status() for name, channel in self.channels.items()},
                "raised": self.raised, "repeats_suppressed": self.repeats_suppressed, "held_for_digest": self.held,
                "digests": self.digests, "max_per_minute": self.config.max_per_minute,
                "repeat_seconds": self.config.repeat_seconds}

    async def switch(self, name: str, enabled: bool) -> None:
        """A channel on or off, at once and for good (saved for the next start)."""
        self.channels[name].switch(enabled)
        log.info("alerts: %s switched %s", name, "on" if enabled else "off")
        await asyncio.to_thread(self._save_switches)

    # --- alerts ----------------------------------------------------------------------------------

    def notify(self, alert: Alert) -> None:
        """Send the alert if its kind is on, it is no repeat and the minute's budget allows; never blocks."""
        if not getattr(self.config.kinds, SWITCHED_BY[alert.kind]):
            return
        self.raised += 1
        now = self._now_ms()
        last = self._last_sent.get(alert.key)
        if last is not None and now - last < self.config.repeat_seconds * 1000:
            self.repeats_suppressed += 1
            return
        self._last_sent[alert.key] = now
        if not self._budget_left(now):
            self._held.add(alert)
            self.held += 1
            return
        self._send(alert, now)

    def _budget_left(self, now: int) -> bool:
        while self._window and now - self._window[0] >= 60_000:
            self._window.popleft()
        return len(self._window) < self.config.max_per_minute

    def _send(self, alert: Alert, now: int) -> None:
        self._window.append(now)
        for channel in self.channels.values():
            channel.offer(alert)

    async def _send_digests(self) -> None:
        """Once the minute's budget has room again, the alerts held back go out as one message."""
        while True:
            await asyncio.sleep(1.0)
            now = self._now_ms()
            if self._held and self._budget_left(now):
                held, self._held = self._held, Held()
                self.digests += 1
                self._send(held.digest(now), now)

    # --- the switches on disk ----------------------------------------------------------------------

    def _load_switches(self) -> dict[str, bool]:
        path = self.config.state_file
        if path is None or not Path(path).exists():
            return {}
        try:
            saved = json.loads(Path(path).read_text())
            return {name: bool(state["enabled"]) for name, state in saved.items()}
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.error("alerts: %s is unreadable (%s); the channels start as config.json says", path, error)
            return {}

    def _save_switches(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        switches = {name: {"enabled": channel.enabled} for name, channel in self.channels.items()}
        try:
            write_atomically(path, json.dumps(switches).encode())
        except OSError as error:
            log.error("alerts: the switches could not be saved to %s (%s); they hold until a restart", path, error)
