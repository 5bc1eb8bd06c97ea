"""Which thread touched which file, seen through Python's audit hooks (PEP 578).

The interpreter raises an audit event for every open(), os.open(), rename, remove and mkdir, on the
thread doing it. Recording those under a directory tells a test whether a component's file I/O left
the event loop's thread, without stubbing a single call. A hook can't be removed once added, so one
hook is installed when this module is first imported and does nothing while no recorder is active.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

FILE_EVENTS = frozenset({"open", "os.rename", "os.remove", "os.mkdir"})

_recorders: list[FileAudit] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _recorders or event not in FILE_EVENTS:
        return
    paths = [args[0]] + ([args[1]] if event == "os.rename" else [])
    for path in paths:
        if isinstance(path, str | bytes | os.PathLike):
            for recorder in _recorders:
                recorder.see(event, os.path.abspath(os.fsdecode(path)), threading.get_ident())


class FileAudit:
    """Records (event, path, thread id) for every file operation under `directory` while active."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = os.path.abspath(directory)
        self.events: list[tuple[str, str, int]] = []

    def see(self, event: str, path: str, thread: int) -> None:
        if path == self.directory or path.startswith(self.directory + os.sep):
            self.events.append((event, path, thread))

    def on_thread(self, thread: int) -> list[tuple[str, str]]:
        return [(event, path) for event, path, ident in self.events if ident == thread]

    def touched(self, path: str | Path) -> bool:
        return any(seen == os.path.abspath(path) for _, seen, _ in self.events)

    def __enter__(self) -> FileAudit:
        _recorders.append(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _recorders.remove(self)


sys.addaudithook(_hook)
