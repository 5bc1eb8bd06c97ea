"""Spread arithmetic against values worked out by hand."""

from __future__ import annotations

import pytest

from consumers.spread_math import (
    apr_pct,
    funding_diff_8h,
    funding_per_8h,
    net_pct,
    spread_pct,
    sweep_notional,
    sweep_quantity,
)


def test_gross_and_net_spread() -> None:
    # buy at 100.00, sell at 100.50: +0.5 %; with 0.05 % taker on each side:
    # cost 100 x 1.0005 = 100.05, proceeds 100.5 x 0.9995 = 100.44975, (100.44975 - 100.05) / 100.05 = 0.39955 %
    assert spread_pct(100.0, 100.5) == pytest.approx(0.5)
    assert net_pct(100.0, 100.5, 0.0005, 0.0005) == pytest.approx(0.399550224887556)
    assert net_pct(100.0, 100.0, 0.0, 0.0) == 0.0


def test_sweeping_a_notional_through_the_asks() -> None:
    asks = [[100.0, 2.0], [101.0, 3.0], [102.0, 10.0]]
    # 1000 USDT: 2 coins at 100 (200), then 800 / 101 = 7.920792 coins... but only 3 at 101 (303),
    # then 497 at 102 = 4.872549 coins: 9.872549 coins for 1000 -> 101.2910 average
    sweep = sweep_notional(asks, 1000.0)
    assert sweep is not None and sweep.complete
    assert sweep.quantity == pytest.approx(2 + 3 + 497 / 102)
    assert sweep.average_price == pytest.approx(1000 / (5 + 497 / 102))
    shallow = sweep_notional([[100.0, 1.0]], 1000.0)
    assert shallow is not None and not shallow.complete and shallow.quantity == 1.0 and shallow.average_price == 100
    assert sweep_notional([], 1000.0) is None


def test_selling_a_quantity_into_the_bids() -> None:
    bids = [[99.0, 1.0], [98.0, 4.0]]
    sweep = sweep_quantity(bids, 3.0)
    assert sweep is not None and sweep.complete
    assert sweep.average_price == pytest.approx((99 + 2 * 98) / 3)  # 98.3333
    short = sweep_quantity(bids, 10.0)
    assert short is not None and not short.complete and short.quantity == 5.0


def test_funding_normalized_per_8h_and_as_apr_with_each_venues_own_interval() -> None:
    assert funding_per_8h(0.0001, 8) == pytest.approx(0.0001)
    assert funding_per_8h(0.0001, 1) == pytest.approx(0.0008)  # paid 8 times in 8 h
    assert funding_per_8h(0.0001, 4) == pytest.approx(0.0002)
    assert funding_per_8h(0.0001, None) is None  # unknown interval: never assume 8 h
    # long a 4 h venue at 0.0001, short a 1 h venue at 0.0001: earn 0.0008 - 0.0002 per 8 h
    diff = funding_diff_8h(funding_per_8h(0.0001, 4), funding_per_8h(0.0001, 1), buy_is_spot=False)
    assert diff == pytest.approx(0.0006)
    assert apr_pct(diff) == pytest.approx(0.0006 * 3 * 365 * 100)  # 65.7 %
    assert funding_diff_8h(None, 0.0003, buy_is_spot=True) == 0.0003  # spot pays no funding
    assert funding_diff_8h(None, 0.0003, buy_is_spot=False) is None
