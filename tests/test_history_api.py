"""The monitor's history routes against a real SQLite store filled with hand-made rows: the web app is the
monitor's own routes (Api, HistoryApi) on one aiohttp server, no RabbitMQ needed. Resampling is checked as a
pure function with values computed by hand, then again through /api/history/spreads."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from history.rows import Batch, FundingChange, Outcome, SeriesBar, SignalEvent
from history.sqlite_store import SQLiteStore
from models.config import AppConfig
from models.universe import Listing, Universe, UniverseSymbol
from monitor.api import Api
from monitor.history_api import Direction, HistoryApi, resample, resolve_direction
from monitor.state import MonitorState

pytestmark = pytest.mark.timeout(60)
ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
"""The async tests share the module's server (its fixture runs on the module's loop)."""

T0 = 1_764_979_200_000
"""2025-12-06T00:00:00Z: every hand-made row is placed relative to it."""
MIN = 60_000
BUY, SELL = "okx.spot", "binance"
KEY = "spread.BTCUSDT.okx-spot.binance"


def bar(minute: int, net: tuple[float, float, float, float], mean: float, funding: float | None,
        mids: tuple[float, float], snapshots: int, buy: str = BUY) -> SeriesBar:
    net_open, net_high, net_low, net_close = net
    return SeriesBar(ts=T0 + minute * MIN, symbol="BTC/USDT", buy=buy, sell=SELL, net_open=net_open,
                     net_high=net_high, net_low=net_low, net_close=net_close, net_mean=mean,
                     funding_diff_8h_pct_mean=funding, buy_mid_mean=mids[0], sell_mid_mean=mids[1],
                     snapshots=snapshots)


BARS = [
    bar(0, (0.1, 0.3, 0.0, 0.2), 0.15, 0.01, (100, 101), 10),
    bar(5, (0.2, 0.5, 0.1, 0.4), 0.30, None, (102, 103), 30),
    bar(10, (0.4, 0.6, 0.2, 0.3), 0.40, 0.03, (104, 105), 20),
    bar(15, (0.3, 0.35, -0.1, 0.0), 0.10, 0.02, (110, 111), 40),
]
OTHER_DIRECTION_BAR = bar(10, (9, 9, 9, 9), 9, 9, (9, 9), 99, buy="bybit")


def event(symbol: str, buy: str, start_minute: int, end_minute: int, status: str = "closed") -> SignalEvent:
    start, end = T0 + start_minute * MIN, T0 + end_minute * MIN
    word = symbol.replace("/", "")
    return SignalEvent(event_id=f"{word}.{buy.replace('.', '-')}.binance.{start}", symbol=symbol, buy=buy,
                       sell=SELL, buy_symbol=symbol if "." in buy else f"{symbol}:USDT", sell_symbol=f"{symbol}:USDT",
                       start_ts=start, end_ts=end, status=status, samples=3,  # type: ignore[arg-type]
                       features_agg={"net_pct": {"max": 0.5}})


RUNNING_INTO_WINDOW = event("BTC/USDT", BUY, -60, 12)
IN_WINDOW = event("BTC/USDT", BUY, 15, 18, "new")
OTHER_DIRECTION = event("BTC/USDT", "bybit", 16, 17)
ENDED_BEFORE = event("BTC/USDT", BUY, -180, -120)
AFTER = event("BTC/USDT", BUY, 30, 31)
ETH = event("ETH/USDT", BUY, 20, 21)
EVENTS = [RUNNING_INTO_WINDOW, IN_WINDOW, OTHER_DIRECTION, ENDED_BEFORE, AFTER, ETH]


def outcome(horizon: float, spread_end: float) -> Outcome:
    start = RUNNING_INTO_WINDOW.start_ts
    return Outcome(event_id=RUNNING_INTO_WINDOW.event_id, horizon_min=horizon, status="ok", start_ts=start,
                   horizon_ts=start + int(horizon * MIN), spread_start=0.5, spread_end=spread_end,
                   spread_change=spread_end - 0.5, net_end=spread_end - 0.2, funding_accrued_pct=0.01,
                   max_favourable_pct=0.3, max_adverse_pct=0.1, volatility_pct=0.05, label="converged", samples=30,
                   computed_at=start + int(horizon * MIN) + 1000)


def funding(exchange: str, symbol: str, at: int, next_time: int, previous_next: int | None) -> FundingChange:
    return FundingChange(ts=at, exchange=exchange, symbol=symbol, funding_rate=0.0001, funding_interval_hours=8,
                         next_funding_time=next_time, previous_rate=0.00008,
                         previous_next_funding_time=previous_next, received_ts=at + 5)


FUNDING_BEFORE = funding("binance", "BTC/USDT:USDT", T0 - 60 * MIN, T0 + 12 * MIN, T0 - 468 * MIN)
FUNDING_AFTER_PAYMENT = funding("binance", "BTC/USDT:USDT", T0 + 13 * MIN, T0 + 492 * MIN, T0 + 12 * MIN)
RECENT_ETH_FUNDING = funding("binance", "ETH/USDT:USDT", int(time.time() * 1000) - 3_600_000, T0, None)


def listing(source: str, symbol: str, multiplier: int = 1) -> Listing:
    exchange, _, market = source.partition(".")
    return Listing(source=source, exchange=exchange, market=market or "futures",  # type: ignore[arg-type]
                   symbol=symbol, venue_id=symbol.partition(":")[0].replace("/", ""), base_multiplier=multiplier,
                   tick_size=0.1, min_qty=0.001, min_notional=5, contract_size=None, taker_fee=0.0005)


UNIVERSE = Universe(generated_at=T0, sources=["binance", "okx.spot"], failed_sources={}, directions=[], symbols=[
    UniverseSymbol(id=1, name="BTC/USDT", coin="BTC",
                   listings=[listing("binance", "BTC/USDT:USDT"), listing("okx.spot", "BTC/USDT")]),
    UniverseSymbol(id=2, name="PEPE/USDT", coin="PEPE", listings=[listing("binance", "1000PEPE/USDT:USDT", 1000)]),
])


def history_config(directory: Path, store: Path) -> AppConfig:
    return AppConfig.model_validate({
        "exchanges": ["binance", "okx"], "symbols": ["BTC/USDT:USDT"], "markets": ["futures", "spot"],
        "universe_dir": str(directory), "history": {"sqlite_path": str(store)}, "api_keys_file": None,
        "spreads": {"entry_pct": 0.3, "exit_pct": 0.1},
    })


async def fill_store(path: Path, config: AppConfig, batch: Batch) -> None:
    store = SQLiteStore(path, config.history)
    await store.open()
    try:
        await store.write(batch)
    finally:
        await store.close()


FILLED = Batch(series=[*BARS, OTHER_DIRECTION_BAR], events=EVENTS, outcomes=[outcome(60, 0.2), outcome(30, 0.3)],
               funding=[FUNDING_BEFORE, FUNDING_AFTER_PAYMENT, RECENT_ETH_FUNDING])


async def serve_monitor_routes(config: AppConfig, exits: AsyncExitStack) -> str:
    """The monitor's dashboard and history routes on a free port, without the bus: its base URL."""
    state = MonitorState()
    history = HistoryApi(config, state)
    app = web.Application()
    app.add_routes([*Api(config, state).routes(), *history.routes()])
    app.on_cleanup.append(lambda _: history.close())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    exits.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    directory = tmp_path_factory.mktemp("history_api")
    (directory / "universe.json").write_text(UNIVERSE.model_dump_json())
    config = history_config(directory, directory / "history.sqlite")
    await fill_store(directory / "history.sqlite", config, FILLED)
    async with AsyncExitStack() as exits:
        yield await serve_monitor_routes(config, exits)


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


