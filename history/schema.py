"""Which row class each table holds, its natural key and how its columns map: what both backends and the
exporter need to know about the logical schema beyond the SQL itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache
from operator import attrgetter
from typing import Any

from history.rows import FundingChange, Outcome, QuoteSample, SeriesBar, SignalEvent, SignalSample
from models.config import HistoryConfig

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Table:
    name: str
    row: type
    key: tuple[str, ...]
    time_column: str
    """What retention and export windows are measured on."""
    json_columns: tuple[str, ...] = ()
    derived: tuple[tuple[str, str], ...] = ()
    """(column, row property) stored for queries but not a field of the row."""
    bool_columns: tuple[str, ...] = ()
    """Stored as 0/1 where the backend has no boolean."""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(field.name for field in fields(self.row)) + tuple(column for column, _ in self.derived)

    @property
    def updated_columns(self) -> tuple[str, ...]:
        return tuple(column for column in self.columns if column not in self.key)

    def values(self, row: Any, dump_json: Callable[[Any], Any] | None = None) -> tuple[Any, ...]:
        """A row's column values in `columns` order; JSON columns through dump_json (None: as they are, for a
        driver that encodes JSON itself). An attrgetter made once per table: at 40,000 rows a second, building
        the tuple field by field costs a third of the write time."""
        values = _getter(self)(row)
        if dump_json is None or not self.json_columns:
            return values
        converted = list(values)
        for index in _json_indexes(self):
            converted[index] = dump_json(converted[index])
        return tuple(converted)

    def from_record(self, record: Any, load_json: Any) -> Any:
        """A row object from a database record (mapping by column name)."""
        data = {field.name: record[field.name] for field in fields(self.row)}
        for column in self.json_columns:
            value = data[column]
            data[column] = load_json(value) if isinstance(value, str | bytes) else value
        for column in self.bool_columns:
            data[column] = bool(data[column])
        return self.row(**data)


@cache
def _getter(table: Table) -> Callable[[Any], tuple[Any, ...]]:
    return attrgetter(*(field.name for field in fields(table.row)), *(prop for _, prop in table.derived))


@cache
def _json_indexes(table: Table) -> tuple[int, ...]:
    return tuple(index for index, column in enumerate(table.columns) if column in table.json_columns)


@cache
def on_conflict_sql(table: Table) -> str:
    """ON CONFLICT (natural key) DO UPDATE: the last write of a key wins, so a replay changes nothing. The same
    clause on SQLite and PostgreSQL."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in table.updated_columns)
    return f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"


def upsert_sql(table: Table, placeholder: Callable[[int], str]) -> str:
    """INSERT of one row with the backend's placeholders (? or $1, $2, ...) and on_conflict_sql."""
    values = ", ".join(placeholder(index) for index in range(1, len(table.columns) + 1))
    return f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({values}) {on_conflict_sql(table)}"


SIGNALS = Table("watch_signal_raw", SignalSample, ("symbol", "buy", "sell", "ts"), "ts", ("meta",),
                bool_columns=("triggered",))
QUOTES = Table("market_quote_sample", QuoteSample, ("exchange", "market", "symbol", "ts"), "ts")
FUNDING = Table("funding_change", FundingChange, ("exchange", "symbol", "ts"), "ts")
EVENTS = Table("watch_signal_event", SignalEvent, ("event_id",), "start_ts", ("features_agg",),
               (("duration_sec", "duration_sec"),))
OUTCOMES = Table("future_outcome", Outcome, ("event_id", "horizon_min"), "start_ts")
SERIES = Table("watchlist_series_agg", SeriesBar, ("symbol", "buy", "sell", "ts"), "ts")

def expired_rows(config: HistoryConfig, now_ms: int, placeholder: str, raw_tables: bool = True
                 ) -> list[tuple[str, str, int]]:
    """(table, WHERE clause with the backend's placeholder for the cutoff, cutoff) of the rows past their
    retention, outcomes before their events. PostgreSQL drops the raw tables' day partitions instead of deleting
    rows from them (raw_tables=False)."""
    raw_cutoff = now_ms - int(config.raw_retention_days * DAY_MS)
    event_cutoff = now_ms - int(config.event_retention_days * DAY_MS)
    series_cutoff = now_ms - int(config.series_retention_days * DAY_MS)
    raw = [(SIGNALS.name, f"ts < {placeholder}", raw_cutoff), (QUOTES.name, f"ts < {placeholder}", raw_cutoff)]
    return [
        *(raw if raw_tables else []),
        (OUTCOMES.name, f"event_id IN (SELECT event_id FROM {EVENTS.name} WHERE start_ts < {placeholder})",
         event_cutoff),
        (EVENTS.name, f"start_ts < {placeholder}", event_cutoff),
        (FUNDING.name, f"ts < {placeholder}", event_cutoff),
        (SERIES.name, f"ts < {placeholder}", series_cutoff),
    ]


BATCH_TABLES: tuple[tuple[str, Table], ...] = (
    ("signals", SIGNALS), ("quotes", QUOTES), ("funding", FUNDING), ("events", EVENTS), ("series", SERIES),
    ("outcomes", OUTCOMES),
)
"""(Batch attribute, table), in the order a batch is written."""
BY_NAME = {table.name: table for _, table in BATCH_TABLES}
