"""Run the exchange simulator as a child process (`python -m simulator`), as `main.py --demo` and the bench do.

The simulator in the collector's own event loop competes with it for the one core a Python process
gets: a demo that starves its own collector misleads every new user. Here it runs in its own process:

- readiness by condition: the child prints one JSON line once it listens (`--ready-json`: the port it
  bound and each venue's `ccxt` overrides, computed by the simulator itself, one source of truth);
- no orphans: the child gets SIGTERM when its parent dies (Linux `PR_SET_PDEATHSIG`) and also watches
  its parent's pid (`--parent-pid`), so even a SIGKILLed parent never leaves it holding the port;
- a child that dies is noticed (`wait_exited`) so the caller can log it and stop instead of streaming
  nothing;
- extra simulator CLI arguments (e.g. `--universe-size 300`) pass through `extra_args` untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utils.child_process import die_with_parent

log = logging.getLogger("simulator.process")

READY_PREFIX = "SIMULATOR_READY "
"""The line `python -m simulator --ready-json` prints on stdout once it listens, followed by JSON."""
ROOT = Path(__file__).resolve().parent.parent
_LOG_LINE = re.compile(r"^\S+ \S+ \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] \[([^\]]+)\] (.*)$")


class SimulatorExited(RuntimeError):
    """The simulator child process ended before it was ready."""


class SimulatorProcess:
    """One `python -m simulator` child: start, wait until ready, read its overrides, stop it cleanly."""

    def __init__(
        self,
        venues: Sequence[str],
        port: int = 0,
        rate: float = 5.0,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.venues_asked = list(venues)
        self.host = host
        self.port = port
        self.rate = rate
        self.extra_args = list(extra_args)
        self.process: asyncio.subprocess.Process | None = None
        self.ccxt: dict[str, dict[str, Any]] = {}
        """Each venue's `ccxt` overrides, as the simulator reported them."""
        self._relays: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def venues(self) -> list[str]:
        return list(self.ccxt)

    def ccxt_config(self, venue: str) -> dict[str, Any]:
        """The `ccxt` block that points ccxt at this venue, as the simulator itself computed it."""
        return self.ccxt[venue]

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "simulator", "--ready-json", "--parent-pid", str(os.getpid()),
            "--host", self.host, "--port", str(self.port), "--venues", ",".join(self.venues_asked),
            "--rate", str(self.rate), *self.extra_args,
        ]

    async def start(self, ready_within: float = 60.0) -> None:
        """Spawn the child and return once it listens; raise SimulatorExited (with its exit code) if it died."""
        self.process = await asyncio.create_subprocess_exec(
            *self.command(), cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
            start_new_session=True,  # Ctrl+C in a terminal reaches the launcher only; it stops the child
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._relays.append(asyncio.create_task(self._relay_log(self.process.stderr), name="simulator-log"))
        try:
            ready = await asyncio.wait_for(self._read_ready(self.process.stdout), ready_within)
        except (TimeoutError, SimulatorExited):
            await self.stop()
            raise
        self.port = int(ready["port"])
        self.ccxt = {name: dict(config) for name, config in ready["ccxt"].items()}
        self._relays.append(asyncio.create_task(self._drain(self.process.stdout), name="simulator-stdout"))
        log.info("exchange simulator running as process %d on %s", self.pid, self.http_base)

    async def _read_ready(self, stdout: asyncio.StreamReader) -> dict[str, Any]:
        while line := await stdout.readline():
            text = line.decode(errors="replace").strip()
            if text.startswith(READY_PREFIX):
                return json.loads(text[len(READY_PREFIX):])
        assert self.process is not None
        code = await self.process.wait()
        raise SimulatorExited(f"the simulator exited with code {code} before it was ready (see its log above)")

    @staticmethod
    async def _drain(stdout: asyncio.StreamReader) -> None:
        while await stdout.readline():
            pass

    @staticmethod
    async def _relay_log(stderr: asyncio.StreamReader) -> None:
        """Re-log the child's log lines through this process's logging (so they reach app.log too)."""
        level = logging.INFO
        while line := await stderr.readline():
            text = line.decode(errors="replace").rstrip()
            match = _LOG_LINE.match(text)
            if match:
                level = logging.getLevelName(match.group(1))
                logging.getLogger(match.group(2)).log(level, "%s", match.group(3))
            elif text:
                logging.getLogger("simulator").log(max(level, logging.WARNING), "%s", text)

    async def wait_exited(self) -> int:
        """The child's exit code, once it ends (for the caller to notice an unexpected death)."""
        assert self.process is not None, "not started"
        return await self.process.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        self._stopping = True
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning("the simulator (pid %d) ignored SIGTERM for %.0f s; killing it", process.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for relay in self._relays:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(relay, 5)
        return process.returncode