def assert_points(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected), got
    for point, wanted in zip(got, expected, strict=True):
        assert point == pytest.approx(wanted)


# --- pure functions ---------------------------------------------------------------------------------------


def test_resample_merges_buckets_and_weights_means_by_snapshots() -> None:
    first, second = resample(BARS, 15 * MIN, T0)
    assert first == pytest.approx({
        "ts": T0, "net_open": 0.1, "net_high": 0.6, "net_low": 0.0, "net_close": 0.3,
        "net_mean": 18.5 / 60,  # (0.15 x 10 + 0.30 x 30 + 0.40 x 20) / 60
        "midline_15m": 18.5 / 60,  # the same three buckets end at T0 + 15 min
        "funding_diff_8h_pct_mean": 0.7 / 30,  # (0.01 x 10 + 0.03 x 20) / 30: the bucket without funding left out
        "buy_mid_mean": 6140 / 60, "sell_mid_mean": 6200 / 60, "snapshots": 60,
    })
    assert second == pytest.approx({
        "ts": T0 + 15 * MIN, "net_open": 0.3, "net_high": 0.35, "net_low": -0.1, "net_close": 0.0, "net_mean": 0.1,
        "midline_15m": 0.1, "funding_diff_8h_pct_mean": 0.02, "buy_mid_mean": 110, "sell_mid_mean": 111,
        "snapshots": 40,
    })


