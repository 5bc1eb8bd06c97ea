"""Spreads on every update, for the directions and symbols that update concerns, and nothing else.

An index maps (source, name) to the directions it is a leg of, so the work per update depends on how
many sources list that symbol, not on how many symbols there are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consumers.opportunities import OpportunityBook, Rules, Transition
from consumers.quotes import Quote
from consumers.spread_math import apr_pct, funding_diff_8h, net_pct, spread_pct, sweep_notional, sweep_quantity
from models.analytics import Leg, OpportunityEvent, SpreadSnapshot
from models.config import SpreadsConfig
from models.universe import Universe

PairKey = tuple[str, str, str]
"""(buy source, sell source, universe name)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Counters:
    updates: int = 0
    evaluations: int = 0
    skipped_stale: int = 0
    skipped_skew: int = 0
    opened: int = 0
    closed: int = 0


@dataclass
class SpreadEvaluator:
    universe: Universe
    settings: SpreadsConfig
    clock: Callable[[], int] = now_ms
    quotes: dict[tuple[str, str], Quote] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.legs_of: dict[tuple[str, str], list[PairKey]] = {}
        for direction in self.universe.directions:
            for name in direction.symbols:
                pair = (direction.buy, direction.sell, name)
                self.legs_of.setdefault((direction.buy, name), []).append(pair)
                self.legs_of.setdefault((direction.sell, name), []).append(pair)
        self.fees = {
            (listing.source, symbol.name): listing.taker_fee
            for symbol in self.universe.symbols
            for listing in symbol.listings
            if listing.taker_fee is not None
        }
        settings = self.settings
        self.opportunities = OpportunityBook(
            Rules(settings.entry_pct, settings.exit_pct, settings.confirm_ticks,
                  int(settings.cooldown_seconds * 1000))
        )

    def on_quote(self, quote: Quote) -> list[tuple[SpreadSnapshot, Transition | None, OpportunityEvent | None]]:
        """Store the quote; evaluate every pair it is a leg of. Per pair: the snapshot, and the
        opportunity event it caused (open, close, or None; the caller throttles updates)."""
        self.counters.updates += 1
        key = (quote.source, quote.name)
        self.quotes[key] = quote
        results = []
        for pair in self.legs_of.get(key, ()):
            evaluated = self.evaluate(pair)
            if evaluated is not None:
                results.append(evaluated)
        return results

    def evaluate(self, pair: PairKey) -> tuple[SpreadSnapshot, Transition | None, OpportunityEvent | None] | None:
        buy_source, sell_source, name = pair
        buy, sell = self.quotes.get((buy_source, name)), self.quotes.get((sell_source, name))
        if buy is None or sell is None:
            return None
        now = self.clock()
        settings = self.settings
        if now - buy.received > settings.max_quote_age_ms or now - sell.received > settings.max_quote_age_ms:
            self.counters.skipped_stale += 1
            self.opportunities.skipped(pair)
            return None
        if abs(buy.timestamp - sell.timestamp) > settings.max_leg_skew_ms:
            self.counters.skipped_skew += 1
            self.opportunities.skipped(pair)
            return None
        self.counters.evaluations += 1
        snapshot = self.snapshot(buy, sell, now)
        transition, opportunity = self.opportunities.evaluate(pair, snapshot.net_pct, now)
        event = None
        if opportunity is not None:
            if transition == "open":
                self.counters.opened += 1
            elif transition == "close":
                self.counters.closed += 1
            event = OpportunityEvent(
                event=transition or "update",
                opportunity_id=opportunity.opportunity_id,
                symbol=name,
                buy=buy_source,
                sell=sell_source,
                opened_at=opportunity.opened_at,
                snapshot=snapshot,
                peak_net_pct=opportunity.peak_net_pct,
                reason="converged" if transition == "close" else None,
            )
        return snapshot, transition, event

    def snapshot(self, buy: Quote, sell: Quote, now: int) -> SpreadSnapshot:
        settings = self.settings
        buy_fee = self.fees.get((buy.source, buy.name), settings.default_taker_fee)
        sell_fee = self.fees.get((sell.source, sell.name), settings.default_taker_fee)
        bought = sweep_notional(buy.asks, settings.notional_usdt)
        sold = sweep_quantity(sell.bids, bought.quantity) if bought is not None else None
        executable = None
        if bought is not None and sold is not None:
            executable = net_pct(bought.average_price, sold.average_price, buy_fee, sell_fee)
        diff = funding_diff_8h(buy.funding_rate_8h, sell.funding_rate_8h, buy.market == "spot")
        # model_construct: our own numbers, validated by the models' users (and the tests), not per update here
        return SpreadSnapshot.model_construct(
            symbol=buy.name,
            buy=_leg(buy),
            sell=_leg(sell),
            spread_abs=sell.bid - buy.ask,
            spread_pct=spread_pct(buy.ask, sell.bid),
            net_pct=net_pct(buy.ask, sell.bid, buy_fee, sell_fee),
            notional_usdt=settings.notional_usdt,
            vwap_buy=bought.average_price if bought else None,
            vwap_sell=sold.average_price if sold else None,
            executable_net_pct=executable,
            executable_qty=sold.quantity if sold else None,
            fully_fillable=bool(bought and bought.complete and sold and sold.complete),
            funding_diff_8h_pct=diff * 100 if diff is not None else None,
            funding_apr_pct=apr_pct(diff) if diff is not None else None,
            timestamp=now,
        )


def _leg(quote: Quote) -> Leg:
    return Leg.model_construct(
        source=quote.source, symbol=quote.symbol, bid=quote.bid, ask=quote.ask, timestamp=quote.timestamp,
        funding_rate_8h=quote.funding_rate_8h,
    )
