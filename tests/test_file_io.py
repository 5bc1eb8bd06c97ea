"""Files written beside a running event loop: the tracker's rows and index.json, and discovery's
generated/. A slow or stuck write must not stall the loop, and index.json must stay bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import orjson
import pytest

from consumers.spread_tracker import SpreadTracker
from consumers.tracks import TrackEntry, TrackStore
from discovery.output import write_generated_off_loop
from models.analytics import Leg, OpportunityEvent, SpreadSnapshot, opportunity_key
from models.config import AppConfig
from models.universe import UNIVERSE_FILE, Universe
from simulator.server import Simulator
from tests.broker import Broker
from tests.file_audit import FileAudit
from tests.helpers import collector_config, delete_analytics, eventually, running

pytestmark = pytest.mark.timeout(120)

NO_UNIVERSE = Universe(generated_at=0, sources=[], failed_sources={}, symbols=[], directions=[])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def config(simulator: Simulator, broker: Broker, exchange_name: str, tmp_path: Path) -> AsyncIterator[AppConfig]:
    """A collector on the simulator and a tracker that never converges by itself (exit far below any spread)."""
    config = collector_config(simulator, broker.url, exchange_name, max_message_age_ms=60_000)
    config.spreads = config.spreads.model_copy(update={
        "analytics_exchange": f"{exchange_name}_analytics", "entry_pct": -99.0, "exit_pct": -100.0,
    })
    config.tracker = config.tracker.model_copy(update={"directory": str(tmp_path / "tracks")})
    yield config
    await delete_analytics(broker.url, config, f"{exchange_name}_tracker")


def opportunity(kind: str, opportunity_id: str, opened_at: int, reason: str | None = None) -> OpportunityEvent:
    def leg(source: str, price: float) -> Leg:
        return Leg(source=source, symbol="BTC/USDT:USDT", bid=price, ask=price, timestamp=opened_at,
                   funding_rate_8h=None)

    snapshot = SpreadSnapshot(
        symbol="BTC/USDT", buy=leg("bybit", 100.0), sell=leg("binance", 100.5), spread_abs=0.5, spread_pct=0.5,
        net_pct=0.4, notional_usdt=1000.0, vwap_buy=None, vwap_sell=None, executable_net_pct=None,
        executable_qty=None, fully_fillable=False, funding_diff_8h_pct=None, funding_apr_pct=None,
        timestamp=opened_at,
    )
    return OpportunityEvent(event=kind, opportunity_id=opportunity_id, symbol="BTC/USDT", buy="bybit",
                            sell="binance", opened_at=opened_at, snapshot=snapshot, peak_net_pct=0.4, reason=reason)


async def publish(broker: Broker, config: AppConfig, events: list[OpportunityEvent]) -> None:
    """As the spread engine does: onto the analytics exchange, opportunity.<event>.<SYMBOL>."""
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(config.spreads.analytics_exchange)
        for event in events:
            await exchange.publish(aio_pika.Message(event.model_dump_json().encode()),
                                   routing_key=opportunity_key(event.event, event.symbol))


async def test_index_json_keeps_every_open_track_and_only_the_last_n_closed(
    broker: Broker, exchange_name: str, config: AppConfig
) -> None:
    config.tracker = config.tracker.model_copy(update={"index_max_entries": 3})
    store = TrackStore(config.tracker.directory)
    start = now_ms() - 600_000
    closed = {  # opened in one order, closed in the reverse: "last" means most recently closed
        f"old{number}": TrackEntry(opportunity_id=f"old{number}", symbol="BTC/USDT", buy="bybit", sell="binance",
                                   opened_at=start + (5 - number) * 1000, file=f"old{number}.jsonl",
                                   closed_at=start + 60_000 + number * 1000, reason="converged")
        for number in range(1, 6)
    }
    still_open = TrackEntry(opportunity_id="open", symbol="BTC/USDT", buy="bybit", sell="binance",
                            opened_at=start - 1000, file="open.jsonl")
    for entry in [*closed.values(), still_open]:
        store.append(entry, {"t": entry.opened_at + 200, "net_pct": 0.5})
    store.save_index({**closed, "open": still_open})

    tracker = SpreadTracker(config, NO_UNIVERSE, events_queue=f"{exchange_name}_tracker")
    await tracker.start()
    try:
        assert set(store.load_index()) == {"open", "old3", "old4", "old5"}
        assert all((Path(config.tracker.directory) / f"old{number}.jsonl").exists() for number in (1, 2))

        opened_at = now_ms()
        await publish(broker, config, [
            opportunity("open", "new1", opened_at), opportunity("open", "new2", opened_at + 1),
            opportunity("close", "new1", opened_at, "converged"), opportunity("close", "new2", opened_at + 1, "stale"),
        ])
        assert await eventually(lambda: store.load_index().get("new2", still_open).closed_at is not None)
        index = store.load_index()
        assert set(index) == {"open", "old5", "new1", "new2"}, sorted(index)
        assert index["open"].closed_at is None
        assert len(tracker.entries) == 4
    finally:
        await tracker.stop()
    assert set(store.load_index()) == {"open", "old5", "new1", "new2"}


async def test_a_broken_index_json_is_set_aside_and_the_tracker_runs_on(
    broker: Broker, exchange_name: str, config: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    directory = Path(config.tracker.directory)
    TrackStore(directory).write_index(b'[{"opportunity_id": "half-written", "symbol": "BTC/US')
    tracker = SpreadTracker(config, NO_UNIVERSE, events_queue=f"{exchange_name}_tracker")
    await tracker.start()
    try:
        errors = [record for record in caplog.records if record.levelname == "ERROR" and "index.json" in record.message]
        assert len(errors) == 1 and "index.json.corrupt" in errors[0].message, [r.message for r in caplog.records]
        assert (directory / "index.json.corrupt").read_text().startswith('[{"opportunity_id": "half-written"')
        await publish(broker, config, [opportunity("open", "after", now_ms())])
        assert await eventually(lambda: "after" in TrackStore(directory).load_index())
    finally:
        await tracker.stop()


async def test_a_track_row_that_cannot_be_written_leaves_the_event_loop_running(
    broker: Broker, exchange_name: str, config: AppConfig
) -> None:
    """A FIFO where the track file should be: opening it for writing blocks until someone reads it, as
    a stuck network mount would. The loop must keep taking quotes meanwhile, and no file operation of
    the tracker may run on the loop's thread."""
    tracks = Path(config.tracker.directory)
    fifo = make_fifo(tracks / "stuck.jsonl")
    readers: list[int] = []
    rescue = threading.Timer(20, lambda: readers.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)))
    tracker = SpreadTracker(config, NO_UNIVERSE, events_queue=f"{exchange_name}_tracker")
    legs = [("bybit", "BTC/USDT"), ("binance", "BTC/USDT")]
    loop_thread = threading.get_ident()
    try:
        with FileAudit(tracks) as audit:
            async with running(config):
                await tracker.start()
                try:
                    assert await eventually(lambda: all(leg in tracker.quotes for leg in legs), timeout=30)
                    rescue.start()  # unblocks a loop stuck in open(); the test then fails on `rescued`
                    await publish(broker, config, [opportunity("open", "stuck", now_ms())])
                    assert await eventually(lambda: audit.touched(fifo)), "the tracker never wrote a row"
                    rescued = bool(readers)
                    seen = tracker.quotes[legs[1]]
                    assert await eventually(lambda: tracker.quotes[legs[1]] is not seen)
                    assert not rescued, "the event loop stood still while a track row could not be written"

                    readers.append(await asyncio.to_thread(os.open, fifo, os.O_RDONLY | os.O_NONBLOCK))
                    row = orjson.loads(await read_line(readers[-1]))
                    assert row["buy_ask"] > 0 and row["sell_bid"] > 0
                finally:
                    await tracker.stop()
        assert audit.events and audit.on_thread(loop_thread) == [], audit.on_thread(loop_thread)
    finally:
        rescue.cancel()
        for reader in readers:
            os.close(reader)


def make_fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return path


async def read_line(descriptor: int, timeout: float = 15.0) -> bytes:
    received = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in received and time.monotonic() < deadline:
        with contextlib.suppress(BlockingIOError):  # a writer is connected but has not written yet
            received += os.read(descriptor, 65536)
        await asyncio.sleep(0.05)
    assert b"\n" in received, f"no row arrived through the FIFO: {received!r}"
    return received.split(b"\n", 1)[0]


async def test_discovery_writes_generated_off_the_event_loop(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    with FileAudit(tmp_path) as audit:
        written = await write_generated_off_loop(tmp_path / "generated", NO_UNIVERSE, None)
    assert tmp_path / "generated" / UNIVERSE_FILE in written
    assert any(event == "os.rename" for event, _, _ in audit.events)
    assert audit.on_thread(loop_thread) == [], "generated/ was written on the event loop's thread"
