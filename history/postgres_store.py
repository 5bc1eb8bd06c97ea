"""The PostgreSQL backend of the history store (asyncpg): for a store many processes read, or that outgrows a file.

watch_signal_raw and market_quote_sample are partitioned by UTC day on ts, so retention drops a whole day
(a catalog operation) instead of deleting millions of rows; maintain() makes the partitions ahead of time and a
write makes a missing one on demand. Every write is one transaction of upserts on the natural keys: replaying a
batch (the spool after an outage) changes nothing. Connection-level failures become StoreUnavailable, and the
pool reconnects on the next call, so the caller only has to try again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from operator import attrgetter
from typing import Any

import asyncpg
import orjson

from history.migrations import latest_version, migrations
from history.rows import Batch, FundingChange, Outcome, SeriesBar, SignalEvent, SignalSample
from history.schema import (
    BATCH_TABLES,
    BY_NAME,
    EVENTS,
    FUNDING,
    OUTCOMES,
    QUOTES,
    SERIES,
    SIGNALS,
    Table,
    expired_rows,
    on_conflict_sql,
    upsert_sql,
)
from history.store import DAY_MS, TABLES, SchemaTooNew, StoreUnavailable, safe_dsn
from models.config import HistoryConfig
from utils.statistics import now_ms as wall_now_ms

log = logging.getLogger(__name__)

OUTAGE_SQLSTATE_CLASSES = ("08", "53", "57", "58")
"""Connection exception, insufficient resources, operator intervention (57P01: pg_terminate_backend, shutdown),
system error: the server cannot take the write now, the batch itself is fine."""

RETRYABLE_SQLSTATES = ("40001", "40P01", "25006")
"""Serialization failure, deadlock, read-only transaction (a replica promoted or demoted under us): the same
write succeeds when tried again."""
MIGRATION_LOCK_KEY = 0x66757475  # any constant: serializes two processes migrating the same database at once
COPY_MIN_ROWS = 50
"""From this many rows of a table in a batch on, COPY beats pipelined INSERTs (see PostgresStore._upsert)."""
CONNECT_TIMEOUT_SECONDS = 10.0
COMMAND_TIMEOUT_SECONDS = 120.0


# How each table's statements look on PostgreSQL (the logical schema itself is history.schema's).


def _as_is(value: Any) -> Any:
    """JSONB goes through the connection's codec (_init_connection): dicts in, dicts out."""
    return value


@cache
def insert_sql(table: Table) -> str:
    return upsert_sql(table, lambda index: f"${index}")


def staging_table(table: Table) -> str:
    """A session temp table shaped like the table, which COPY fills and one INSERT ... SELECT empties."""
    return f"staging_{table.name}"


@cache
def create_staging_sql(table: Table) -> str:
    return f"CREATE TEMP TABLE IF NOT EXISTS {staging_table(table)} (LIKE {table.name}) ON COMMIT DELETE ROWS"


@cache
def merge_staging_sql(table: Table) -> str:
    columns = ", ".join(table.columns)
    return f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {staging_table(table)} {on_conflict_sql(table)}"


