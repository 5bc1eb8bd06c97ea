"""Keeps the control plane's JSON document on disk, written atomically (utils.atomic_file)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from utils.atomic_file import write_atomically

log = logging.getLogger("control")


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The stored document; None when there is none. A corrupt file is set aside, not trusted."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = orjson.loads(raw)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            aside = self.path.with_name(self.path.name + ".corrupt")
            self.path.replace(aside)
            log.error(
                "state file %s is unreadable (%s); moved to %s, starting from config.json", self.path, error, aside
            )
            return None
        return document

    def save(self, document: dict[str, Any]) -> None:
        write_atomically(self.path, orjson.dumps(document, option=orjson.OPT_INDENT_2))
