"""Following the universe while running: what changed between two universes, and a poller that notices a new
generated/universe.json and hands (old, new, change) to whoever follows it.

One home for both, used by scripts/discover.py --every (to log what a round changed), the collector with
`"symbols": "auto"`, the spread engine and the tracker (to pick a new universe up without a restart).
The file is replaced atomically by the writer, so a poll reads either the old or the new file, never half.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from models.universe import UNIVERSE_FILE, Universe, read_universe

LISTED_IN_LOG = 20
"""A change line names at most this many symbols or listings per kind; the rest are counted."""


@dataclass(frozen=True)
class UniverseChange:
    """What a newer universe adds and removes. Symbols are universe names (COIN/USDT); listings are
    (source, the source's own ccxt symbol)."""

    added_symbols: list[str]
    removed_symbols: list[str]
    added_listings: list[tuple[str, str]]
    removed_listings: list[tuple[str, str]]
    added_directions: list[tuple[str, str]]
    removed_directions: list[tuple[str, str]]

    @property
    def listings_changed(self) -> bool:
        return bool(self.added_listings or self.removed_listings)

    def describe(self) -> str:
        """One log line: counts, then the names (source: symbol for listings)."""
        parts = [
            f"symbols +{len(self.added_symbols)} -{len(self.removed_symbols)}, "
            f"listings +{len(self.added_listings)} -{len(self.removed_listings)}, "
            f"directions +{len(self.added_directions)} -{len(self.removed_directions)}"
        ]
        for label, names in (
            ("added symbols", self.added_symbols),
            ("removed symbols", self.removed_symbols),
            ("added listings", [f"{source}: {symbol}" for source, symbol in self.added_listings]),
            ("removed listings", [f"{source}: {symbol}" for source, symbol in self.removed_listings]),
        ):
            if names:
                more = f" (+{len(names) - LISTED_IN_LOG} more)" if len(names) > LISTED_IN_LOG else ""
                parts.append(f"{label}: {', '.join(names[:LISTED_IN_LOG])}{more}")
        if not self.listings_changed and not self.added_directions and not self.removed_directions:
            parts.append("listing details (fees, ticks, minimums) changed")
        return "; ".join(parts)


def same_universe(old: Universe | None, new: Universe) -> bool:
    """Equal content: when it was generated and why a source failed this time do not count."""
    if old is None:
        return False
    ignored = {"generated_at", "failed_sources"}
    return old.model_dump(exclude=ignored) == new.model_dump(exclude=ignored)


def diff_universes(old: Universe, new: Universe) -> UniverseChange:
    def listings(universe: Universe) -> set[tuple[str, str]]:
        return {(listing.source, listing.symbol) for symbol in universe.symbols for listing in symbol.listings}

    def directions(universe: Universe) -> set[tuple[str, str]]:
        return {(direction.buy, direction.sell) for direction in universe.directions}

    old_names, new_names = {s.name for s in old.symbols}, {s.name for s in new.symbols}
    old_listings, new_listings = listings(old), listings(new)
    old_directions, new_directions = directions(old), directions(new)
    return UniverseChange(
        added_symbols=sorted(new_names - old_names),
        removed_symbols=sorted(old_names - new_names),
        added_listings=sorted(new_listings - old_listings),
        removed_listings=sorted(old_listings - new_listings),
        added_directions=sorted(new_directions - old_directions),
        removed_directions=sorted(old_directions - new_directions),
    )


OnChange = Callable[[Universe, Universe, UniverseChange], Awaitable[None]]


class UniverseFollower:
    """Polls `directory`/universe.json every `watch_seconds` (a stat; the file is read only when its
    modification time, size or inode changed) and awaits `on_change(old, new, change)` when its content
    differs from the universe in use. A missing or broken file is logged once and the universe in use stays."""

    def __init__(
        self, directory: str | Path, watch_seconds: float, on_change: OnChange, current: Universe,
        log: logging.Logger,
    ) -> None:
        self.path = Path(directory) / UNIVERSE_FILE
        self.watch_seconds = watch_seconds
        self.on_change = on_change
        self.current = current
        self.log = log
        self._signature: tuple[int, int, int] | None = None
        self._complained: tuple[int, int, int] | str | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.watch_seconds)
            try:
                await self.check()
            except Exception:  # a bug here must not end the following for good
                self.log.exception("checking %s for a new universe failed", self.path)

    async def check(self) -> bool:
        """One poll; True when a new universe was handed on."""
        try:
            stat = os.stat(self.path)
        except OSError as error:
            self._complain(str(error), f"{self.path} cannot be read ({error}); keeping the universe in use")
            return False
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._signature:
            return False
        try:
            new = await asyncio.to_thread(read_universe, self.path.parent)
        except (OSError, ValueError) as error:
            self._complain(signature, f"{self.path} is not a universe, keeping the one in use: {str(error)[:300]}")
            return False
        self._signature, self._complained = signature, None
        if same_universe(self.current, new):
            return False
        old, self.current = self.current, new
        change = diff_universes(old, new)
        try:
            await self.on_change(old, new, change)
        except Exception:
            self.log.exception("applying the new universe failed (%s)", change.describe())
        return True

    def _complain(self, key: tuple[int, int, int] | str, message: str) -> None:
        if self._complained != key:
            self._complained = key
            self.log.warning("%s", message)
