"""Future outcomes against hand-computed values."""

from __future__ import annotations

import math

import pytest

from history.events import EventMerger
from history.outcomes import compute_outcome
from history.rows import FundingChange, SignalEvent
from tests.history_rows import MINUTE, T0, sample

TOLERANCE = MINUTE * 3 // 2


def event_at_t0() -> SignalEvent:
    merger = EventMerger(1, 3 * MINUTE, MINUTE)
    return merger.add(sample(0, 0.6))[0]


def at(minute: float) -> int:
    return T0 + round(minute * MINUTE)


def funding(at_minute: float, rate: float, next_minute: float, previous_next: float | None = None) -> FundingChange:
    return FundingChange(ts=at(at_minute), exchange="binance", symbol="BTC/USDT:USDT", funding_rate=rate,
                         funding_interval_hours=8, next_funding_time=at(next_minute), previous_rate=None,
                         previous_next_funding_time=None if previous_next is None else at(previous_next),
                         received_ts=at(at_minute))


def test_a_converging_spread_with_one_funding_settlement_on_each_leg():
    spreads = [0.6, 0.7, 0.5, 0.3, 0.2, 0.25]
    samples = [sample(minute, spread) for minute, spread in enumerate(spreads)]
    sell_funding = [funding(-60, 0.0001, 2), funding(2 + 1 / 60, 0.0003, 480, previous_next=2)]
    buy_funding = [funding(-10, -0.0002, 3)]
    outcome = compute_outcome(event_at_t0(), 5, samples, buy_funding, sell_funding, 0.05, TOLERANCE, T0 + 99)
    assert outcome.status == "ok"
    assert (outcome.start_ts, outcome.horizon_ts, outcome.samples) == (T0, T0 + 5 * MINUTE, 6)
    assert (outcome.spread_start, outcome.spread_end, outcome.net_end) == (0.6, 0.25, pytest.approx(0.15))
    assert outcome.spread_change == pytest.approx(-0.35)
    assert outcome.max_favourable_pct == pytest.approx(0.4)  # 0.6 down to 0.2
    assert outcome.max_adverse_pct == pytest.approx(0.1)  # 0.6 up to 0.7
    assert outcome.volatility_pct == pytest.approx(math.sqrt(0.20875 / 6))
    # short binance receives 0.01 % at minute 2 (the rate in force then, not the later 0.03 %); the long leg's
    # -0.02 % at minute 3 means shorts pay longs: the long receives 0.02 %
    assert outcome.funding_accrued_pct == pytest.approx(0.03)
    assert outcome.label == "converged"


def test_flat_and_diverged_labels_and_a_spot_leg_paying_nothing():
    flat = compute_outcome(event_at_t0(), 2, [sample(0, 0.6), sample(1, 0.9), sample(2, 0.64)], None, None, 0.05,
                           TOLERANCE, T0)
    assert (flat.label, flat.funding_accrued_pct) == ("flat", 0.0)
    diverged = compute_outcome(event_at_t0(), 2, [sample(0, 0.6), sample(2, 0.65)], None, None, 0.05, TOLERANCE, T0)
    assert diverged.label == "diverged"
    assert diverged.volatility_pct == pytest.approx(0.025)


def test_a_horizon_without_a_sample_near_its_end_is_missing_not_invented():
    samples = [sample(minute, 0.6) for minute in range(4)]  # last at minute 3; horizon 5, tolerance 1.5
    missing = compute_outcome(event_at_t0(), 5, samples, None, None, 0.05, TOLERANCE, T0)
    assert missing.status == "missing"
    assert (missing.spread_end, missing.spread_change, missing.label, missing.funding_accrued_pct) == (
        None, None, None, None)
    assert missing.samples == 4
    present = compute_outcome(event_at_t0(), 5, [*samples, sample(4, 0.5)], None, None, 0.05, TOLERANCE, T0)
    assert (present.status, present.spread_end) == ("ok", 0.5)


def test_a_perpetual_leg_without_recorded_funding_makes_funding_unknown():
    outcome = compute_outcome(event_at_t0(), 1, [sample(0, 0.6), sample(1, 0.6)], None, [], 0.05, TOLERANCE, T0)
    assert (outcome.status, outcome.funding_accrued_pct) == ("ok", None)


def test_a_settlement_without_a_rate_recorded_before_it_makes_funding_unknown():
    """The recorder started after the rate was set: the settlement is known, what it paid is not."""
    announced = FundingChange(ts=T0 + MINUTE // 2, exchange="binance", symbol="BTC/USDT:USDT", funding_rate=None,
                              funding_interval_hours=8, next_funding_time=T0 + MINUTE, previous_rate=None,
                              previous_next_funding_time=None, received_ts=T0 + MINUTE // 2)
    outcome = compute_outcome(event_at_t0(), 2, [sample(0, 0.6), sample(1, 0.6), sample(2, 0.6)], None, [announced],
                              0.05, TOLERANCE, T0)
    assert (outcome.status, outcome.funding_accrued_pct, outcome.label) == ("ok", None, "flat")


def test_with_no_flat_band_an_unchanged_spread_is_still_flat():
    outcomes = [compute_outcome(event_at_t0(), 1, [sample(0, 0.6), sample(1, end)], None, None, 0.0, TOLERANCE, T0)
                for end in (0.6, 0.59, 0.61)]
    assert [outcome.label for outcome in outcomes] == ["flat", "converged", "diverged"]
