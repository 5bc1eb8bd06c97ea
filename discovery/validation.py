"""--validate: a listing counts only if its WebSocket stream delivers a sane quote within a budget.

The check runs the collector's own per-venue machinery (the same subscriptions, in the same batches,
through the same ccxt.pro hooks); quotes go to a recorder instead of RabbitMQ. A quote is sane when
bid > 0, ask > 0 and bid <= ask.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from collectors.exchange_collector import ExchangeCollector
from collectors.market_state import MarketState
from collectors.venues import sources_for
from models.config import AppConfig, CollectionConfig
from models.futures_data import routing_key
from models.universe import Listing, Universe

VALID, NO_DATA, INVALID_PRICES, SUBSCRIBE_FAILED = "valid", "no data", "invalid prices", "subscribe rejected"


@dataclass
class QuoteRecorder:
    """Takes the collector's updates in place of the RabbitMQ publisher."""

    expected: set[str] = field(default_factory=set)
    sane: set[str] = field(default_factory=set)
    """Routing keys that had a sane quote."""
    all_sane: asyncio.Event = field(default_factory=asyncio.Event)

    def submit(self, state: MarketState) -> None:
        bid, ask = state.bid, state.ask
        if bid is not None and ask is not None and 0 < bid <= ask:
            self.sane.add(state.routing_key)
            if self.expected <= self.sane:
                self.all_sane.set()

    def forget(self, routing_key: str) -> None:
        """Nothing is kept per key beyond the verdict."""


@dataclass(frozen=True)
class Verdict:
    listing: Listing
    outcome: str
    detail: str = ""


async def validate(
    config: AppConfig, universe: Universe, seconds: float, progress: Callable[[str], None]
) -> list[Verdict]:
    """Subscribe every listing of every source at once, wait up to `seconds`, judge each."""
    collection = CollectionConfig(
        orderbook_depth=0,
        retry_attempts=config.collection.retry_attempts,
        retry_delays=config.collection.retry_delays,
        stale_after_seconds=max(seconds, 1.0),
    )
    recorder = QuoteRecorder()
    listings_by_source: dict[str, list[Listing]] = {}
    for symbol in universe.symbols:
        for listing in symbol.listings:
            listings_by_source.setdefault(listing.source, []).append(listing)
    collectors: dict[str, ExchangeCollector] = {}
    for exchange in config.exchanges:
        for source in sources_for(exchange.name, config.markets):
            listings = listings_by_source.get(source.source_id)
            if listings:
                symbols = [listing.symbol for listing in listings]
                collectors[source.source_id] = ExchangeCollector(
                    source, exchange, symbols, collection, recorder  # type: ignore[arg-type]
                )
    tasks = [asyncio.create_task(collector.run()) for collector in collectors.values()]
    recorder.expected = {
        routing_key(listing.exchange, listing.symbol, listing.market)
        for listings in listings_by_source.values()
        for listing in listings
    }
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(recorder.all_sane.wait(), seconds)
    verdicts = []
    for source_id, collector in collectors.items():
        for listing in listings_by_source[source_id]:
            verdicts.append(_judge(listing, collector, recorder, seconds))
        valid = sum(verdict.outcome == VALID for verdict in verdicts if verdict.listing.source == source_id)
        progress(f"validated {source_id}: {valid}/{len(listings_by_source[source_id])} quoting")
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return verdicts


def _judge(listing: Listing, collector: ExchangeCollector, recorder: QuoteRecorder, seconds: float) -> Verdict:
    state = collector.states.get(listing.symbol)
    if state is not None and state.routing_key in recorder.sane:
        return Verdict(listing, VALID)
    if state is not None and state.crossed:
        return Verdict(listing, INVALID_PRICES, "only crossed quotes (bid >= ask) arrived")
    if collector.stats.errors:
        return Verdict(listing, SUBSCRIBE_FAILED, f"{collector.stats.errors} subscription or frame error(s) on "
                                                  "this source, no quote")
    other = " (other fields did)" if state is not None and state.received_ms else ""
    return Verdict(listing, NO_DATA, f"no best bid/ask within {seconds:g} s{other}")
