"""The embedded backend: one SQLite file in WAL mode, nothing to install.

Every statement runs on one thread of its own (sqlite3 blocks), so the recorder's event loop never waits
on the disk; WAL lets the monitor read while the recorder writes. A full disk, the history.sqlite_max_size_mb
budget or a read-only file surface as StoreUnavailable, which the writer answers by keeping the batch."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from history.migrations import latest_version, migrations
from history.rows import Batch, FundingChange, Outcome, SeriesBar, SignalEvent, SignalSample
from history.schema import (
    BATCH_TABLES,
    BY_NAME,
    EVENTS,
    FUNDING,
    OUTCOMES,
    SERIES,
    SIGNALS,
    Table,
    expired_rows,
    upsert_sql,
)
from history.store import TABLES, SchemaTooNew, StoreUnavailable
from models.config import HistoryConfig

T = TypeVar("T")
OUTAGE_CODES = frozenset((sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY,
                          sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CORRUPT,
                          sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PROTOCOL))
"""The file or its disk failing (full, read-only, locked, unreadable): the rows wait in the spool. Any other
error (no such table, a bad value) is the batch's or the code's, and the batch is set aside instead."""


def _dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


class SQLiteStore:
    def __init__(self, path: str | Path, config: HistoryConfig) -> None:
        self.path = Path(path)
        self.config = config
        self.description = f"sqlite {self.path}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        self._upserts = {table.name: upsert_sql(table, lambda _: "?") for _, table in BATCH_TABLES}

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    # --- life ------------------------------------------------------------------------------------

    async def open(self, migrate: bool = True) -> None:
        await self._run(self._open, migrate)

    def _open(self, migrate: bool) -> None:
        if self._connection is not None:
            return
        try:
            if migrate:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, isolation_level=None)
            elif not self.path.exists():
                raise StoreUnavailable(f"no history store at {self.path}: start python -m consumers.recorder")
            else:
                connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA busy_timeout = 10000")
            if migrate:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                if self.config.sqlite_max_size_mb is not None:
                    page_bytes = connection.execute("PRAGMA page_size").fetchone()[0]
                    pages = self.config.sqlite_max_size_mb * 1024 * 1024 // page_bytes
                    connection.execute(f"PRAGMA max_page_count = {int(pages)}")
            self._check_version(connection, migrate)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.description}: {error}") from error
        self._connection = connection

    def _check_version(self, connection: sqlite3.Connection, migrate: bool) -> None:
        known = latest_version("sqlite")
        has_table = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        version = connection.execute("SELECT max(version) FROM schema_version").fetchone()[0] if has_table else 0
        version = version or 0
        if version > known:
            raise SchemaTooNew(f"{self.description} has schema version {version}; this futures-scan knows up to "
                               f"{known}: upgrade futures-scan (or point history.sqlite_path elsewhere)")
        if version == known:
            return
        if not migrate:
            raise StoreUnavailable(f"{self.description} has schema version {version}, not {known}: "
                                   "start python -m consumers.recorder once to migrate it")
        for number, sql in migrations("sqlite"):
            if number <= version:
                continue
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(sql):
                    connection.execute(statement)
                connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                connection.execute("DELETE FROM schema_version")
                connection.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        """Idempotent; a closed store cannot be opened again (make a new one)."""
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await self._run(close)
        self._executor.shutdown(wait=True)

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreUnavailable(f"{self.description} is not open")
        return self._connection

    # --- writes ----------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        await self._run(self._write, batch)

    def _write(self, batch: Batch) -> None:
        db = self._db()
        with self._outages():
            db.execute("BEGIN IMMEDIATE")
            try:
                for attribute, table in BATCH_TABLES:
                    rows = getattr(batch, attribute)
                    if rows:
                        db.executemany(self._upserts[table.name], [table.values(row, _dump_json) for row in rows])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _outages(self) -> Iterator[None]:
        """An outage of the file (see OUTAGE_CODES) becomes StoreUnavailable; other errors pass unchanged."""
        try:
            yield
        except sqlite3.OperationalError as error:
            code = getattr(error, "sqlite_errorcode", None)
            if code is None or code & 0xFF in OUTAGE_CODES:  # an extended code (SQLITE_IOERR_WRITE) holds the primary
                raise StoreUnavailable(f"{self.description}: {error}") from error
            raise

    async def maintain(self, now_ms: int) -> list[str]:
        return await self._run(self._maintain, now_ms)

    def _maintain(self, now_ms: int) -> list[str]:
        done = []
        db = self._db()
        with self._outages():
            for table, condition, cutoff in expired_rows(self.config, now_ms, "?"):
                deleted = db.execute(f"DELETE FROM {table} WHERE {condition}", (cutoff,)).rowcount
                if deleted:
                    done.append(f"deleted {deleted} rows from {table} (retention)")
        return done

    # --- reads -----------------------------------------------------------------------------------

    async def _select(self, table: Table, where: str, args: tuple[Any, ...], order: str, limit: int | None = None
                      ) -> list[Any]:
        sql = f"SELECT * FROM {table.name} WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"

        def select() -> list[Any]:
            with self._outages():
                return [table.from_record(record, orjson.loads) for record in self._db().execute(sql, args)]

        return await self._run(select)

    async def signal_samples(self, symbol: str, buy: str, sell: str, from_ms: int, to_ms: int) -> list[SignalSample]:
        return await self._select(SIGNALS, "symbol = ? AND buy = ? AND sell = ? AND ts BETWEEN ? AND ?",
                                  (symbol, buy, sell, from_ms, to_ms), "ts")

    async def funding_changes(self, exchange: str, symbol: str, from_ms: int, to_ms: int) -> list[FundingChange]:
        before = await self._select(FUNDING, "exchange = ? AND symbol = ? AND ts < ?", (exchange, symbol, from_ms),
                                    "ts DESC", 1)
        within = await self._select(FUNDING, "exchange = ? AND symbol = ? AND ts BETWEEN ? AND ?",
                                    (exchange, symbol, from_ms, to_ms), "ts")
        return before + within

    async def series(self, symbol: str, buy: str, sell: str, from_ms: int, to_ms: int) -> list[SeriesBar]:
        return await self._select(SERIES, "symbol = ? AND buy = ? AND sell = ? AND ts BETWEEN ? AND ?",
                                  (symbol, buy, sell, from_ms, to_ms), "ts")

    async def events(self, symbol: str | None, from_ms: int, to_ms: int, limit: int,
                     direction: tuple[str, str] | None = None) -> list[SignalEvent]:
        where, args = "start_ts BETWEEN ? AND ?", (from_ms, to_ms)
        if symbol is not None:
            where, args = f"symbol = ? AND {where}", (symbol, *args)
        if direction is not None:
            where, args = f"buy = ? AND sell = ? AND {where}", (*direction, *args)
        return await self._select(EVENTS, where, args, "start_ts DESC, event_id DESC", limit)

    async def open_events(self) -> list[SignalEvent]:
        return await self._select(EVENTS, "status <> 'closed'", (), "end_ts, event_id")

    async def event(self, event_id: str) -> SignalEvent | None:
        found = await self._select(EVENTS, "event_id = ?", (event_id,), "event_id")
        return found[0] if found else None

    async def outcomes(self, event_id: str) -> list[Outcome]:
        return await self._select(OUTCOMES, "event_id = ?", (event_id,), "horizon_min")

    async def events_without_outcome(self, horizon_min: float, started_before_ms: int, limit: int
                                     ) -> list[SignalEvent]:
        return await self._select(
            EVENTS, "start_ts < ? AND NOT EXISTS (SELECT 1 FROM future_outcome o WHERE o.event_id = "
            "watch_signal_event.event_id AND o.horizon_min = ?)", (started_before_ms, horizon_min), "start_ts", limit)

    async def row_counts(self) -> dict[str, int]:
        def count() -> dict[str, int]:
            db = self._db()
            return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}

        return await self._run(count)

    async def export_rows(self, table: str, from_ms: int, to_ms: int, chunk_rows: int = 10_000
                          ) -> AsyncIterator[list[dict[str, Any]]]:
        spec = BY_NAME[table]
        sql = (f"SELECT {', '.join(spec.columns)} FROM {table} WHERE {spec.time_column} BETWEEN ? AND ? "
               f"ORDER BY {', '.join((spec.time_column, *spec.key))}")
        cursor = await self._run(lambda: self._db().execute(sql, (from_ms, to_ms)))

        def fetch() -> list[dict[str, Any]]:
            """On the store's thread, like every use of its connection and this cursor."""
            rows = [dict(record) for record in cursor.fetchmany(chunk_rows)]
            for row in rows:
                for column in spec.json_columns:
                    row[column] = orjson.loads(row[column])
                for column in spec.bool_columns:
                    row[column] = bool(row[column])
            return rows

        try:
            while chunk := await self._run(fetch):
                yield chunk
        finally:
            await self._run(cursor.close)


def _statements(script: str) -> list[str]:
    """A migration file's statements (no semicolons inside them in these files; comments dropped)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
