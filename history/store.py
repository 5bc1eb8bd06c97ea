"""One storage interface, two backends: SQLite (history.sqlite_path, the default) and PostgreSQL
(history.postgres_dsn or HISTORY_POSTGRES_DSN). The recorder writes through it, the monitor and
scripts/history.py read through it; neither knows which backend answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Protocol

from history.rows import Batch, FundingChange, Outcome, SeriesBar, SignalEvent, SignalSample
from history.schema import BATCH_TABLES, DAY_MS
from models.config import HistoryConfig

TABLES = tuple(table.name for _, table in BATCH_TABLES)
"""Every table of the logical schema (schema_version aside), in the order a batch writes them."""
__all__ = ["DAY_MS", "TABLES", "HistoryStore", "SchemaTooNew", "StoreUnavailable", "open_store", "safe_dsn"]


class StoreUnavailable(Exception):
    """The store cannot take this write now (connection lost, server shutting down, disk full, read-only file).
    The batch is whole and can be written again later; the message says why, without credentials."""


class SchemaTooNew(Exception):
    """The database was migrated by a newer version of futures-scan than this one."""


class HistoryStore(Protocol):
    description: str
    """Which store, for logs: never a password."""

    async def open(self, migrate: bool = True) -> None:
        """Connect; apply pending migrations (migrate=False: only check the version, for readers).
        Raises SchemaTooNew, StoreUnavailable."""

    async def close(self) -> None: ...

    async def write(self, batch: Batch) -> None:
        """Upsert every row of the batch in one transaction: all or nothing. Raises StoreUnavailable."""

    async def maintain(self, now_ms: int) -> list[str]:
        """Retention (and, on PostgreSQL, daily partitions ahead and dropped); returns what it did, for the log."""

    async def signal_samples(self, symbol: str, buy: str, sell: str, from_ms: int, to_ms: int) -> list[SignalSample]:
        """watch_signal_raw rows of one direction with from_ms <= ts <= to_ms, oldest first."""

    async def funding_changes(self, exchange: str, symbol: str, from_ms: int, to_ms: int) -> list[FundingChange]:
        """funding_change rows of one perpetual with from_ms <= ts <= to_ms, oldest first, preceded by the last
        row before from_ms when there is one (the rate in force at from_ms)."""

    async def series(self, symbol: str, buy: str, sell: str, from_ms: int, to_ms: int) -> list[SeriesBar]:
        """watchlist_series_agg rows of one direction with from_ms <= ts <= to_ms, oldest first."""

    async def events(self, symbol: str | None, from_ms: int, to_ms: int, limit: int,
                     direction: tuple[str, str] | None = None) -> list[SignalEvent]:
        """Events that started within [from_ms, to_ms] (of one universe symbol, or all; of one (buy, sell)
        direction of it, or all), newest first."""

    async def event(self, event_id: str) -> SignalEvent | None: ...

    async def open_events(self) -> list[SignalEvent]:
        """Every event not closed yet (what a previous run of the recorder left open), oldest end first."""

    async def outcomes(self, event_id: str) -> list[Outcome]:
        """Its outcomes, shortest horizon first."""

    async def events_without_outcome(self, horizon_min: float, started_before_ms: int, limit: int) -> list[SignalEvent]:
        """Events that started before started_before_ms and have no outcome for this horizon yet, oldest first."""

    async def row_counts(self) -> dict[str, int]:
        """Rows per table, for statistics and tests."""

    def export_rows(self, table: str, from_ms: int, to_ms: int, chunk_rows: int = 10_000
                    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row of a table in the window (its time column: ts, or start_ts for events and outcomes), in
        chunks of column -> value (JSON columns as dicts), oldest first: scripts/history.py export."""


def open_store(config: HistoryConfig) -> HistoryStore:
    """The backend config.json (or HISTORY_POSTGRES_DSN, already merged into it) asks for; not yet opened.
    Imported here: the backends import this module, and asyncpg loads only for those who use PostgreSQL."""
    if config.postgres_dsn is not None:
        from history.postgres_store import PostgresStore  # noqa: PLC0415

        return PostgresStore(config.postgres_dsn.get_secret_value(), config)
    from history.sqlite_store import SQLiteStore  # noqa: PLC0415

    return SQLiteStore(config.sqlite_path, config)


def safe_dsn(dsn: str) -> str:
    """postgresql://user:***@host/db: what a log line may show of a DSN (the password runs to the last @, as
    libpq and asyncpg read an unencoded one)."""
    masked = re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)\S*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", masked)
