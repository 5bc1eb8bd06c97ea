"""python -m consumers.recorder: what the product sees, kept for research and charts.

Consumes spread.# (futures_analytics) and futures.#/spot.# (futures_data) like any user's consumer and
writes, through one storage interface, to SQLite (history.sqlite_path, the default) or PostgreSQL
(history.postgres_dsn or HISTORY_POSTGRES_DSN):

    watch_signal_raw       every direction every history.sample_seconds (60)
    market_quote_sample    every market's best bid/ask, mark, funding every history.quote_sample_seconds (60)
    funding_change         each change of a perpetual's funding rate or next funding time
    watch_signal_event     triggered samples merged by the N/M rule (event_confirm_samples, event_cooldown_minutes)
    future_outcome         each event 30/60/180/360 minutes on (history.outcome_horizons_minutes)
    watchlist_series_agg   5-minute bars per direction for 12 h charts (history.series_bucket_seconds)

Writes never block consuming: batches go to a writer task that spools them under history.spool_dir while
the store is down and replays them in order when it is back. Retention runs here too (no cron).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aio_pika
from pydantic import ValidationError

from consumers.grouped_acks import GroupedAcks
from consumers.runner import run_main
from history.events import EventMerger
from history.outcomes import compute_outcome
from history.rows import Batch, FundingChange, Outcome, SignalEvent
from history.sampling import (
    Direction,
    FundingWatch,
    SeriesAggregator,
    best_sizes,
    quote_sample,
    signal_sample,
    slot_of,
)
from history.store import HistoryStore, SchemaTooNew, StoreUnavailable, open_store
from history.writer import StoreWriter
from models.analytics import SpreadSnapshot
from models.config import AppConfig
from models.futures_data import FuturesData, routing_key
from models.status import source_parts
from publishers.broker_connection import connect_robust
from utils.statistics import now_ms

log = logging.getLogger("recorder")

MAINTENANCE_SECONDS = 3600.0
STORE_RETRY_SECONDS = 5.0
RESUME_POLL_SECONDS = 0.5
OUTCOMES_PER_ROUND = 200
FORGET_DIRECTION_MS = 3_600_000
"""A direction without a snapshot for this long is dropped from memory (its rows stay)."""
FUTURE_TOLERANCE_MS = 5_000
"""A spread snapshot stamped further ahead of this host's clock is ignored and counted invalid: its bar would be
in a bucket the genuine snapshots cannot reach, and they would all be dropped as late until the clock got there."""


class Recorder:
    log = log

    def __init__(self, config: AppConfig, store: HistoryStore | None = None) -> None:
        self.config = config
        settings = config.history
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        self.writer = StoreWriter(self.store, settings.spool_dir, settings.max_backlog_rows)
        self.sample_ms = int(settings.sample_seconds * 1000)
        self.merger = EventMerger(settings.event_confirm_samples, int(settings.event_cooldown_minutes * 60_000),
                                  self.sample_ms)
        self.bars = SeriesAggregator(settings.series_bucket_seconds * 1000)
        self.funding = FundingWatch()
        self.spreads: dict[Direction, SpreadSnapshot] = {}
        self.market_bodies: dict[str, bytes] = {}
        """Newest message per routing key, parsed only when a sample needs it: a busy feed costs a dict store."""
        self.markets: dict[str, FuturesData] = {}
        self._unparsed: set[str] = set()
        self._outcomes_submitted: set[tuple[str, float]] = set()
        self.consumed = {"spread": 0, "market": 0}
        self.invalid = {"spread": 0, "market": 0}
        self._logged_invalid: set[str] = set()
        self._store_open = asyncio.Event()
        self._acks = GroupedAcks()
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store (or keep trying while the writer spools), then consume."""
        try:
            await self._open_store()
        except StoreUnavailable as error:
            log.error("history store %s unavailable (%s): spooling to %s until it answers", self.store.description,
                      error, self.settings.spool_dir)
            self._tasks.append(asyncio.create_task(self._open_store_when_back(), name="recorder-store-open"))
        await self.writer.start()
        self._tasks.append(asyncio.create_task(self._resume_open_events(), name="recorder-resume-events"))
        rabbitmq = self.config.rabbitmq
        self._connection = await connect_robust(rabbitmq.amqp_urls(), f"{rabbitmq.connection_name} recorder")
        queue_cap = self.settings.queue_max_length
        await self._acks.consume(self._connection, self.config.spreads.analytics_exchange, ("spread.#",), "spread",
                                 self._on_spread, queue_cap, durable_queue=self.settings.queue,
                                 queue_type=rabbitmq.queue_type)
        await self._acks.consume(self._connection, rabbitmq.exchange, ("futures.#", "spot.#"), "market",
                                 self._on_market, queue_cap)
        settings = self.settings
        self._every(settings.sample_seconds, self._sample, "recorder-signals")
        self._every(settings.quote_sample_seconds, self._sample_quotes, "recorder-quotes")
        self._every(settings.funding_check_seconds, self._check_funding, "recorder-funding")
        self._every(settings.outcome_check_seconds, self._compute_outcomes, "recorder-outcomes")
        self._every(MAINTENANCE_SECONDS, self._maintain, "recorder-maintenance", at_once=True)
        log.info("recording into %s: a sample per direction every %g s, quotes every %g s, %s-minute outcomes",
                 self.store.description, settings.sample_seconds, settings.quote_sample_seconds,
                 "/".join(f"{horizon:g}" for horizon in settings.outcome_horizons_minutes))

    async def stop(self) -> None:
        await self._acks.close()
        if self._connection is not None:
            await self._connection.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.writer.submit(Batch(series=self.bars.drain(now_ms())))  # the bars still filling, as far as they got
        await self.writer.stop()
        await self.store.close()

    def report(self) -> str:
        invalid = self.invalid["spread"] + self.invalid["market"]
        return (f"recorder: {self.consumed['spread']} spread and {self.consumed['market']} market messages "
                f"({invalid} invalid, {self.bars.late} too late for their bar), {len(self.spreads)} directions, "
                f"{len(self.merger.open)} open events; {self.writer.report()}")

    async def _open_store(self) -> None:
        await self.store.open(migrate=True)
        self._store_open.set()

    async def _open_store_when_back(self) -> None:
        while True:
            await asyncio.sleep(STORE_RETRY_SECONDS)
            try:
                await self._open_store()
            except StoreUnavailable:
                continue
            except SchemaTooNew as error:
                log.error("%s; stop this recorder and run the newer version (rows are spooled meanwhile)", error)
                return
            log.info("history store %s answers again", self.store.description)
            return

    async def _resume_open_events(self) -> None:
        """Events a previous run left open go on merging, once the spool it left is replayed: only then does the
        store hold their newest state."""
        await self._store_open.wait()
        while True:
            if not self.writer.spool:
                try:
                    left_open = await self.store.open_events()
                    break
                except StoreUnavailable:
                    pass
            await asyncio.sleep(RESUME_POLL_SECONDS)
        closed = self.merger.resume(left_open)
        if closed:
            self.writer.submit(Batch(events=closed))
        if left_open:
            log.info("history: %d event(s) left open by a previous run resumed, %d superseded ones closed",
                     len(left_open) - len(closed), len(closed))

    def _every(self, seconds: float, job: Callable[[int], Awaitable[None]], name: str, at_once: bool = False) -> None:
        """Run job(slot) at every multiple of `seconds` of the wall clock (the slot is the row's time)."""
        period_ms = max(1, int(seconds * 1000))

        async def loop() -> None:
            if at_once:
                await self._run_job(job, now_ms(), name)
            while True:
                due = slot_of(now_ms(), period_ms) + period_ms
                await asyncio.sleep(max(0.0, (due - now_ms()) / 1000))
                await self._run_job(job, due, name)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    async def _run_job(self, job: Callable[[int], Awaitable[None]], slot: int, name: str) -> None:
        try:
            await job(slot)
        except StoreUnavailable as error:
            log.debug("%s: the store is unavailable (%s); next round", name, error)
        except Exception:
            log.exception("%s failed; it runs again next round", name)

    # --- input -----------------------------------------------------------------------------------

    def _on_spread(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.consumed["spread"] += 1
        try:
            snapshot = SpreadSnapshot.model_validate_json(message.body)
        except ValidationError as error:
            self._invalid("spread", message.routing_key or "", error.errors()[:3])
            return
        ahead_ms = snapshot.timestamp - now_ms()
        if ahead_ms > FUTURE_TOLERANCE_MS:
            self._invalid("spread", message.routing_key or "", f"stamped {ahead_ms} ms ahead of this host's clock")
            return
        self.spreads[(snapshot.symbol, snapshot.buy.source, snapshot.sell.source)] = snapshot
        self.bars.add(snapshot)

    def _on_market(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.consumed["market"] += 1
        key = message.routing_key or ""
        self.market_bodies[key] = message.body
        self._unparsed.add(key)

    def _invalid(self, kind: str, routing_key: str, why: object) -> None:
        self.invalid[kind] += 1
        if kind not in self._logged_invalid:
            self._logged_invalid.add(kind)
            log.warning("ignoring an invalid %s message on %s (further ones are only counted): %s", kind,
                        routing_key, why)

    def _parse_new_messages(self) -> None:
        for key in self._unparsed:
            try:
                self.markets[key] = FuturesData.model_validate_json(self.market_bodies[key])
            except ValidationError as error:
                self._invalid("market", key, error.errors()[:3])
        self._unparsed.clear()

    # --- jobs ------------------------------------------------------------------------------------

    async def _sample(self, slot: int) -> None:
        """A row per direction with a fresh snapshot; the event rule on each; the series bars so far."""
        self._parse_new_messages()
        fresh_after = slot - self.config.spreads.max_quote_age_ms
        batch = Batch()
        events: dict[str, SignalEvent] = {}
        for direction, snapshot in list(self.spreads.items()):
            if snapshot.timestamp < fresh_after:
                if snapshot.timestamp < slot - FORGET_DIRECTION_MS:
                    del self.spreads[direction]
                    self.bars.forget(direction)
                continue
            _, buy_ask_size = best_sizes(self._market_of(snapshot.buy.source, snapshot.buy.symbol))
            sell_bid_size, _ = best_sizes(self._market_of(snapshot.sell.source, snapshot.sell.symbol))
            sample = signal_sample(snapshot, slot, self.config.spreads.entry_pct, buy_ask_size, sell_bid_size)
            batch.signals.append(sample)
            events.update((event.event_id, event) for event in self.merger.add(sample))
        events.update((event.event_id, event) for event in self.merger.close_quiet(slot))
        batch.events = list(events.values())
        batch.series = self.bars.drain(now_ms())
        self.writer.submit(batch)

    def _market_of(self, source: str, symbol: str) -> FuturesData | None:
        exchange, market = source_parts(source)
        return self.markets.get(routing_key(exchange, symbol, market))

    async def _sample_quotes(self, slot: int) -> None:
        self._parse_new_messages()
        fresh_after = slot - int(self.settings.quote_sample_seconds * 1000)
        self.writer.submit(Batch(quotes=[quote_sample(message, slot) for message in self.markets.values()
                                         if message.received_timestamp >= fresh_after]))

    async def _check_funding(self, slot: int) -> None:
        self._parse_new_messages()
        changes = [change for message in self.markets.values() if (change := self.funding.check(message))]
        if changes:
            self.writer.submit(Batch(funding=changes))

    async def _compute_outcomes(self, slot: int) -> None:
        """Each event once per horizon, when the horizon's last sample has had time to be written."""
        if not self._store_open.is_set() or self.writer.spool or self.writer.backlog_rows:
            return  # samples still on their way to the store would make a horizon look missing for good
        settings = self.settings
        grace_ms = 2 * self.sample_ms + 5000
        outcomes: list[Outcome] = []
        due_now: set[tuple[str, float]] = set()
        for horizon in settings.outcome_horizons_minutes:
            horizon_ms = round(horizon * 60_000)
            due = await self.store.events_without_outcome(horizon, now_ms() - horizon_ms - grace_ms,
                                                          OUTCOMES_PER_ROUND)
            for event in due:
                due_now.add((event.event_id, horizon))
                if (event.event_id, horizon) in self._outcomes_submitted:
                    continue
                end = event.start_ts + horizon_ms
                samples = await self.store.signal_samples(event.symbol, event.buy, event.sell, event.start_ts, end)
                outcomes.append(compute_outcome(
                    event, horizon, samples, await self._leg_funding(event.buy, event.buy_symbol, event.start_ts, end),
                    await self._leg_funding(event.sell, event.sell_symbol, event.start_ts, end),
                    settings.outcome_flat_pct, self.sample_ms * 3 // 2, now_ms()))
                self._outcomes_submitted.add((event.event_id, horizon))
        self._outcomes_submitted &= due_now  # the rest are in the store: no longer due
        if outcomes:
            self.writer.submit(Batch(outcomes=outcomes))

    async def _leg_funding(self, source: str, symbol: str, from_ms: int, to_ms: int) -> list[FundingChange] | None:
        exchange, market = source_parts(source)
        if market != "futures":
            return None
        return await self.store.funding_changes(exchange, symbol, from_ms, to_ms)

    async def _maintain(self, slot: int) -> None:
        await self._store_open.wait()
        for line in await self.store.maintain(now_ms()):
            log.info("history maintenance: %s", line)


def build(config: AppConfig) -> Recorder:
    return Recorder(config)


def main(argv: list[str] | None = None) -> int:
    try:
        return run_main(argv, "python -m consumers.recorder", __doc__ or "", build, needs_universe=False)
    except SchemaTooNew as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
