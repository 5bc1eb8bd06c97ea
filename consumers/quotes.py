"""The latest quote per (source, universe name), taken from the collector's messages, per coin.

A message prices one unit of the venue's base (1000 PEPE for 1000PEPE/USDT:USDT); here every price is
per single coin and every size in coins, so venues that bundle coins differently compare directly.

A quote's times are its own (`ticker.timestamp`, `ticker.received_timestamp`), not the message's: a
message keeps arriving while its bookTicker stream is dead, refreshed by the mark price or the book,
and only the quote's own receipt time shows that its prices are old. Messages from collectors older
than those fields fall back to the message's times.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from pydantic import ValidationError

from consumers.spread_math import funding_per_8h
from models.futures_data import FuturesData

QUEUE_MAX_LENGTH = 100_000
"""Quotes waiting for a consumer; beyond it the oldest are dropped (only the newest matter)."""

Levels = list[tuple[float, float]]


@dataclass(slots=True)
class Quote:
    source: str
    """binance, okx.spot, ... (as discovery names sources)."""
    name: str
    """Universe name, COIN/USDT."""
    symbol: str
    market: str
    bid: float
    ask: float
    bids: Levels
    asks: Levels
    timestamp: int
    """Venue time of the best bid/ask."""
    received: int
    """When the collector received the best bid/ask."""
    funding_rate_8h: float | None
    has_depth: bool = False
    """The message carried an order book (not only the best bid/ask and their sizes)."""


def source_of(message: FuturesData) -> str:
    return message.exchange if message.market == "futures" else f"{message.exchange}.{message.market}"


def quote_from(message: FuturesData) -> Quote | None:
    """None when the message carries no usable best bid/ask."""
    ticker = message.ticker
    if ticker.bid is None or ticker.ask is None or ticker.bid <= 0 or ticker.ask <= 0:
        return None
    multiplier = message.base_multiplier
    quote_currency = message.symbol.split("/", 1)[1].split(":", 1)[0]
    book = message.orderbook
    bids: Levels = [(price / multiplier, size * multiplier) for price, size in book.bids] if book else []
    asks: Levels = [(price / multiplier, size * multiplier) for price, size in book.asks] if book else []
    if not bids and ticker.bid_size:
        bids = [(ticker.bid / multiplier, ticker.bid_size * multiplier)]
    if not asks and ticker.ask_size:
        asks = [(ticker.ask / multiplier, ticker.ask_size * multiplier)]
    return Quote(
        source=source_of(message),
        name=f"{message.coin}/{quote_currency}",
        symbol=message.symbol,
        market=message.market,
        bid=ticker.bid / multiplier,
        ask=ticker.ask / multiplier,
        bids=bids,
        asks=asks,
        timestamp=ticker.timestamp if ticker.timestamp is not None else message.timestamp,
        received=ticker.received_timestamp if ticker.received_timestamp is not None else message.received_timestamp,
        funding_rate_8h=funding_per_8h(message.funding_rate, message.funding_interval_hours),
        has_depth=book is not None,
    )


async def subscribe_quotes(
    channel: aio_pika.abc.AbstractChannel,
    exchange: str,
    on_quote: Callable[[Quote], Awaitable[None] | None],
    on_invalid: Callable[[str, ValidationError], None],
) -> None:
    """Every futures and spot message of the collector's exchange, as quotes, on an exclusive queue."""
    market = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"}
    )
    for binding in ("futures.#", "spot.#"):
        await queue.bind(market, binding)

    async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            quote = quote_from(FuturesData.model_validate_json(message.body))
        except ValidationError as error:
            on_invalid(message.routing_key or "", error)
            return
        if quote is not None:
            result = on_quote(quote)
            if result is not None:
                await result

    await queue.consume(deliver, no_ack=True)
