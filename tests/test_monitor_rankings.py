"""Spread rankings on the monitor: best first by the chosen figure, only directions still being evaluated."""

from __future__ import annotations

from models.analytics import Leg, OpportunityEvent, SpreadSnapshot
from monitor.state import RANKING_TTL_MS, MonitorState
from monitor.views import ranked_spreads

NOW = 1_800_000_000_000


def snapshot(net: float, executable: float | None, funding: float | None) -> SpreadSnapshot:
    leg = Leg(source="okx", symbol="BTC/USDT:USDT", bid=100.0, ask=100.1, timestamp=NOW, received_timestamp=NOW,
              funding_rate_8h=None)
    return SpreadSnapshot(symbol="BTC/USDT", buy=leg, sell=leg.model_copy(update={"source": "binance"}),
                          spread_abs=0.1, spread_pct=net + 0.1, net_pct=net, notional_usdt=1000.0, vwap_buy=None,
                          vwap_sell=None, executable_net_pct=executable, executable_qty=None, fully_fillable=False,
                          funding_diff_8h_pct=None, funding_apr_pct=funding, timestamp=NOW)


def opportunity_event(kind: str, opportunity_id: str) -> OpportunityEvent:
    return OpportunityEvent(event=kind, opportunity_id=opportunity_id, symbol="BTC/USDT", buy="okx",  # type: ignore[arg-type]
                            sell="binance", opened_at=NOW, snapshot=snapshot(0.5, 0.5, None), peak_net_pct=0.5,
                            reason="stale" if kind == "close" else None)


def keys(state: MonitorState, at: int, **query: object) -> list[str]:
    return [row["key"] for row in ranked_spreads(state, at, top=10, **query)[1]]  # type: ignore[arg-type]


def test_directions_rank_by_the_chosen_figure_unknown_last() -> None:
    state = MonitorState()
    state.add_spread("a", snapshot(0.5, None, 10.0), NOW)
    state.add_spread("b", snapshot(0.2, 0.3, None), NOW)
    state.add_spread("c", snapshot(-0.1, 0.1, 30.0), NOW)
    assert keys(state, NOW) == ["a", "b", "c"]
    assert keys(state, NOW, sort="executable") == ["b", "c", "a"]
    assert keys(state, NOW, sort="funding") == ["c", "a", "b"]
    assert ranked_spreads(state, NOW, top=1, min_net=0.0) == (2, ranked_spreads(state, NOW, top=1)[1])


def test_a_direction_no_longer_evaluated_leaves_the_ranking() -> None:
    state = MonitorState(spread_max_age_ms=5000)
    state.add_spread("quiet", snapshot(0.9, 0.9, 50.0), NOW)  # a venue that went silent right after
    state.add_spread("live", snapshot(0.1, 0.1, 1.0), NOW)
    assert keys(state, NOW) == ["quiet", "live"]
    later = NOW + 6000
    state.add_spread("live", snapshot(0.2, 0.2, 1.0), later)
    assert keys(state, later) == ["live"] and ranked_spreads(state, later, top=10)[0] == 1
    assert state.history["quiet"], "its chart keeps what it had"


def test_a_ranking_is_reused_briefly_but_rows_are_the_newest() -> None:
    state = MonitorState()
    state.add_spread("a", snapshot(0.5, None, None), NOW)
    state.add_spread("b", snapshot(0.2, None, None), NOW)
    assert keys(state, NOW) == ["a", "b"]
    state.add_spread("b", snapshot(0.9, None, None), NOW + 10)
    (_, rows) = ranked_spreads(state, NOW + 10, top=10)
    assert [row["key"] for row in rows] == ["a", "b"] and rows[1]["net_pct"] == 0.9  # order as sorted, row fresh
    assert keys(state, NOW + 10 + RANKING_TTL_MS) == ["b", "a"]


def test_an_event_after_its_opportunitys_close_does_not_reopen_it() -> None:
    """A producer that publishes out of order (an update computed before a stale close, sent after it) must not
    leave an opportunity open on the dashboard for good."""
    state = MonitorState()
    opened = opportunity_event("open", "a")
    state.add_opportunity(opened)
    state.add_opportunity(opportunity_event("close", "a"))
    state.add_opportunity(opportunity_event("update", "a"))
    state.add_opportunity(opportunity_event("close", "a"))
    assert state.open == {}
    assert [event.opportunity_id for event in state.closed] == ["a"]
    assert [event.event for _, event in state.events] == ["open", "close"]
