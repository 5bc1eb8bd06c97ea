"""The N/M event-merging rule against hand-worked sequences (N = event_confirm_samples, M = cooldown)."""

from __future__ import annotations

from history.events import EventMerger
from history.rows import SignalEvent
from tests.history_rows import MINUTE, T0, sample

N, M = 2, 3 * MINUTE


def run(triggers: str, merger: EventMerger | None = None) -> tuple[EventMerger, list[SignalEvent]]:
    """One sample a minute: T triggered, F not, . no sample (the direction was stale)."""
    merger = merger or EventMerger(N, M, MINUTE)
    changed: list[SignalEvent] = []
    for minute, mark in enumerate(triggers):
        if mark != ".":
            changed += merger.add(sample(minute, 0.6 if mark == "T" else 0.2))
    return merger, changed


def test_n_consecutive_triggered_samples_open_an_event_starting_at_the_first():
    merger, changed = run("FTT")
    assert [(event.status, event.start_ts, event.end_ts, event.samples) for event in changed] == [
        ("new", T0 + MINUTE, T0 + 2 * MINUTE, 2)]
    assert changed[0].event_id == f"BTCUSDT.okx-spot.binance.{T0 + MINUTE}"
    assert len(merger.open) == 1


def test_fewer_than_n_in_a_row_open_nothing():
    assert run("TFTFTF")[1] == []


def test_a_missing_slot_breaks_the_run():
    _, changed = run("T.TT")
    assert [(event.start_ts, event.samples) for event in changed] == [(T0 + 2 * MINUTE, 2)]


def test_a_trigger_after_the_opening_run_confirms_and_extends():
    _, changed = run("TTT")
    last = changed[-1]
    assert (last.status, last.end_ts, last.samples, last.start_ts) == ("confirmed", T0 + 2 * MINUTE, 3, T0)


def test_a_retrigger_exactly_m_after_the_last_one_extends_the_same_event():
    merger, changed = run("TTFFT")  # last trigger minute 1, retrigger minute 4: 3 min later = M
    assert {event.event_id for event in changed} == {f"BTCUSDT.okx-spot.binance.{T0}"}
    assert (changed[-1].status, changed[-1].end_ts, changed[-1].samples) == ("confirmed", T0 + 4 * MINUTE, 3)
    assert len(merger.open) == 1


def test_a_retrigger_more_than_m_later_closes_the_event_and_starts_a_new_run():
    merger, changed = run("TTFFFT")  # retrigger at minute 5: 4 min after the last
    closed = [event for event in changed if event.status == "closed"]
    assert [(event.end_ts, event.closed_at) for event in closed] == [(T0 + MINUTE, T0 + MINUTE + M)]
    assert merger.open == {}  # the new trigger is one of N
    reopened = merger.add(sample(6, 0.6))
    assert [(event.status, event.start_ts) for event in reopened] == [("new", T0 + 5 * MINUTE)]


def test_close_quiet_closes_only_after_m_without_a_trigger():
    merger, _ = run("TT")
    assert merger.close_quiet(T0 + MINUTE + M) == []
    closed = merger.close_quiet(T0 + MINUTE + M + 1)
    assert [(event.status, event.samples) for event in closed] == [("closed", 2)]
    assert merger.open == {}


def test_n_of_one_and_m_of_zero():
    merger = EventMerger(1, 0, MINUTE)
    _, changed = run("TT", merger)
    assert [event.status for event in changed] == ["new", "closed", "new"]
    assert [event.start_ts for event in changed] == [T0, T0, T0 + MINUTE]


def test_features_agg_holds_first_last_mean_max_min_of_the_triggered_samples():
    merger = EventMerger(N, M, MINUTE)
    for minute, spread in enumerate([0.5, 0.8, 0.2, 0.6]):  # 0.2 is untriggered: not aggregated
        merger.add(sample(minute, spread))
    event = next(iter(merger.open.values()))
    assert event.features_agg["spread_pct"] == {"first": 0.5, "last": 0.6, "mean": 0.6333333333333333,
                                                "max": 0.8, "min": 0.5, "n": 3}
    assert "funding_apr_pct" not in event.features_agg  # None in every sample


def test_rows_handed_out_do_not_change_when_the_event_goes_on():
    merger = EventMerger(N, M, MINUTE)
    opened = merger.add(sample(0, 0.5)) + merger.add(sample(1, 0.5))
    merger.add(sample(2, 0.9))
    assert (opened[0].samples, opened[0].features_agg["spread_pct"]["max"]) == (2, 0.5)


def left_open(start_minute: int, end_minute: int, samples: int) -> SignalEvent:
    """An event a previous run of the recorder left open, as the store gives it back."""
    _, (event,) = run("." * start_minute + "TT")
    event.end_ts, event.samples, event.status = T0 + end_minute * MINUTE, samples, "confirmed"
    return event


def test_resumed_the_event_that_ended_last_goes_on_and_an_older_one_left_open_is_closed():
    older, newer = left_open(0, 5, 6), left_open(10, 12, 3)
    merger = EventMerger(N, M, MINUTE)
    closed = merger.resume([newer, older])  # the order the store gives them in does not matter
    assert [(event.event_id, event.status, event.closed_at) for event in closed] == [
        (older.event_id, "closed", older.end_ts + M)]
    (extended,) = merger.add(sample(13, 0.6))
    assert (extended.event_id, extended.end_ts, extended.samples) == (newer.event_id, T0 + 13 * MINUTE, 4)


def test_an_event_this_run_opened_before_the_resume_wins_over_the_one_left_open():
    """The store was down at start, or its spool still replaying: this run merged on its own meanwhile."""
    merger, (live,) = run("." * 20 + "TT")
    stale = left_open(0, 5, 6)
    (closed,) = merger.resume([stale, live])  # the store holds this run's own event too, once written
    assert (closed.event_id, closed.status) == (stale.event_id, "closed")
    assert [event.event_id for event in merger.open.values()] == [live.event_id]
