"""What should be collected: the symbol set and the watchlist.

The symbol set starts as config.json's `symbols`. Control commands change it, and the changes are
kept as a difference against config.json: symbols added at run time stay added, symbols removed
stay removed, and a later edit of config.json still takes effect for everything else. The watchlist
holds (exchange, symbol) pairs that expire on their own; a venue streams a symbol while either the
symbol set or its watchlist wants it.

With several collectors sharded by symbol (models/shard.py), every shard keeps the whole symbol set and
watchlist (a command sent to all of them changes all alike) and streams only the symbols it owns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

from control.state_store import CollectorState, StateStore, WatchRecord
from models.shard import WHOLE, Shard


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class WatchEntry:
    exchange: str
    symbol: str
    ttl_seconds: int
    added_at: int
    expires_at: int

    def remaining_seconds(self, at_ms: int) -> float:
        return max(0.0, (self.expires_at - at_ms) / 1000)


class SymbolRegistry:
    def __init__(self, config_symbols: Iterable[str], store: StateStore | None = None, shard: Shard = WHOLE) -> None:
        self.shard = shard
        self._base = list(dict.fromkeys(config_symbols))
        self._added: list[str] = []
        self._removed: set[str] = set()
        self._watchlist: dict[tuple[str, str], WatchEntry] = {}
        self._store = store

    # --- the symbol set -----------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        return [symbol for symbol in self._base if symbol not in self._removed] + self._added

    def add(self, symbol: str) -> None:
        if symbol in self._removed:
            self._removed.discard(symbol)
        elif symbol not in self._base and symbol not in self._added:
            self._added.append(symbol)

    def remove(self, symbol: str) -> None:
        if symbol in self._added:
            self._added.remove(symbol)
        elif symbol in self._base:
            self._removed.add(symbol)

    def rebase(self, config_symbols: Iterable[str]) -> None:
        """A new base set (a newer discovered universe); run-time additions and removals still apply."""
        self._base = list(dict.fromkeys(config_symbols))
        self._added = [symbol for symbol in self._added if symbol not in self._base]
        self._removed &= set(self._base)

    def replace(self, symbols: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(symbols))
        self._added = [symbol for symbol in wanted if symbol not in self._base]
        self._removed = set(self._base) - set(wanted)

    # --- the watchlist ----------------------------------------------------------------------------

    @property
    def watchlist(self) -> list[WatchEntry]:
        return sorted(self._watchlist.values(), key=lambda entry: (entry.symbol, entry.exchange))

    def watch(self, exchange: str, symbol: str, ttl_seconds: int, at_ms: int) -> bool:
        """Add the pair, or renew it with this TTL; True when it is new."""
        existing = self._watchlist.get((exchange, symbol))
        added_at = existing.added_at if existing else at_ms
        self._watchlist[(exchange, symbol)] = WatchEntry(
            exchange, symbol, ttl_seconds, added_at, at_ms + ttl_seconds * 1000
        )
        return existing is None

    def touch(self, exchange: str, symbol: str, at_ms: int) -> WatchEntry | None:
        entry = self._watchlist.get((exchange, symbol))
        if entry is not None:
            entry.expires_at = at_ms + entry.ttl_seconds * 1000
        return entry

    def unwatch(self, exchange: str, symbol: str) -> bool:
        return self._watchlist.pop((exchange, symbol), None) is not None

    def expire(self, at_ms: int) -> list[WatchEntry]:
        expired = [entry for entry in self._watchlist.values() if entry.expires_at <= at_ms]
        for entry in expired:
            del self._watchlist[(entry.exchange, entry.symbol)]
        return expired

    def watched_on(self, symbol: str) -> list[str]:
        return sorted(exchange for exchange, watched in self._watchlist if watched == symbol)

    # --- what each venue streams ------------------------------------------------------------------

    def wanted(self, exchange: str) -> set[str]:
        """What this collector streams on a venue: its shard of the symbol set and of that venue's watchlist."""
        symbols = set(self.symbols) | {symbol for venue, symbol in self._watchlist if venue == exchange}
        return {symbol for symbol in symbols if self.shard.owns(symbol)}

    # --- persistence ------------------------------------------------------------------------------

    def checkpoint(self) -> tuple[list[str], set[str], dict[tuple[str, str], WatchEntry]]:
        return list(self._added), set(self._removed), {key: replace(e) for key, e in self._watchlist.items()}

    def rollback(self, checkpoint: tuple[list[str], set[str], dict[tuple[str, str], WatchEntry]]) -> None:
        """Undo a change that could not be saved, so memory never claims more than the disk."""
        self._added, self._removed, self._watchlist = checkpoint

    def state(self) -> CollectorState:
        """What is saved; validated, so a bug can't write a file the next start would refuse."""
        return CollectorState(
            config_symbols=self._base,
            added=self._added,
            removed=sorted(self._removed),
            watchlist=[WatchRecord(**asdict(entry)) for entry in self.watchlist],
        )

    async def save(self) -> None:
        """Returns once the state is on disk; the write runs off the event loop."""
        if self._store is not None:
            await self._store.save(self.state())

    def restore(self) -> bool:
        """Apply the stored changes on top of config.json's symbols; False when nothing (valid) was stored."""
        if self._store is None:
            return False
        stored = self._store.load()
        if stored is None:
            return False
        self._added = [symbol for symbol in stored.added if symbol not in self._base]
        self._removed = set(stored.removed) & set(self._base)
        self._watchlist = {
            (record.exchange, record.symbol): WatchEntry(**record.model_dump()) for record in stored.watchlist
        }
        return True
