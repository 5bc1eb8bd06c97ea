"""Track files: one JSON-lines file per opportunity under data/tracks/, and index.json listing them.

A row is a sample of the pair: {"t": ms, "buy_ask", "sell_bid", "spread_pct", "net_pct", "buy_ts",
"sell_ts"}. A restart writes a {"t": ms, "gap_from": ms} row, so a reader sees where sampling stopped;
rows are only ever appended with a time after the last one, so nothing is written twice.

index.json lists every open opportunity and the most recently closed ones (tracker.index_max_entries):
it is rewritten whole on every change, so it must not grow with the tracker's lifetime. The track files
of entries that dropped out of it stay on disk.

These methods do blocking file I/O: the tracker runs them on its writer thread (utils.file_writer).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from utils.atomic_file import write_atomically
from utils.damaged_file import describe, set_aside

INDEX_FILE = "index.json"


@dataclass
class TrackEntry:
    opportunity_id: str
    symbol: str
    buy: str
    sell: str
    opened_at: int
    file: str
    closed_at: int | None = None
    reason: str | None = None
    peak_net_pct: float | None = None
    rows: int = 0

    @property
    def duration_seconds(self) -> float | None:
        return None if self.closed_at is None else (self.closed_at - self.opened_at) / 1000


INDEX_SCHEMA = TypeAdapter(list[TrackEntry])
"""index.json: a list of entries (the `duration_seconds` written beside each is derived, and ignored here)."""
log = logging.getLogger("spread_tracker")


class TrackStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def load_index(self) -> dict[str, TrackEntry]:
        """The index as last written; a damaged one is set aside with one ERROR and the tracker starts with an
        empty index (the track files stay, and open opportunities are tracked again as they arrive)."""
        path = self.directory / INDEX_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            entries = INDEX_SCHEMA.validate_json(raw)
        except ValidationError as error:
            kept = set_aside(path)
            log.error("%s is not a valid track index (%s); %s, starting with an empty index", path, describe(error),
                      kept)
            return {}
        return {entry.opportunity_id: entry for entry in entries}

    def save_index(self, entries: dict[str, TrackEntry]) -> None:
        self.write_index(index_payload(entries))

    def write_index(self, payload: bytes) -> None:
        write_atomically(self.directory / INDEX_FILE, payload)

    def append(self, entry: TrackEntry, row: dict[str, Any]) -> None:
        self.append_rows([(entry.file, orjson.dumps(row))])

    def append_rows(self, rows: list[tuple[str, bytes]]) -> None:
        """(file name, encoded row) pairs, each appended as one line."""
        for name, row in rows:
            with (self.directory / name).open("ab") as file:
                file.write(row + b"\n")

    def end_torn_line(self, entry: TrackEntry) -> None:
        """A crash mid-append can leave a last line without its newline; close it so new rows start clean."""
        path = self.directory / entry.file
        if path.exists() and path.stat().st_size:
            with path.open("rb+") as file:
                file.seek(-1, 2)
                if file.read(1) != b"\n":
                    file.write(b"\n")

    def last_time(self, entry: TrackEntry) -> int | None:
        """The time of the file's last complete row (a torn last line from a crash is ignored)."""
        path = self.directory / entry.file
        if not path.exists():
            return None
        last = None
        for line in path.read_bytes().splitlines():
            try:
                last = orjson.loads(line)["t"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
        return last

    def rows(self, entry: TrackEntry) -> list[dict[str, Any]]:
        path = self.directory / entry.file
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def index_payload(entries: dict[str, TrackEntry]) -> bytes:
    """index.json's bytes, taken on the event loop so the writer thread never reads entries being changed."""
    listed = [{**asdict(entry), "duration_seconds": entry.duration_seconds} for entry in entries.values()]
    listed.sort(key=lambda entry: entry["opened_at"])
    return orjson.dumps(listed, option=orjson.OPT_INDENT_2)


def beyond_limit(entries: dict[str, TrackEntry], keep_closed: int) -> list[str]:
    """Ids of the closed entries older than the `keep_closed` most recently closed; never an open one."""
    closed = sorted(
        (entry for entry in entries.values() if entry.closed_at is not None),
        key=lambda entry: (entry.closed_at, entry.opened_at, entry.opportunity_id),
    )
    return [entry.opportunity_id for entry in closed[: max(0, len(closed) - keep_closed)]]
