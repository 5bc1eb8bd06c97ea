"""/api/watchlist: the collector's watchlist, read and changed over the control plane.

The monitor holds no watchlist of its own: every request becomes one control command (get_watchlist,
watch_add, watch_remove, watch_touch) and the collector's reply is the answer. Control error codes map to
HTTP statuses; the code stays in the body.

With several collectors live (sharded by venue or symbol; the monitor counts their heartbeats), or one that does
not listen on `control.queue` (a shard, with its own queue), the command goes to all of them through the
broadcast exchange and their replies are merged as `control_client.py --all` merges them: each pair's status from
the collector that streams it, every reply listed by collector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from control import merge
from control.client import ControlClient, ControlTimeout, ControlUnreachable, new_request
from monitor.http import authorized_body, error_response, json_response
from monitor.params import Query

STATUS_OF_ERROR = {
    "invalid_command": 400, "invalid_json": 400, "unknown_command": 400, "symbol_not_found": 404,
    "duplicate_symbol": 409, "internal_error": 502,
}


class Watchlist:
    def __init__(
        self, client: ControlClient, wait_seconds: float, live_collectors: Callable[[], int] = lambda: 1,
        broadcast_exchange: str | None = None, status_exchange: str = "futures_collector_status",
    ) -> None:
        """`live_collectors` counts the collectors whose heartbeats are fresh; with more than one and a
        `broadcast_exchange` (control.broadcast_exchange), commands go to all of them."""
        self.client = client
        self.wait_seconds = wait_seconds
        self.live_collectors = live_collectors
        self.broadcast_exchange = broadcast_exchange
        self.status_exchange = status_exchange

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/watchlist", self.get),
            web.post("/api/watchlist", self.add),
            web.delete("/api/watchlist", self.remove),
            web.post("/api/watchlist/touch", self.touch),
        ]

    async def get(self, request: web.Request) -> web.Response:
        Query(request.query, ())
        return await self._forward(new_request("get_watchlist"))

    async def add(self, request: web.Request) -> web.Response:
        body = await authorized_body(request, ("symbol", "exchanges", "ttl_seconds"))
        return await self._forward(new_request("watch_add", **body))

    async def remove(self, request: web.Request) -> web.Response:
        body = await authorized_body(request, ("symbol", "exchanges"))
        return await self._forward(new_request("watch_remove", **body))

    async def touch(self, request: web.Request) -> web.Response:
        body = await authorized_body(request, ("symbol", "exchange"))
        return await self._forward(new_request("watch_touch", **body))

    async def _forward(self, command: dict[str, Any]) -> web.Response:
        try:
            reply = await self._ask(command)
        except ControlUnreachable as error:
            return error_response(503, "unreachable", str(error))
        except ControlTimeout as error:
            return error_response(504, "timeout", str(error))
        except OSError as error:
            return error_response(503, "unreachable", f"RabbitMQ: {error}")
        status = 200 if reply.get("success") else STATUS_OF_ERROR.get(str(reply.get("error")), 502)
        return json_response(reply, status)

    async def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        live = self.live_collectors()
        if live <= 1 or self.broadcast_exchange is None:
            try:
                return await self.client.request(command, self.wait_seconds)
            except ControlUnreachable:
                if live == 0 or self.broadcast_exchange is None:
                    raise  # the one live collector is not on control.queue (a shard): ask it through the broadcast
        gathered = await self.client.request_all(
            command, self.broadcast_exchange, self.status_exchange, self.wait_seconds, expect=live
        )
        if not gathered.replies:
            raise ControlTimeout(f"no collector replied within {self.wait_seconds:g} s")
        missing = [] if len(gathered.replies) >= live else [f"{live - len(gathered.replies)} more"]
        return merge.merged_reply(command, gathered.replies, missing, self.wait_seconds)
