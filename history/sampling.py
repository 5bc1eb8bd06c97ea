"""What the recorder takes from the bus, turned into rows: a direction's sample, a market's sample, a change
of funding, a 5-minute bar. Pure functions and small accumulators; the recorder owns the clock."""

from __future__ import annotations

from dataclasses import dataclass, replace

from history.rows import FundingChange, QuoteSample, SeriesBar, SignalSample
from models.analytics import SpreadSnapshot
from models.futures_data import FuturesData

Direction = tuple[str, str, str]


def slot_of(at_ms: int, period_ms: int) -> int:
    """The start of the period at_ms falls in: sampled rows carry it, so their keys are the same on a replay."""
    return at_ms - at_ms % period_ms


def signal_sample(snapshot: SpreadSnapshot, ts: int, entry_pct: float, buy_ask_size: float | None,
                  sell_bid_size: float | None) -> SignalSample:
    buy, sell = snapshot.buy, snapshot.sell
    return SignalSample(
        ts=ts, symbol=snapshot.symbol, buy=buy.source, sell=sell.source, buy_symbol=buy.symbol,
        sell_symbol=sell.symbol, evaluated_at=snapshot.timestamp, spread_pct=snapshot.spread_pct,
        net_pct=snapshot.net_pct, executable_net_pct=snapshot.executable_net_pct,
        funding_diff_8h_pct=snapshot.funding_diff_8h_pct, funding_apr_pct=snapshot.funding_apr_pct,
        buy_bid=buy.bid, buy_ask=buy.ask, sell_bid=sell.bid, sell_ask=sell.ask, buy_ask_size=buy_ask_size,
        sell_bid_size=sell_bid_size, buy_funding_rate_8h=buy.funding_rate_8h, sell_funding_rate_8h=sell.funding_rate_8h,
        triggered=snapshot.net_pct >= entry_pct,
        meta={
            "spread_abs": snapshot.spread_abs, "notional_usdt": snapshot.notional_usdt,
            "vwap_buy": snapshot.vwap_buy, "vwap_sell": snapshot.vwap_sell,
            "executable_qty": snapshot.executable_qty, "fully_fillable": snapshot.fully_fillable,
            "buy_ts": buy.timestamp, "sell_ts": sell.timestamp,
            "buy_received_ts": buy.received_timestamp, "sell_received_ts": sell.received_timestamp,
        },
    )


def _per_coin(value: float | None, multiplier: int) -> float | None:
    return None if value is None else value / multiplier


def _in_coins(size: float | None, multiplier: int) -> float | None:
    return None if size is None else size * multiplier


def quote_sample(message: FuturesData, ts: int) -> QuoteSample:
    """Prices per coin and sizes in coins, whatever bundle the venue quotes (1000PEPE)."""
    ticker, multiplier = message.ticker, message.base_multiplier
    return QuoteSample(
        ts=ts, exchange=message.exchange, market=message.market, symbol=message.symbol, coin=message.coin,
        bid=_per_coin(ticker.bid, multiplier), ask=_per_coin(ticker.ask, multiplier),
        bid_size=_in_coins(ticker.bid_size, multiplier), ask_size=_in_coins(ticker.ask_size, multiplier),
        mark_price=_per_coin(message.mark_price, multiplier), index_price=_per_coin(message.index_price, multiplier),
        funding_rate=message.funding_rate, funding_interval_hours=message.funding_interval_hours,
        next_funding_time=message.next_funding_time, quote_ts=ticker.timestamp,
        received_ts=message.received_timestamp,
    )


def best_sizes(message: FuturesData | None) -> tuple[float | None, float | None]:
    """(coins at the best bid, coins at the best ask)."""
    if message is None:
        return None, None
    multiplier = message.base_multiplier
    return _in_coins(message.ticker.bid_size, multiplier), _in_coins(message.ticker.ask_size, multiplier)


