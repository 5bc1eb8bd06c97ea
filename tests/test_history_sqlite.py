"""The embedded backend on a real SQLite file: schema and migrations, upserts, retention, a disk budget."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from history.events import EventMerger
from history.migrations import latest_version
from history.rows import Batch
from history.sqlite_store import SQLiteStore
from history.store import DAY_MS, TABLES, SchemaTooNew, StoreUnavailable
from history.writer import StoreWriter
from models.config import HistoryConfig
from tests.helpers import eventually
from tests.history_rows import MINUTE, T0, funding, outcome, sample, series_bar


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "history.sqlite", HistoryConfig())
    await opened.open()
    yield opened
    await opened.close()


def one_of_each(day: int = 0) -> Batch:
    at = T0 + day * DAY_MS
    signal = replace(sample(0), ts=at)
    opened = EventMerger(1, 3 * MINUTE, MINUTE).add(signal)[0]
    return Batch(signals=[signal], funding=[funding(at, 0.0001)], events=[opened], series=[series_bar(at)],
                 outcomes=[outcome(opened, 30)])


async def test_a_new_file_gets_the_schema_and_its_version(tmp_path: Path, store: SQLiteStore):
    assert set(await store.row_counts()) == set(TABLES)
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(latest_version("sqlite"),)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path, store: SQLiteStore):
    await store.close()
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="schema version 99; this futures-scan knows up to 1"):
        await SQLiteStore(tmp_path / "history.sqlite", HistoryConfig()).open()


async def test_a_reader_never_creates_or_migrates(tmp_path: Path):
    with pytest.raises(StoreUnavailable, match=r"no history store at .*start python -m consumers\.recorder"):
        await SQLiteStore(tmp_path / "absent.sqlite", HistoryConfig()).open(migrate=False)
    assert not (tmp_path / "absent.sqlite").exists()
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    with pytest.raises(StoreUnavailable, match="schema version 0, not 1"):
        await SQLiteStore(tmp_path / "empty.sqlite", HistoryConfig()).open(migrate=False)


async def test_rows_read_back_as_written_and_a_replay_doubles_nothing(store: SQLiteStore):
    batch = one_of_each()
    await store.write(batch)
    await store.write(batch)
    assert await store.row_counts() == {"watch_signal_raw": 1, "market_quote_sample": 0, "funding_change": 1,
                                        "watch_signal_event": 1, "future_outcome": 1, "watchlist_series_agg": 1}
    signal = batch.signals[0]
    assert await store.signal_samples("BTC/USDT", "okx.spot", "binance", T0, T0) == [signal]
    assert await store.series("BTC/USDT", "binance", "okx", T0, T0 + 1) == batch.series
    assert await store.events("BTC/USDT", T0, T0, 5) == batch.events
    assert await store.event(batch.events[0].event_id) == batch.events[0]
    assert batch.events[0].status != "closed" and await store.open_events() == batch.events
    assert await store.outcomes(batch.events[0].event_id) == batch.outcomes
    assert await store.funding_changes("binance", "BTC/USDT:USDT", T0 + 1, T0 + 2) == batch.funding  # in force


async def test_an_event_written_again_keeps_its_last_state(store: SQLiteStore):
    event = one_of_each().events[0]
    await store.write(Batch(events=[event]))
    await store.write(Batch(events=[replace(event, status="closed", closed_at=T0 + 5, end_ts=T0 + MINUTE)]))
    stored = await store.event(event.event_id)
    assert stored is not None and (stored.status, stored.closed_at, stored.duration_sec) == ("closed", T0 + 5, 60.0)


async def test_retention_deletes_by_age_with_an_injected_clock(store: SQLiteStore):
    for day in range(10):
        await store.write(one_of_each(day))
    config = HistoryConfig()  # raw 14 days, events 180, series 7
    assert await store.maintain(T0 + 16 * DAY_MS) == [
        "deleted 2 rows from watch_signal_raw (retention)", "deleted 9 rows from watchlist_series_agg (retention)"]
    counts = await store.row_counts()
    assert (counts["watch_signal_raw"], counts["watchlist_series_agg"], counts["watch_signal_event"]) == (8, 1, 10)
    lines = await store.maintain(T0 + int(config.event_retention_days + 5) * DAY_MS)
    assert "deleted 5 rows from future_outcome (retention)" in lines
    assert (await store.row_counts())["watch_signal_event"] == 5


async def test_the_disk_budget_fills_like_a_disk_and_says_so(tmp_path: Path):
    budget = SQLiteStore(tmp_path / "small.sqlite", HistoryConfig(sqlite_max_size_mb=1))
    await budget.open()
    big = Batch(signals=[replace(sample(minute), meta={"pad": "x" * 2000}) for minute in range(400)])
    with pytest.raises(StoreUnavailable, match="database or disk is full"):
        await budget.write(big)
    assert (await budget.row_counts())["watch_signal_raw"] == 0  # all or nothing
    await budget.write(Batch(signals=big.signals[:10]))  # what fits still goes in
    await budget.close()


async def test_an_error_of_the_batch_or_the_schema_is_not_taken_for_an_outage(store: SQLiteStore):
    """An outage keeps rows in the spool until the store is back; this error never goes away by waiting, so the
    writer must get it as it is and set the batch aside."""
    with contextlib.closing(sqlite3.connect(store.path)) as other:  # someone broke the schema
        other.execute("DROP TABLE watchlist_series_agg")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await store.write(Batch(series=[series_bar(T0)]))


async def test_a_full_store_costs_one_error_and_no_row(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """The disk budget reached: the writer logs one ERROR, spools, and once retention freed space replays every
    batch in order; the process never stops taking batches."""
    store = SQLiteStore(tmp_path / "small.sqlite", HistoryConfig(sqlite_max_size_mb=1))
    await store.open()
    filler = [replace(sample(-40 * 24 * 60 + minute, symbol="FILL/USDT"), meta={"pad": "x" * 3000})
              for minute in range(400)]
    with contextlib.suppress(StoreUnavailable):
        for offset in range(0, len(filler), 20):
            await store.write(Batch(signals=filler[offset:offset + 20]))
    writer = StoreWriter(store, tmp_path / "spool", max_backlog_rows=100_000, retry_seconds=0.2)
    await writer.start()
    try:
        for minute in range(20):
            writer.submit(Batch(signals=[sample(minute, symbol=f"C{coin}/USDT") for coin in range(10)]))
        assert await eventually(lambda: writer.spooled_rows > 0 and writer.written_rows + writer.spooled_rows == 200)
        errors = [record for record in caplog.records if record.levelname == "ERROR"]
        assert len(errors) == 1 and "database or disk is full" in errors[0].getMessage()
        await store.maintain(T0 + DAY_MS)  # the filler is 40 days older than T0: retention frees its pages
        assert await eventually(lambda: writer.written_rows == 200 and not writer.spool.segments)
        assert (await store.row_counts())["watch_signal_raw"] == 200
        assert len([record for record in caplog.records if record.levelname == "ERROR"]) == 1
    finally:
        await writer.stop()
        await store.close()
