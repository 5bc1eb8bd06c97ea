"""/api/watchlist: the collector's watchlist, read and changed over the control plane.

The monitor holds no watchlist of its own: every request becomes one control command (get_watchlist,
watch_add, watch_remove, watch_touch) and the collector's reply is the answer. Control error codes map to
HTTP statuses; the code stays in the body.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import orjson
from aiohttp import web

from control.client import ControlClient, ControlTimeout, ControlUnreachable, new_request
from monitor.params import Query

TOKEN_VARIABLE = "MONITOR_TOKEN"
STATUS_OF_ERROR = {
    "invalid_command": 400, "invalid_json": 400, "unknown_command": 400, "symbol_not_found": 404,
    "duplicate_symbol": 409, "internal_error": 502,
}
MAX_BODY_BYTES = 16 * 1024


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"success": False, "error": code, "message": message}, status)


class Watchlist:
    def __init__(self, client: ControlClient, wait_seconds: float) -> None:
        self.client = client
        self.wait_seconds = wait_seconds

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
        body = await self._authorized_body(request, ("symbol", "exchanges", "ttl_seconds"))
        return await self._forward(new_request("watch_add", **body))

    async def remove(self, request: web.Request) -> web.Response:
        body = await self._authorized_body(request, ("symbol", "exchanges"))
        return await self._forward(new_request("watch_remove", **body))

    async def touch(self, request: web.Request) -> web.Response:
        body = await self._authorized_body(request, ("symbol", "exchange"))
        return await self._forward(new_request("watch_touch", **body))

    async def _authorized_body(self, request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
        """The JSON object body, once the bearer token (when MONITOR_TOKEN is set) is right. The collector
        validates the values; here only the shape is checked, so its error messages reach the user as they are."""
        token = os.environ.get(TOKEN_VARIABLE)
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                body = {"success": False, "error": "unauthorized",
                        "message": f"this endpoint needs 'Authorization: Bearer <{TOKEN_VARIABLE}>'"}
                raise web.HTTPUnauthorized(text=orjson.dumps(body).decode(), content_type="application/json",
                                           headers={"WWW-Authenticate": "Bearer"})
        Query(request.query, ())
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise _bad_body(f"the body is over {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise _bad_body(f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError as error:
            raise _bad_body(f"the body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise _bad_body("the body must be a JSON object")
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise _bad_body(f"unknown field {unknown[0]!r}; this endpoint takes: {', '.join(fields)}")
        return body

    async def _forward(self, command: dict[str, Any]) -> web.Response:
        try:
            reply = await self.client.request(command, self.wait_seconds)
        except ControlUnreachable as error:
            return error_response(503, "unreachable", str(error))
        except ControlTimeout as error:
            return error_response(504, "timeout", str(error))
        except OSError as error:
            return error_response(503, "unreachable", f"RabbitMQ: {error}")
        status = 200 if reply.get("success") else STATUS_OF_ERROR.get(str(reply.get("error")), 502)
        return json_response(reply, status)


def _bad_body(message: str) -> web.HTTPBadRequest:
    body = orjson.dumps({"success": False, "error": "invalid_command", "message": message}).decode()
    return web.HTTPBadRequest(text=body, content_type="application/json")
