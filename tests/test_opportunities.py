"""Hysteresis of opportunities: confirm ticks to open, exit level to close, cooldown, skipped evidence;
which net opens (executable or top of book) and closing when a leg goes stale."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consumers.opportunities import OpportunityBook, Rules
from consumers.quotes import Quote
from consumers.spread_evaluator import SpreadEvaluator
from models.config import SpreadsConfig
from models.universe import Direction, Listing, Universe, UniverseSymbol

PAIR = ("okx", "binance", "BTC/USDT")


def test_opens_after_consecutive_confirmations_and_closes_at_the_exit_level() -> None:
    book = OpportunityBook(Rules(entry_pct=0.3, exit_pct=0.1, confirm_ticks=3, cooldown_ms=0))

    def evaluate(net: float, now: int) -> tuple:
        return book.evaluate(PAIR, net, now, net)

    assert evaluate(0.35, 1)[0] is None
    assert evaluate(0.25, 2)[0] is None  # below entry: the streak starts over
    assert evaluate(0.31, 3)[0] is None
    assert evaluate(0.40, 4)[0] is None
    transition, opened = evaluate(0.32, 5)
    assert transition == "open" and opened is not None and opened.opened_at == 5
    assert evaluate(0.6, 6) == (None, opened) and opened.peak_net_pct == 0.6
    assert evaluate(0.15, 7)[0] is None  # between exit and entry: still open (hysteresis)
    transition, closed = evaluate(0.1, 8)
    assert transition == "close" and closed is opened
    # free for a new signal at once
    assert [evaluate(0.5, t)[0] for t in (9, 10, 11)] == [None, None, "open"]


def test_cooldown_and_skipped_evaluations_hold_back_a_reopening() -> None:
    book = OpportunityBook(Rules(entry_pct=0.3, exit_pct=0.1, confirm_ticks=2, cooldown_ms=1000))

    def evaluate(net: float, now: int) -> tuple:
        return book.evaluate(PAIR, net, now, net)

    assert [evaluate(0.5, t)[0] for t in (0, 1)] == [None, "open"]
    assert evaluate(0.0, 2)[0] == "close"
    assert [evaluate(0.5, t)[0] for t in (100, 200, 900)] == [None, None, None]  # cooling down
    assert evaluate(0.5, 1002)[0] is None
    book.skipped(PAIR)  # a stale leg in between: the evidence is no longer consecutive
    assert evaluate(0.5, 1003)[0] is None
    assert evaluate(0.5, 1004)[0] == "open"


def test_the_opening_net_opens_and_the_top_of_book_net_closes() -> None:
    book = OpportunityBook(Rules(entry_pct=0.3, exit_pct=0.1, confirm_ticks=2, cooldown_ms=0))
    assert book.evaluate(PAIR, 0.5, 1, 0.35)[0] is None
    assert book.evaluate(PAIR, 0.5, 2, None)[0] is None  # the notional did not fill: the streak starts over
    assert book.evaluate(PAIR, 0.5, 3, 0.2)[0] is None  # top of book says yes, executable says no
    assert book.evaluate(PAIR, 0.5, 4, 0.31)[0] is None
    transition, opened = book.evaluate(PAIR, 0.5, 5, 0.32)
    assert transition == "open" and opened is not None
    # depth noise does not close it: only the top-of-book net at exit does
    assert book.evaluate(PAIR, 0.45, 6, None) == (None, opened)
    assert book.evaluate(PAIR, 0.4, 7, -0.2) == (None, opened)
    assert book.evaluate(PAIR, 0.1, 8, 0.05)[0] == "close"


# --- the evaluator: which net opens, and stale legs ---------------------------------------------------


def listing(source: str) -> Listing:
    return Listing(source=source, exchange=source, market="futures", symbol="BTC/USDT:USDT", venue_id="BTCUSDT",
                   base_multiplier=1, tick_size=0.1, min_qty=0.001, min_notional=5.0, contract_size=1.0,
                   taker_fee=0.0005)


UNIVERSE = Universe(
    generated_at=0, sources=["okx", "binance"], failed_sources={},
    symbols=[UniverseSymbol(id=1, name="BTC/USDT", coin="BTC", listings=[listing("okx"), listing("binance")])],
    directions=[Direction(id=1, buy="okx", sell="binance", symbols=["BTC/USDT"])],
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def quote(source: str, bid: float, ask: float, received: int, size: float = 1.0, depth: bool = True) -> Quote:
    """A one-coin-deep top of book at bid/ask: at 100,000 USDT per coin, 1 coin fills 1,000 USDT."""
    return Quote(source=source, name="BTC/USDT", symbol="BTC/USDT:USDT", market="futures", bid=bid, ask=ask,
                 bids=[(bid, size)], asks=[(ask, size)], timestamp=received - 5, received=received,
                 funding_rate_8h=None, has_depth=depth)


def evaluator(clock: Clock, **settings: object) -> SpreadEvaluator:
    config = SpreadsConfig.model_validate({"entry_pct": 0.3, "exit_pct": 0.1, "confirm_ticks": 2,
                                           "max_quote_age_ms": 1000, "notional_usdt": 1000, **settings})
    return SpreadEvaluator(UNIVERSE, config, clock=clock)


def feed(
    engine: SpreadEvaluator, clock: Clock, buy_size: float, ticks: int = 3, depth: bool = True,
    buy_depth: bool | None = None,
) -> list:
    """okx asks 100,000, binance bids 100,500: 0.5 % before fees, ~0.4 % net at the top of book. The
    transitions of every evaluation (each quote evaluates the pair). `buy_depth`: okx's book, where it differs."""
    transitions = []
    for _ in range(ticks):
        clock.now += 100
        for update in (quote("binance", 100_500, 100_510, clock.now, size=10, depth=depth),
                       quote("okx", 99_990, 100_000, clock.now, size=buy_size,
                             depth=depth if buy_depth is None else buy_depth)):
            transitions += [transition for _, transition, _ in engine.on_quote(update)]
    return transitions


