"""The arithmetic of a spread between two venues, kept pure so it can be checked by hand.

Buy on A at its ask, sell on B at its bid. Fees are taker fees, fractions of the traded value.
Books are [[price, size], ...], best first, prices per coin and sizes in coins.
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_DAY = 24
FUNDING_HOURS = 8.0


def spread_pct(buy_ask: float, sell_bid: float) -> float:
    return (sell_bid - buy_ask) / buy_ask * 100


def net_pct(buy_price: float, sell_price: float, buy_fee: float, sell_fee: float) -> float:
    """Proceeds after the sell fee over cost with the buy fee, as percent gained."""
    cost = buy_price * (1 + buy_fee)
    proceeds = sell_price * (1 - sell_fee)
    return (proceeds - cost) / cost * 100


@dataclass(frozen=True)
class Sweep:
    average_price: float
    quantity: float
    """Coins."""
    complete: bool
    """The book held all that was asked for."""


def sweep_notional(levels: list[tuple[float, float]] | list[list[float]], notional: float) -> Sweep | None:
    """Spend `notional` USDT through asks, best first: the average price paid and the coins got."""
    spent = quantity = 0.0
    for price, size in levels:
        take = min(size, (notional - spent) / price)
        spent += take * price
        quantity += take
        if spent >= notional * (1 - 1e-12):
            return Sweep(spent / quantity, quantity, True)
    return Sweep(spent / quantity, quantity, False) if quantity > 0 else None


def sweep_quantity(levels: list[tuple[float, float]] | list[list[float]], quantity: float) -> Sweep | None:
    """Sell `quantity` coins into bids, best first: the average price received."""
    sold = proceeds = 0.0
    for price, size in levels:
        take = min(size, quantity - sold)
        sold += take
        proceeds += take * price
        if sold >= quantity * (1 - 1e-12):
            return Sweep(proceeds / sold, sold, True)
    return Sweep(proceeds / sold, sold, False) if sold > 0 else None


def funding_per_8h(rate: float | None, interval_hours: float | None) -> float | None:
    """A rate paid every `interval_hours`, expressed per 8 hours (a 1 h venue's 0.01 % is 0.08 % per 8 h)."""
    if rate is None or not interval_hours:
        return None
    return rate * FUNDING_HOURS / interval_hours


def funding_diff_8h(buy_rate_8h: float | None, sell_rate_8h: float | None, buy_is_spot: bool) -> float | None:
    """What holding long A / short B earns per 8 h: the short receives B's rate, the long pays A's
    (nothing on spot)."""
    if sell_rate_8h is None:
        return None
    if buy_is_spot:
        return sell_rate_8h
    if buy_rate_8h is None:
        return None
    return sell_rate_8h - buy_rate_8h


def apr_pct(diff_8h: float) -> float:
    return diff_8h * (HOURS_PER_DAY / FUNDING_HOURS) * 365 * 100
