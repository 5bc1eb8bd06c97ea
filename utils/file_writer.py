"""One thread per component for its file writes, so a slow disk (fsync, a stuck network mount) never
stalls the event loop that carries market data and control replies.

Jobs run one at a time in the order they were handed over: a later save can never be overtaken by an
earlier one. A job that was started is finished even if the coroutine waiting for it is cancelled, so
a shutdown never leaves a file half written by our own hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class FileWriter:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, job: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the job on the writer thread after every job handed over before it; its result or its error."""
        future = asyncio.wrap_future(self._executor.submit(job, *args, **kwargs))
        return await asyncio.shield(future)

    def close(self) -> None:
        """Let the thread go once it has finished what was handed over; never waits on the caller's thread."""
        self._executor.shutdown(wait=False)
