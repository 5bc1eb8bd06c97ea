"""Carries out control commands against the symbol registry and the running venue collectors.

One asyncio lock guards the registry: commands and the watchlist's expiry run one at a time, in
the order they arrive. Every change is saved before it is applied and before the reply goes out; the
save itself runs off the event loop, so market data keeps flowing while the disk works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from collectors.exchange_collector import ExchangeCollector
from control.protocol import (
    AddSymbol,
    ControlError,
    GetStatistics,
    GetSymbols,
    GetWatchlist,
    ReloadUniverse,
    RemoveSymbol,
    Request,
    SetSymbols,
    WatchAdd,
    WatchRemove,
    WatchTouch,
)
from control.registry import SymbolRegistry, WatchEntry, now_ms
from discovery.follower import UniverseChange
from models.universe import Universe
from utils.statistics import Statistics

log = logging.getLogger("control")

EXPIRY_CHECK_SECONDS = 1.0

Result = tuple[str, dict[str, Any]]
"""(human-readable message, data) of a successful command."""


class ControlService:
    def __init__(
        self,
        registry: SymbolRegistry,
        collectors: list[ExchangeCollector],
        statistics: Statistics,
        default_watch_ttl_seconds: int,
        universe_symbols: Callable[[], list[str]] | None = None,
    ) -> None:
        self.registry = registry
        self.universe_symbols = universe_symbols
        """Reads the discovered universe's symbols; None unless config.json says "symbols": "auto"."""
        self.collectors = {collector.venue.source_id: collector for collector in collectors}
        self.statistics = statistics
        self.default_ttl = default_watch_ttl_seconds
        self.lock = asyncio.Lock()
        self._handlers: dict[type, Callable[[Any], Awaitable[Result]]] = {
            AddSymbol: self._add_symbol,
            RemoveSymbol: self._remove_symbol,
            SetSymbols: self._set_symbols,
            GetSymbols: self._get_symbols,
            GetStatistics: self._get_statistics,
            WatchAdd: self._watch_add,
            WatchTouch: self._watch_touch,
            WatchRemove: self._watch_remove,
            GetWatchlist: self._get_watchlist,
            ReloadUniverse: self._reload_universe,
        }

    async def execute(self, request: Request) -> Result:
        async with self.lock:
            checkpoint = self.registry.checkpoint()
            try:
                return await self._handlers[type(request)](request)
            except Exception:
                self.registry.rollback(checkpoint)
                raise

    def apply(self) -> None:
        """Tell every venue what it should stream now."""
        for name, collector in self.collectors.items():
            collector.want(self.registry.wanted(name))

    async def expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_SECONDS)
            async with self.lock:
                expired = self.registry.expire(now_ms())
                if not expired:
                    continue
                try:
                    await self.registry.save()
                except Exception as error:  # expired pairs stay expired: a restart drops them again
                    log.error("watchlist expiry could not be saved to the state file: %s", error)
                self.apply()
            for entry in expired:
                log.info("watchlist: %s on %s expired", entry.symbol, entry.exchange)

    # --- the symbol set ---------------------------------------------------------------------------

    async def _add_symbol(self, request: AddSymbol) -> Result:
        symbol = request.symbol
        if symbol in self.registry.symbols:
            raise ControlError("duplicate_symbol", f"Symbol {symbol} already exists")
        listing = self._listing(symbol)
        self._refuse_unlisted([symbol], listing)
        self.registry.add(symbol)
        await self._commit()
        message = f"Symbol {symbol} added successfully"
        owned = self.registry.shard.owns(symbol)
        if not owned:
            message += f"; another shard streams it (this collector is shard {self.registry.shard})"
        return message, {
            "symbol": symbol,
            **listing,
            "streamed_here": owned,
            "current_symbols": self.registry.symbols,
        }

    async def _remove_symbol(self, request: RemoveSymbol) -> Result:
        symbol = request.symbol
        if symbol not in self.registry.symbols:
            watched = self.registry.watched_on(symbol)
            hint = f"; it is on the watchlist for {', '.join(watched)} (use watch_remove)" if watched else ""
            raise ControlError("symbol_not_found", f"Symbol {symbol} is not in the symbol set{hint}")
        self.registry.remove(symbol)
        await self._commit()
        watched = self.registry.watched_on(symbol)
        message = f"Symbol {symbol} removed successfully"
        if watched:
            message += f"; still streamed on {', '.join(watched)} for the watchlist"
        return message, {"symbol": symbol, "still_watched_on": watched, "current_symbols": self.registry.symbols}

    async def _set_symbols(self, request: SetSymbols) -> Result:
        before = set(self.registry.symbols)
        new = [symbol for symbol in request.symbols if symbol not in before]
        self._refuse_unlisted(new, None)
        self.registry.replace(request.symbols)
        await self._commit()
        after = self.registry.symbols
        return f"Symbols set: {len(after)} symbol(s)", {
            "added": new,
            "removed": sorted(before - set(after)),
            "current_symbols": after,
        }

    async def _get_symbols(self, request: GetSymbols) -> Result:
        symbols = self.registry.symbols
        return "Symbols retrieved successfully", {
            "symbols": symbols,
            "count": len(symbols),
            "shard": str(self.registry.shard),
            "streaming": {name: sorted(collector.states) for name, collector in self.collectors.items()},
        }

    async def _get_statistics(self, request: GetStatistics) -> Result:
        return "Statistics retrieved successfully", self.statistics.control_snapshot()

    async def _reload_universe(self, request: ReloadUniverse) -> Result:
        if self.universe_symbols is None:
            raise ControlError(
                "invalid_command", 'config.json\'s "symbols" is not "auto": there is no universe to reload'
            )
        before = set(self.registry.symbols)
        self.registry.rebase(self.universe_symbols())
        await self._commit()
        after = self.registry.symbols
        return f"Universe reloaded: {len(after)} symbol(s)", {
            "added": sorted(set(after) - before),
            "removed": sorted(before - set(after)),
            "count": len(after),
        }

    async def follow_universe(self, old: Universe, new: Universe, change: UniverseChange) -> None:
        """A rediscovered universe (discovery.follower): every venue reads its market list again, so a delisted
        listing stops streaming and a new one starts; then the symbol set is rebased on the new universe under the
        command lock, the way reload_universe does, so run-time additions, removals and the watchlist survive."""
        log.info("new universe in use: %s", change.describe())
        collectors = list(self.collectors.values())
        reloaded = await asyncio.gather(*(collector.reload_markets() for collector in collectors))
        for collector, result in zip(collectors, reloaded, strict=True):
            if result is not None and (result[0] or result[1]):
                listed, delisted = result
                collector.log.info("market list changed: newly listed %s; delisted %s",
                                   ", ".join(listed) or "none", ", ".join(delisted) or "none")
        async with self.lock:
            before = set(self.registry.symbols)
            self.registry.rebase(new.futures_symbols())
            try:
                await self.registry.save()
            except Exception as error:  # applied anyway: the universe file is the truth, and a restart rebases
                log.error("the new universe's symbols could not be saved to the state file: %s", error)
            self.apply()
            after = set(self.registry.symbols)
        log.info("symbol set follows the universe: %d symbol(s); added %s; removed %s", len(after),
                 ", ".join(sorted(after - before)) or "none", ", ".join(sorted(before - after)) or "none")

    # --- the watchlist ------------------------------------------------------------------------------

    async def _watch_add(self, request: WatchAdd) -> Result:
        symbol = request.symbol
        ttl = request.ttl_seconds or self.default_ttl
        listing = self._listing(symbol, self._venues(request.exchanges))
        targets = listing["listed_on"] + listing["markets_loading"]
        if not targets:
            raise ControlError("symbol_not_found", f"{symbol} is not listed on {', '.join(listing['not_listed_on'])}")
        at = now_ms()
        added: list[str] = []
        renewed: list[str] = []
        for exchange in targets:
            (added if self.registry.watch(exchange, symbol, ttl, at) else renewed).append(exchange)
        await self._commit()
        parts = [f"watching {symbol} on {', '.join(added)} for {ttl} s"] if added else []
        if renewed:
            parts.append(f"renewed on {', '.join(renewed)}")
        message = "; ".join(parts)
        return message[:1].upper() + message[1:], {
            "symbol": symbol,
            "added": added,
            "renewed": renewed,
            "not_listed_on": listing["not_listed_on"],
            "ttl_seconds": ttl,
            "expires_at": at + ttl * 1000,
        }

    async def _watch_touch(self, request: WatchTouch) -> Result:
        self._venues([request.exchange])
        entry = self.registry.touch(request.exchange, request.symbol, now_ms())
        if entry is None:
            raise ControlError("symbol_not_found", f"{request.symbol} on {request.exchange} is not on the watchlist")
        await self.registry.save()
        return f"{entry.symbol} on {entry.exchange} renewed for {entry.ttl_seconds} s", self._describe(entry)

    async def _watch_remove(self, request: WatchRemove) -> Result:
        exchanges = self._venues(request.exchanges)
        removed = [exchange for exchange in exchanges if self.registry.unwatch(exchange, request.symbol)]
        if not removed:
            raise ControlError(
                "symbol_not_found", f"{request.symbol} is not on the watchlist for {', '.join(exchanges)}"
            )
        await self._commit()
        still = request.symbol in self.registry.symbols
        return f"{request.symbol} no longer watched on {', '.join(removed)}", {
            "symbol": request.symbol,
            "removed_from": removed,
            "still_in_symbol_set": still,
        }

    async def _get_watchlist(self, request: GetWatchlist) -> Result:
        entries = [self._describe(entry) for entry in self.registry.watchlist]
        return f"{len(entries)} watched pair(s)", {"watchlist": entries, "count": len(entries)}

    # --- helpers ----------------------------------------------------------------------------------

    async def _commit(self) -> None:
        """Save first, so a reply never reports a change a crash could lose; then apply it. The write runs
        on the state file's own thread; the lock held around every command keeps saves in order."""
        await self.registry.save()
        self.apply()

    def _venues(self, requested: list[str] | None) -> list[str]:
        if requested is None:
            return list(self.collectors)
        unknown = sorted(set(requested) - set(self.collectors))
        if unknown:
            raise ControlError(
                "invalid_command",
                f"exchange(s) {', '.join(unknown)} not configured; configured: {', '.join(self.collectors)}",
            )
        return list(dict.fromkeys(requested))

    def _listing(self, symbol: str, venues: list[str] | None = None) -> dict[str, list[str]]:
        listing: dict[str, list[str]] = {"listed_on": [], "not_listed_on": [], "markets_loading": []}
        for name in venues or self.collectors:
            listed = self.collectors[name].lists(symbol)
            key = "markets_loading" if listed is None else "listed_on" if listed else "not_listed_on"
            listing[key].append(name)
        return listing

    def _refuse_unlisted(self, symbols: list[str], listing: dict[str, list[str]] | None) -> None:
        """A symbol no configured venue lists is refused, naming the venues checked."""
        unlisted = []
        for symbol in symbols:
            found = listing if listing is not None else self._listing(symbol)
            if not found["listed_on"] and not found["markets_loading"]:
                unlisted.append(symbol)
        if unlisted:
            raise ControlError(
                "symbol_not_found",
                f"{', '.join(unlisted)} not listed on any configured exchange (checked {', '.join(self.collectors)})",
            )

    def _describe(self, entry: WatchEntry) -> dict[str, Any]:
        at = now_ms()
        return {
            "exchange": entry.exchange,
            "symbol": entry.symbol,
            "ttl_seconds": entry.ttl_seconds,
            "added_at": entry.added_at,
            "expires_at": entry.expires_at,
            "remaining_seconds": round(entry.remaining_seconds(at), 1),
            "status": self._status(entry.exchange, entry.symbol),
        }

    def _status(self, exchange: str, symbol: str) -> str:
        collector = self.collectors[exchange]
        listed = collector.lists(symbol)
        if listed is None:
            return "markets_loading"
        if not listed:
            return "not_listed"
        state = collector.states.get(symbol)
        if state is None:
            return "not_subscribed"
        return "streaming" if state.received_ms else "subscribing"