class FundingWatch:
    """The last funding rate and next funding time seen per perpetual: a row whenever either changes (and the
    first time a perpetual is seen, so the history starts with the rate in force)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float | None, int | None]] = {}

    def check(self, message: FuturesData) -> FundingChange | None:
        if message.market != "futures" or (message.funding_rate is None and message.next_funding_time is None):
            return None
        key = (message.exchange, message.symbol)
        current = (message.funding_rate, message.next_funding_time)
        previous = self._last.get(key)
        if previous == current:
            return None
        self._last[key] = current
        previous_rate, previous_next = previous if previous is not None else (None, None)
        return FundingChange(
            ts=message.funding_timestamp or message.received_timestamp, exchange=message.exchange,
            symbol=message.symbol, funding_rate=message.funding_rate,
            funding_interval_hours=message.funding_interval_hours, next_funding_time=message.next_funding_time,
            previous_rate=previous_rate, previous_next_funding_time=previous_next,
            received_ts=message.funding_received_timestamp or message.received_timestamp,
        )


@dataclass(slots=True)
class _Bar:
    bar: SeriesBar
    net_sum: float
    funding_sum: float
    funding_count: int
    buy_mid_sum: float
    sell_mid_sum: float


LATE_GRACE_MS = 10_000
"""A bar stays open this long after its bucket ends: the bucket's last snapshots may still be on their way (the
engine's pacing, the queue, the prefetch) when the sample job drains on the boundary."""


class SeriesAggregator:
    """Every spread snapshot folded into its direction's current bucket (open/high/low/close/mean of the net).

    A bar is written again at each drain while it fills, and for the last time once its bucket ended more than
    LATE_GRACE_MS ago; a snapshot of that bucket arriving later is counted in `late` and dropped, since a new bar
    of it would replace the full one in the store (rows are upserts)."""

    def __init__(self, bucket_ms: int, late_grace_ms: int = LATE_GRACE_MS) -> None:
        self.bucket_ms = bucket_ms
        self.late_grace_ms = late_grace_ms
        self.late = 0
        self._bars: dict[Direction, _Bar] = {}
        self._finished: list[SeriesBar] = []
        self._written_through: dict[Direction, int] = {}
        """direction -> the bucket of its last bar written for the last time."""

    def add(self, snapshot: SpreadSnapshot) -> None:
        direction = (snapshot.symbol, snapshot.buy.source, snapshot.sell.source)
        bucket = slot_of(snapshot.timestamp, self.bucket_ms)
        net, funding = snapshot.net_pct, snapshot.funding_diff_8h_pct
        buy_mid = (snapshot.buy.bid + snapshot.buy.ask) / 2
        sell_mid = (snapshot.sell.bid + snapshot.sell.ask) / 2
        current = self._bars.get(direction)
        if current is not None and current.bar.ts != bucket:
            if bucket < current.bar.ts:
                self.late += 1  # its bucket's bar was finished when a newer bucket began
                return
            self._finished.append(_finish(current))
            current = None
        if current is None and bucket <= self._written_through.get(direction, -1):
            self.late += 1
            return
        if current is None:
            self._bars[direction] = _Bar(
                SeriesBar(ts=bucket, symbol=snapshot.symbol, buy=snapshot.buy.source, sell=snapshot.sell.source,
                          net_open=net, net_high=net, net_low=net, net_close=net, net_mean=net,
                          funding_diff_8h_pct_mean=funding, buy_mid_mean=buy_mid, sell_mid_mean=sell_mid,
                          snapshots=1),
                net, funding or 0.0, int(funding is not None), buy_mid, sell_mid)
            return
        bar = current.bar
        bar.net_high, bar.net_low, bar.net_close = max(bar.net_high, net), min(bar.net_low, net), net
        bar.snapshots += 1
        current.net_sum += net
        current.buy_mid_sum += buy_mid
        current.sell_mid_sum += sell_mid
        if funding is not None:
            current.funding_sum += funding
            current.funding_count += 1

    def drain(self, now_ms: int) -> list[SeriesBar]:
        """Bars finished since the last drain, and a copy of each bar still filling (rewritten until it ends)."""
        bars, self._finished = self._finished, []
        for direction, current in list(self._bars.items()):
            bars.append(_finish(current))
            if now_ms >= current.bar.ts + self.bucket_ms + self.late_grace_ms:
                del self._bars[direction]  # its bucket is over, grace included: written for the last time
                self._written_through[direction] = current.bar.ts
        return bars

    def forget(self, direction: Direction) -> None:
        """A direction gone for good (no snapshot for long): its memory, not its rows."""
        self._written_through.pop(direction, None)


def _finish(current: _Bar) -> SeriesBar:
    count = current.bar.snapshots
    return replace(
        current.bar, net_mean=current.net_sum / count,
        funding_diff_8h_pct_mean=current.funding_sum / current.funding_count if current.funding_count else None,
        buy_mid_mean=current.buy_mid_sum / count, sell_mid_mean=current.sell_mid_sum / count,
    )
