"""`python main.py --workers N`: N shard processes under one parent, so one host's cores share one feed.

The parent does no market-data work. It starts each child in its own session (a terminal's Ctrl+C reaches the
parent only, which then stops every child once, with SIGTERM, and waits for their final statistics), restarts a
child that died with a growing pause (reset once a child has run for STABLE_SECONDS), and stops everything when a
child exits with EXIT_CONFIG (a configuration or exchange-setting error every other child would hit as well).
Children get SIGTERM from the kernel if the parent itself dies (utils/child_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from utils.child_process import die_with_parent

log = logging.getLogger("workers")

EXIT_CONFIG = 2
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STABLE_SECONDS = 60.0
"""A child that ran this long before dying starts its backoff from the shortest pause again."""
STOP_GRACE_SECONDS = 30.0
"""A child not gone this long after SIGTERM is killed (its final statistics are then missing)."""


@dataclass
class Worker:
    name: str
    command: list[str]
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    exit_codes: list[int] = field(default_factory=list)


class WorkerPool:
    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = list(workers)
        self._stopping = asyncio.Event()
        self.exit_code = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        """Until stop() (or a child's EXIT_CONFIG); then every child is stopped. Returns the parent's exit code."""
        supervisors = [asyncio.create_task(self._supervise(worker), name=worker.name) for worker in self.workers]
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            await asyncio.gather(*(self._terminate(worker) for worker in self.workers))
            await asyncio.gather(*supervisors, return_exceptions=True)
        return self.exit_code

    async def _supervise(self, worker: Worker) -> None:
        while not self._stopping.is_set():
            await self._start(worker)
            assert worker.process is not None
            if self._stopping.is_set():  # stopped while this one was being spawned
                await self._terminate(worker)
            code = await worker.process.wait()
            worker.exit_codes.append(code)
            if self._stopping.is_set():
                return
            ran = time.monotonic() - worker.started_at
            if code == EXIT_CONFIG:
                log.error("%s exited with code %d (a configuration error, see its log): stopping every worker",
                          worker.name, code)
                self.exit_code = EXIT_CONFIG
                self._stopping.set()
                return
            worker.failures_in_a_row = 1 if ran >= STABLE_SECONDS else worker.failures_in_a_row + 1
            delay = RESTART_DELAYS[min(worker.failures_in_a_row - 1, len(RESTART_DELAYS) - 1)]
            log.error("%s (pid %d) exited with code %d after %.0f s; restarting it in %.0f s",
                      worker.name, worker.process.pid, code, ran, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            worker.restarts += 1

    async def _start(self, worker: Worker) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            *worker.command, stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent(), start_new_session=True
        )
        worker.started_at = time.monotonic()
        log.info("%s started (pid %d)", worker.name, worker.process.pid)

    async def _terminate(self, worker: Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", worker.name, process.pid,
                        STOP_GRACE_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
