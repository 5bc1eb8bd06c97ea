"""One venue's task: load its markets, stream the wanted symbols it lists, follow changes live.

Everything that can fail here is contained: a venue whose market list will not load keeps retrying
on its own, a stream that drops is resubscribed by its supervisor, and a malformed frame is logged
and skipped. Nothing in this task can stop another venue's task.

The wanted symbols can change while it runs (`want`): symbols that arrive get their own new batch
of subscriptions, symbols that leave stop being processed at once; the other symbols' streams are
not touched. A symbol that comes back while the batch it left still streams it (a venue that can only
unsubscribe a whole batch) goes back to that batch rather than being subscribed a second time.

Symbols are spread over as many connections as the venue's per-connection cap requires (ConnectionPool).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterable
from typing import Any

import ccxt
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_chain, wait_fixed

from collectors.ccxt_bridge import create_exchange
from collectors.connection_pool import BudgetExceeded, ConnectionPool
from collectors.market_state import MarketState
from collectors.stream_supervisor import StreamSupervisor
from collectors.venues import Venue
from collectors.venues.base import FundingSnapshot
from models.config import CollectionConfig, ExchangeConfig
from publishers.rabbitmq_publisher import RabbitMQPublisher
from utils.statistics import ExchangeStats

BAD_FRAME_LOG_INTERVAL_SECONDS = 10.0


class ExchangeCollector:
    def __init__(
        self,
        venue: Venue,
        config: ExchangeConfig,
        symbols: Iterable[str],
        collection: CollectionConfig,
        publisher: RabbitMQPublisher,
        credentials: dict[str, Any] | None = None,
    ) -> None:
        self.venue = venue
        self.config = config
        self.wanted: set[str] = set(symbols)
        self.collection = collection
        self.publisher = publisher
        self.credentials = credentials or {}
        self.stats = ExchangeStats(venue.source_id)
        self.states: dict[str, MarketState] = {}
        self.markets_loaded = asyncio.Event()
        self.log = logging.getLogger(venue.source_id)
        self._exchange: Any = None
        self._pool: ConnectionPool | None = None
        self._supervisors: dict[StreamSupervisor, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._batch_numbers = itertools.count(1)
        self._reported_unlisted: set[str] = set()
        self._funding_refresh = asyncio.Event()
        self.wanted = {venue.symbol_for(symbol) for symbol in self.wanted}
        self._bad_frames_unlogged = 0
        self._bad_frame_logged_at = 0.0

    # --- what the control plane uses -------------------------------------------------------------

    def lists(self, symbol: str) -> bool | None:
        """Whether this source lists (its form of) `symbol` as an active market; None before its
        markets are loaded."""
        if not self.markets_loaded.is_set():
            return None
        market = self._exchange.markets.get(self.venue.symbol_for(symbol))
        return market is not None and market.get("active") is not False and self._right_kind(market)

    def want(self, symbols: Iterable[str]) -> None:
        """Stream exactly these symbols (those this source lists) from now on."""
        self.wanted = {self.venue.symbol_for(symbol) for symbol in symbols}
        if self.markets_loaded.is_set():
            self._reconcile()

    async def reload_markets(self) -> tuple[list[str], list[str]] | None:
        """Read the venue's market list again (a rediscovered universe) and stream accordingly: a symbol the
        venue delisted stops, a wanted one it newly lists starts. Returns (newly listed, no longer listed) active
        markets of this source's kind; None before the first load or when the venue did not answer (the
        previous list stays in use)."""
        if not self.markets_loaded.is_set():
            return None
        before = self._active_symbols()
        try:
            await self._exchange.load_markets(reload=True)
        except Exception as error:
            self.stats.errors += 1
            self.log.warning("reloading markets failed, keeping the previous list: %s: %s",
                             type(error).__name__, str(error)[:300])
            return None
        if self._pool is not None:
            self._pool.share_markets()
        after = self._active_symbols()
        self._reconcile()
        return sorted(after - before), sorted(before - after)

    def _active_symbols(self) -> set[str]:
        return {
            symbol for symbol, market in self._exchange.markets.items()
            if market.get("active") is not False and self._right_kind(market)
        }

    def _right_kind(self, market: dict[str, Any]) -> bool:
        if self.venue.market == "spot":
            return bool(market.get("spot"))
        return bool(market.get("swap")) and market.get("linear") is not False

    # --- the task --------------------------------------------------------------------------------

    async def run(self) -> None:
        exchange = self._new_exchange()
        self._exchange = exchange
        self._pool = ConnectionPool(self.venue, exchange, self._new_exchange)
        try:
            await self._load_markets(exchange)
            self.markets_loaded.set()
            if self.venue.polls_funding:
                self._spawn(self._poll_funding(exchange))
            self._spawn(self._watch_health())
            self._reconcile()
            await asyncio.Event().wait()  # runs until cancelled; the work happens in the spawned tasks
        finally:
            await self._stop_everything()
            self.markets_loaded.clear()
            await self._pool.close()
            await exchange.close()
            self.log.info("closed")

    def _new_exchange(self) -> Any:
        exchange = create_exchange(self.venue.ccxt_id, self._ccxt_config(), self._on_bad_frame, self.venue.refusal)
        if self.config.sandbox:
            exchange.set_sandbox_mode(True)
        return exchange

    @property
    def connections(self) -> int:
        """ccxt instances in use (each its own socket per URL)."""
        return self._pool.connections if self._pool is not None else 0

    def _reconcile(self) -> None:
        listed = {symbol for symbol in self.wanted if self.lists(symbol)}
        for symbol in sorted(set(self.states) - listed):
            self._stop_symbol(symbol)
        unlisted = sorted(self.wanted - listed - self._reported_unlisted)
        if unlisted:
            self.log.warning("not listed (or not active) here, skipped: %s", ", ".join(unlisted))
            self._reported_unlisted.update(unlisted)
        added = sorted(listed - set(self.states))
        if added:
            self._start_symbols(added)
        self.stats.symbols = len(self.states)

    def _start_symbols(self, symbols: list[str]) -> None:
        markets = self._exchange.markets
        for symbol in symbols:
            market = markets[symbol]
            self.states[symbol] = MarketState(
                self.venue.name,
                symbol,
                contract_size=(market.get("contractSize") or 1) if self.venue.sizes_in_contracts else 1,
                depth=self.collection.orderbook_depth,
                funding_interval_hours=self.venue.funding_interval_hours(market),
                market=self.venue.market,
                base=market.get("base"),
            )
        specs = self.venue.streams(self.collection.orderbook_depth)
        new = [symbol for symbol in symbols if not self._reattach(symbol)]
        assert self._pool is not None
        try:
            placed = self._pool.place(new, specs, markets)
        except BudgetExceeded as error:
            self.log.error("cannot subscribe within the venue's per-connection cap: %s", error)
            return
        batch = next(self._batch_numbers)
        for index, group in sorted(placed.items()):
            exchange = self._pool.exchange(index)
            states = [self.states[symbol] for symbol in group]
            where = f"@{index + 1}" if self._pool.budget is not None else ""
            for spec in specs:
                for start in range(0, len(states), spec.max_symbols):
                    supervisor = StreamSupervisor(
                        exchange, spec, f"{spec.name}#{batch}.{start // spec.max_symbols + 1}{where}",
                        states[start : start + spec.max_symbols], self.publisher.submit, self.stats, self.collection,
                    )
                    task = asyncio.create_task(supervisor.run(), name=f"{self.venue.source_id}-{supervisor.name}")
                    self._supervisors[supervisor] = task
                    task.add_done_callback(lambda _, s=supervisor: self._supervisors.pop(s, None))
        if self._pool.budget is not None:
            self.log.info("%d symbols over %d connections (cap %s per connection)", len(self.states),
                          self._pool.connections, self._pool.budget)
        self._funding_refresh.set()

    def _reattach(self, symbol: str) -> bool:
        """A symbol that left a batch the venue could only unsubscribe whole is still streamed by that batch's
        connection: hand it back to that batch, so no second subscription (and no second socket feeding the same
        state) appears. True when every stream of the symbol found such a batch."""
        found = [
            supervisor
            for supervisor, task in self._supervisors.items()
            if not task.done() and not task.cancelling() and not supervisor.spec.unwatch_each
            and symbol in supervisor.subscribed and symbol not in supervisor.states
        ]
        names = {spec.name for spec in self.venue.streams(self.collection.orderbook_depth)}
        if {supervisor.spec.name for supervisor in found} != names:
            return False
        for supervisor in found:
            supervisor.attach(self.states[symbol])
        self.log.info("%s resumes on the batch still streaming it", symbol)
        return True

    def _stop_symbol(self, symbol: str) -> None:
        state = self.states.pop(symbol)
        if self._pool is not None:
            self._pool.release(symbol)
        self.publisher.forget(state.routing_key)
        self._reported_unlisted.discard(symbol)
        for supervisor, task in list(self._supervisors.items()):
            if symbol not in supervisor.states:
                continue
            emptied = supervisor.detach(symbol)
            if emptied:
                task.cancel()
            if supervisor.spec.unwatch_each:
                if symbol in supervisor.subscribed:
                    self._spawn(supervisor.unwatch([symbol]))
            elif emptied:
                self._spawn(supervisor.unwatch(supervisor.subscribed))
        self.log.info("stopped %s", symbol)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop_everything(self) -> None:
        tasks = [*self._supervisors.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisors.clear()
        self.states.clear()

    def _ccxt_config(self) -> dict[str, Any]:
        config = ccxt.Exchange.deep_extend(self.venue.ccxt_defaults, self.config.ccxt)
        return ccxt.Exchange.deep_extend(config, self.credentials)

    async def _load_markets(self, exchange: Any) -> None:
        """Retry `retry_attempts` times with `retry_delays`; after that, keep trying at the longest delay."""
        delays = self.collection.retry_delays
        while True:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.collection.retry_attempts),
                    wait=wait_chain(*(wait_fixed(delay) for delay in delays)),
                    retry=retry_if_exception_type(Exception),
                    before_sleep=lambda state: self._log_market_load_failure(state.outcome, logging.WARNING),
                ):
                    with attempt:
                        await exchange.load_markets()
                self.log.info("loaded %d markets", len(exchange.markets))
                return
            except RetryError as failed:
                self._log_market_load_failure(failed.last_attempt, logging.ERROR)
                await asyncio.sleep(delays[-1])

    def _log_market_load_failure(self, outcome: Any, level: int) -> None:
        self.stats.errors += 1
        error = outcome.exception() if outcome is not None else None
        self.log.log(level, "loading markets failed: %s: %s", type(error).__name__, str(error)[:300])

    async def _poll_funding(self, exchange: Any) -> None:
        """What the venue doesn't stream, over REST: every funding_poll_seconds, and at once when
        symbols were added."""
        while True:
            self._funding_refresh.clear()
            symbols = list(self.states)
            if symbols:
                try:
                    snapshots = await self.venue.poll_funding(exchange, symbols)
                except Exception as error:
                    self.stats.errors += 1
                    self.log.warning("polling funding failed: %s: %s", type(error).__name__, error)
                else:
                    self._apply_funding(snapshots)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._funding_refresh.wait(), self.collection.funding_poll_seconds)

    def _apply_funding(self, snapshots: dict[str, FundingSnapshot]) -> None:
        received_ms, received_ns = time.time_ns() // 1_000_000, time.perf_counter_ns()
        for symbol, snapshot in snapshots.items():
            state = self.states.get(symbol)
            if state is None:
                continue
            if snapshot.interval_hours is not None:
                state.funding_interval_hours = snapshot.interval_hours
            if snapshot.has_prices:
                state.mark_received(received_ms, received_ns)
                state.set_trade_stats(snapshot.last, snapshot.volume_24h, snapshot.timestamp)
                if state.set_funding(snapshot.rate, snapshot.next_time, snapshot.mark_price, snapshot.index_price,
                                     snapshot.timestamp):
                    self.stats.updates += 1
                    self.publisher.submit(state)

    async def _watch_health(self) -> None:
        """Once a second: frames received, and which symbols' quotes have gone quiet (judged by the quote's own
        receipt time: a funding poll or a mark-price stream must not make a dead quote stream look alive)."""
        stale_after_ms = self.collection.stale_after_seconds * 1000
        while True:
            await asyncio.sleep(1)
            now = time.time_ns() // 1_000_000
            self.stats.frames = self._pool.frames_received if self._pool is not None else 0
            self.stats.stale_symbols = sorted(
                symbol for symbol, state in self.states.items() if now - (state.quote_received_ms or 0) > stale_after_ms
            )

    def _on_bad_frame(self, message: Any, error: BaseException) -> None:
        """A frame ccxt could not parse, or a value the contract cannot carry: count, log, go on."""
        self.stats.errors += 1
        now = time.monotonic()
        if now - self._bad_frame_logged_at < BAD_FRAME_LOG_INTERVAL_SECONDS:
            self._bad_frames_unlogged += 1
            return
        suppressed = self._bad_frames_unlogged
        self._bad_frames_unlogged = 0
        self._bad_frame_logged_at = now
        payload = getattr(message, "data", message)
        with contextlib.suppress(Exception):
            payload = payload if isinstance(payload, str | bytes) else repr(payload)
        self.log.warning(
            "skipped a frame it could not use (%s: %s): %.200s%s",
            type(error).__name__, str(error)[:200], payload,
            f" (+{suppressed} more since the last report)" if suppressed else "",
        )
