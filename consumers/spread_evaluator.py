"""Spreads on every update, for the directions and symbols that update concerns, and nothing else.

An index maps (source, name) to the directions it is a leg of, so the work per update depends on how
many sources list that symbol, not on how many symbols there are.

A leg's age is measured from when the collector received its quote, and leg skew from the quotes'
venue times. An open opportunity closes as `stale` once a leg is older than max_quote_age_ms: on the
next update of either leg, or at the latest on the engine's periodic `close_stale` sweep, which covers
legs that stopped updating altogether.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from consumers.opportunities import Opportunity, OpportunityBook, PairKey, Rules, Transition
from consumers.quotes import Quote
from consumers.spread_math import apr_pct, funding_diff_8h, net_pct, spread_pct, sweep_notional, sweep_quantity
from models.analytics import Leg, OpportunityEvent, SpreadSnapshot
from models.config import SpreadsConfig
from models.universe import Universe

EventKind = Literal["open", "update", "close"]
Evaluation = tuple[SpreadSnapshot | None, Transition | None, OpportunityEvent | None]
"""(the snapshot to publish, or None for a stale pair; what changed; the opportunity event it caused)."""


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
    closed_stale: int = 0


@dataclass
class SpreadEvaluator:
    universe: Universe
    settings: SpreadsConfig
    clock: Callable[[], int] = now_ms
    quotes: dict[tuple[str, str], Quote] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._index(self.universe)
        settings = self.settings
        self.opportunities = OpportunityBook(
            Rules(settings.entry_pct, settings.exit_pct, settings.confirm_ticks,
                  int(settings.cooldown_seconds * 1000))
        )

    def _index(self, universe: Universe) -> None:
        self.legs_of: dict[tuple[str, str], list[PairKey]] = {}
        for direction in universe.directions:
            for name in direction.symbols:
                pair = (direction.buy, direction.sell, name)
                self.legs_of.setdefault((direction.buy, name), []).append(pair)
                self.legs_of.setdefault((direction.sell, name), []).append(pair)
        self.fees = fees_of(universe)

    def replace_universe(self, universe: Universe) -> list[OpportunityEvent]:
        """Evaluate a rediscovered universe's directions from now on. The quotes kept so far stay (a new
        direction is evaluated on its legs' next update); an open opportunity whose pair the new universe no
        longer has (a leg was delisted) closes with reason `delisted`."""
        self.universe = universe
        self._index(universe)
        pairs = {pair for pairs in self.legs_of.values() for pair in pairs}
        now = self.clock()
        closed = []
        for pair in self.opportunities.open_pairs():
            if pair in pairs:
                continue
            buy_source, sell_source, name = pair
            opportunity = self.opportunities.close(pair, now)
            buy, sell = self.quotes.get((buy_source, name)), self.quotes.get((sell_source, name))
            if opportunity is None or buy is None or sell is None:
                continue
            self.counters.closed += 1
            closed.append(self._event(pair, opportunity, "close", self.snapshot(buy, sell, now), "delisted"))
        for pair in [pair for pair in self.opportunities.pairs if pair not in pairs]:
            del self.opportunities.pairs[pair]  # a pair listed again later starts afresh
        return closed

    def on_quote(self, quote: Quote) -> list[Evaluation]:
        """Store the quote; evaluate every pair it is a leg of. Per pair: the snapshot, and the
        opportunity event it caused (open, close, or an update; the caller throttles updates)."""
        self.counters.updates += 1
        key = (quote.source, quote.name)
        self.quotes[key] = quote
        results = []
        for pair in self.legs_of.get(key, ()):
            evaluated = self.evaluate(pair)
            if evaluated is not None:
                results.append(evaluated)
        return results

    def evaluate(self, pair: PairKey) -> Evaluation | None:
        buy_source, sell_source, name = pair
        buy, sell = self.quotes.get((buy_source, name)), self.quotes.get((sell_source, name))
        if buy is None or sell is None:
            return None
        now = self.clock()
        settings = self.settings
        if self._stale(buy, now) or self._stale(sell, now):
            self.counters.skipped_stale += 1
            self.opportunities.skipped(pair)
            closed = self._close_stale(pair, buy, sell, now)
            return (None, "close", closed) if closed is not None else None
        if abs(buy.timestamp - sell.timestamp) > settings.max_leg_skew_ms:
            self.counters.skipped_skew += 1
            self.opportunities.skipped(pair)
            return None
        self.counters.evaluations += 1
        snapshot = self.snapshot(buy, sell, now)
        transition, opportunity = self.opportunities.evaluate(
            pair, snapshot.net_pct, now, self._opening_net(buy, sell, snapshot)
        )
        event = None
        if opportunity is not None:
            if transition == "open":
                self.counters.opened += 1
            elif transition == "close":
                self.counters.closed += 1
            event = self._event(pair, opportunity, transition or "update", snapshot,
                                "converged" if transition == "close" else None)
        return snapshot, transition, event

    def close_stale(self) -> list[OpportunityEvent]:
        """Close every open opportunity with a stale leg, whether or not anything arrived for it since: a
        venue that goes quiet altogether sends no update that would close it (the engine calls this
        periodically)."""
        now = self.clock()
        closed = []
        for pair in self.opportunities.open_pairs():
            buy_source, sell_source, name = pair
            buy, sell = self.quotes.get((buy_source, name)), self.quotes.get((sell_source, name))
            if buy is None or sell is None or not (self._stale(buy, now) or self._stale(sell, now)):
                continue
            event = self._close_stale(pair, buy, sell, now)
            if event is not None:
                closed.append(event)
        return closed

    def _stale(self, quote: Quote, now: int) -> bool:
        return now - quote.received > self.settings.max_quote_age_ms

    def _close_stale(self, pair: PairKey, buy: Quote, sell: Quote, now: int) -> OpportunityEvent | None:
        opportunity = self.opportunities.close(pair, now)
        if opportunity is None:
            return None
        self.counters.closed += 1
        self.counters.closed_stale += 1
        return self._event(pair, opportunity, "close", self.snapshot(buy, sell, now), "stale")

    def _opening_net(self, buy: Quote, sell: Quote, snapshot: SpreadSnapshot) -> float | None:
        """The net that may open an opportunity (see consumers.opportunities): with open_on `executable` and a
        book on both legs, the executable net, and only if the notional fills; with no book on either leg
        (orderbook_depth 0), the top-of-book net. With a book on one leg only, the other's is resyncing: what
        fills is unknown until it is back, so nothing opens meanwhile."""
        if self.settings.open_on == "top" or not (buy.has_depth or sell.has_depth):
            return snapshot.net_pct
        if not (buy.has_depth and sell.has_depth):
            return None
        return snapshot.executable_net_pct if snapshot.fully_fillable else None

    @staticmethod
    def _event(
        pair: PairKey, opportunity: Opportunity, kind: EventKind, snapshot: SpreadSnapshot, reason: str | None
    ) -> OpportunityEvent:
        buy_source, sell_source, name = pair
        return OpportunityEvent(
            event=kind,
            opportunity_id=opportunity.opportunity_id,
            symbol=name,
            buy=buy_source,
            sell=sell_source,
            opened_at=opportunity.opened_at,
            snapshot=snapshot,
            peak_net_pct=opportunity.peak_net_pct,
            reason=reason,
        )

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
        received_timestamp=quote.received, funding_rate_8h=quote.funding_rate_8h,
    )


def fees_of(universe: Universe) -> dict[tuple[str, str], float]:
    """Taker fee per (source, universe name), where the universe knows it."""
    return {
        (listing.source, symbol.name): listing.taker_fee
        for symbol in universe.symbols
        for listing in symbol.listings
        if listing.taker_fee is not None
    }
