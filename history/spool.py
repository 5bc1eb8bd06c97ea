"""Batches waiting on disk while the history store is down: a durable first-in first-out queue of files.

Segment files spool-<sequence>.jsonl under the spool directory hold one Batch per line (orjson, the rows'
dataclasses as they are), each line fsync'd before append() returns, so a crash or power cut loses at most the
batch being written. Segments are replayed oldest first and deleted only once all their batches are in the
store; a crash mid-replay replays the segment again, which the store's upserts make harmless. The methods
block on the disk: the writer calls them in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO

import orjson

from history.rows import Batch

log = logging.getLogger(__name__)

SEGMENT_BYTES = 16 * 1024 * 1024
"""A segment is closed at this size: replay holds one segment in memory and deletes it when done."""


class Spool:
    def __init__(self, directory: str | Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._segments: list[Path] = []
        """Every segment not yet replayed, oldest first; the last may be the tail."""
        self._tail: BinaryIO | None = None
        self._next_sequence = 1
        self._lock = threading.Lock()
        """stop() may spool while a cancelled writer task's append still runs in its thread."""

    def open(self) -> None:
        """Finds the segments a previous run left (replayed before anything new). Raises OSError."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(self.directory.glob("spool-*.jsonl"))
        if self._segments:
            self._next_sequence = int(self._segments[-1].stem.removeprefix("spool-")) + 1

    @property
    def segments(self) -> tuple[Path, ...]:
        return tuple(self._segments)

    def __bool__(self) -> bool:
        """True while batches wait in the spool."""
        return bool(self._segments)

    def append(self, batch: Batch) -> None:
        """Adds the batch after every other one, durably. Raises OSError (disk full, read-only), leaving the spool
        as it was."""
        with self._lock:
            self._append(batch)

    def _append(self, batch: Batch) -> None:
        if self._tail is None:
            self._start_segment()
        assert self._tail is not None
        line = orjson.dumps(batch) + b"\n"
        size = self._tail.tell()
        try:
            self._tail.write(line)
            self._tail.flush()
            os.fsync(self._tail.fileno())
        except OSError:
            self._undo_append(size)
            raise
        if self._tail.tell() >= self._segment_bytes:
            self._seal()

    def _start_segment(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"spool-{self._next_sequence:010d}.jsonl"
        self._tail = path.open("ab")
        self._next_sequence += 1
        self._segments.append(path)
        _fsync_directory(self.directory)

    def _undo_append(self, size: int) -> None:
        """Cuts a partly written line off the tail, so the file never holds half a batch (best effort: a torn last
        line left anyway is skipped on replay)."""
        assert self._tail is not None
        tail = self._tail
        path = self._segments[-1]
        self._tail = None
        with contextlib.suppress(OSError):
            tail.close()
        try:
            if size == 0:
                path.unlink()
                self._segments.pop()
            else:
                os.truncate(path, size)
        except OSError as exc:
            log.warning("history spool: could not cut a partly written batch off %s: %s", path, exc)

    def seal(self) -> None:
        """Closes the tail segment: the next append starts a new one (the writer seals before replaying it)."""
        with self._lock:
            self._seal()

    def _seal(self) -> None:
        if self._tail is not None:
            tail, self._tail = self._tail, None
            tail.close()

    def load_oldest(self) -> tuple[Path, list[Batch]]:
        """The oldest segment and its batches in order; a line that does not parse (torn by a crash) is skipped."""
        path = self._segments[0]
        if len(self._segments) == 1:
            self.seal()
        batches = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                batches.append(Batch.from_dict(orjson.loads(line)))
            except (orjson.JSONDecodeError, TypeError) as exc:
                log.warning("history spool: skipping unreadable line %d of %s: %s", number, path, exc)
        return path, batches

    def remove(self, path: Path) -> None:
        """Forgets a replayed segment and deletes its file (one left behind is replayed again next start)."""
        self._segments.remove(path)
        try:
            path.unlink()
        except OSError as exc:
            log.warning("history spool: could not delete replayed %s (replayed again at the next start): %s",
                        path, exc)

    def reject(self, batch: Batch) -> Path:
        """Keeps a batch the store refused (not an outage: a bug or a bad row) for a person to look at.
        Raises OSError."""
        path = self.directory / f"rejected-{int(time.time() * 1000)}.jsonl"
        with path.open("ab") as file:
            file.write(orjson.dumps(batch) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        return path

    def close(self) -> None:
        self.seal()


def _fsync_directory(directory: Path) -> None:
    """Makes a new file's name durable, not just its content."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
