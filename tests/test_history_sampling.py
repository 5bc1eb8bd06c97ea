"""5-minute bars (watchlist_series_agg) from spread snapshots: a snapshot that reaches the recorder a little
after its bucket ended still counts, and one that comes after the bar's final write never replaces it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from consumers.recorder import Recorder
from history.sampling import LATE_GRACE_MS, SeriesAggregator
from models.analytics import Leg, SpreadSnapshot
from models.config import AppConfig

BUCKET_MS = 300_000
T0 = 1_800_000_000_000 - 1_800_000_000_000 % BUCKET_MS


def snapshot(ts: int, net: float) -> SpreadSnapshot:
    leg = Leg(source="okx", symbol="BTC/USDT:USDT", bid=100.0, ask=100.2, timestamp=ts, received_timestamp=ts,
              funding_rate_8h=None)
    return SpreadSnapshot(symbol="BTC/USDT", buy=leg, sell=leg.model_copy(update={"source": "binance"}),
                          spread_abs=0.1, spread_pct=net + 0.1, net_pct=net, notional_usdt=1000.0, vwap_buy=None,
                          vwap_sell=None, executable_net_pct=None, executable_qty=None, fully_fillable=False,
                          funding_diff_8h_pct=None, funding_apr_pct=None, timestamp=ts)


def test_a_bar_holds_open_high_low_close_and_mean_of_its_bucket():
    bars = SeriesAggregator(BUCKET_MS)
    for offset, net in ((0, 0.2), (60_000, 0.5), (120_000, 0.1), (299_999, 0.4)):
        bars.add(snapshot(T0 + offset, net))
    (bar,) = bars.drain(T0 + 200_000)
    assert (bar.ts, bar.net_open, bar.net_high, bar.net_low, bar.net_close, bar.snapshots) == (
        T0, 0.2, 0.5, 0.1, 0.4, 4)
    assert abs(bar.net_mean - 0.3) < 1e-12 and bar.buy_mid_mean == 100.1


def test_a_snapshot_arriving_just_after_its_bucket_ended_joins_its_bar():
    """The sample job drains right on the bucket boundary while the bucket's last snapshots are still in flight."""
    bars = SeriesAggregator(BUCKET_MS)
    for offset in range(0, BUCKET_MS - 1000, 1000):
        bars.add(snapshot(T0 + offset, 0.3))
    assert bars.drain(T0 + BUCKET_MS)[0].snapshots == 299
    bars.add(snapshot(T0 + BUCKET_MS - 500, 0.9))  # stamped in the bucket, received after the drain
    (bar,) = bars.drain(T0 + BUCKET_MS + LATE_GRACE_MS)
    assert (bar.ts, bar.snapshots, bar.net_high, bar.net_close) == (T0, 300, 0.9, 0.9)
    assert bars.late == 0


def test_a_snapshot_after_the_final_write_is_counted_late_and_replaces_nothing():
    bars = SeriesAggregator(BUCKET_MS)
    for offset in (0, 100_000, 200_000):
        bars.add(snapshot(T0 + offset, 0.3))
    assert bars.drain(T0 + BUCKET_MS + LATE_GRACE_MS)[0].snapshots == 3  # its last write
    bars.add(snapshot(T0 + 250_000, 0.8))
    assert bars.drain(T0 + BUCKET_MS + LATE_GRACE_MS + 60_000) == []
    assert bars.late == 1


def test_a_snapshot_of_an_older_bucket_than_the_one_filling_is_late():
    bars = SeriesAggregator(BUCKET_MS)
    bars.add(snapshot(T0 + BUCKET_MS + 10, 0.3))
    bars.add(snapshot(T0 + 10, 0.8))
    (bar,) = bars.drain(T0 + BUCKET_MS + 20)
    assert (bar.ts, bar.snapshots, bars.late) == (T0 + BUCKET_MS, 1, 1)


@dataclass
class Delivered:
    """What the recorder reads of a delivered message."""

    body: bytes
    routing_key: str = "spread.BTCUSDT.okx.binance"


def test_the_recorder_ignores_a_snapshot_stamped_in_the_future(tmp_path: Path):
    """One bogus timestamp (another host's clock) must not open a bar no genuine snapshot can join."""
    config = AppConfig.model_validate({"history": {"sqlite_path": str(tmp_path / "h.sqlite"),
                                                   "spool_dir": str(tmp_path / "spool")}, "exchanges": ["okx"],
                                        "symbols": ["BTC/USDT:USDT"], "api_keys_file": None})
    recorder = Recorder(config)
    now = int(time.time() * 1000)
    recorder._on_spread(Delivered(snapshot(now + 3_600_000, 5.0).model_dump_json().encode()))
    recorder._on_spread(Delivered(snapshot(now, 0.3).model_dump_json().encode()))
    (bar,) = recorder.bars.drain(now)
    assert (bar.net_close, bar.snapshots, recorder.invalid["spread"]) == (0.3, 1, 1)
