"""One way out for alerts (Telegram, the webhook): a bounded outbox and one task that sends from it at the pace
the other end allows. Sending never blocks whoever raises an alert; what does not fit is dropped and counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from alerts.messages import Alert
from utils.tasks import cancel_and_wait

log = logging.getLogger("alerts")

RETRIES = 3
"""Tries of one message on a transient failure (a timeout, a 5xx) before it counts as failed."""
RETRY_DELAY_SECONDS = 2.0
MAX_RETRY_AFTER_SECONDS = 300.0
"""A 429's retry_after is honoured up to this; a longer one is taken as this (the outbox keeps filling)."""


class SendError(Exception):
    """The other end did not take the message: `retry_after` when it asked to wait (HTTP 429), `permanent` when
    trying again cannot help (a wrong chat id or token: HTTP 400/401/403/404)."""

    def __init__(self, message: str, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class Channel:
    """Statistics: sent, failed (given up on), dropped (outbox full), last_error."""

    def __init__(self, name: str, send: Callable[[Alert], Awaitable[None]], enabled: bool, outbox_size: int,
                 min_interval_seconds: float = 0.0, per_minute: int | None = None,
                 retry_delay_seconds: float = RETRY_DELAY_SECONDS) -> None:
        self.name = name
        self.retry_delay_seconds = retry_delay_seconds
        self._send = send
        self.enabled = enabled
        self.min_interval_seconds = min_interval_seconds
        self.per_minute = per_minute
        self._outbox: deque[Alert] = deque(maxlen=outbox_size)
        self._wakeup = asyncio.Event()
        self._sent_times: deque[float] = deque()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_sent_at: int | None = None

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "queued": len(self._outbox), "last_error": self.last_error, "last_sent_at": self.last_sent_at}

    def offer(self, alert: Alert) -> None:
        """Queue the alert; never blocks. Switched off, the channel takes nothing."""
        if not self.enabled:
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.dropped += 1  # the deque drops the oldest to take the newest
        self._outbox.append(alert)
        self._wakeup.set()

    def switch(self, enabled: bool) -> None:
        """Off stops sending at once: what waits in the outbox is discarded (counted as dropped)."""
        self.enabled = enabled
        if not enabled:
            self.dropped += len(self._outbox)
            self._outbox.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"alerts-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._outbox:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._pace()
            if not self._outbox:  # switched off while waiting
                continue
            alert = self._outbox[0]
            await self._deliver(alert)
            if self._outbox and self._outbox[0] is alert:
                self._outbox.popleft()

    async def _pace(self) -> None:
        """At least min_interval_seconds between messages, at most per_minute in any 60 s."""
        now = time.monotonic()
        if self._sent_times:
            await asyncio.sleep(max(0.0, self._sent_times[-1] + self.min_interval_seconds - now))
        if self.per_minute is not None and len(self._sent_times) >= self.per_minute:
            await asyncio.sleep(max(0.0, self._sent_times[-self.per_minute] + 60.0 - time.monotonic()))

    async def _deliver(self, alert: Alert) -> None:
        failures = 0
        while self.enabled:
            try:
                await self._send(alert)
            except SendError as error:
                self.last_error = str(error)
                if error.retry_after is not None:  # not a failure: the other end says when
                    wait = min(error.retry_after, MAX_RETRY_AFTER_SECONDS)
                    log.warning("alerts: %s asks to wait %.0f s (rate limit); the message waits", self.name, wait)
                    await asyncio.sleep(wait)
                    continue
                failures += 1
                if error.permanent or failures == RETRIES:
                    self.failed += 1
                    log.error("alerts: %s did not take a %s message: %s", self.name, alert.kind, error)
                    return
                await asyncio.sleep(self.retry_delay_seconds * failures)
                continue
            self.sent += 1
            self.last_sent_at = int(time.time() * 1000)
            self._sent_times.append(time.monotonic())
            while len(self._sent_times) > max(self.per_minute or 1, 1):
                self._sent_times.popleft()
            return
