"""How an event's direction behaved after it started: the research label of each signal.

For a horizon h, the position bought the buy leg and sold the sell leg at the event's start; everything is
measured on spread_pct along that direction from the recorded samples (watch_signal_raw) and the recorded
funding (funding_change). No sample within one tolerance before start + h means the outcome is missing:
every figure None, never interpolated or invented."""

from __future__ import annotations

import statistics

from history.rows import FundingChange, Outcome, OutcomeLabel, SignalEvent, SignalSample


def label_of(change: float, flat_pct: float) -> OutcomeLabel:
    """A fall (rise) by at least flat_pct converged (diverged); an unchanged spread is flat even at flat_pct 0."""
    if change < 0 and change <= -flat_pct:
        return "converged"
    if change > 0 and change >= flat_pct:
        return "diverged"
    return "flat"


def settled_funding_pct(changes: list[FundingChange], from_ms: int, to_ms: int) -> float | None:
    """Funding a long position pays (a short one receives), percent, for the settlements in (from_ms, to_ms]:
    each settlement time was announced as a next_funding_time, and the rate in force is the last one recorded
    before it. None when nothing was recorded (the settlement times are unknown too) or a settlement has no rate
    recorded before it: unknown, not zero."""
    if not changes:
        return None
    settlements = sorted({time for change in changes for time in (change.next_funding_time,
                                                                    change.previous_next_funding_time)
                          if time is not None and from_ms < time <= to_ms})
    paid = 0.0
    for settles_at in settlements:
        in_force = [change for change in changes if change.ts < settles_at and change.funding_rate is not None]
        if not in_force:
            return None
        paid += in_force[-1].funding_rate * 100  # type: ignore[operator]
    return paid


def compute_outcome(event: SignalEvent, horizon_min: float, samples: list[SignalSample],
                    buy_funding: list[FundingChange] | None, sell_funding: list[FundingChange] | None,
                    flat_pct: float, tolerance_ms: int, computed_at: int) -> Outcome:
    """samples: the direction's rows from start_ts to start_ts + horizon, oldest first. *_funding: the leg's
    funding_change rows (None for a spot leg, which pays no funding), the one in force at start included;
    a perpetual leg without any makes funding_accrued_pct None."""
    horizon_ts = event.start_ts + round(horizon_min * 60_000)
    window = [sample for sample in samples if event.start_ts <= sample.ts <= horizon_ts]
    start = next((sample for sample in window if sample.ts == event.start_ts), None)
    end = window[-1] if window and window[-1].ts >= horizon_ts - tolerance_ms else None
    if start is None or end is None:
        return Outcome(event_id=event.event_id, horizon_min=horizon_min, status="missing", start_ts=event.start_ts,
                       horizon_ts=horizon_ts, spread_start=None, spread_end=None, spread_change=None, net_end=None,
                       funding_accrued_pct=None, max_favourable_pct=None, max_adverse_pct=None, volatility_pct=None,
                       label=None, samples=len(window), computed_at=computed_at)
    spreads = [sample.spread_pct for sample in window]
    change = end.spread_pct - start.spread_pct
    long_pays = 0.0 if buy_funding is None else settled_funding_pct(buy_funding, event.start_ts, horizon_ts)
    short_receives = 0.0 if sell_funding is None else settled_funding_pct(sell_funding, event.start_ts, horizon_ts)
    # a perpetual leg without funding recorded, or with a settlement but no rate before it: unknown, not zero
    funding = None if long_pays is None or short_receives is None else short_receives - long_pays
    return Outcome(
        event_id=event.event_id, horizon_min=horizon_min, status="ok", start_ts=event.start_ts, horizon_ts=horizon_ts,
        spread_start=start.spread_pct, spread_end=end.spread_pct, spread_change=change, net_end=end.net_pct,
        funding_accrued_pct=funding, max_favourable_pct=max(0.0, start.spread_pct - min(spreads)),
        max_adverse_pct=max(0.0, max(spreads) - start.spread_pct),
        volatility_pct=statistics.pstdev(spreads) if len(spreads) > 1 else None,
        label=label_of(change, flat_pct), samples=len(window), computed_at=computed_at,
    )
