"""The message contract: one JSON document per update on `futures.<exchange>.<SYMBOL>`.

Every producer and consumer in this project imports these models; so should yours:

    message = FuturesData.model_validate_json(body)

Units, for every venue alike:
- prices are quote currency (USDT) per one unit of the market's base asset as ccxt names it
  (for 1000PEPE/USDT:USDT that unit is 1000 PEPE);
- sizes are in base units (coins), never contracts: contract venues are converted with the
  market's contract size;
- times are integer milliseconds since the Unix epoch, UTC;
- funding_rate is a fraction per funding interval (0.0001 = 0.01 %), paid every
  funding_interval_hours.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PriceLevel = tuple[float, float]
"""[price, size in coins]."""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ticker(_Contract):
    """Best bid/ask and the 24 h statistics; null where the venue has not sent them yet."""

    bid: float | None = Field(description="best bid price")
    ask: float | None = Field(description="best ask price")
    bid_size: float | None = Field(description="size resting at the best bid, in coins")
    ask_size: float | None = Field(description="size resting at the best ask, in coins")
    last: float | None = Field(description="last trade price")
    volume_24h: float | None = Field(description="traded volume over the last 24 h, in coins")


class OrderBook(_Contract):
    """The top levels of the book, best first."""

    bids: list[PriceLevel] = Field(description="[price, size in coins], highest price first")
    asks: list[PriceLevel] = Field(description="[price, size in coins], lowest price first")
    timestamp: int | None = Field(description="venue time of the last book update, ms UTC")


class FuturesData(_Contract):
    """The latest complete state of one market on one venue."""

    exchange: str = Field(description="venue name as configured, e.g. binance")
    market: Literal["futures", "spot"] = Field(default="futures", description="perpetual futures or spot")
    symbol: str = Field(description="ccxt unified symbol, e.g. BTC/USDT:USDT")
    coin: str = Field(description="the underlying coin, e.g. PEPE for 1000PEPE/USDT:USDT")
    base_multiplier: int = Field(
        default=1, ge=1, description="coins in one unit of the symbol's base: 1000 for 1000PEPE, else 1"
    )
    timestamp: int = Field(
        description="venue event time of the newest component, ms UTC; receipt time when the venue sends none"
    )
    ticker: Ticker
    orderbook: OrderBook | None = Field(
        description="null when collection.orderbook_depth is 0, or while the venue book has an empty or crossed side "
        "(a garbled update broke it; it is being resynced)"
    )
    funding_rate: float | None = Field(description="current (predicted) funding rate, fraction per interval")
    next_funding_time: int | None = Field(description="next funding settlement, ms UTC")
    funding_interval_hours: float | None = Field(description="hours between settlements; null when unknown")
    mark_price: float | None
    index_price: float | None
    received_timestamp: int = Field(description="when the collector received the newest component, ms UTC")
    published_timestamp: int = Field(description="when the collector handed the message to RabbitMQ, ms UTC")
    extra: dict[str, Any] = Field(default_factory=dict, description="venue-specific fields, free-form")


def routing_key(exchange: str, symbol: str, market: str = "futures") -> str:
    """`futures.binance.BTCUSDT` for BTC/USDT:USDT: the symbol's base and quote, without separators."""
    base_quote = symbol.split(":", 1)[0]
    return f"{market}.{exchange}.{base_quote.replace('/', '').replace('-', '').replace('.', '')}"


_MULTIPLIED_BASE = re.compile(r"^(?P<prefix>1(?:0{2,})|1M|k)(?P<coin>[A-Z][A-Z0-9]*)$")
_PREFIX_MULTIPLIERS = {"1M": 1_000_000, "k": 1000}


def split_multiplier(base: str) -> tuple[str, int]:
    """(coin, coins per base unit): 1000PEPE -> (PEPE, 1000), kPEPE -> (PEPE, 1000), BTC -> (BTC, 1).

    Venues list very cheap coins in bundles; a price per bundle divided by the multiplier is the
    price of one coin. Only 1 with two or more zeros (1000PEPE), 1M (1MBABYDOGE) and a lowercase k
    (kPEPE) count as prefixes: 1INCH, MEME and KAS stay what they are.
    """
    match = _MULTIPLIED_BASE.match(base)
    if match is None:
        return base, 1
    prefix = match["prefix"]
    return match["coin"], _PREFIX_MULTIPLIERS.get(prefix) or int(prefix)
