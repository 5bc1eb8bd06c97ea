"""Source health on the monitor: the heartbeat's figures, freshened by what the monitor itself receives."""

from __future__ import annotations

from models.status import CollectorStatus, Percentiles, PublisherStatus, SourceStatus
from monitor.health import sources
from monitor.state import MonitorState

NOW = 1_800_000_000_000


def heartbeat(age: float | None, stale_symbols: list[str] | None = None, interval: float = 5.0) -> CollectorStatus:
    source = SourceStatus(
        symbols=3, updates=100, errors=0, reconnects=0, frames=100, messages_per_second=30.0,
        last_update_age_seconds=age, stale_symbols=stale_symbols or [], streams_up={"ticker#1.1": True},
        receipt_minus_venue_ms=Percentiles(p50=1.0, p99=5.0),
    )
    publisher = PublisherStatus(published=100, failed=0, conflated=0, expired=0, reconnects=0, connected=True,
                                receipt_to_publish_ms=Percentiles(p50=0.3, p99=2.0))
    return CollectorStatus(connection_name="c", sent_at=NOW, interval_seconds=interval, stale_after_seconds=10.0,
                           uptime_seconds=60.0, sources={"binance": source}, publisher=publisher)


def row(state: MonitorState, at: int) -> dict:
    (only,) = sources(state, at)
    return only


def test_a_source_between_heartbeats_is_as_fresh_as_its_newest_message() -> None:
    state = MonitorState()
    state.add_heartbeat(heartbeat(age=0.1), NOW - 4_000)  # a heartbeat 4 s ago: its figure alone says 4.1 s
    assert row(state, NOW)["last_update_age_seconds"] == 4.1
    state.source_seen["binance"] = NOW - 200  # the monitor received binance's data 0.2 s ago
    assert row(state, NOW)["last_update_age_seconds"] == 0.2 and row(state, NOW)["status"] == "ok"


def test_a_source_goes_stale_then_down_with_its_collector() -> None:
    state = MonitorState()
    state.add_heartbeat(heartbeat(age=0.5), NOW)  # then nothing more: no data, no heartbeat
    assert row(state, NOW + 9_000)["status"] == "ok"  # 9.5 s: within stale_after_seconds (10)
    assert row(state, NOW + 11_000)["status"] == "stale"
    assert row(state, NOW + 15_001)["status"] == "down"  # three 5 s heartbeats missed: the collector is gone
    fresh = MonitorState()
    fresh.add_heartbeat(heartbeat(age=None), NOW)
    assert row(fresh, NOW)["status"] == "down"  # never delivered anything
    fresh.add_heartbeat(heartbeat(age=1.0, stale_symbols=["SOL/USDT:USDT"]), NOW)
    assert row(fresh, NOW)["status"] == "stale"  # one symbol gone quiet is enough to say so
