"""What the spread engine publishes on the `futures_analytics` topic exchange.

    spread.<SYMBOL>.<buy>.<sell>               a SpreadSnapshot (conflated, at most N per second per key)
    opportunity.open|update|close.<SYMBOL>     an OpportunityEvent

SYMBOL is the universe name without its slash (BTCUSDT); a source id's dot becomes a dash in routing
keys (binance.spot -> binance-spot), so each part stays one topic word. Prices are USDT per one coin,
sizes are coins, percentages are percent (0.25 = 0.25 %), times are ms since epoch UTC.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Leg(_Model):
    source: str
    symbol: str = Field(description="the venue's symbol, e.g. 1000PEPE/USDT:USDT")
    bid: float
    ask: float
    timestamp: int = Field(description="venue time of the quote (the message's ticker.timestamp)")
    received_timestamp: int | None = Field(
        default=None, description="when the collector received the quote (ticker.received_timestamp): its age"
    )
    funding_rate_8h: float | None = Field(description="funding per 8 h (rate x 8 / interval); null on spot/unknown")


class SpreadSnapshot(_Model):
    symbol: str = Field(description="universe name, e.g. BTC/USDT")
    buy: Leg = Field(description="bought at its ask")
    sell: Leg = Field(description="sold at its bid")
    spread_abs: float = Field(description="sell bid - buy ask, USDT per coin")
    spread_pct: float = Field(description="spread_abs / buy ask, percent")
    net_pct: float = Field(description="after both taker fees, percent")
    notional_usdt: float
    vwap_buy: float | None = Field(description="average price sweeping notional_usdt through the buy book")
    vwap_sell: float | None = Field(description="average price selling that quantity into the sell book")
    executable_net_pct: float | None = Field(description="net spread at those prices, percent")
    executable_qty: float | None = Field(description="coins bought (and sold) in the sweep")
    fully_fillable: bool = Field(description="both books were deep enough for notional_usdt")
    funding_diff_8h_pct: float | None = Field(description="sell leg's funding - buy leg's, per 8 h, percent")
    funding_apr_pct: float | None = Field(description="funding_diff_8h_pct x 3 x 365")
    timestamp: int = Field(description="when evaluated")


class OpportunityEvent(_Model):
    event: Literal["open", "update", "close"]
    opportunity_id: str
    symbol: str
    buy: str
    sell: str
    opened_at: int
    snapshot: SpreadSnapshot
    peak_net_pct: float
    reason: str | None = Field(
        default=None,
        description="on close, why: `converged` (the top-of-book net_pct fell to exit_pct or below) or `stale` "
        "(a leg's quote was received longer than max_quote_age_ms ago; the snapshot holds the last quotes) or "
        "`delisted` (a rediscovered universe no longer has the pair: a leg was delisted; the snapshot holds the "
        "last quotes)",
    )


def source_word(source: str) -> str:
    """binance.spot -> binance-spot: one word in a topic routing key."""
    return source.replace(".", "-")


def symbol_word(name: str) -> str:
    return name.replace("/", "")


def spread_key(name: str, buy: str, sell: str) -> str:
    return f"spread.{symbol_word(name)}.{source_word(buy)}.{source_word(sell)}"


def opportunity_key(event: str, name: str) -> str:
    return f"opportunity.{event}.{symbol_word(name)}"