def test_resample_midline_counts_buckets_before_the_window() -> None:
    points = resample(BARS, 5 * MIN, T0 + 10 * MIN)
    assert [point["ts"] for point in points] == [T0 + 10 * MIN, T0 + 15 * MIN]
    assert points[0]["midline_15m"] == pytest.approx(18.5 / 60)
    assert points[1]["midline_15m"] == pytest.approx(21 / 90)  # (0.30 x 30 + 0.40 x 20 + 0.10 x 40) / 90
    assert points[1]["net_mean"] == pytest.approx(0.1)
    assert resample([BARS[1]], 5 * MIN, T0)[0]["funding_diff_8h_pct_mean"] is None


def test_a_direction_key_resolves_to_its_name_and_sources() -> None:
    def unknown(_: str) -> None:
        return None

    expected = Direction(KEY, "BTC/USDT", "okx.spot", "binance")
    assert resolve_direction(KEY, unknown) == expected
    assert resolve_direction("BTCUSDT.okx-spot.binance", unknown) == expected
    assert resolve_direction("spread.ETHUSDC.bybit.gateio", unknown) == Direction(
        "spread.ETHUSDC.bybit.gateio", "ETH/USDC", "bybit", "gateio")
    assert resolve_direction("spread.X1.okx.binance", {"X1": "X/USDT"}.get) == Direction(
        "spread.X1.okx.binance", "X/USDT", "okx", "binance")
    for bad in ("spread.BTCUSDT.okx", "BTCUSDT..binance", "spread.BTCEUR.okx.binance", "a.b.c.d.e"):
        assert resolve_direction(bad, unknown) is None, bad


# --- /api/history/spreads ---------------------------------------------------------------------------------


@ON_MODULE_LOOP
async def test_the_spread_history_resamples_and_carries_events_and_funding_times(base_url: str) -> None:
    status, body = await get(f"{base_url}/api/history/spreads?direction={KEY}&from={T0 + 10 * MIN}"
                             f"&to={T0 + 20 * MIN}&step=5m")
    assert status == 200, body
    assert {key: body[key] for key in ("direction", "symbol", "buy", "sell", "from", "to", "step", "step_ms",
                                       "entry_pct", "exit_pct")} == {
        "direction": KEY, "symbol": "BTC/USDT", "buy": "okx.spot", "sell": "binance", "from": T0 + 10 * MIN,
        "to": T0 + 20 * MIN, "step": "5m", "step_ms": 5 * MIN, "entry_pct": 0.3, "exit_pct": 0.1}
    assert_points(body["points"], resample(BARS, 5 * MIN, T0 + 10 * MIN))  # the other direction's bar left out
    assert [point["midline_15m"] for point in body["points"]] == pytest.approx([18.5 / 60, 21 / 90])
    assert body["events"] == [
        {"event_id": item.event_id, "start_ts": item.start_ts, "end_ts": item.end_ts, "status": item.status}
        for item in (RUNNING_INTO_WINDOW, IN_WINDOW)
    ]
    assert body["funding_times"] == [{"leg": "sell", "exchange": "binance", "symbol": "BTC/USDT:USDT",
                                      "ts": T0 + 12 * MIN}]  # the buy leg is spot: no funding


