"""Merging partial venue updates into one complete, contract-valid message."""

from __future__ import annotations

import logging

import orjson
import pytest

from collectors.market_state import MarketState
from models.futures_data import FuturesData, routing_key


def book(bids: list[list[float]], asks: list[list[float]], timestamp: int) -> dict:
    return {"bids": bids, "asks": asks, "timestamp": timestamp}


def test_partial_updates_merge_into_one_message_with_the_newest_exchange_time() -> None:
    state = MarketState("binance", "BTC/USDT:USDT", contract_size=1, depth=2, funding_interval_hours=8)
    assert state.to_json(0) is None  # nothing to publish before a best bid/ask is known
    assert state.set_funding(0.0001, 1_700_003_600_000, 100.5, 100.4, timestamp=1_000) is False
    assert state.set_quote(100.0, 101.0, 2.0, 3.0, timestamp=1_200) is True
    assert state.set_trade_stats(100.7, 5_000.0, timestamp=900)
    assert state.set_book(book([[100.0, 2.0], [99.0, 1.0], [98.0, 7.0]], [[101.0, 3.0]], 1_100))
    state.mark_received(1_250, 0)
    message = FuturesData.model_validate_json(state.to_json(1_260) or b"")
    assert message.timestamp == 1_200
    assert (message.received_timestamp, message.published_timestamp) == (1_250, 1_260)
    assert message.ticker.last == 100.7 and message.ticker.volume_24h == 5_000.0
    assert message.orderbook is not None and message.orderbook.bids == [(100.0, 2.0), (99.0, 1.0)]
    assert (message.funding_rate, message.funding_interval_hours, message.mark_price) == (0.0001, 8, 100.5)


def test_sizes_are_converted_from_contracts_to_coins() -> None:
    state = MarketState("venue", "XRP/USDT:USDT", contract_size=10, depth=5)
    state.set_quote(2.0, 2.01, 3, 4, timestamp=1)
    state.set_book(book([[2.0, 3]], [[2.01, 4], [2.02, 0.5]], 1))
    body = orjson.loads(state.to_json(2) or b"")
    assert (body["ticker"]["bid_size"], body["ticker"]["ask_size"]) == (30, 40)
    assert body["orderbook"]["asks"] == [[2.01, 40], [2.02, 5.0]]


def test_a_crossed_quote_or_book_is_not_published_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    state = MarketState("bybit", "ETH/USDT:USDT", contract_size=1, depth=1)
    state.set_quote(10.0, 11.0, 1, 1, timestamp=1)
    caplog.set_level(logging.INFO)
    assert state.set_quote(11.5, 11.0, 1, 1, timestamp=2) is False
    assert state.set_quote(11.6, 11.0, 1, 1, timestamp=3) is False
    assert state.to_json(4) is None
    assert state.set_quote(10.5, 11.0, 1, 1, timestamp=5) is True
    assert state.set_book(book([[11.2, 1]], [[11.1, 1]], 6)) is False
    assert state.to_json(7) is None
    assert state.set_book(book([[10.9, 1]], [[11.1, 1]], 8)) is True
    assert state.to_json(9) is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "crossed quote" in warnings[0] and "crossed book" in warnings[1]


@pytest.mark.parametrize("bad", [None, 0.0, -1.0, float("nan"), float("inf")])
def test_a_quote_without_usable_prices_is_an_error(bad: float | None) -> None:
    state = MarketState("binance", "BTC/USDT:USDT", contract_size=1, depth=0)
    with pytest.raises(ValueError, match="positive bid and ask"):
        state.set_quote(bad, 101.0, 1.0, 1.0, timestamp=1)


@pytest.mark.parametrize(
    ("symbol", "key"),
    [("BTC/USDT:USDT", "futures.binance.BTCUSDT"), ("1000PEPE/USDT:USDT", "futures.binance.1000PEPEUSDT")],
)
def test_routing_keys_are_the_venue_symbol_without_separators(symbol: str, key: str) -> None:
    assert routing_key("binance", symbol) == key


def test_book_levels_with_extra_columns_are_cut_to_price_and_size() -> None:
    """ccxt keeps the raw strings (Bitget) or an order count as a third column; the contract has two."""
    state = MarketState("bitget", "BTC/USDT:USDT", contract_size=1, depth=2)
    state.set_book(book([[100.0, 2.0, ["100", "2"]], [99.0, 1.0, ["99", "1"]]], [[101.0, 3.0, ["101", "3"]]], 1),
                   top_is_quote=True)
    message = FuturesData.model_validate_json(state.to_json(2) or b"")
    assert message.orderbook is not None
    assert message.orderbook.bids == [(100.0, 2.0), (99.0, 1.0)] and message.orderbook.asks == [(101.0, 3.0)]


def test_contract_sizes_convert_to_exact_coins() -> None:
    state = MarketState("htx", "BTC/USDT:USDT", contract_size=0.001, depth=2)
    state.set_quote(100.0, 101.0, 9, 3, timestamp=1)
    state.set_book(book([[100.0, 9], [99.0, 7]], [[101.0, 3]], 1))
    body = orjson.loads(state.to_json(2) or b"")
    assert (body["ticker"]["bid_size"], body["ticker"]["ask_size"]) == (0.009, 0.003)  # not 0.009000000000000001
    assert body["orderbook"]["bids"] == [[100.0, 0.009], [99.0, 0.007]]


