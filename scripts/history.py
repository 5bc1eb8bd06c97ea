"""Read the history store (what python -m consumers.recorder wrote) for research, SQLite or PostgreSQL alike.

    python scripts/history.py export --table watch_signal_event --from 2025-12-01 --to 2025-12-08 --format csv
    python scripts/history.py export --table watch_signal_raw --from 2025-12-06T00:00:00Z \\
        --format parquet --output signals.parquet

The store is the one config.json's history section names (history.sqlite_path, or history.postgres_dsn /
HISTORY_POSTGRES_DSN), opened for reading only: exporting never migrates or changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import types
import typing
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from history.schema import BY_NAME, Table
from history.store import TABLES, SchemaTooNew, StoreUnavailable, open_store
from models.config import HistoryConfig
from monitor.history_api import TIME_FORMATS, epoch_ms
from monitor.state import now_ms
from utils.config_loader import ConfigError, config_path, load_config

FORMATS = ("csv", "parquet")
EXPORT_CHUNK_ROWS = 10_000
"""Rows read from the store at a time: an export of millions of rows holds only this many in memory."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/history.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    export = commands.add_parser(
        "export", help="write one table's rows within a time window as CSV or Parquet",
        description="Write the rows of one table whose time column (start_ts for watch_signal_event and "
                    "future_outcome, ts for the others) lies within [--from, --to], oldest first. JSON columns "
                    "(meta, features_agg) are written as JSON text; an empty CSV field is a null.")
    export.add_argument("--table", required=True, choices=TABLES, metavar="TABLE",
                        help=f"one of: {', '.join(TABLES)}")
    export.add_argument("--from", dest="from_time", required=True, metavar="TIME", help=f"start, {TIME_FORMATS}")
    export.add_argument("--to", dest="to_time", metavar="TIME", help="end (inclusive), the same forms; default: now")
    export.add_argument("--format", required=True, choices=FORMATS, help="csv (a header line first) or parquet")
    export.add_argument("--output", metavar="PATH",
                        help="the file to write; default: standard output (csv only: parquet needs a file)")
    export.add_argument("--config", default="config.json",
                        help="where the history section is read from (default: config.json, or config.example.json "
                             "while there is none)")
    args = parser.parse_args(argv)
    try:
        args.from_ms = epoch_ms(args.from_time)
    except ValueError:
        export.error(f"--from must be {TIME_FORMATS}, not {args.from_time!r}")
    try:
        args.to_ms = now_ms() if args.to_time is None else epoch_ms(args.to_time)
    except ValueError:
        export.error(f"--to must be {TIME_FORMATS}, not {args.to_time!r}")
    if args.from_ms > args.to_ms:
        export.error(f"--from ({args.from_time}) is after --to ({args.to_time or 'now'})")
    if args.format == "parquet" and args.output is None:
        export.error("--format parquet needs --output PATH (it is a binary file)")
    return args


def column_values(table: Table) -> Callable[[dict[str, Any]], list[Any]]:
    """A row dict -> its values in column order, JSON columns as JSON text (what CSV and Parquet hold)."""
    columns, json_columns = table.columns, set(table.json_columns)

    def values(row: dict[str, Any]) -> list[Any]:
        return [orjson.dumps(row[column]).decode() if column in json_columns else row[column] for column in columns]

    return values


async def write_csv(rows: AsyncIterator[list[dict[str, Any]]], table: Table, output: IO[str]) -> int:
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(table.columns)
    values = column_values(table)
    written = 0
    async for chunk in rows:
        writer.writerows(values(row) for row in chunk)
        written += len(chunk)
    return written


def arrow_schema(table: Table) -> Any:
    """Column types from the row dataclass's annotations: int64, float64, bool, string (text, labels, JSON)."""
    hints = typing.get_type_hints(table.row)
    for column, prop in table.derived:
        hints[column] = typing.get_type_hints(getattr(table.row, prop).fget)["return"]
    arrow_types = {int: pa.int64(), float: pa.float64(), bool: pa.bool_()}

    def arrow_type(hint: Any) -> Any:
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return arrow_types.get(hint, pa.string())

    return pa.schema([pa.field(column, arrow_type(hints[column])) for column in table.columns])


async def write_parquet(rows: AsyncIterator[list[dict[str, Any]]], table: Table, path: Path) -> int:
    schema = arrow_schema(table)
    values = column_values(table)
    written = 0
    with pq.ParquetWriter(path, schema) as writer:
        async for chunk in rows:
            columns = list(zip(*(values(row) for row in chunk), strict=True))
            writer.write_table(pa.Table.from_arrays([pa.array(column, field.type) for column, field
                                                     in zip(columns, schema, strict=True)], schema=schema))
            written += len(chunk)
    return written


async def export(config: HistoryConfig, args: argparse.Namespace) -> int:
    store = open_store(config)
    try:
        await store.open(migrate=False)
    except (StoreUnavailable, SchemaTooNew) as error:
        print(f"history store: {error}", file=sys.stderr)
        await store.close()
        return 1
    table = BY_NAME[args.table]
    try:
        rows = store.export_rows(args.table, args.from_ms, args.to_ms, EXPORT_CHUNK_ROWS)
        if args.format == "parquet":
            written = await write_parquet(rows, table, Path(args.output))
        elif args.output is None:
            written = await write_csv(rows, table, sys.stdout)
        else:
            with await asyncio.to_thread(open, args.output, "w", newline="", encoding="utf-8") as output:
                written = await write_csv(rows, table, output)
    except StoreUnavailable as error:
        print(f"history store: {error}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"exported {written} rows of {args.table} to {args.output or 'standard output'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(config_path(args.config, example_if_missing=True))
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    return asyncio.run(export(config.history, args))


if __name__ == "__main__":
    sys.exit(main())