@ON_MODULE_LOOP
async def test_the_spread_history_takes_iso_times_and_the_key_without_its_prefix(base_url: str,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # a time without a zone is UTC, not the machine's zone
    time.tzset()
    try:
        status, body = await get(f"{base_url}/api/history/spreads?direction=BTCUSDT.okx-spot.binance"
                                 "&from=2025-12-06T00:00:00Z&to=2025-12-06T00:20:00&step=15m")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert status == 200, body
    assert (body["direction"], body["from"], body["to"]) == (KEY, T0, T0 + 20 * MIN)
    assert_points(body["points"], resample(BARS, 15 * MIN, T0))


@ON_MODULE_LOOP
async def test_the_spread_history_defaults_to_the_last_12_hours(base_url: str) -> None:
    before = int(time.time() * 1000)
    status, body = await get(f"{base_url}/api/history/spreads?direction={KEY}")
    assert status == 200, body
    assert before <= body["to"] <= before + 5000 and body["to"] - body["from"] == 12 * 60 * MIN
    assert body["step"] == "5m" and body["points"] == [] and body["events"] == []


@ON_MODULE_LOOP
@pytest.mark.parametrize(("query", "parameter"), [
    ("", "direction"),
    ("direction=BTCUSDT", "direction"),
    ("direction=spread.BTCEUR.okx.binance", "direction"),
    (f"direction={KEY}&step=7m", "step"),
    (f"direction={KEY}&step=5", "step"),
    (f"direction={KEY}&step=0m", "step"),
    (f"direction={KEY}&from=yesterday", "from"),
    (f"direction={KEY}&to=2025-13-01", "to"),
    (f"direction={KEY}&from={T0}&to={T0 + 7 * 1440 * MIN + 1}", "from"),
    (f"direction={KEY}&from={T0 + 1}&to={T0}", "from"),
    (f"direction={KEY}&window=1h", "window"),
    (f"direction={KEY}&to=99999999999999999999", "to"),  # a 500 (OverflowError in the store) before
    (f"direction={KEY}&from=1969-12-31T00:00:00Z", "from"),
])
async def test_bad_spread_history_parameters_are_named(base_url: str, query: str, parameter: str) -> None:
    status, body = await get(f"{base_url}/api/history/spreads?{query}")
    assert status == 400 and body["error"] == "bad_parameter" and body["parameter"] == parameter, body


# --- /api/events ------------------------------------------------------------------------------------------


@ON_MODULE_LOOP
async def test_events_newest_first_by_symbol_and_limited(base_url: str) -> None:
    window = f"from={T0 - 1440 * MIN}&to={T0 + 60 * MIN}"
    status, body = await get(f"{base_url}/api/events?{window}")
    assert status == 200, body
    expected = [AFTER, ETH, OTHER_DIRECTION, IN_WINDOW, RUNNING_INTO_WINDOW, ENDED_BEFORE]
    assert [row["event_id"] for row in body["events"]] == [item.event_id for item in expected]
    assert body["count"] == 6 and body["symbol"] is None
    for symbol in ("BTC/USDT", "BTCUSDT"):
        _, body = await get(f"{base_url}/api/events?symbol={symbol}&{window}&limit=2")
        assert body["symbol"] == "BTC/USDT" and body["limit"] == 2
        assert [row["event_id"] for row in body["events"]] == [AFTER.event_id, OTHER_DIRECTION.event_id]
    _, body = await get(f"{base_url}/api/events?symbol=ETHUSDT&{window}&limit=5000")
    assert body["limit"] == 1000 and [row["event_id"] for row in body["events"]] == [ETH.event_id]
    _, body = await get(f"{base_url}/api/events?from={T0 + 16 * MIN}&to={T0 + 20 * MIN}")
    assert [row["event_id"] for row in body["events"]] == [ETH.event_id, OTHER_DIRECTION.event_id]


@ON_MODULE_LOOP
async def test_an_event_with_its_outcomes_shortest_horizon_first(base_url: str) -> None:
    status, body = await get(f"{base_url}/api/events/{RUNNING_INTO_WINDOW.event_id}")
    assert status == 200, body
    assert body["event"]["event_id"] == RUNNING_INTO_WINDOW.event_id and body["event"]["duration_sec"] == 72 * 60
    assert body["event"]["features_agg"] == {"net_pct": {"max": 0.5}}
    assert [row["horizon_min"] for row in body["outcomes"]] == [30, 60]
    assert body["outcomes"][0]["spread_end"] == 0.3 and body["outcomes"][0]["label"] == "converged"
    for unknown in ("BTCUSDT.okx-spot.binance.1", "BTC%00USDT", "x" * 201):
        status, body = await get(f"{base_url}/api/events/{unknown}")
        assert status == 404 and body["error"] == "event_not_found", body


@ON_MODULE_LOOP
@pytest.mark.parametrize(("query", "parameter"), [("limit=ten", "limit"), ("limit=0", "limit"),
                                                  ("from=1.5", "from"), ("symbol=" + "X" * 65, "symbol"),
                                                  ("direction=x", "direction"), ("symbol=BTC%00USDT", "symbol")])
async def test_bad_event_parameters_are_named(base_url: str, query: str, parameter: str) -> None:
    status, body = await get(f"{base_url}/api/events?{query}")
    assert status == 400 and body["parameter"] == parameter, body


# --- /api/funding/history ---------------------------------------------------------------------------------


@ON_MODULE_LOOP
async def test_funding_history_resolves_the_venue_symbol(base_url: str) -> None:
    for symbol in ("BTC/USDT:USDT", "BTCUSDT"):
        status, body = await get(f"{base_url}/api/funding/history?exchange=binance&symbol={symbol}"
                                 f"&from={T0 - 30 * MIN}&to={T0 + 60 * MIN}")
        assert status == 200, body
        assert body["symbol"] == "BTC/USDT:USDT" and body["count"] == 2
        assert [row["ts"] for row in body["changes"]] == [FUNDING_BEFORE.ts, FUNDING_AFTER_PAYMENT.ts]
        assert body["changes"][1]["previous_next_funding_time"] == T0 + 12 * MIN  # the rate in force at `from` first
    for symbol in ("PEPEUSDT", "1000PEPEUSDT"):
        status, body = await get(f"{base_url}/api/funding/history?exchange=binance&symbol={symbol}")
        assert (status, body["symbol"], body["changes"]) == (200, "1000PEPE/USDT:USDT", [])


@ON_MODULE_LOOP
async def test_funding_history_defaults_to_the_last_7_days(base_url: str) -> None:
    status, body = await get(f"{base_url}/api/funding/history?exchange=binance&symbol=ETH/USDT:USDT")
    assert status == 200, body
    assert body["to"] - body["from"] == 7 * 1440 * MIN
    assert [row["ts"] for row in body["changes"]] == [RECENT_ETH_FUNDING.ts]


@ON_MODULE_LOOP
@pytest.mark.parametrize(("query", "parameter"), [
    ("symbol=BTCUSDT", "exchange"), ("exchange=nasdaq&symbol=BTCUSDT", "exchange"), ("exchange=binance", "symbol"),
    ("exchange=binance&symbol=DOGEUSDT", "symbol"), ("exchange=okx&symbol=PEPEUSDT", "symbol"),
    (f"exchange=binance&symbol=BTCUSDT&from={T0}&to={T0 + 32 * 1440 * MIN}", "from"),
])
async def test_bad_funding_parameters_are_named(base_url: str, query: str, parameter: str) -> None:
    status, body = await get(f"{base_url}/api/funding/history?{query}")
    assert status == 400 and body["parameter"] == parameter, body


# --- no store, then a store; a store too new --------------------------------------------------------------


@ON_MODULE_LOOP
async def test_no_store_answers_503_until_the_recorder_made_one(tmp_path: Path) -> None:
    path = tmp_path / "later" / "history.sqlite"
    config = history_config(tmp_path, path)
    async with AsyncExitStack() as exits:
        url = await serve_monitor_routes(config, exits)
        for route in (f"/api/history/spreads?direction={KEY}", "/api/events", "/api/events/x",
                      "/api/funding/history?exchange=binance&symbol=BTC/USDT:USDT"):
            status, body = await get(url + route)
            assert status == 503 and body["error"] == "history_unavailable", (route, body)
            assert "python -m consumers.recorder" in body["message"], body
        assert not path.exists(), "a reader must not create the store"
        await fill_store(path, config, Batch(events=[IN_WINDOW]))
        status, body = await get(f"{url}/api/events?from=0")
        assert status == 200 and [row["event_id"] for row in body["events"]] == [IN_WINDOW.event_id], body


@ON_MODULE_LOOP
async def test_a_store_of_a_newer_schema_answers_503_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    config = history_config(tmp_path, path)
    await fill_store(path, config, Batch())
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = 999")
    connection.close()
    async with AsyncExitStack() as exits:
        url = await serve_monitor_routes(config, exits)
        status, body = await get(f"{url}/api/events")
        assert status == 503 and body["error"] == "history_schema_too_new" and "999" in body["message"], body


def test_with_hour_buckets_the_midline_is_the_bucket_overlapping_the_last_15_minutes() -> None:
    """history.series_bucket_seconds may be longer than the midline's 15 minutes (it was always null then)."""
    hour = 60 * MIN
    bars = [replace(BARS[0], ts=T0, net_mean=0.2, snapshots=10), replace(BARS[0], ts=T0 + hour, net_mean=0.4,
                                                                         snapshots=30)]
    points = resample(bars, hour, T0, bucket_ms=hour)
    assert [(point["ts"], point["midline_15m"]) for point in points] == [(T0, 0.2), (T0 + hour, 0.4)]