def test_a_book_ccxt_emptied_in_place_is_left_out_until_whole_again(caplog: pytest.LogCaptureFixture) -> None:
    """ccxt resets a book in place before parsing a snapshot; a garbled snapshot leaves it empty."""
    state = MarketState("bybit", "BTC/USDT:USDT", contract_size=1, depth=2)
    held = book([[100.0, 1.0]], [[101.0, 2.0]], 1)
    state.set_book(held, top_is_quote=True)
    caplog.set_level(logging.INFO)
    held["asks"].clear()
    message = FuturesData.model_validate_json(state.to_json(2) or b"")
    assert message.orderbook is None and (message.ticker.bid, message.ticker.ask) == (100.0, 101.0)
    held["asks"].append([99.0, 1.0])  # half-applied: crossed
    assert FuturesData.model_validate_json(state.to_json(3) or b"").orderbook is None
    held["asks"][0] = [100.5, 1.0]
    whole = FuturesData.model_validate_json(state.to_json(4) or b"").orderbook
    assert whole is not None and (whole.bids, whole.asks) == ([(100.0, 1.0)], [(100.5, 1.0)])
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in logged] == ["WARNING", "INFO"] and "0 asks" in logged[0][1]


def test_each_part_carries_its_own_venue_and_receipt_time() -> None:
    """A part whose stream went quiet keeps its old times while another part makes the message fresh."""
    state = MarketState("binance", "BTC/USDT:USDT", contract_size=1, depth=1, funding_interval_hours=8)
    state.mark_received(1_010, 0)
    state.set_quote(100.0, 101.0, 2.0, 3.0, timestamp=1_000)
    state.mark_received(1_110, 0)
    state.set_book(book([[100.0, 2.0]], [[101.0, 3.0]], 1_100))
    state.mark_received(5_020, 0)
    state.set_trade_stats(100.5, 7.0, timestamp=5_000)
    state.mark_received(9_050, 0)
    state.set_funding(0.0001, None, 100.4, None, timestamp=9_000)
    message = FuturesData.model_validate_json(state.to_json(9_060) or b"")
    assert (message.timestamp, message.received_timestamp) == (9_000, 9_050)  # the newest part
    assert (message.ticker.timestamp, message.ticker.received_timestamp) == (1_000, 1_010)  # the quote is 8 s old
    assert (message.ticker.stats_timestamp, message.ticker.stats_received_timestamp) == (5_000, 5_020)
    assert message.orderbook is not None
    assert (message.orderbook.timestamp, message.orderbook.received_timestamp) == (1_100, 1_110)
    assert (message.funding_timestamp, message.funding_received_timestamp) == (9_000, 9_050)


def test_a_part_without_venue_time_takes_its_receipt_time_and_absent_parts_stay_null() -> None:
    state = MarketState("binance", "BTC/USDT", contract_size=1, depth=1, market="spot")
    state.mark_received(2_000, 0)
    state.set_quote(100.0, 101.0, 2.0, 3.0, timestamp=None)  # Binance spot's bookTicker carries no time
    state.mark_received(3_000, 0)
    state.set_trade_stats(None, None, timestamp=2_900)  # carried nothing: the statistics stay unknown
    state.set_funding(None, None, None, None, timestamp=2_900)
    message = FuturesData.model_validate_json(state.to_json(3_001) or b"")
    assert (message.ticker.timestamp, message.ticker.received_timestamp) == (2_000, 2_000)
    assert (message.ticker.stats_timestamp, message.ticker.stats_received_timestamp) == (None, None)
    assert (message.funding_timestamp, message.funding_received_timestamp) == (None, None)
    assert message.orderbook is None


def test_a_book_that_is_the_quote_gives_the_quote_its_times() -> None:
    state = MarketState("bybit", "BTC/USDT:USDT", contract_size=1, depth=1)
    state.mark_received(4_010, 0)
    state.set_book(book([[100.0, 2.0]], [[101.0, 3.0]], 4_000), top_is_quote=True)
    state.mark_received(6_010, 0)
    state.set_funding(0.0001, None, None, None, timestamp=6_000)
    message = FuturesData.model_validate_json(state.to_json(6_011) or b"")
    assert (message.ticker.timestamp, message.ticker.received_timestamp) == (4_000, 4_010)
    assert message.orderbook is not None and message.orderbook.received_timestamp == 4_010


def test_a_message_from_an_older_collector_without_part_times_still_validates() -> None:
    state = MarketState("binance", "BTC/USDT:USDT", contract_size=1, depth=1)
    state.mark_received(10, 0)
    state.set_quote(100.0, 101.0, 2.0, 3.0, timestamp=9)
    state.set_book(book([[100.0, 2.0]], [[101.0, 3.0]], 9))
    body = orjson.loads(state.to_json(11) or b"")
    for key in ("funding_timestamp", "funding_received_timestamp"):
        del body[key]
    for key in ("timestamp", "received_timestamp", "stats_timestamp", "stats_received_timestamp"):
        del body["ticker"][key]
    del body["orderbook"]["received_timestamp"]
    message = FuturesData.model_validate(body)
    assert message.ticker.received_timestamp is None and message.funding_timestamp is None
