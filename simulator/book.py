"""Random-walk order books on an integer price grid.

Prices are kept as integer ticks and sizes as integer qty steps, so every number a venue module
prints is exact and a test can compare what the collector published with what was sent.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.instruments import Instrument

BOOK_LEVELS = 50
"""Levels kept per side; enough for Bybit's orderbook.50 and a Binance depth snapshot."""

Levels = dict[int, int]
"""price in ticks -> size in qty steps."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReferenceMarket:
    """One shared fair price per coin, so the same coin trades near the same price on every venue."""

    def __init__(self, seed: int, volatility_per_sqrt_second: float = 0.0001) -> None:
        self._rng = random.Random(seed)
        self._volatility = volatility_per_sqrt_second
        self._price: dict[str, float] = {}
        self._updated_at: dict[str, float] = {}

    def price(self, instrument: Instrument) -> float:
        """Fair price of one venue base unit (1000 PEPE for 1000PEPE) at this moment."""
        coin_price = self._coin_price(instrument)
        return coin_price * instrument.multiplier

    def _coin_price(self, instrument: Instrument) -> float:
        coin = instrument.coin
        now = time.monotonic()
        if coin not in self._price:
            self._price[coin] = float(instrument.start_price) / instrument.multiplier
            self._updated_at[coin] = now
            return self._price[coin]
        elapsed = now - self._updated_at[coin]
        if elapsed >= 0.05:
            shock = self._rng.gauss(0.0, self._volatility * math.sqrt(elapsed))
            self._price[coin] *= math.exp(shock)
            self._updated_at[coin] = now
        return self._price[coin]


@dataclass
class Funding:
    rate: float
    interval_hours: int

    def next_time_ms(self, at_ms: int) -> int:
        """Funding settles on the UTC hours that are multiples of the interval (00, 08, 16 for 8 h)."""
        interval_ms = self.interval_hours * 3_600_000
        return (at_ms // interval_ms + 1) * interval_ms


@dataclass
class SimulatedBook:
    """One venue's book for one instrument."""

    instrument: Instrument
    reference: ReferenceMarket
    rng: random.Random
    shift_bps: float = 0.0
    """A temporary move set through POST /admin/shift."""
    bias_bps: float = 0.0
    """Where this venue's market sits against the fair price for good (e.g. a spot market a little below)."""
    update_id: int = 1_000_000
    best_bid: int = 0
    best_ask: int = 0
    bid_sizes: list[int] = field(default_factory=list)
    ask_sizes: list[int] = field(default_factory=list)
    funding: Funding = field(init=False)
    index_ticks: int = 0
    """The fair (index) price as of the last update, in ticks; moves only when the book does."""
    timestamp_ms: int = 0

    def __post_init__(self) -> None:
        tick = float(self.instrument.tick_size)
        self._tick = tick
        mid_ticks = round(self.reference.price(self.instrument) / tick)
        self.index_ticks = mid_ticks
        self.best_bid = mid_ticks - 1
        self.best_ask = mid_ticks + 1
        self.bid_sizes = [self._random_size() for _ in range(BOOK_LEVELS)]
        self.ask_sizes = [self._random_size() for _ in range(BOOK_LEVELS)]
        self.funding = Funding(
            rate=round(self.rng.uniform(-0.0002, 0.0004), 6),
            interval_hours=self.instrument.funding_interval_hours,
        )
        self.timestamp_ms = now_ms()

    # --- evolution -------------------------------------------------------------------------------

    def step(self) -> None:
        """Advance one update: follow the shared fair price, reshuffle a few level sizes."""
        fair_ticks = self.reference.price(self.instrument) / self._tick
        self.index_ticks = round(fair_ticks)
        target_ticks = fair_ticks * (1.0 + (self.bias_bps + self.shift_bps) / 10_000.0)
        noise = self.rng.gauss(0.0, 0.6)
        mid = (self.best_bid + self.best_ask) / 2.0
        new_mid = mid + 0.3 * (target_ticks - mid) + noise
        spread = self.rng.choice((1, 1, 1, 2, 2, 3))
        new_bid = math.floor(new_mid - spread / 2.0)
        self._move_bid(new_bid)
        self._move_ask(new_bid + spread)
        for sizes in (self.bid_sizes, self.ask_sizes):
            for _ in range(self.rng.randint(1, 3)):
                level = min(int(self.rng.expovariate(0.25)), BOOK_LEVELS - 1)
                sizes[level] = self._random_size()
        if self.rng.random() < 0.01:
            drift = self.rng.gauss(0.0, 0.00001)
            self.funding.rate = round(min(0.003, max(-0.003, self.funding.rate + drift)), 6)
        self.update_id += self.rng.randint(1, 4)
        self.timestamp_ms = now_ms()

    def _move_bid(self, new_best: int) -> None:
        shift = new_best - self.best_bid
        self.bid_sizes = _shift_sizes(self.bid_sizes, shift, self._random_size)
        self.best_bid = new_best

    def _move_ask(self, new_best: int) -> None:
        shift = self.best_ask - new_best
        self.ask_sizes = _shift_sizes(self.ask_sizes, shift, self._random_size)
        self.best_ask = new_best

    def _random_size(self) -> int:
        return max(1, int(self.rng.expovariate(1.0 / self.instrument.lot_size)))

    # --- views -----------------------------------------------------------------------------------

    def bids(self, depth: int = BOOK_LEVELS) -> Levels:
        return {self.best_bid - i: self.bid_sizes[i] for i in range(min(depth, BOOK_LEVELS))}

    def asks(self, depth: int = BOOK_LEVELS) -> Levels:
        return {self.best_ask + i: self.ask_sizes[i] for i in range(min(depth, BOOK_LEVELS))}

    def price(self, ticks: int) -> str:
        """A tick count as the venue prints it, e.g. 97000.1."""
        return f"{ticks * self._tick:.{self.instrument.price_decimals}f}"

    def size(self, steps: int) -> str:
        return f"{steps * float(self.instrument.qty_step):.{self.instrument.qty_decimals}f}"

    def mark_price(self) -> str:
        return self.price((self.best_bid + self.best_ask) // 2)

    def index_price(self) -> str:
        return self.price(self.index_ticks)


def _shift_sizes(sizes: list[int], shift: int, new_size: Callable[[], int]) -> list[int]:
    """Sizes of one side after its best price improved by `shift` ticks (fresh levels in front) or
    worsened by -shift ticks (front levels gone, fresh ones at the back)."""
    if shift == 0:
        return sizes
    if shift > 0:
        fresh = [new_size() for _ in range(min(shift, BOOK_LEVELS))]
        return (fresh + sizes)[:BOOK_LEVELS]
    kept = sizes[min(-shift, BOOK_LEVELS):]
    return kept + [new_size() for _ in range(BOOK_LEVELS - len(kept))]


def diff_levels(before: Levels, after: Levels) -> list[tuple[int, int]]:
    """Levels that changed between two views of one side; a removed level has size 0."""
    changes = [(price, size) for price, size in after.items() if before.get(price) != size]
    changes.extend((price, 0) for price in before if price not in after)
    return changes
