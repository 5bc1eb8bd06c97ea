"""Hand-made history rows for tests: only the figures a test is about need saying."""

from __future__ import annotations

from typing import Any

from history.rows import Batch, FundingChange, Outcome, QuoteSample, SeriesBar, SignalEvent, SignalSample
from history.store import DAY_MS

MINUTE = 60_000
T0 = 1_764_979_200_000
"""2025-12-06 00:00 UTC: a slot boundary for every sample period that divides a day."""
DAY0 = 20_400 * DAY_MS
"""2025-11-08 00:00 UTC: a fixed day, so partition names are known."""


def sample(minute: float, spread_pct: float = 0.5, triggered: bool | None = None, symbol: str = "BTC/USDT",
           buy: str = "okx.spot", sell: str = "binance", entry_pct: float = 0.3, **figures: Any) -> SignalSample:
    """A sample at T0 + minute; net_pct is spread_pct - 0.1 unless given; triggered is net >= entry_pct."""
    net = figures.pop("net_pct", spread_pct - 0.1)
    values: dict[str, Any] = {
        "ts": T0 + round(minute * MINUTE), "symbol": symbol, "buy": buy, "sell": sell, "buy_symbol": "BTC/USDT",
        "sell_symbol": "BTC/USDT:USDT", "evaluated_at": T0 + round(minute * MINUTE) - 100, "spread_pct": spread_pct,
        "net_pct": net, "executable_net_pct": None, "funding_diff_8h_pct": None, "funding_apr_pct": None,
        "buy_bid": 99.9, "buy_ask": 100.0, "sell_bid": 100.0 + spread_pct, "sell_ask": 100.1 + spread_pct,
        "buy_ask_size": 1.0, "sell_bid_size": 2.0, "buy_funding_rate_8h": None, "sell_funding_rate_8h": 0.0001,
        "triggered": net >= entry_pct if triggered is None else triggered, "meta": {"vwap_buy": 100.0},
    }
    values.update(figures)
    return SignalSample(**values)


def signal(ts: int, symbol: str = "BTC/USDT", buy: str = "binance", sell: str = "okx",
           net: float = 0.1) -> SignalSample:
    return SignalSample(
        ts=ts, symbol=symbol, buy=buy, sell=sell, buy_symbol=f"{symbol}:USDT", sell_symbol=f"{symbol}:USDT",
        evaluated_at=ts + 5, spread_pct=net + 0.1, net_pct=net, executable_net_pct=None, funding_diff_8h_pct=0.01,
        funding_apr_pct=10.95, buy_bid=100.0, buy_ask=100.5, sell_bid=101.0, sell_ask=101.5, buy_ask_size=2.5,
        sell_bid_size=None, buy_funding_rate_8h=0.0001, sell_funding_rate_8h=-0.0002, triggered=net > 0.2,
        meta={"vwap_buy": 100.6, "fully_fillable": True, "legs": [1, 2]},
    )


def quote(ts: int, symbol: str = "BTC/USDT:USDT") -> QuoteSample:
    return QuoteSample(
        ts=ts, exchange="binance", market="futures", symbol=symbol, coin="BTC", bid=100.0, ask=100.5, bid_size=1.0,
        ask_size=None, mark_price=100.2, index_price=100.1, funding_rate=0.0001, funding_interval_hours=8.0,
        next_funding_time=ts + 3_600_000, quote_ts=ts - 10, received_ts=ts - 2,
    )


def funding(ts: int, rate: float) -> FundingChange:
    return FundingChange(ts=ts, exchange="binance", symbol="BTC/USDT:USDT", funding_rate=rate,
                         funding_interval_hours=8.0, next_funding_time=ts + 3_600_000, previous_rate=None,
                         previous_next_funding_time=None, received_ts=ts + 1)


def event(start_ts: int, symbol: str = "BTC/USDT", samples: int = 2, status: str = "new") -> SignalEvent:
    return SignalEvent(
        event_id=f"{symbol.replace('/', '')}.binance.okx.{start_ts}", symbol=symbol, buy="binance", sell="okx",
        buy_symbol=f"{symbol}:USDT", sell_symbol=f"{symbol}:USDT", start_ts=start_ts,
        end_ts=start_ts + 60_000 * samples, status=status, samples=samples,  # type: ignore[arg-type]
        features_agg={"net_pct": {"first": 0.3, "last": 0.35, "max": 0.4}}, closed_at=None,
    )


def outcome(of: SignalEvent, horizon_min: float) -> Outcome:
    return Outcome(
        event_id=of.event_id, horizon_min=horizon_min, status="ok", start_ts=of.start_ts,
        horizon_ts=of.start_ts + int(horizon_min * 60_000), spread_start=0.4, spread_end=0.1, spread_change=-0.3,
        net_end=0.0, funding_accrued_pct=0.01, max_favourable_pct=0.35, max_adverse_pct=0.02, volatility_pct=0.05,
        label="converged", samples=30, computed_at=of.start_ts + 10_000_000,
    )


def series_bar(ts: int) -> SeriesBar:
    return SeriesBar(ts=ts, symbol="BTC/USDT", buy="binance", sell="okx", net_open=0.1, net_high=0.3, net_low=0.05,
                     net_close=0.2, net_mean=0.15, funding_diff_8h_pct_mean=None, buy_mid_mean=100.2,
                     sell_mid_mean=101.2, snapshots=5)


def numbered_batch(number: int, rows: int = 20) -> Batch:
    """Batch `number` of a stream: `rows` signals of its own (symbol S<i>, ts DAY0 + number minutes) and the one
    event's state as of this batch (samples = number), so the final event shows whether order was kept."""
    signals = [signal(DAY0 + number * 60_000, symbol=f"S{i}/USDT") for i in range(rows)]
    return Batch(signals=signals, events=[event(DAY0, samples=number, status="confirmed")])
