"""The control protocol: what a request may say, what a reply says, and the error codes.

Requests are untrusted JSON: every one is parsed into exactly one of the command models below or
rejected with a specific error code; nothing else is ever executed or deserialized.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from models.config import UNIFIED_SYMBOL

ErrorCode = Literal[
    "invalid_command", "invalid_json", "duplicate_symbol", "symbol_not_found", "unknown_command", "internal_error"
]
COMMAND_NAME = re.compile(r"^[a-z][a-z_]{0,39}$")
"""What may appear in a reply's routing key control.response.<command>."""
MAX_SYMBOLS_PER_REQUEST = 1000


class ControlError(Exception):
    def __init__(self, code: ErrorCode, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command = command


def _check_symbol(symbol: str) -> str:
    if not UNIFIED_SYMBOL.match(symbol):
        raise ValueError(f"{symbol[:60]!r} is not a ccxt unified symbol like BTC/USDT:USDT")
    return symbol


Symbol = Annotated[str, Field(max_length=64)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    correlation_id: str = Field(min_length=1, max_length=200)
    timestamp: int | float | None = Field(default=None, description="sender's clock; informational")


class _OneSymbol(_Request):
    symbol: Symbol

    _symbol = field_validator("symbol")(_check_symbol)


class AddSymbol(_OneSymbol):
    command: Literal["add_symbol"]


class RemoveSymbol(_OneSymbol):
    command: Literal["remove_symbol"]


class SetSymbols(_Request):
    command: Literal["set_symbols"]
    symbols: list[Symbol] = Field(max_length=MAX_SYMBOLS_PER_REQUEST)

    @field_validator("symbols")
    @classmethod
    def _valid_and_unique(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            _check_symbol(symbol)
        if len(set(symbols)) != len(symbols):
            raise ValueError("lists a symbol more than once")
        return symbols


class GetSymbols(_Request):
    command: Literal["get_symbols"]


class GetStatistics(_Request):
    command: Literal["get_statistics"]


class WatchAdd(_OneSymbol):
    command: Literal["watch_add"]
    exchanges: list[Annotated[str, Field(max_length=40)]] | None = Field(default=None, max_length=50)
    ttl_seconds: int | None = Field(default=None, ge=1, le=365 * 86400)


class WatchTouch(_OneSymbol):
    command: Literal["watch_touch"]
    exchange: str = Field(max_length=40)


class WatchRemove(_OneSymbol):
    command: Literal["watch_remove"]
    exchanges: list[Annotated[str, Field(max_length=40)]] | None = Field(default=None, max_length=50)


class GetWatchlist(_Request):
    command: Literal["get_watchlist"]


class ReloadUniverse(_Request):
    command: Literal["reload_universe"]


Request = Annotated[
    AddSymbol | RemoveSymbol | SetSymbols | GetSymbols | GetStatistics | WatchAdd | WatchTouch | WatchRemove
    | GetWatchlist | ReloadUniverse,
    Field(discriminator="command"),
]
COMMANDS: tuple[str, ...] = (
    "add_symbol", "remove_symbol", "set_symbols", "get_symbols", "get_statistics",
    "watch_add", "watch_touch", "watch_remove", "get_watchlist", "reload_universe",
)
_request_adapter: TypeAdapter[Request] = TypeAdapter(Request)


def parse_request(body: bytes, max_bytes: int) -> Request:
    if len(body) > max_bytes:
        raise ControlError("invalid_command", f"message of {len(body)} bytes is over the {max_bytes}-byte limit")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ControlError("invalid_json", f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ControlError("invalid_command", f"a request is a JSON object, not {type(document).__name__}")
    command = document.get("command")
    if not isinstance(command, str) or not command:
        raise ControlError("invalid_command", "the request has no \"command\" string")
    if command not in COMMANDS:
        raise ControlError(
            "unknown_command", f"unknown command {command[:60]!r}; known: {', '.join(COMMANDS)}", command=command[:60]
        )
    try:
        return _request_adapter.validate_python(document)
    except ValidationError as error:
        raise ControlError("invalid_command", _describe(error), command=command) from None


def _describe(error: ValidationError) -> str:
    problems = []
    for problem in error.errors()[:5]:
        location = ".".join(str(part) for part in problem["loc"][1:]) or "request"
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    return "; ".join(problems)


class Reply(BaseModel):
    correlation_id: str | None
    success: bool
    command: str | None
    message: str
    data: dict[str, Any] | None = None
    error: ErrorCode | None = None
    timestamp: int = Field(description="ms since epoch UTC")
    collector: str | None = Field(
        default=None, description="rabbitmq.connection_name of the collector that answered: tells several apart"
    )

    def routing_key(self) -> str:
        name = self.command if self.command and COMMAND_NAME.match(self.command) else "error"
        return f"control.response.{name}"

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=False))
