"""When a spread becomes an opportunity, and when it stops being one: hysteresis per (buy, sell, symbol).

Open after `confirm_ticks` consecutive evaluations with the opening net at or above entry; close when the
top-of-book net falls to exit or below, or when a leg's quote goes stale. A closed pair may open again at
once, or after a cooldown. An evaluation the engine had to skip (stale or skewed legs), or one whose
opening net is unknown (the notional did not fill), breaks a streak: only fresh, consecutive evidence opens.

Opening and closing look at different nets on purpose (see README, "Spread engine"): the opening net can
be the depth-aware executable one, so a spread that exists only for a sliver of size alerts nobody; the
closing net is the top of book, which moves only when prices converge, not each time a level deep in a
book is added or pulled, so an open opportunity does not flap closed and open on depth noise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Transition = Literal["open", "close"]
PairKey = tuple[str, str, str]
"""(buy source, sell source, universe name)."""


@dataclass
class Opportunity:
    opportunity_id: str
    opened_at: int
    peak_net_pct: float
    """Of the top-of-book net, the one that closes it."""
    last_update_at: int


@dataclass
class PairState:
    streak: int = 0
    open: Opportunity | None = None
    closed_at: int | None = None


@dataclass(frozen=True)
class Rules:
    entry_pct: float
    exit_pct: float
    confirm_ticks: int
    cooldown_ms: int


@dataclass
class OpportunityBook:
    rules: Rules
    pairs: dict[PairKey, PairState] = field(default_factory=dict)

    def evaluate(
        self, key: PairKey, net_pct: float, now: int, opening_net_pct: float | None
    ) -> tuple[Transition | None, Opportunity | None]:
        """(what changed, the opportunity concerned: still open, just opened or just closed).

        `net_pct`: the top-of-book net, which closes an open opportunity and sets its peak.
        `opening_net_pct`: the net that opens one; None when it cannot be known (the notional did not fill).
        """
        state = self.pairs.setdefault(key, PairState())
        rules = self.rules
        opportunity = state.open
        if opportunity is not None:
            opportunity.peak_net_pct = max(opportunity.peak_net_pct, net_pct)
            if net_pct <= rules.exit_pct:
                self._end(state, now)
                return "close", opportunity
            return None, opportunity
        if opening_net_pct is None or opening_net_pct < rules.entry_pct:
            state.streak = 0
            return None, None
        if state.closed_at is not None and now - state.closed_at < rules.cooldown_ms:
            return None, None
        state.streak += 1
        if state.streak < rules.confirm_ticks:
            return None, None
        state.open = Opportunity(str(uuid.uuid4()), now, net_pct, now)
        state.streak = 0
        return "open", state.open

    def skipped(self, key: PairKey) -> None:
        state = self.pairs.get(key)
        if state is not None:
            state.streak = 0

    def close(self, key: PairKey, now: int) -> Opportunity | None:
        """End the pair's open opportunity (a leg went stale); None when none is open."""
        state = self.pairs.get(key)
        if state is None or state.open is None:
            return None
        opportunity = state.open
        self._end(state, now)
        return opportunity

    def open_pairs(self) -> Iterator[PairKey]:
        """The pairs with an open opportunity (a snapshot: closing while iterating is safe)."""
        return iter([key for key, state in self.pairs.items() if state.open is not None])

    @staticmethod
    def _end(state: PairState, now: int) -> None:
        state.open, state.closed_at, state.streak = None, now, 0
