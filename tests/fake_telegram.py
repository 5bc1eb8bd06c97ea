"""A local stand-in for the Telegram Bot API (no network here): POST /bot<token>/sendMessage, answered the way
the real one answers, or as a test tells it to: 429 with retry_after, 400, 500, or no answer at all."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token-never-in-a-log"


@dataclass
class Received:
    at: float
    """time.monotonic() when it arrived"""
    payload: dict[str, Any]
    answered: int


@dataclass
class FakeBotApi:
    token: str = TOKEN
    answers: list[str] = field(default_factory=list)
    """What the next requests get, in order ("ok", "429", "400", "500", "hang"); "ok" once they run out."""
    retry_after: int = 1
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The messages the chat shows: those answered 200."""
        return [request.payload for request in self.requests if request.answered == 200]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._send_message)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # a "hang" must not hold up the end
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send_message(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        payload = await request.json()
        if not payload.get("chat_id") or not payload.get("text"):
            return web.json_response({"ok": False, "error_code": 400,
                                      "description": "Bad Request: message text is empty"}, status=400)
        answer = self.answers.pop(0) if self.answers else "ok"
        status = {"ok": 200, "429": 429, "400": 400, "500": 500, "hang": 200}[answer]
        self.requests.append(Received(time.monotonic(), payload, 0 if answer == "hang" else status))
        if answer == "hang":
            await asyncio.sleep(3600)
        if answer == "429":
            return web.json_response({"ok": False, "error_code": 429,
                                      "description": f"Too Many Requests: retry after {self.retry_after}",
                                      "parameters": {"retry_after": self.retry_after}}, status=429)
        if answer == "400":
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                                     status=400)
        if answer == "500":
            return web.json_response({"ok": False, "error_code": 500, "description": "Internal Server Error"},
                                     status=500)
        return web.json_response({"ok": True, "result": {"message_id": len(self.requests), "text": payload["text"]}})
