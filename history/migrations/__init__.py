"""Versioned schema migrations, one directory per backend: NNN_<what>.sql, applied in order at start.

The database records the highest version applied in schema_version; a database at a version this code
does not know (a newer futures-scan migrated it) is refused with SchemaTooNew instead of being written."""

from __future__ import annotations

from importlib import resources
from typing import Literal

Backend = Literal["sqlite", "postgres"]


def migrations(backend: Backend) -> list[tuple[int, str]]:
    """(version, SQL) in order."""
    found = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version(backend: Backend) -> int:
    return migrations(backend)[-1][0]
