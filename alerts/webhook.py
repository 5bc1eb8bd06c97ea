"""A generic webhook: each alert POSTed as JSON (Alert.webhook_json) to alerts.webhook.url. Any 2xx is taken;
a 429 with Retry-After is waited for; other 4xx are the receiver refusing this message for good."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from alerts.channel import SendError
from alerts.messages import Alert


class Webhook:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout_seconds: float) -> None:
        self._session = session
        self._url = url
        parts = urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.hostname}{parts.path}"
        """Where it posts, for logs: without credentials or a query string, where receivers often keep a key."""
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def send(self, alert: Alert) -> None:
        try:
            async with self._session.post(self._url, json=alert.webhook_json(), timeout=self._timeout) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SendError(f"{self.shown}: {type(error).__name__}: {str(error).replace(self._url, self.shown)}"
                            ) from None
        if 200 <= status < 300:
            return
        if status == 429:
            raise SendError(f"{self.shown}: HTTP 429", retry_after=_seconds(retry_after))
        raise SendError(f"{self.shown}: HTTP {status}", permanent=400 <= status < 500)


def _seconds(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header else 1.0
    except ValueError:
        return 1.0  # an HTTP date: wait a little and try again
