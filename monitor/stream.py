"""WS /ws/stream: the dashboard's frames pushed at each client's own pace.

A full frame on connect, then one per `interval_ms`: the top-N spreads, the opportunity events since the
client's previous frame, the open opportunities and the exchanges' status. Every client has its own task;
a frame is sent only when the client took the previous one, else it is dropped (and counted), so a slow
client gets fewer frames and never holds up the others or the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from monitor.http import error_response
from monitor.params import Query
from monitor.views import SORT_FIGURES

log = logging.getLogger("monitor")

SEND_TIMEOUT_SECONDS = 10.0
"""A client that takes no frame for this long is disconnected."""

Frame = Callable[[int, Any, int | None], dict[str, Any]]
"""(top, sort, events since sequence or None for the full state) -> the frame."""


class StreamHub:
    def __init__(self, frame: Frame, max_clients: int, max_top: int) -> None:
        self.frame = frame
        self.max_clients = max_clients
        self.max_top = max_top
        self.clients: set[web.WebSocketResponse] = set()
        self.frames_sent = 0
        self.frames_dropped = 0
        self.refused = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = Query(request.query, ("top", "sort", "interval_ms"))
        top = query.integer("top", 20, 1, self.max_top, cap=True)
        sort = query.choice("sort", "net", tuple(SORT_FIGURES))
        interval_ms = query.integer("interval_ms", 1000, 100, 60_000)
        if len(self.clients) >= self.max_clients:
            self.refused += 1
            return error_response(503, "too_many_clients",
                                  f"{self.max_clients} WebSocket clients are connected (monitor.max_ws_clients)")
        socket = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
        await socket.prepare(request)
        self.clients.add(socket)
        pusher = asyncio.create_task(self._push(socket, top, sort, interval_ms / 1000))
        try:
            async for message in socket:  # the client says nothing we need; reading notices its close
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            self.clients.discard(socket)
        return socket

    async def _push(self, socket: web.WebSocketResponse, top: int, sort: str, interval: float) -> None:
        frame = self.frame(top, sort, None)
        sequence = frame["sequence"]
        sending: asyncio.Task[None] | None = asyncio.create_task(self._send(socket, frame))
        try:
            while not socket.closed:
                await asyncio.sleep(interval)
                if sending is not None and not sending.done():
                    self.frames_dropped += 1  # still busy with the previous frame: this one is skipped
                    continue
                frame = self.frame(top, sort, sequence)
                sequence = frame["sequence"]
                sending = asyncio.create_task(self._send(socket, frame))
        finally:
            if sending is not None and not sending.done():
                sending.cancel()

    async def _send(self, socket: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        try:
            await asyncio.wait_for(socket.send_str(orjson.dumps(frame).decode()), SEND_TIMEOUT_SECONDS)
            self.frames_sent += 1
        except (TimeoutError, ConnectionError, RuntimeError) as error:
            log.info("closing a WebSocket client that does not take frames (%s)", type(error).__name__)
            await socket.close()

    async def close(self) -> None:
        for socket in tuple(self.clients):
            await socket.close(code=1001, message=b"monitor shutting down")
