"""PostgresStore against a real PostgreSQL: schema and migrations, every table written and read back, idempotent
replays, daily partitions made and dropped, and an unreachable server reported as StoreUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from history.migrations import latest_version
from history.postgres_store import COPY_MIN_ROWS, PostgresStore
from history.rows import Batch
from history.sqlite_store import SQLiteStore
from history.store import DAY_MS, TABLES, SchemaTooNew, StoreUnavailable
from models.config import HistoryConfig
from tests.history_rows import DAY0, event, funding, outcome, quote, series_bar, signal
from tests.postgres_db import dsn_for, reset_schema
from tests.tcp_proxy import TcpProxy

HOUR = 3_600_000


@pytest.fixture
async def store(database: str) -> AsyncIterator[PostgresStore]:
    await reset_schema(database)
    opened = PostgresStore(dsn_for(database), HistoryConfig(), now_ms=lambda: DAY0 + 12 * HOUR)
    await opened.open()
    yield opened
    await opened.close()


def full_batch() -> Batch:
    early, late = event(DAY0 + HOUR), event(DAY0 + 3 * HOUR, symbol="ETH/USDT", status="closed")
    return Batch(
        signals=[signal(DAY0 + minute * 60_000) for minute in range(3)] + [signal(DAY0, buy="bybit")],
        quotes=[quote(DAY0), quote(DAY0 + 60_000)],
        funding=[funding(DAY0 - HOUR, 0.0001), funding(DAY0 + HOUR, 0.0002), funding(DAY0 + 2 * HOUR, 0.0003)],
        events=[early, late],
        outcomes=[outcome(early, 60), outcome(early, 30)],
        series=[series_bar(DAY0), series_bar(DAY0 + 300_000)],
    )


async def test_schema_is_created_with_daily_partitions_and_versioned(store: PostgresStore, database: str) -> None:
    connection = await asyncpg.connect(dsn_for(database))
    try:
        kinds = dict(await connection.fetch(
            "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1::text[])", list(TABLES)))
        version = await connection.fetchval("SELECT version FROM schema_version")
        versions = await connection.fetchval("SELECT count(*) FROM schema_version")
        raw_key = await connection.fetchval("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                            "WHERE conrelid = 'watch_signal_raw'::regclass AND contype = 'p'")
    finally:
        await connection.close()
    assert kinds == {name: "p" if name in ("watch_signal_raw", "market_quote_sample") else "r" for name in TABLES}
    assert (version, versions) == (latest_version("postgres"), 1)
    assert raw_key == "PRIMARY KEY (symbol, buy, sell, ts)"
    await store.open()  # a second open (restart) migrates nothing and fails nothing
    assert await store.row_counts() == dict.fromkeys(TABLES, 0)


async def test_a_database_of_a_newer_schema_is_refused(store: PostgresStore, database: str) -> None:
    await store.close()
    connection = await asyncpg.connect(dsn_for(database))
    try:
        await connection.execute("UPDATE schema_version SET version = $1", latest_version("postgres") + 1)
    finally:
        await connection.close()
    with_password = dsn_for(database).replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    for migrate in (True, False):
        newer = PostgresStore(with_password, HistoryConfig())
        with pytest.raises(SchemaTooNew) as refused:
            await newer.open(migrate=migrate)
        message = str(refused.value)
        assert f"version {latest_version('postgres') + 1}" in message
        assert f"up to {latest_version('postgres')}" in message
        assert "hunter2" not in message and "hunter2" not in newer.description


async def test_every_table_is_written_and_read_back(store: PostgresStore) -> None:
    batch = full_batch()
    await store.write(batch)
    assert await store.row_counts() == {
        "watch_signal_raw": 4, "market_quote_sample": 2, "funding_change": 3, "watch_signal_event": 2,
        "future_outcome": 2, "watchlist_series_agg": 2,
    }
    assert await store.signal_samples("BTC/USDT", "binance", "okx", DAY0, DAY0 + 60_000) == batch.signals[:2]
    assert await store.series("BTC/USDT", "binance", "okx", DAY0, DAY0 + DAY_MS) == batch.series
    # the rate in force at from_ms comes first
    assert await store.funding_changes("binance", "BTC/USDT:USDT", DAY0, DAY0 + HOUR) == batch.funding[:2]
    early, late = batch.events
    assert await store.events(None, DAY0, DAY0 + DAY_MS, limit=10) == [late, early]
    assert await store.events("BTC/USDT", DAY0, DAY0 + DAY_MS, limit=10) == [early]
    assert await store.events(None, DAY0, DAY0 + DAY_MS, limit=1) == [late]
    assert await store.events(None, DAY0, DAY0 + DAY_MS, 10, (early.buy, early.sell)) == [late, early]
    assert await store.events(None, DAY0, DAY0 + DAY_MS, 10, ("bybit", early.sell)) == []
    assert await store.event(late.event_id) == late
    assert (early.status, late.status) == ("new", "closed") and await store.open_events() == [early]
    assert await store.event("nope") is None
    assert await store.outcomes(early.event_id) == [batch.outcomes[1], batch.outcomes[0]]
    assert await store.events_without_outcome(30, DAY0 + DAY_MS, limit=10) == [late]
    assert await store.events_without_outcome(180, DAY0 + DAY_MS, limit=10) == [early, late]
    assert await store.events_without_outcome(180, DAY0 + 2 * HOUR, limit=10) == [early]
    raw = (await store.signal_samples("BTC/USDT", "binance", "okx", DAY0, DAY0))[0]
    assert raw.meta == {"vwap_buy": 100.6, "fully_fillable": True, "legs": [1, 2]} and raw.triggered is False


@pytest.mark.parametrize("rows", [3, COPY_MIN_ROWS + 10], ids=["pipelined", "copy"])
async def test_replayed_batches_change_nothing_and_the_last_state_wins(store: PostgresStore, rows: int) -> None:
    batch = full_batch()
    batch.signals = [signal(DAY0 + minute * 60_000) for minute in range(rows)]
    await store.write(batch)
    counts, events = await store.row_counts(), await store.events(None, DAY0, DAY0 + DAY_MS, limit=10)
    await store.write(batch)
    assert await store.row_counts() == counts
    assert await store.events(None, DAY0, DAY0 + DAY_MS, limit=10) == events
    changed = batch.signals[0]
    moved = signal(changed.ts, net=0.5)
    confirmed = event(DAY0 + HOUR, samples=7, status="confirmed")
    # the same key twice in one batch: the later row wins, as it would written one after the other
    await store.write(Batch(signals=[signal(changed.ts, net=0.4), *batch.signals[1:], moved], events=[confirmed]))
    assert await store.row_counts() == counts
    assert (await store.signal_samples("BTC/USDT", "binance", "okx", changed.ts, changed.ts)) == [moved]
    assert await store.event(confirmed.event_id) == confirmed


async def test_partitions_roll_over_and_retention_deletes_old_rows(database: str) -> None:
    await reset_schema(database)
    config = HistoryConfig(raw_retention_days=2, partitions_ahead_days=1, event_retention_days=4,
                           series_retention_days=1)
    store = PostgresStore(dsn_for(database), config)
    await store.open()
    try:
        assert sorted(await store.maintain(DAY0 + 12 * HOUR)) == sorted(
            f"created partition {table}_p{day}" for table in ("watch_signal_raw", "market_quote_sample")
            for day in ("20251107", "20251108", "20251109"))
        days = range(-1, 2)
        old_event = event(DAY0 - DAY_MS)
        await store.write(Batch(
            signals=[signal(DAY0 + day * DAY_MS) for day in days], quotes=[quote(DAY0 + day * DAY_MS) for day in days],
            funding=[funding(DAY0 - DAY_MS, 0.1), funding(DAY0, 0.2)], events=[old_event, event(DAY0)],
            outcomes=[outcome(old_event, 30), outcome(old_event, 60)],
            series=[series_bar(DAY0), series_bar(DAY0 + 18 * HOUR)],
        ))
        assert await store.maintain(DAY0 + DAY_MS + 12 * HOUR) == [
            "created partition watch_signal_raw_p20251110", "created partition market_quote_sample_p20251110",
            "deleted 1 rows from watchlist_series_agg (retention)",
        ]
        assert await store.maintain(DAY0 + DAY_MS + 12 * HOUR) == []  # nothing left to do that day
        # 2025-11-07 now lies wholly before now - 2 days; the event and the funding of 11-07 are 3.5 days old
        assert await store.maintain(DAY0 + 2 * DAY_MS + 12 * HOUR + 1) == [
            "created partition watch_signal_raw_p20251111", "dropped partition watch_signal_raw_p20251107",
            "created partition market_quote_sample_p20251111", "dropped partition market_quote_sample_p20251107",
            "deleted 1 rows from watchlist_series_agg (retention)",
        ]
        assert (await store.row_counts())["watch_signal_raw"] == 2
        # a day later 11-08 goes, and what happened on 11-07 is past the 4 days of events
        assert await store.maintain(DAY0 + 3 * DAY_MS + 1) == [
            "created partition watch_signal_raw_p20251112", "dropped partition watch_signal_raw_p20251108",
            "created partition market_quote_sample_p20251112", "dropped partition market_quote_sample_p20251108",
            "deleted 2 rows from future_outcome (retention)", "deleted 1 rows from watch_signal_event (retention)",
            "deleted 1 rows from funding_change (retention)",
        ]
        assert await store.row_counts() == {
            "watch_signal_raw": 1, "market_quote_sample": 1, "funding_change": 1, "watch_signal_event": 1,
            "future_outcome": 0, "watchlist_series_agg": 0,
        }
        assert [row.ts for row in await store.signal_samples("BTC/USDT", "binance", "okx", 0, 2**62)] == [
            DAY0 + DAY_MS]
    finally:
        await store.close()


async def test_a_day_without_partition_gets_one_and_expired_rows_are_skipped(store: PostgresStore) -> None:
    """The store's clock says DAY0 noon with 14 days of retention: a day ahead gets its partition on the write,
    a day 20 days back has none and is past retention, so its rows are counted, not written."""
    ahead, expired = DAY0 + 5 * DAY_MS, DAY0 - 20 * DAY_MS
    await store.write(Batch(signals=[signal(ahead), signal(expired), signal(expired + 1)],
                            quotes=[quote(ahead), quote(expired)]))
    assert store.skipped_rows == 3
    counts = await store.row_counts()
    assert (counts["watch_signal_raw"], counts["market_quote_sample"]) == (1, 1)
    assert await store.signal_samples("BTC/USDT", "binance", "okx", ahead, ahead) == [signal(ahead)]
    assert "created partition watch_signal_raw_p20251113" not in await store.maintain(DAY0 + 4 * DAY_MS)


async def test_an_unreachable_server_is_store_unavailable_and_the_next_write_reconnects(database: str) -> None:
    await reset_schema(database)
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.up()
    store = PostgresStore(dsn_for(database, f"127.0.0.1:{proxy.port}").replace("postgres@", "postgres:hunter2@"),
                          HistoryConfig(), now_ms=lambda: DAY0)
    try:
        await store.open()
        await store.write(Batch(signals=[signal(DAY0)]))
        await proxy.down()
        for _ in range(2):  # the cut connection, then a refused one
            with pytest.raises(StoreUnavailable) as unavailable:
                await store.write(Batch(signals=[signal(DAY0 + 60_000)]))
            assert "hunter2" not in str(unavailable.value)
        with pytest.raises(StoreUnavailable):
            await store.row_counts()
        await proxy.up()
        await store.write(Batch(signals=[signal(DAY0 + 60_000)]))
        assert (await store.row_counts())["watch_signal_raw"] == 2
    finally:
        await store.close()
        await proxy.down()


async def test_both_backends_export_the_same_rows(store: PostgresStore, tmp_path: Path) -> None:
    """One logical schema: the same batch read back through export_rows is the same on SQLite and PostgreSQL
    (types, JSON columns, the derived duration_sec), and PostgreSQL's chunks cover the window."""
    sqlite = SQLiteStore(tmp_path / "history.sqlite", HistoryConfig())
    await sqlite.open()
    try:
        batch = full_batch()
        await store.write(batch)
        await sqlite.write(batch)
        for table in TABLES:
            exported = {}
            for name, backend in (("sqlite", sqlite), ("postgres", store)):
                exported[name] = [row async for chunk in backend.export_rows(table, DAY0 - DAY_MS, DAY0 + DAY_MS, 2)
                                  for row in chunk]
            assert exported["postgres"] == exported["sqlite"], table
            assert exported["postgres"], table
    finally:
        await sqlite.close()


async def test_a_reader_of_a_database_never_migrated_is_told_to_start_the_recorder(database: str) -> None:
    await reset_schema(database)
    reader = PostgresStore(dsn_for(database), HistoryConfig())
    with pytest.raises(StoreUnavailable, match=r"schema version 0, not 1: start python -m consumers\.recorder"):
        await reader.open(migrate=False)
    await reader.close()
