"""Track files: one JSON-lines file per opportunity under data/tracks/, and index.json listing them all.

A row is a sample of the pair: {"t": ms, "buy_ask", "sell_bid", "spread_pct", "net_pct", "buy_ts",
"sell_ts"}. A restart writes a {"t": ms, "gap_from": ms} row, so a reader sees where sampling stopped;
rows are only ever appended with a time after the last one, so nothing is written twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from utils.atomic_file import write_atomically

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


class TrackStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def load_index(self) -> dict[str, TrackEntry]:
        path = self.directory / INDEX_FILE
        if not path.exists():
            return {}
        entries = orjson.loads(path.read_bytes())
        return {
            raw["opportunity_id"]: TrackEntry(**{key: raw.get(key) for key in TrackEntry.__dataclass_fields__})
            for raw in entries
        }

    def save_index(self, entries: dict[str, TrackEntry]) -> None:
        listed = [{**asdict(entry), "duration_seconds": entry.duration_seconds} for entry in entries.values()]
        listed.sort(key=lambda entry: entry["opened_at"])
        write_atomically(self.directory / INDEX_FILE, orjson.dumps(listed, option=orjson.OPT_INDENT_2))

    def append(self, entry: TrackEntry, row: dict[str, Any]) -> None:
        with (self.directory / entry.file).open("ab") as file:
            file.write(orjson.dumps(row) + b"\n")

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
