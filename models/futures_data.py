"""The message contract: one JSON document per update on `futures.<exchange>.<SYMBOL>`.

Every producer and consumer in this project imports these models; so should yours:

    message = FuturesData.model_validate_json(body)

Units, for every venue alike:
- prices are quote currency (USDT) per one unit of the market's base asset as ccxt names it
  (for 1000PEPE/USDT:USDT that unit is 1000 PEPE);
- sizes are in base units (coins), never contracts: contract venues are converted with the
  market's contract size;
- times are integer milliseconds since the Unix epoch, UTC;
- every part (the quote, the 24 h statistics, the book, funding) carries its own venue time and
  receipt time, so a part whose stream went quiet shows its age even while other parts keep the
  message flowing; the top-level times are those of the newest part;
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


_NO_VENUE_TIME = "; the receipt time where the venue sends none"
_OLDER_COLLECTORS = "; absent (null) in messages from collectors older than this field"


class Ticker(_Contract):
    """Best bid/ask and the 24 h statistics; null where the venue has not sent them yet."""

    bid: float | None = Field(description="best bid price")
    ask: float | None = Field(description="best ask price")
    bid_size: float | None = Field(description="size resting at the best bid, in coins")
    ask_size: float | None = Field(description="size resting at the best ask, in coins")
    last: float | None = Field(description="last trade price")
    volume_24h: float | None = Field(description="traded volume over the last 24 h, in coins")
    timestamp: int | None = Field(
        default=None,
        description="venue time of the best bid/ask (the book's, where the quote is the top of the book), ms UTC"
        + _NO_VENUE_TIME + _OLDER_COLLECTORS,
    )
    received_timestamp: int | None = Field(
        default=None, description="when the collector received the best bid/ask, ms UTC" + _OLDER_COLLECTORS
    )
    stats_timestamp: int | None = Field(
        default=None, description="venue time of last and volume_24h, ms UTC" + _NO_VENUE_TIME + _OLDER_COLLECTORS
    )
    stats_received_timestamp: int | None = Field(
        default=None, description="when the collector received last and volume_24h, ms UTC" + _OLDER_COLLECTORS
    )


class OrderBook(_Contract):
    """The top levels of the book, best first."""

    bids: list[PriceLevel] = Field(description="[price, size in coins], highest price first")
    asks: list[PriceLevel] = Field(description="[price, size in coins], lowest price first")
    timestamp: int | None = Field(description="venue time of the last book update, ms UTC" + _NO_VENUE_TIME)
    received_timestamp: int | None = Field(
        default=None, description="when the collector received the last book update, ms UTC" + _OLDER_COLLECTORS
    )


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
        description="venue event time of the newest component, ms UTC; receipt time when the venue sends none. "
        "A fresh value says only that some part is fresh: judge a part by its own times (ticker.timestamp, ...)"
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
    funding_timestamp: int | None = Field(
        default=None,
        description="venue time of the update (stream or REST poll) that last refreshed funding_rate, "
        "next_funding_time, mark_price or index_price, ms UTC" + _NO_VENUE_TIME + _OLDER_COLLECTORS,
    )
    funding_received_timestamp: int | None = Field(
        default=None,
        description="when the collector received that update, ms UTC" + _OLDER_COLLECTORS,
    )
    received_timestamp: int = Field(
        description="when the collector received the newest component, ms UTC (ticker.received_timestamp is the "
        "quote's own)"
    )
    published_timestamp: int = Field(description="when the collector handed the message to RabbitMQ, ms UTC")
    extra: dict[str, Any] = Field(default_factory=dict, description="venue-specific fields, free-form")


def routing_key(exchange: str, symbol: str, market: str = "futures") -> str:
    """`futures.binance.BTCUSDT` for BTC/USDT:USDT: the symbol's base and quote, without separators."""
    return f"{market}.{exchange}.{key_word(symbol)}"


def key_word(symbol: str) -> str:
    """The symbol's word in routing keys and the API: 1000PEPE/USDT:USDT -> 1000PEPEUSDT."""
    base_quote = symbol.split(":", 1)[0]
    return base_quote.replace("/", "").replace("-", "").replace(".", "")


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
