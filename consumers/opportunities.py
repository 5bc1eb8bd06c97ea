"""When a spread becomes an opportunity, and when it stops being one: hysteresis per (buy, sell, symbol).

Open after `confirm_ticks` consecutive evaluations with the net spread at or above entry; close when it
falls to exit or below. A closed pair may open again at once, or after a cooldown. An evaluation the
engine had to skip (stale or skewed legs) breaks a streak: only fresh, consecutive evidence opens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

Transition = Literal["open", "close"]


@dataclass
class Opportunity:
    opportunity_id: str
    opened_at: int
    peak_net_pct: float
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
    pairs: dict[tuple[str, str, str], PairState] = field(default_factory=dict)

    def evaluate(
        self, key: tuple[str, str, str], net_pct: float, now: int
    ) -> tuple[Transition | None, Opportunity | None]:
        """(what changed, the opportunity concerned: still open, just opened or just closed)."""
        state = self.pairs.setdefault(key, PairState())
        rules = self.rules
        opportunity = state.open
        if opportunity is not None:
            opportunity.peak_net_pct = max(opportunity.peak_net_pct, net_pct)
            if net_pct <= rules.exit_pct:
                state.open, state.closed_at, state.streak = None, now, 0
                return "close", opportunity
            return None, opportunity
        if net_pct < rules.entry_pct:
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

    def skipped(self, key: tuple[str, str, str]) -> None:
        state = self.pairs.get(key)
        if state is not None:
            state.streak = 0
