"""Child processes that never outlive their parent (the simulator of --demo, the shards of --workers)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def die_with_parent() -> Callable[[], None] | None:
    """`preexec_fn` for asyncio.create_subprocess_exec: Linux only (PR_SET_PDEATHSIG), elsewhere nothing."""
    return _die_with_parent if sys.platform == "linux" else None
