"""The rows of the history store, one dataclass per table, the same on SQLite and PostgreSQL.

Times are ms since epoch UTC (BIGINT on both backends, like every time on the bus); prices are USDT per
one coin, sizes are coins, percentages are percent (0.25 = 0.25 %), funding rates are fractions.
A row's natural key (named in each docstring) makes every write an upsert, so a replayed batch never
doubles a row. Dataclasses serialize with orjson as they are, which is how the spool stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EventStatus = Literal["new", "confirmed", "closed"]
OutcomeLabel = Literal["converged", "diverged", "flat"]


@dataclass(slots=True)
class SignalSample:
    """watch_signal_raw: one direction every history.sample_seconds. Key (symbol, buy, sell, ts)."""

    ts: int
    """The sampling slot (a multiple of sample_seconds)."""
    symbol: str
    """Universe name, BTC/USDT."""
    buy: str
    """Source bought at its ask (binance, okx.spot, ...)."""
    sell: str
    buy_symbol: str
    """The buy venue's ccxt symbol (BTC/USDT:USDT, BTC/USDT on spot): where its funding is recorded."""
    sell_symbol: str
    evaluated_at: int
    """When the spread engine evaluated the snapshot sampled."""
    spread_pct: float
    net_pct: float
    executable_net_pct: float | None
    funding_diff_8h_pct: float | None
    funding_apr_pct: float | None
    buy_bid: float
    buy_ask: float
    sell_bid: float
    sell_ask: float
    buy_ask_size: float | None
    """Coins at the buy leg's best ask (from the collector's message), None when unknown."""
    sell_bid_size: float | None
    buy_funding_rate_8h: float | None
    sell_funding_rate_8h: float | None
    triggered: bool
    """net_pct >= spreads.entry_pct."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The long tail: vwap_buy/sell, executable_qty, fully_fillable, notional_usdt, leg times."""


@dataclass(slots=True)
class QuoteSample:
    """market_quote_sample: one (exchange, market, symbol) every history.quote_sample_seconds.
    Key (exchange, market, symbol, ts)."""

    ts: int
    exchange: str
    market: str
    """futures or spot."""
    symbol: str
    """The venue's ccxt symbol (1000PEPE/USDT:USDT); prices below are per coin all the same."""
    coin: str
    bid: float | None
    ask: float | None
    bid_size: float | None
    ask_size: float | None
    mark_price: float | None
    index_price: float | None
    funding_rate: float | None
    funding_interval_hours: float | None
    next_funding_time: int | None
    quote_ts: int | None
    """Venue time of the best bid/ask."""
    received_ts: int
    """When the collector received the newest part of the message."""


@dataclass(slots=True)
class FundingChange:
    """funding_change: the funding rate or next funding time of a perpetual changed.
    Key (exchange, symbol, ts)."""

    ts: int
    """Venue time of the update that carried the change (the receipt time where the venue sends none)."""
    exchange: str
    symbol: str
    funding_rate: float | None
    funding_interval_hours: float | None
    next_funding_time: int | None
    previous_rate: float | None
    previous_next_funding_time: int | None
    received_ts: int


@dataclass(slots=True)
class SignalEvent:
    """watch_signal_event: triggered samples of one direction merged by the N/M rule. Key event_id."""

    event_id: str
    """<SYMBOL>.<buy>.<sell>.<start_ts>, e.g. BTCUSDT.okx-spot.binance.1764979200000: stable across replays."""
    symbol: str
    buy: str
    sell: str
    buy_symbol: str
    sell_symbol: str
    start_ts: int
    """The first of the N consecutive triggered samples that opened it."""
    end_ts: int
    """Its last triggered sample."""
    status: EventStatus
    """new: opened; confirmed: triggered again after it opened; closed: no trigger for event_cooldown_minutes."""
    samples: int
    """Triggered samples merged into it."""
    features_agg: dict[str, Any] = field(default_factory=dict)
    """Per core figure: first, last, mean, max, min over its triggered samples."""
    closed_at: int | None = None

    @property
    def duration_sec(self) -> float:
        return (self.end_ts - self.start_ts) / 1000


@dataclass(slots=True)
class Outcome:
    """future_outcome: how an event's direction behaved horizon_min after its start. Key (event_id, horizon_min).

    All figures are of spread_pct (percent of the buy price) along the event's direction: the position
    bought the buy leg and sold the sell leg at start_ts. missing: no sample near the horizon's end, so
    every figure is None (never invented)."""

    event_id: str
    horizon_min: float
    status: Literal["ok", "missing"]
    start_ts: int
    horizon_ts: int
    spread_start: float | None
    spread_end: float | None
    spread_change: float | None
    net_end: float | None
    funding_accrued_pct: float | None
    """Funding the position received (+) or paid (-) over the horizon, percent of notional."""
    max_favourable_pct: float | None
    """The most the spread narrowed below its start within the horizon (>= 0)."""
    max_adverse_pct: float | None
    """The most it widened above its start (>= 0)."""
    volatility_pct: float | None
    """Standard deviation of spread_pct over the horizon's samples."""
    label: OutcomeLabel | None
    samples: int
    computed_at: int


@dataclass(slots=True)
class SeriesBar:
    """watchlist_series_agg: one direction over history.series_bucket_seconds (5 min), for charts.
    Key (symbol, buy, sell, ts). Rewritten while its bucket is open; the last write is the whole bucket."""

    ts: int
    """Start of the bucket."""
    symbol: str
    buy: str
    sell: str
    net_open: float
    net_high: float
    net_low: float
    net_close: float
    net_mean: float
    funding_diff_8h_pct_mean: float | None
    buy_mid_mean: float
    sell_mid_mean: float
    snapshots: int


@dataclass(slots=True)
class Batch:
    """What the recorder hands the store in one write: every list is upserted in one transaction."""

    signals: list[SignalSample] = field(default_factory=list)
    quotes: list[QuoteSample] = field(default_factory=list)
    funding: list[FundingChange] = field(default_factory=list)
    events: list[SignalEvent] = field(default_factory=list)
    series: list[SeriesBar] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.signals) + len(self.quotes) + len(self.funding) + len(self.events) + len(self.series)
                + len(self.outcomes))

    @classmethod
    def from_dict(cls, data: dict[str, list[dict[str, Any]]]) -> Batch:
        """The inverse of orjson.dumps(batch): how the spool reads a batch back."""
        return cls(
            signals=[SignalSample(**row) for row in data.get("signals", [])],
            quotes=[QuoteSample(**row) for row in data.get("quotes", [])],
            funding=[FundingChange(**row) for row in data.get("funding", [])],
            events=[SignalEvent(**row) for row in data.get("events", [])],
            series=[SeriesBar(**row) for row in data.get("series", [])],
            outcomes=[Outcome(**row) for row in data.get("outcomes", [])],
        )