def test_executable_opening_ignores_a_spread_that_exists_only_for_a_sliver_of_size() -> None:
    clock = Clock()
    engine = evaluator(clock)
    assert feed(engine, clock, buy_size=0.001) == [None] * 5  # 100 USDT of the 1,000 fill: nobody is alerted
    assert engine.counters.evaluations == 5 and engine.counters.opened == 0
    assert feed(engine, clock, buy_size=0.02).count("open") == 1  # 2,000 USDT at the ask: it fills


def test_top_of_book_opening_and_the_fallback_without_books_open_on_the_price_gap() -> None:
    clock = Clock()
    top = evaluator(clock, open_on="top")
    assert feed(top, clock, buy_size=0.001) == [None, "open", None, None, None]
    no_books = evaluator(clock)  # executable, but the legs carry no book (orderbook_depth 0)
    assert feed(no_books, clock, buy_size=0.001, depth=False) == [None, "open", None, None, None]


def test_nothing_opens_while_one_legs_book_resyncs() -> None:
    """Books flow, but okx's is `orderbook: null` for now (a resync): its top-of-book size is all the engine
    knows, so whether the notional fills is unknown. A sliver at the top must not open; once the book is back,
    a spread that fills does."""
    clock = Clock()
    engine = evaluator(clock)
    assert feed(engine, clock, buy_size=0.001, buy_depth=False) == [None] * 5
    assert engine.counters.opened == 0
    assert feed(engine, clock, buy_size=0.02).count("open") == 1


def test_an_open_opportunity_closes_as_stale_on_the_next_update_of_the_other_leg() -> None:
    clock = Clock()
    engine = evaluator(clock)
    assert "open" in feed(engine, clock, buy_size=0.02)
    binance_last = clock.now
    clock.now = binance_last + 1001  # binance's quote is now older than max_quote_age_ms; okx still updates
    results = engine.on_quote(quote("okx", 99_990, 100_000, clock.now, size=0.02))
    [(snapshot, transition, event)] = results
    assert snapshot is None and transition == "close"  # no spread snapshot from a stale leg
    assert event is not None and (event.event, event.reason) == ("close", "stale")
    assert event.snapshot.sell.received_timestamp == binance_last and event.snapshot.timestamp == clock.now
    assert engine.counters.closed_stale == 1 and engine.close_stale() == []


def test_the_sweep_closes_an_opportunity_whose_legs_both_went_quiet() -> None:
    clock = Clock()
    engine = evaluator(clock)
    assert "open" in feed(engine, clock, buy_size=0.02)
    clock.now += 1000
    assert engine.close_stale() == []  # exactly max_quote_age_ms old: not stale yet
    clock.now += 1
    [event] = engine.close_stale()
    assert (event.event, event.reason, event.symbol, event.buy, event.sell) == (
        "close", "stale", "BTC/USDT", "okx", "binance")
    assert engine.close_stale() == []  # closed once
    # fresh quotes again: a new opportunity needs confirm_ticks fresh evaluations
    assert feed(engine, clock, buy_size=0.02).count("open") == 1


def test_an_unknown_open_on_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="open_on"):
        SpreadsConfig.model_validate({"open_on": "vwap"})
