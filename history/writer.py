"""The recorder's one path into the history store: batches are written in submission order by one task, and an
outage of the store (PostgreSQL down, SQLite's disk full) costs nothing but delay.

While the store is unavailable every batch goes to the spool on disk, in order, and keeps going there until the
spool has been replayed: the order is what makes replay correct, since events are upserts whose last state wins.
Neither submit() nor an outage ever blocks the caller; only a full disk under the spool as well loses data, and
then only the oldest batches beyond max_backlog_rows, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from pathlib import Path
from typing import Literal

from history.rows import Batch
from history.spool import Spool
from history.store import HistoryStore, StoreUnavailable

log = logging.getLogger(__name__)

WriteResult = Literal["written", "rejected", "unavailable"]


class StoreWriter:
    """Statistics (rows): written_rows (all the store took, replayed ones included), spooled_rows, replayed_rows,
    dropped_rows (lost: memory over max_backlog_rows while the spool failed too), rejected_rows (refused by the
    store for a reason other than an outage, kept in spool_dir/rejected-*.jsonl), backlog_rows (in memory now);
    failed_writes counts store writes that failed for any reason."""

    def __init__(self, store: HistoryStore, spool_dir: str | Path, max_backlog_rows: int,
                 retry_seconds: float = 5.0) -> None:
        self.store = store
        self.spool = Spool(spool_dir)
        self.max_backlog_rows = max_backlog_rows
        self.retry_seconds = retry_seconds
        self.written_rows = 0
        self.spooled_rows = 0
        self.replayed_rows = 0
        self.dropped_rows = 0
        self.rejected_rows = 0
        self.failed_writes = 0
        self._memory: deque[Batch] = deque()
        """Submitted batches neither written nor spooled, oldest first; always newer than every spooled batch."""
        self._memory_rows = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retry_store_at: float | None = None
        """Set while the store fails: it is not tried again before this (monotonic) time."""
        self._down_since: float | None = None
        """When the current outage began (its one ERROR is logged then)."""
        self._recovering_since: float | None = None
        """Set from an outage (or a previous run's spool) until the spool is replayed: new batches go to the spool."""
        self._replayed_at_recovery = 0
        self._overflowing = False
        """Recovering because memory passed max_backlog_rows, not because the store failed."""
        self._retry_spool_at: float | None = None
        """Set while the spool cannot be written: memory holds the batches, the spool is tried again then."""
        self._busy: Batch | None = None
        """The batch in memory being written or spooled right now: never the one dropped."""
        self._dropping = False
        self._replaying: tuple[Path, list[Batch]] | None = None
        """The spool segment being replayed and its batches not yet written."""

    @property
    def backlog_rows(self) -> int:
        return self._memory_rows

    def report(self) -> str:
        return (f"history writer: written {self.written_rows} rows (replayed {self.replayed_rows}), spooled "
                f"{self.spooled_rows}, dropped {self.dropped_rows}, rejected {self.rejected_rows}, backlog "
                f"{self.backlog_rows}, failed writes {self.failed_writes}, spool files {len(self.spool.segments)}")

    # -- the caller's side -------------------------------------------------------------------------------------

    def submit(self, batch: Batch) -> None:
        """Queues the batch; never blocks, never raises."""
        if not len(batch):
            return
        self._memory.append(batch)
        self._memory_rows += len(batch)
        if self._memory_rows > self.max_backlog_rows:
            if self._retry_spool_at is None:
                self._overflow_to_spool()
            else:
                self._drop_over_backlog()
        self._wakeup.set()

    async def start(self) -> None:
        """Starts the writing task; a spool a previous run left is replayed before any batch submitted now."""
        try:
            await asyncio.to_thread(self.spool.open)
        except OSError as exc:
            log.error("history spool %s cannot be opened (%s): batches wait in memory while the store is down",
                      self.spool.directory, exc)
        if self.spool:
            log.info("history writer: replaying %d spool file(s) left in %s", len(self.spool.segments),
                     self.spool.directory)
            self._begin_recovery()
        self._task = asyncio.create_task(self._run(), name="history-writer")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (the recorder's shutdown budget)
        """Writes what the store takes within timeout; the rest goes to the spool (replayed by the next start)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._memory:
            self._retry_spool_at = None
            await self._spool_memory()
        if self._memory:
            log.error("history writer: %d rows neither written nor spooled at stop are lost", self._memory_rows)
            self.dropped_rows += self._memory_rows
            self._memory.clear()
            self._memory_rows = 0
        self.spool.close()

    # -- the writing task --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if not await self._step():
                    return
            except Exception:
                log.exception("history writer: unexpected error; going on in %s s", self.retry_seconds)
                await asyncio.sleep(self.retry_seconds)

    async def _step(self) -> bool:
        """One unit of work; False when stopping with nothing left that the store can take."""
        if self._recovering_since is not None:
            await self._spool_memory()
        if self._retry_store_at is not None:
            if self._stopping:
                return False
            if time.monotonic() < self._retry_store_at:
                await self._wait(self._retry_store_at)
                return True
        if self._replaying is not None or self.spool:
            await self._replay_next()
            return True
        if self._recovering_since is not None and self._retry_store_at is None:
            self._end_recovery()
        if self._memory:
            batch = self._busy = self._memory[0]
            try:
                result = await self._write(batch)
            finally:
                self._busy = None
            if result != "unavailable":
                self._pop_memory(batch)
            return True
        if self._stopping:
            return False
        await self._wait(None)
        return True

    async def _wait(self, until: float | None) -> None:
        """Until a batch is submitted, stop() is called, or `until` (monotonic) passes."""
        self._wakeup.clear()
        timeout = None if until is None else max(0.0, until - time.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow stop()'s cancel
                await self._wakeup.wait()

    async def _write(self, batch: Batch) -> WriteResult:
        """Writes one batch; "unavailable": it stays where it is, to be tried again."""
        try:
            await self.store.write(batch)
        except StoreUnavailable as exc:
            self.failed_writes += 1
            self._store_down(exc)
            return "unavailable"
        except Exception as exc:
            self.failed_writes += 1
            await self._reject(batch, exc)
            return "rejected"
        self.written_rows += len(batch)
        self._retry_store_at = None
        return "written"

    def _store_down(self, exc: StoreUnavailable) -> None:
        self._retry_store_at = time.monotonic() + self.retry_seconds
        if self._down_since is not None:
            log.debug("history store %s still unavailable: %s", self.store.description, exc)
            return
        self._down_since = time.monotonic()
        log.error("history store %s unavailable (%s): spooling batches to %s, retrying every %s s",
                  self.store.description, exc, self.spool.directory, self.retry_seconds)
        if self._recovering_since is None:
            self._begin_recovery()

    def _begin_recovery(self) -> None:
        self._recovering_since = time.monotonic()
        self._replayed_at_recovery = self.replayed_rows

    def _end_recovery(self) -> None:
        replayed = self.replayed_rows - self._replayed_at_recovery
        if self._down_since is not None:
            log.info("history store %s back after %.0f s: replayed %d rows", self.store.description,
                     time.monotonic() - self._down_since, replayed)
        elif self._overflowing:
            log.info("history store %s caught up: replayed %d spooled rows", self.store.description, replayed)
        else:
            log.info("history writer: replayed %d rows a previous run left in the spool", replayed)
        self._down_since = self._recovering_since = None
        self._overflowing = False

    async def _reject(self, batch: Batch, exc: Exception) -> None:
        """A batch the store refuses for another reason than an outage must not hold up the ones after it."""
        self.rejected_rows += len(batch)
        try:
            path = await asyncio.to_thread(self.spool.reject, batch)
        except OSError as spool_exc:
            log.error("history store %s refused a batch of %d rows (%r), and it could not be kept either (%s)",
                      self.store.description, len(batch), exc, spool_exc, exc_info=exc)
            return
        log.error("history store %s refused a batch of %d rows (%r); kept in %s", self.store.description,
                  len(batch), exc, path, exc_info=exc)

    async def _replay_next(self) -> None:
        """Writes the spool's oldest batch; a segment file goes once all its batches are written."""
        if self._replaying is None:
            path, batches = await asyncio.to_thread(self.spool.load_oldest)
            self._replaying = (path, batches)
        path, batches = self._replaying
        if batches:
            result = await self._write(batches[0])
            if result == "unavailable":
                return
            batch = batches.pop(0)
            if result == "written":
                self.replayed_rows += len(batch)
        if not batches:
            await asyncio.to_thread(self.spool.remove, path)
            self._replaying = None

    # -- memory and spool --------------------------------------------------------------------------------------

    async def _spool_memory(self) -> None:
        """Moves the batches in memory to the end of the spool, unless the spool failed and is not due again."""
        if self._retry_spool_at is not None and time.monotonic() < self._retry_spool_at:
            return
        while self._memory:
            batch = self._busy = self._memory[0]
            try:
                await self._append_to_spool(batch)
            except OSError as exc:
                self._busy = None
                if self._retry_spool_at is None:
                    log.error("history spool %s cannot be written (%s): keeping up to %d rows in memory, the oldest "
                              "dropped beyond", self.spool.directory, exc, self.max_backlog_rows)
                self._retry_spool_at = time.monotonic() + self.retry_seconds
                return
        if self._retry_spool_at is not None:
            log.info("history spool %s writable again", self.spool.directory)
            self._retry_spool_at = None

    async def _append_to_spool(self, batch: Batch) -> None:
        """Moves the batch from memory to the spool. Cancelled (stop()'s time is up), it still waits for the append
        thread, which goes on regardless: a batch is never left both in the spool and in memory for stop() to spool."""
        append = asyncio.ensure_future(asyncio.to_thread(self.spool.append, batch))
        try:
            await asyncio.shield(append)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                await append
                self._spooled(batch)
            raise
        self._spooled(batch)

    def _spooled(self, batch: Batch) -> None:
        self.spooled_rows += len(batch)
        self._pop_memory(batch)

    def _pop_memory(self, batch: Batch) -> None:
        """Removes the written or spooled batch: the head, since only this task takes batches out and the busy one
        is never dropped."""
        self._memory.popleft()
        self._memory_rows -= len(batch)
        self._busy = None
        if not self._memory:
            self._dropping = False

    def _overflow_to_spool(self) -> None:
        """A store slower than the feed: the backlog goes to the spool (and is replayed in order from there)."""
        if self._recovering_since is not None:
            return
        log.warning("history store %s is slower than the feed (over history.max_backlog_rows = %d rows in memory): "
                    "spooling to %s until it catches up", self.store.description, self.max_backlog_rows,
                    self.spool.directory)
        self._overflowing = True
        self._begin_recovery()

    def _drop_over_backlog(self) -> None:
        """Drops the oldest batches beyond max_backlog_rows, sparing the one being written and the newest."""
        first = 1 if self._memory and self._memory[0] is self._busy else 0
        while self._memory_rows > self.max_backlog_rows and len(self._memory) > first + 1:
            dropped = self._memory[first]
            del self._memory[first]
            self._memory_rows -= len(dropped)
            self.dropped_rows += len(dropped)
            if not self._dropping:
                self._dropping = True
                log.error("history writer: over history.max_backlog_rows (%d) in memory: dropping the oldest "
                          "batches (counted in dropped_rows)", self.max_backlog_rows)