def records(table: Table, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows as tuples in column order; of rows sharing a key only the last is kept (last write wins, and one
    INSERT ... ON CONFLICT may not touch a row twice)."""
    key = attrgetter(*table.key)
    return list({key(row): table.values(row) for row in rows}.values())


PARTITIONED: tuple[Table, ...] = (SIGNALS, QUOTES)


def partition_name(table: str, day: int) -> str:
    """watch_signal_raw_p20261206 for the UTC day number `day` (ms // DAY_MS)."""
    return f"{table}_p{datetime.fromtimestamp(day * DAY_MS / 1000, UTC):%Y%m%d}"


def _partition_day(table: str, name: str) -> int | None:
    match = re.fullmatch(rf"{table}_p(\d{{8}})", name)
    if match is None:
        return None
    return int(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).timestamp() * 1000) // DAY_MS


def is_outage(exc: BaseException) -> bool:
    """True for failures of the connection or the server (try again later), False for a bad statement or row."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        return sqlstate[:2] in OUTAGE_SQLSTATE_CLASSES or sqlstate in RETRYABLE_SQLSTATES
    if isinstance(exc, ValueError):
        return False  # asyncpg's client-side DataError (an InterfaceError too): a value it cannot encode
    return isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError)


async def _init_connection(connection: asyncpg.Connection) -> None:
    """JSONB as dicts through orjson, in binary form (version byte 1, then the JSON text)."""
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary",
        encoder=lambda value: b"\x01" + orjson.dumps(value), decoder=lambda data: orjson.loads(data[1:]),
    )


class PostgresStore:
    """HistoryStore on PostgreSQL. `now_ms` is the clock that decides which rows are past retention on write
    (tests inject one; maintain() takes its time as an argument)."""

    def __init__(self, dsn: str, config: HistoryConfig, now_ms: Callable[[], int] = wall_now_ms,
                 pool_size: int = 2) -> None:
        self.description = "postgresql " + safe_dsn(dsn)
        self.skipped_rows = 0
        """Rows not written because their day is past raw_retention_days and has no partition any more."""
        self._dsn = dsn
        self._config = config
        self._now_ms = now_ms
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._migrate = True
        self._partition_days: dict[str, set[int]] = {}
        """Days with a partition, per partitioned table, as this process last saw the catalog."""

    # -- connection --------------------------------------------------------------------------------------------

    async def open(self, migrate: bool = True) -> None:
        self._migrate = migrate
        await self._connected()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_SECONDS)
            except Exception:
                pool.terminate()  # a server gone away does not answer the polite goodbye

    async def _connected(self) -> asyncpg.Pool:
        """The pool, made (and the schema checked or migrated) on the first call and again after a failed open."""
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await self._new_pool()
            return self._pool

    async def _new_pool(self) -> asyncpg.Pool:
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._pool_size, init=_init_connection,
                timeout=CONNECT_TIMEOUT_SECONDS, command_timeout=COMMAND_TIMEOUT_SECONDS,
            )
        except Exception as exc:
            raise self._unavailable(exc) from None
        try:
            async with pool.acquire() as connection:
                await self._migrate_or_check(connection)
                self._partition_days = await self._existing_partitions(connection)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, Exception) and is_outage(exc):
                raise self._unavailable(exc) from None
            raise
        return pool

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """Why, without the DSN's password (the caller names the store by its description)."""
        while isinstance(exc, asyncpg.InterfaceError) and exc.__context__ is not None and is_outage(exc.__context__):
            exc = exc.__context__  # "connection is closed" while leaving a transaction: the server's reason came first
        return StoreUnavailable(f"{type(exc).__name__}: {safe_dsn(str(exc).strip())}".rstrip(": "))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; outages raise StoreUnavailable (the pool replaces the dead connection next time)."""
        pool = await self._connected()
        try:
            async with pool.acquire() as connection:
                yield connection
        except Exception as exc:
            if is_outage(exc):
                raise self._unavailable(exc) from None
            raise

    # -- schema ------------------------------------------------------------------------------------------------

    async def _migrate_or_check(self, connection: asyncpg.Connection) -> None:
        known = latest_version("postgres")
        version = await self._schema_version(connection)
        if version > known:
            raise SchemaTooNew(
                f"{self.description} has history schema version {version}; this futures-scan knows versions up to "
                f"{known}: upgrade futures-scan (or point history.postgres_dsn at another database)"
            )
        if not self._migrate:
            if version < known:
                raise StoreUnavailable(f"{self.description} has history schema version {version}, not {known}: "
                                       "start python -m consumers.recorder once to migrate it")
            return
        for target, sql in migrations("postgres"):
            if target <= version:
                continue
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                if await self._schema_version(connection) >= target:
                    continue  # another process applied it while this one waited for the lock
                await connection.execute(sql)
                await connection.execute("DELETE FROM schema_version")
                await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", target)
            log.info("%s: applied history schema migration %03d", self.description, target)

    async def _schema_version(self, connection: asyncpg.Connection) -> int:
        if self._migrate:
            await connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        elif await connection.fetchval("SELECT to_regclass('schema_version')") is None:
            return 0
        return await connection.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")

    async def _existing_partitions(self, connection: asyncpg.Connection) -> dict[str, set[int]]:
        rows = await connection.fetch(
            "SELECT parent.relname AS parent, child.relname AS child FROM pg_inherits "
            "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE parent.relname = ANY($1::text[]) AND pg_table_is_visible(parent.oid)",
            [table.name for table in PARTITIONED],
        )
        found: dict[str, set[int]] = {table.name: set() for table in PARTITIONED}
        for row in rows:
            day = _partition_day(row["parent"], row["child"])
            if day is not None:
                found[row["parent"]].add(day)
        return found

    async def _create_partition(self, connection: asyncpg.Connection, table: str, day: int) -> bool:
        """Makes the day's partition; False when it was there already."""
        if day in self._partition_days[table]:
            return False
        name = partition_name(table, day)
        exists = await connection.fetchval("SELECT to_regclass($1)", name) is not None
        if not exists:
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
            )
        self._partition_days[table].add(day)
        return not exists

    # -- write -------------------------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        async with self._connection() as connection:
            try:
                await self._write(connection, batch)
            except asyncpg.CheckViolationError as exc:
                if "no partition" not in str(exc):
                    raise
                # a partition this process knew of was dropped by another one: learn the catalog, once more
                self._partition_days = await self._existing_partitions(connection)
                await self._write(connection, batch)

    async def _write(self, connection: asyncpg.Connection, batch: Batch) -> None:
        async with connection.transaction():
            for attribute, table in BATCH_TABLES:
                rows = getattr(batch, attribute)
                if table in PARTITIONED:
                    rows = await self._rows_with_partition(connection, table.name, rows)
                if rows:
                    await self._upsert(connection, table, records(table, rows))

    @staticmethod
    async def _upsert(connection: asyncpg.Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
        """Pipelined INSERTs for a few rows; COPY into a session temp table and one INSERT ... SELECT for many
        (measured on 2 cores, PostgreSQL 15: ~45,000 rows/s against ~20,000 from a few hundred rows on; at 20 rows
        pipelined INSERTs are twice as fast)."""
        if len(rows) < COPY_MIN_ROWS:
            await connection.executemany(insert_sql(table), rows)
            return
        await connection.execute(create_staging_sql(table))
        await connection.copy_records_to_table(staging_table(table), records=rows, columns=table.columns)
        await connection.execute(merge_staging_sql(table))

    async def _rows_with_partition(self, connection: asyncpg.Connection, table: str, rows: list[Any]) -> list[Any]:
        """The rows whose day has (or gets) a partition; rows of days already past retention are counted, not kept."""
        days = {row.ts // DAY_MS for row in rows}
        expired = {day for day in days - self._partition_days[table] if self._expired(day, self._now_ms())}
        for day in days - expired:
            await self._create_partition(connection, table, day)
        if not expired:
            return rows
        kept = [row for row in rows if row.ts // DAY_MS not in expired]
        if self.skipped_rows == 0:
            log.warning("%s: skipping %s rows older than history.raw_retention_days (%s days); further skips are "
                        "only counted", self.description, table, self._config.raw_retention_days)
        self.skipped_rows += len(rows) - len(kept)
        return kept

    def _expired(self, day: int, now_ms: int) -> bool:
        """The whole day is older than raw_retention_days before now."""
        return (day + 1) * DAY_MS <= now_ms - int(self._config.raw_retention_days * DAY_MS)

    # -- maintenance -------------------------------------------------------------------------------------------

    async def maintain(self, now_ms: int) -> list[str]:
        done: list[str] = []
        today = now_ms // DAY_MS
        async with self._connection() as connection:
            self._partition_days = await self._existing_partitions(connection)
            for table in PARTITIONED:
                for day in range(today - 1, today + self._config.partitions_ahead_days + 1):
                    if await self._create_partition(connection, table.name, day):
                        done.append(f"created partition {partition_name(table.name, day)}")
                for day in sorted(self._partition_days[table.name]):
                    if self._expired(day, now_ms):
                        await connection.execute(f"DROP TABLE IF EXISTS {partition_name(table.name, day)}")
                        self._partition_days[table.name].discard(day)
                        done.append(f"dropped partition {partition_name(table.name, day)}")
            done += await self._delete_old_rows(connection, now_ms)
        return done

    async def _delete_old_rows(self, connection: asyncpg.Connection, now_ms: int) -> list[str]:
        done = []
        async with connection.transaction():
            for table, condition, cutoff in expired_rows(self._config, now_ms, "$1", raw_tables=False):
                status = await connection.execute(f"DELETE FROM {table} WHERE {condition}", cutoff)
                deleted = int(status.rsplit(" ", 1)[-1])
                if deleted:
                    done.append(f"deleted {deleted} rows from {table} (retention)")
        return done

    # -- reads -------------------------------------------------------------------------------------------------

    async def _fetch(self, table: Table, where_and_order: str, *args: Any) -> list[Any]:
        async with self._connection() as connection:
            found = await connection.fetch(f"SELECT * FROM {table.name} {where_and_order}", *args)
        return [table.from_record(record, _as_is) for record in found]

    async def signal_samples(self, symbol: str, buy: str, sell: str, from_ms: int, to_ms: int) -> list[SignalSample]:
        return await self._fetch(SIGNALS, "WHERE symbol = $1 AND buy = $2 AND sell = $3 AND ts BETWEEN $4 AND $5 "
                                          "ORDER BY ts", symbol, buy, sell, from_ms, to_ms)

    async def funding_changes(self, exchange: str, symbol: str, from_ms: int, to_ms: int) -> list[FundingChange]:
        in_force = await self._fetch(FUNDING, "WHERE exchange = $1 AND symbol = $2 AND ts < $3 ORDER BY ts DESC "
                                              "LIMIT 1", exchange, symbol, from_ms)
        return in_force + await self._fetch(FUNDING, "WHERE exchange = $1 AND symbol = $2 AND ts BETWEEN $3 AND $4 "
                                                     "ORDER BY ts", exchange, symbol, from_ms, to_ms)

    async def series(self, symbol: str, buy: str, sell: str, from_ms: int, to_ms: int) -> list[SeriesBar]:
        return await self._fetch(SERIES, "WHERE symbol = $1 AND buy = $2 AND sell = $3 AND ts BETWEEN $4 AND $5 "
                                         "ORDER BY ts", symbol, buy, sell, from_ms, to_ms)

    async def events(self, symbol: str | None, from_ms: int, to_ms: int, limit: int,
                     direction: tuple[str, str] | None = None) -> list[SignalEvent]:
        buy, sell = direction or (None, None)
        return await self._fetch(EVENTS, "WHERE ($1::text IS NULL OR symbol = $1) AND start_ts BETWEEN $2 AND $3 "
                                         "AND ($5::text IS NULL OR (buy = $5 AND sell = $6)) "
                                         "ORDER BY start_ts DESC, event_id DESC LIMIT $4",
                                 symbol, from_ms, to_ms, limit, buy, sell)

    async def open_events(self) -> list[SignalEvent]:
        return await self._fetch(EVENTS, "WHERE status <> 'closed' ORDER BY end_ts, event_id")

    async def event(self, event_id: str) -> SignalEvent | None:
        found = await self._fetch(EVENTS, "WHERE event_id = $1", event_id)
        return found[0] if found else None

    async def outcomes(self, event_id: str) -> list[Outcome]:
        return await self._fetch(OUTCOMES, "WHERE event_id = $1 ORDER BY horizon_min", event_id)

    async def events_without_outcome(self, horizon_min: float, started_before_ms: int, limit: int) -> list[SignalEvent]:
        return await self._fetch(
            EVENTS, "WHERE start_ts < $2 AND NOT EXISTS (SELECT 1 FROM future_outcome WHERE future_outcome.event_id "
                    "= watch_signal_event.event_id AND future_outcome.horizon_min = $1) ORDER BY start_ts, event_id "
                    "LIMIT $3", horizon_min, started_before_ms, limit)

    async def export_rows(self, table: str, from_ms: int, to_ms: int, chunk_rows: int = 10_000
                          ) -> AsyncIterator[list[dict[str, Any]]]:
        spec = BY_NAME[table]
        sql = (f"SELECT {', '.join(spec.columns)} FROM {table} WHERE {spec.time_column} BETWEEN $1 AND $2 "
               f"ORDER BY {', '.join((spec.time_column, *spec.key))}")
        async with self._connection() as connection, connection.transaction(readonly=True):
            cursor = await connection.cursor(sql, from_ms, to_ms)
            while chunk := await cursor.fetch(chunk_rows):
                yield [dict(record) for record in chunk]

    async def row_counts(self) -> dict[str, int]:
        async with self._connection() as connection:
            counts = await connection.fetchrow(
                "SELECT " + ", ".join(f"(SELECT count(*) FROM {table}) AS {table}" for table in TABLES)
            )
        return dict(counts)
