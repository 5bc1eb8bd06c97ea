"""The Telegram Bot API's sendMessage, and nothing else of it: HTML parse mode, no link previews.

The bot token is part of every request URL (`/bot<token>/sendMessage`), so it never leaves this module
unmasked: errors and log lines show `bot<TELEGRAM_BOT_TOKEN>` instead."""

from __future__ import annotations

from typing import Any

import aiohttp

from alerts.channel import SendError
from alerts.messages import Alert

TOKEN_VARIABLE = "TELEGRAM_BOT_TOKEN"
PERMANENT_STATUSES = (400, 401, 403, 404)
"""A bad chat id, a revoked token, a bot removed from the chat: trying again cannot help."""


class TelegramBot:
    def __init__(self, session: aiohttp.ClientSession, api_base: str, token: str, chat_id: str,
                 timeout_seconds: float) -> None:
        self._session = session
        self._url = f"{api_base.rstrip('/')}/bot{token}/sendMessage"
        self._token = token
        self.chat_id = chat_id
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def masked(self, text: str) -> str:
        return text.replace(self._token, f"<{TOKEN_VARIABLE}>") if self._token else text

    async def send(self, alert: Alert) -> None:
        payload = {"chat_id": self.chat_id, "text": alert.telegram_html(), "parse_mode": "HTML",
                   "link_preview_options": {"is_disabled": True}}
        try:
            async with self._session.post(self._url, json=payload, timeout=self._timeout) as response:
                status = response.status
                answer = await _json(response)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SendError(self.masked(f"{type(error).__name__}: {error}")) from None
        if status == 200 and answer.get("ok") is True:
            return
        description = self.masked(str(answer.get("description") or f"HTTP {status}"))
        if status == 429:
            retry_after = (answer.get("parameters") or {}).get("retry_after")
            raise SendError(f"HTTP 429: {description}", retry_after=float(retry_after or 1))
        raise SendError(f"HTTP {status}: {description}", permanent=status in PERMANENT_STATUSES)


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The Bot API's answer object; a proxy's HTML error page as {}."""
    try:
        answer = await response.json(content_type=None)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
