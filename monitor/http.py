"""The monitor's HTTP plumbing: JSON answers, error bodies, and the bearer token (MONITOR_TOKEN) that guards
every endpoint that changes something."""

from __future__ import annotations

import hmac
import os
from typing import Any

import orjson
from aiohttp import web

from monitor.params import Query

TOKEN_VARIABLE = "MONITOR_TOKEN"
MAX_BODY_BYTES = 16 * 1024


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"success": False, "error": code, "message": message}, status)


async def authorized_body(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object body, once the bearer token (when MONITOR_TOKEN is set) is right. Only its shape is
    checked here (an object, of these fields at most); the endpoint (or the collector behind it) checks values."""
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
        raise bad_body(f"the body is over {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise bad_body(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as error:
        raise bad_body(f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise bad_body("the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise bad_body(f"unknown field {unknown[0]!r}; this endpoint takes: {', '.join(fields)}")
    return body


def bad_body(message: str) -> web.HTTPBadRequest:
    body = orjson.dumps({"success": False, "error": "invalid_command", "message": message}).decode()
    return web.HTTPBadRequest(text=body, content_type="application/json")
