"""StoreWriter in front of a real PostgreSQL that goes away: killed server processes mid-stream, a connection cut
for a while (a TCP proxy), a stop while it is down, a refused batch, a spool that cannot be written. Every stream
is of numbered batches whose rows are all distinct, and one event rewritten by each: the rows count shows that
nothing was lost, the event's final state that the order was kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from history.postgres_store import PostgresStore
from history.rows import Batch
from history.writer import StoreWriter
from models.config import HistoryConfig
from tests.helpers import eventually
from tests.history_rows import DAY0, event, numbered_batch
from tests.postgres_db import dsn_for, reset_schema, terminate_backends
from tests.tcp_proxy import TcpProxy

ROWS = 20
"""Signals per numbered batch (each batch also rewrites the one event)."""
RETRY_SECONDS = 0.1


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[TcpProxy]:
    """Stands for the database server: down() cuts every connection and refuses new ones until up()."""
    await reset_schema(database)
    forwarder = TcpProxy("127.0.0.1", 5432)
    await forwarder.up()
    yield forwarder
    await forwarder.down()


def proxied_store(database: str, proxy: TcpProxy) -> PostgresStore:
    dsn = dsn_for(database, f"127.0.0.1:{proxy.port}").replace("postgres@", "postgres:hunter2@")
    return PostgresStore(dsn, HistoryConfig(), now_ms=lambda: DAY0)


@asynccontextmanager
async def writing(store: PostgresStore, spool: Path, max_backlog_rows: int = 1_000_000) -> AsyncIterator[StoreWriter]:
    """The store opened and a writer started in front of it, both stopped afterwards (the writer's stop first)."""
    await store.open()
    writer = StoreWriter(store, spool, max_backlog_rows=max_backlog_rows, retry_seconds=RETRY_SECONDS)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.stop()
        await store.close()


def idle(writer: StoreWriter, rows: int) -> bool:
    """Every submitted row is in the store and nothing waits in memory or in the spool."""
    return writer.written_rows == rows and writer.backlog_rows == 0 and not writer.spool.segments


async def assert_stream_stored(database: str, batches: range) -> None:
    """Exactly the signals of these batches are in the table, and the event's state is the last batch's."""
    connection = await asyncpg.connect(dsn_for(database))
    try:
        count, first, last = await connection.fetchrow("SELECT count(*), min(ts), max(ts) FROM watch_signal_raw")
        samples = await connection.fetchval("SELECT samples FROM watch_signal_event")
    finally:
        await connection.close()
    assert count == len(batches) * ROWS, "rows lost"
    assert (first, last) == (DAY0 + batches[0] * 60_000, DAY0 + batches[-1] * 60_000)
    assert samples == batches[-1], "an older state of the event was written last: batches out of order"


async def test_server_processes_killed_mid_stream_lose_and_double_nothing(database: str, tmp_path: Path) -> None:
    await reset_schema(database)
    store = PostgresStore(dsn_for(database), HistoryConfig(), now_ms=lambda: DAY0)
    async with writing(store, tmp_path / "spool") as writer:
        number = 0
        while writer.spooled_rows == 0 and number < 3000:  # kill every fifth batch until a write is cut
            number += 1
            writer.submit(numbered_batch(number, ROWS))
            if number % 5 == 0:
                await terminate_backends(database)
        for _ in range(20):  # and the stream goes on
            number += 1
            writer.submit(numbered_batch(number, ROWS))
        assert await eventually(lambda: idle(writer, number * (ROWS + 1)), timeout=30), writer.report()
    assert writer.spooled_rows > 0 and writer.replayed_rows > 0, writer.report()
    assert writer.dropped_rows == writer.rejected_rows == 0
    await assert_stream_stored(database, range(1, number + 1))


async def test_a_store_cut_off_for_a_while_gets_the_spool_replayed(
    database: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = proxied_store(database, proxy)
    async with writing(store, tmp_path / "spool") as writer:
        for number in range(1, 4):
            writer.submit(numbered_batch(number, ROWS))
        assert await eventually(lambda: idle(writer, 3 * (ROWS + 1)))
        await proxy.down()
        for number in range(4, 14):
            writer.submit(numbered_batch(number, ROWS))
        assert await eventually(lambda: writer.spooled_rows == 10 * (ROWS + 1)), writer.report()
        assert list((tmp_path / "spool").glob("spool-*.jsonl"))
        assert await eventually(lambda: writer.failed_writes >= 3)  # retried while down, quietly
        await proxy.up()
        assert await eventually(lambda: idle(writer, 13 * (ROWS + 1))), writer.report()
    assert writer.replayed_rows == writer.spooled_rows
    assert not list((tmp_path / "spool").iterdir())
    await assert_stream_stored(database, range(1, 14))
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and store.description in errors[0], errors
    assert any(f"replayed {writer.replayed_rows} rows" in record.getMessage() for record in caplog.records)
    assert not [record for record in caplog.records if "hunter2" in record.getMessage()]


async def test_a_stop_while_down_keeps_the_spool_for_the_next_start(
    database: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    store = proxied_store(database, proxy)
    await store.open()
    writer = StoreWriter(store, tmp_path / "spool", max_backlog_rows=1_000_000, retry_seconds=RETRY_SECONDS)
    await writer.start()
    await proxy.down()
    for number in range(1, 6):
        writer.submit(numbered_batch(number, ROWS))
    assert await eventually(lambda: writer.spooled_rows > 0)
    for number in range(6, 9):  # still in memory when stop() comes, with no time left to write anything
        writer.submit(numbered_batch(number, ROWS))
    await writer.stop(timeout=0)
    await store.close()
    assert writer.spooled_rows == 8 * (ROWS + 1) and writer.written_rows == 0
    assert list((tmp_path / "spool").glob("spool-*.jsonl"))

    restarted = PostgresStore(dsn_for(database), HistoryConfig(), now_ms=lambda: DAY0)
    async with writing(restarted, tmp_path / "spool") as replaying:
        replaying.submit(numbered_batch(9, ROWS))  # after the old spool, whatever the timing
        assert await eventually(lambda: idle(replaying, 9 * (ROWS + 1))), replaying.report()
    assert replaying.replayed_rows in (8 * (ROWS + 1), 9 * (ROWS + 1))  # batch 9 joins the spool while it replays
    await assert_stream_stored(database, range(1, 10))


async def test_a_batch_the_store_refuses_is_set_aside_and_the_rest_written(
    database: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    store = proxied_store(database, proxy)
    async with writing(store, tmp_path / "spool") as writer:
        refused = Batch(events=[event(DAY0, status="bogus")])  # type: ignore[arg-type]  # breaks the status CHECK
        writer.submit(numbered_batch(1, ROWS))
        writer.submit(refused)
        writer.submit(numbered_batch(2, ROWS))
        assert await eventually(lambda: idle(writer, 2 * (ROWS + 1))), writer.report()
    assert (writer.rejected_rows, writer.failed_writes, writer.spooled_rows) == (1, 1, 0)
    (kept,) = (tmp_path / "spool").glob("rejected-*.jsonl")
    assert b'"bogus"' in kept.read_bytes()
    await assert_stream_stored(database, range(1, 3))


async def test_an_unwritable_spool_keeps_the_newest_batches_in_memory(
    database: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    store = proxied_store(database, proxy)
    async with writing(store, tmp_path / "a_file" / "spool", max_backlog_rows=4 * (ROWS + 1)) as writer:
        await proxy.down()
        writer.submit(numbered_batch(1, ROWS))
        assert await eventually(lambda: writer.failed_writes > 0)
        for number in range(2, 11):
            writer.submit(numbered_batch(number, ROWS))
        assert (writer.backlog_rows, writer.dropped_rows) == (4 * (ROWS + 1), 6 * (ROWS + 1))
        await proxy.up()
        assert await eventually(lambda: writer.written_rows == 4 * (ROWS + 1) and writer.backlog_rows == 0)
    await assert_stream_stored(database, range(7, 11))
    spool_errors = [record for record in caplog.records if "cannot be" in record.getMessage()]
    assert len(spool_errors) == 2, [record.getMessage() for record in spool_errors]  # opened, then written


class GatedStore:
    """A store that takes its writes only while the gate is open: one slower than the feed."""

    description = "a gated test store"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.written: list[Batch] = []

    async def write(self, batch: Batch) -> None:
        await self.gate.wait()
        self.written.append(batch)


async def test_a_store_slower_than_the_feed_gets_the_backlog_through_the_spool_not_dropped(tmp_path: Path) -> None:
    store = GatedStore()
    writer = StoreWriter(store, tmp_path / "spool", max_backlog_rows=3 * (ROWS + 1),  # type: ignore[arg-type]
                         retry_seconds=RETRY_SECONDS)
    await writer.start()
    try:
        for number in range(1, 11):
            writer.submit(numbered_batch(number, ROWS))
        assert await eventually(lambda: writer.spooled_rows >= 8 * (ROWS + 1)), writer.report()
        store.gate.set()
        assert await eventually(lambda: idle(writer, 10 * (ROWS + 1))), writer.report()
    finally:
        await writer.stop()
    assert writer.dropped_rows == 0 and writer.replayed_rows == writer.spooled_rows, writer.report()
    assert [batch.signals[0].ts for batch in store.written] == [numbered_batch(n, ROWS).signals[0].ts
                                                                 for n in range(1, 11)]
