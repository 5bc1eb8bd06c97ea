"""The tradable universe scripts/discover.py writes to generated/, read by the collector
(`"symbols": "auto"`), the spread engine and the tracker.

A universe symbol is one coin against USDT (BTC/USDT, PEPE/USDT), whatever each venue calls it:
BTCUSDT, BTC-USDT-SWAP, BTC_USDT and 1000PEPEUSDT all map onto it. A direction is an ordered pair of
sources (buy on one, sell on the other) with the symbols both list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UNIVERSE_VERSION = 1
UNIVERSE_FILE = "universe.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listing(_Model):
    """One universe symbol on one source, in the venue's own terms."""

    source: str = Field(description="binance, okx.spot, ...")
    exchange: str
    market: Literal["futures", "spot"]
    symbol: str = Field(description="ccxt unified symbol on this source, e.g. 1000PEPE/USDT:USDT")
    venue_id: str = Field(description="the venue's own id, e.g. 1000PEPEUSDT")
    base_multiplier: int = Field(description="coins per unit of the venue's base (1000 for 1000PEPE)")
    tick_size: float | None = Field(description="price step, quote per unit of the venue's base")
    min_qty: float | None = Field(description="smallest order, in coins")
    min_notional: float | None = Field(description="smallest order value, USDT")
    contract_size: float | None = Field(description="base units per contract; null on spot")
    taker_fee: float | None = Field(description="fraction of the traded value, e.g. 0.0005")


class UniverseSymbol(_Model):
    id: int
    name: str = Field(description="COIN/USDT")
    coin: str
    listings: list[Listing]


class Direction(_Model):
    id: int
    buy: str = Field(description="source bought on (at its ask)")
    sell: str = Field(description="source sold on (at its bid); always futures")
    symbols: list[str] = Field(description="universe names listed on both sources")


class Universe(_Model):
    version: int = UNIVERSE_VERSION
    generated_at: int = Field(description="ms since epoch, UTC")
    sources: list[str] = Field(description="sources whose market lists were read")
    failed_sources: dict[str, str] = Field(description="source -> why it was left out")
    symbols: list[UniverseSymbol]
    directions: list[Direction]

    def futures_symbols(self) -> list[str]:
        """Every perpetual symbol some source lists (each venue's own form), for `"symbols": "auto"`."""
        return sorted(
            {listing.symbol for symbol in self.symbols for listing in symbol.listings if listing.market == "futures"}
        )

    def listing(self, source: str, name: str) -> Listing | None:
        for symbol in self.symbols:
            if symbol.name == name:
                return next((listing for listing in symbol.listings if listing.source == source), None)
        return None


def read_universe(directory: str | Path) -> Universe:
    return Universe.model_validate_json((Path(directory) / UNIVERSE_FILE).read_bytes())
