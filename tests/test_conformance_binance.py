"""Conformance against real traffic: recorded Binance USDⓈ-M frames → replay → unmodified ccxt.pro collector →
RabbitMQ, checked against truth computed here from the capture files.

Every other venue test checks the collector against the project's own simulator, i.e. one reading of the docs on
both sides. Here the venue side is Binance's own bytes (tests/captures/binance-usdm-2021-07-22, SOURCE.md says
what and whence), and the truth side is plain json and Binance's documented rules: no project parsing code, no
ccxt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from models.config import AppConfig
from simulator.replay import ReplayServer, load_capture
from tests.broker import Broker
from tests.helpers import Consumer, running

pytestmark = pytest.mark.timeout(120)

CAPTURE = Path(__file__).parent / "captures" / "binance-usdm-2021-07-22"
SYMBOL_IDS = ("SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT")
SPEED = 10.0
"""30 s of recorded traffic in about 3 s."""
DEPTH = 20

Event = dict[str, Any]
Side = dict[Decimal, Decimal]


# --- truth, from the files alone ---------------------------------------------------------------------------


def recorded_snapshots() -> dict[str, Event]:
    """Symbol id -> the recorded /fapi/v1/depth body (lines `<url> -> <time>: <body>`)."""
    snapshots: dict[str, Event] = {}
    for path in CAPTURE.glob("*.http.*"):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            url, _, rest = line.partition(" -> ")
            body = json.loads(rest.partition(": ")[2])
            symbol = url.split("symbol=", 1)[1].split("&", 1)[0]
            snapshots.setdefault(symbol, body)
    return snapshots


def recorded_events() -> list[Event]:
    """Every recorded WebSocket event in receipt order (lines `<time>: {"stream": ..., "data": event}`)."""
    events: list[Event] = []
    for path in CAPTURE.glob("*.ws.*"):
        lines = path.read_text().splitlines()
        events.extend(json.loads(line.partition(": ")[2])["data"] for line in lines[1:] if line.strip())
    return events


def last_book_tickers(events: list[Event]) -> dict[str, Event]:
    last: dict[str, Event] = {}
    for event in events:
        if event.get("e") == "bookTicker":
            last[event["s"]] = event
    return last


def rebuilt_books(snapshots: dict[str, Event], events: list[Event]) -> dict[str, tuple[Side, Side, int]]:
    """Symbol id -> (bids, asks, E of the last applied diff), by Binance's futures rules: drop diffs with
    u < lastUpdateId; the first applied one has U <= lastUpdateId <= u; each later one's pu is the previous u;
    a size of 0 removes the level."""
    books: dict[str, tuple[Side, Side, int]] = {}
    for symbol, snapshot in snapshots.items():
        last_update_id = snapshot["lastUpdateId"]
        bids = {Decimal(price): Decimal(size) for price, size in snapshot["bids"]}
        asks = {Decimal(price): Decimal(size) for price, size in snapshot["asks"]}
        previous_u: int | None = None
        event_time = 0
        for event in events:
            if event.get("e") != "depthUpdate" or event["s"] != symbol or event["u"] < last_update_id:
                continue
            if previous_u is None:
                assert event["U"] <= last_update_id <= event["u"], f"{symbol}: no diff brackets the snapshot"
            else:
                assert event["pu"] == previous_u, f"{symbol}: the recorded diff chain breaks at u={event['u']}"
            for side, levels in ((bids, event["b"]), (asks, event["a"])):
                for price, size in levels:
                    if Decimal(size) == 0:
                        side.pop(Decimal(price), None)
                    else:
                        side[Decimal(price)] = Decimal(size)
            previous_u, event_time = event["u"], event["E"]
        assert previous_u is not None, f"{symbol}: no diff after the snapshot"
        books[symbol] = (bids, asks, event_time)
    return books


def top(side: Side, best_first_descending: bool) -> list[list[float]]:
    prices = sorted(side, reverse=best_first_descending)[:DEPTH]
    return [[float(price), float(side[price])] for price in prices]


def mismatches(latest: dict[str, dict[str, Any]], tickers: dict[str, Event],
               books: dict[str, tuple[Side, Side, int]]) -> list[str]:
    """What the last published message of each symbol gets wrong; empty when all is as Binance sent it."""
    wrong: list[str] = []
    for symbol in SYMBOL_IDS:
        message = latest.get(f"futures.binance.{symbol}")
        if message is None:
            wrong.append(f"{symbol}: nothing published")
            continue
        quote, ticker = tickers[symbol], message["ticker"]
        expected_quote = {"bid": float(quote["b"]), "ask": float(quote["a"]),
                          "bid_size": float(quote["B"]), "ask_size": float(quote["A"])}
        if "timestamp" in ticker:  # the quote's own venue time, where the contract carries it
            expected_quote["timestamp"] = quote["E"]
        got_quote = {key: ticker.get(key) for key in expected_quote}
        if got_quote != expected_quote:
            wrong.append(f"{symbol} ticker: published {got_quote}, last bookTicker {expected_quote}")
        bids, asks, book_time = books[symbol]
        expected_book = {"bids": top(bids, True), "asks": top(asks, False), "timestamp": book_time}
        published_book = message["orderbook"]
        book = {key: published_book[key] for key in expected_book} if published_book else published_book
        if book != expected_book:
            wrong.append(f"{symbol} book: published {book}, rebuilt {expected_book}")
        newest = max(quote["E"], book_time)
        if message["timestamp"] != newest:
            wrong.append(f"{symbol} timestamp: published {message['timestamp']}, newest venue time {newest}")
    return wrong


def test_the_truth_side_reads_the_capture_as_source_md_describes() -> None:
    """The independent reading agrees with the capture's own notes, so a failure below is the collector's."""
    events = recorded_events()
    snapshots = recorded_snapshots()
    assert len(events) == 1535
    assert {symbol: body["lastUpdateId"] for symbol, body in snapshots.items()} == {
        "SUSHIUSDT": 600859605926, "AKROUSDT": 600859605486, "KEEPUSDT": 600859619434, "CTKUSDT": 600859618836,
    }
    for bids, asks, _ in rebuilt_books(snapshots, events).values():
        assert max(bids) < min(asks)
    assert set(last_book_tickers(events)) == set(SYMBOL_IDS)


# --- the collector against the replay -----------------------------------------------------------------------


async def test_collector_publishes_what_binance_sent(
    broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    events = recorded_events()
    tickers = last_book_tickers(events)
    books = rebuilt_books(recorded_snapshots(), events)
    caplog.set_level(logging.INFO)

    replay = ReplayServer(load_capture(CAPTURE), port=0, speed=SPEED, start_delay=None)
    await replay.start()
    config = AppConfig.model_validate(
        {
            "rabbitmq": {"url": broker.url, "exchange": exchange_name},
            "exchanges": [{"name": "binance", "ccxt": replay.ccxt_config("binance")}],
            "symbols": [f"{symbol[:-4]}/USDT:USDT" for symbol in SYMBOL_IDS],
            "collection": {"orderbook_depth": DEPTH, "stale_after_seconds": 120, "retry_delays": [0.2, 0.5, 1]},
            "logging": {"level": "INFO", "file": None},
            "control": {"enabled": False, "state_file": None},
            "api_keys_file": None,
        }
    )
    # Every stream the capture has for these symbols and the collector asks for: bookTicker and depth@100ms.
    # (markPrice and miniTicker were not recorded: the replay acknowledges them and stays silent.)
    wanted = {f"{symbol.lower()}@{channel}" for symbol in SYMBOL_IDS for channel in ("bookTicker", "depth@100ms")}
    try:
        async with running(config):
            assert await consumer.wait_until(lambda: wanted <= replay.subscribed_streams(), timeout=30), (
                f"not subscribed: {sorted(wanted - replay.subscribed_streams())}"
            )
            replay.play()
            await asyncio.wait_for(replay.finished.wait(), timeout=replay.capture.duration_seconds / SPEED + 30)
            await consumer.wait_until(lambda: not mismatches(consumer.latest, tickers, books), timeout=20)
            problems = mismatches(consumer.latest, tickers, books)
    finally:
        await replay.stop()

    assert not problems, "\n".join(problems)
    recorded = sum(1 for event in events if event.get("e") in ("bookTicker", "depthUpdate"))
    assert replay.frames_sent == recorded, "some bookTicker/depth frame went to nobody: subscribed too late"
    trouble = [r.getMessage() for r in caplog.records if r.name == "binance" and r.levelno >= logging.WARNING]
    assert not trouble, f"the collector could not use everything Binance sent: {trouble}"
