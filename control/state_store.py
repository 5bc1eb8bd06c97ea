"""The control plane's state file: what it may hold (CollectorState) and keeping it on disk.

It is read once at start and validated in full. A file that is not a valid CollectorState (bad JSON,
a wrong type, an unknown field, a malformed symbol) is never half-trusted: it is set aside as
<name>.corrupt (then <name>.corrupt.1, .2, ... so an earlier one is never overwritten), one ERROR
names the file and the problem, and the collector starts from config.json; the next change writes a
fresh file. Saves are atomic (utils.atomic_file) and run on the store's own writer thread, in order.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.config import UNIFIED_SYMBOL
from utils.atomic_file import write_atomically
from utils.damaged_file import describe, set_aside
from utils.file_writer import FileWriter

log = logging.getLogger("control")

STATE_VERSION = 1
CCXT_SYMBOL = re.compile(r"^[^\s/:]{1,40}/[^\s/:]{1,20}(:[^\s/:]{1,20})?$")
"""The shape of any ccxt unified symbol. A discovered universe ("symbols": "auto") may hold names that
config.json's stricter rule refuses, and those can end up in `removed`."""
SOURCE_ID = r"^[a-z][a-z0-9]{0,29}(\.[a-z]{1,10})?$"
"""binance, okx.spot, ...: a collector's source id."""


def _requested(symbol: str) -> str:
    if not UNIFIED_SYMBOL.match(symbol):
        raise ValueError(f"{symbol[:60]!r} is not a ccxt unified symbol like BTC/USDT:USDT")
    return symbol


def _listed(symbol: str) -> str:
    if not CCXT_SYMBOL.match(symbol):
        raise ValueError(f"{symbol[:60]!r} is not a ccxt unified symbol (BASE/QUOTE or BASE/QUOTE:SETTLE)")
    return symbol


RequestedSymbol = Annotated[str, AfterValidator(_requested)]
"""Came in through a control request, which only takes config.json's form."""
ListedSymbol = Annotated[str, AfterValidator(_listed)]
"""May come from a discovered universe."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class WatchRecord(_Strict):
    exchange: str = Field(pattern=SOURCE_ID, description="source id the pair is watched on")
    symbol: RequestedSymbol
    ttl_seconds: int = Field(ge=1, le=365 * 86400)
    added_at: int = Field(ge=0, description="ms since epoch UTC")
    expires_at: int = Field(ge=0, description="ms since epoch UTC")


class CollectorState(_Strict):
    """control.state_file: the symbol changes against config.json, and the watchlist."""

    version: Literal[1] = STATE_VERSION
    config_symbols: list[ListedSymbol] = Field(description="the base set when saved; informational")
    added: list[RequestedSymbol]
    removed: list[ListedSymbol]
    watchlist: list[WatchRecord]

    @model_validator(mode="after")
    def _no_repeats(self) -> CollectorState:
        for name, items in (
            ("added", self.added),
            ("removed", self.removed),
            ("watchlist", [f"{record.symbol} on {record.exchange}" for record in self.watchlist]),
        ):
            repeated = sorted({item for item in items if items.count(item) > 1})
            if repeated:
                raise ValueError(f"{name} lists {', '.join(repeated[:5])} more than once")
        return self


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer = FileWriter("state-file")

    def load(self) -> CollectorState | None:
        """The stored state; None when there is none or it can't be trusted (then logged once at ERROR)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.error("state file %s cannot be read (%s); starting from config.json", self.path, error)
            return None
        try:
            return CollectorState.model_validate_json(raw)
        except ValidationError as error:
            problem = describe(error)
        kept = set_aside(self.path)
        log.error("state file %s is not a valid state file (%s); %s, starting from config.json; "
                  "the next change writes a fresh one", self.path, problem, kept)
        return None

    async def save(self, state: CollectorState) -> None:
        """Returns once the file is on disk (fsynced and renamed); raises when it could not be written."""
        payload = state.model_dump_json(indent=2).encode()
        await self._writer.run(write_atomically, self.path, payload)

    def close(self) -> None:
        self._writer.close()
