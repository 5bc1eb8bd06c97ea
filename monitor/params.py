"""Query parameters checked up front: an unknown one or a bad value is a 400 that names it."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import orjson
from aiohttp import web


def bad_request(parameter: str, message: str) -> web.HTTPBadRequest:
    body = orjson.dumps({"error": "bad_parameter", "parameter": parameter, "message": message}).decode()
    return web.HTTPBadRequest(text=body, content_type="application/json")


class Query:
    """request.query, allowed names only, each read at most once with its type checked."""

    def __init__(self, query: Mapping[str, str], allowed: Collection[str]) -> None:
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise bad_request(unknown[0], f"unknown parameter {unknown[0]!r}; this endpoint takes: {known}")
        for name in query:
            if hasattr(query, "getall") and len(query.getall(name)) > 1:
                raise bad_request(name, f"{name} is given more than once")
        self.query = query

    def text(self, name: str, max_length: int = 64) -> str | None:
        value = self.query.get(name)
        if value is None or value == "":
            return None
        if len(value) > max_length:
            raise bad_request(name, f"{name} is longer than {max_length} characters")
        if not value.isprintable():
            raise bad_request(name, f"{name} holds a control character (NUL, newline, ...)")
        return value

    def integer(self, name: str, default: int, low: int, high: int, cap: bool = False) -> int:
        """`cap`: a value above `high` is taken as `high` (a page size), else it is an error."""
        value = self.query.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise bad_request(name, f"{name} must be a whole number, not {value[:40]!r}") from None
        if number > high and cap:
            return high
        if not low <= number <= high:
            raise bad_request(name, f"{name} must be within [{low}, {high}], not {number}")
        return number

    def number(self, name: str) -> float | None:
        value = self.query.get(name)
        if value is None or value == "":
            return None
        try:
            number = float(value)
        except ValueError:
            raise bad_request(name, f"{name} must be a number, not {value[:40]!r}") from None
        if not math.isfinite(number):
            raise bad_request(name, f"{name} must be a finite number")
        return number

    def choice(self, name: str, default: str, choices: Collection[str]) -> str:
        value = self.query.get(name) or default
        if value not in choices:
            raise bad_request(name, f"{name} must be one of {', '.join(choices)}, not {value[:40]!r}")
        return value
