"""Hysteresis of opportunities: confirm ticks to open, exit level to close, cooldown, skipped evidence."""

from __future__ import annotations

from consumers.opportunities import OpportunityBook, Rules

PAIR = ("okx", "binance", "BTC/USDT")


def test_opens_after_consecutive_confirmations_and_closes_at_the_exit_level() -> None:
    book = OpportunityBook(Rules(entry_pct=0.3, exit_pct=0.1, confirm_ticks=3, cooldown_ms=0))
    assert book.evaluate(PAIR, 0.35, 1)[0] is None
    assert book.evaluate(PAIR, 0.25, 2)[0] is None  # below entry: the streak starts over
    assert book.evaluate(PAIR, 0.31, 3)[0] is None
    assert book.evaluate(PAIR, 0.40, 4)[0] is None
    transition, opened = book.evaluate(PAIR, 0.32, 5)
    assert transition == "open" and opened is not None and opened.opened_at == 5
    assert book.evaluate(PAIR, 0.6, 6) == (None, opened) and opened.peak_net_pct == 0.6
    assert book.evaluate(PAIR, 0.15, 7)[0] is None  # between exit and entry: still open (hysteresis)
    transition, closed = book.evaluate(PAIR, 0.1, 8)
    assert transition == "close" and closed is opened
    # free for a new signal at once
    assert [book.evaluate(PAIR, 0.5, t)[0] for t in (9, 10, 11)] == [None, None, "open"]


def test_cooldown_and_skipped_evaluations_hold_back_a_reopening() -> None:
    book = OpportunityBook(Rules(entry_pct=0.3, exit_pct=0.1, confirm_ticks=2, cooldown_ms=1000))
    assert [book.evaluate(PAIR, 0.5, t)[0] for t in (0, 1)] == [None, "open"]
    assert book.evaluate(PAIR, 0.0, 2)[0] == "close"
    assert [book.evaluate(PAIR, 0.5, t)[0] for t in (100, 200, 900)] == [None, None, None]  # cooling down
    assert book.evaluate(PAIR, 0.5, 1002)[0] is None
    book.skipped(PAIR)  # a stale leg in between: the evidence is no longer consecutive
    assert book.evaluate(PAIR, 0.5, 1003)[0] is None
    assert book.evaluate(PAIR, 0.5, 1004)[0] == "open"
