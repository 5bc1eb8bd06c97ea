"""python -m consumers.spread_tracker: record each opportunity until its spread converges.

On opportunity.open it samples the pair's quotes every sample_interval_ms into its own file under
data/tracks/, until the engine's close event, its own exit rule (net spread <= spreads.exit_pct) or
max_duration_seconds; index.json lists every open opportunity and the last index_max_entries closed
ones with start, end, reason, peak and duration. A converged pair is free for a new signal at once.
After a restart, open tracks resume from their files (a gap row marks the pause) and tracks past their
time limit close as expired. Every file write runs on the tracker's writer thread, in order, so a slow
disk delays rows, never the quotes and events the event loop takes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aio_pika
import orjson
from pydantic import ValidationError

from consumers.quotes import Quote, subscribe_quotes
from consumers.runner import run_main
from consumers.spread_evaluator import fees_of
from consumers.spread_math import net_pct, spread_pct
from consumers.tracks import TrackEntry, TrackStore, beyond_limit, index_payload
from discovery.follower import UniverseChange, UniverseFollower
from models.analytics import OpportunityEvent
from models.config import AppConfig
from models.universe import Universe, read_universe
from publishers.broker_connection import connect_robust
from publishers.durable_queues import declare_durable_queue
from utils.file_writer import FileWriter

log = logging.getLogger("spread_tracker")

EVENTS_QUEUE = "futures_spread_tracker_events"
"""Durable, so a close sent while the tracker restarts is still delivered."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SpreadTracker:
    log = log

    def __init__(self, config: AppConfig, universe: Universe, events_queue: str = EVENTS_QUEUE) -> None:
        self.config = config
        self.settings = config.tracker
        self.store = TrackStore(self.settings.directory)
        self.writer = FileWriter("tracker-files")
        self.events_queue = events_queue
        self.fees = fees_of(universe)
        self.universe_follower = UniverseFollower(config.universe_dir, config.discovery.watch_seconds,
                                                  self._follow_universe, universe, log)
        self.quotes: dict[tuple[str, str], Quote] = {}
        self.entries: dict[str, TrackEntry] = {}
        self.open: dict[str, TrackEntry] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._follow_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.writer.run(self._recover)
        rabbitmq = self.config.rabbitmq
        self._connection = await connect_robust(rabbitmq.amqp_urls(), f"{rabbitmq.connection_name} spread tracker")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        await subscribe_quotes(channel, rabbitmq.exchange, self._on_quote, self._on_invalid)
        analytics = await channel.declare_exchange(self.config.spreads.analytics_exchange,
                                                   aio_pika.ExchangeType.TOPIC, durable=True)
        events = await declare_durable_queue(channel, self.events_queue, rabbitmq.queue_type)
        await events.bind(analytics, "opportunity.#")
        await events.consume(self._on_event)
        self._task = asyncio.create_task(self._sample_forever(), name="tracker-sampling")
        self._follow_task = asyncio.create_task(self.universe_follower.run(), name="tracker-universe-follower")
        log.info("tracking into %s (%d open after recovery)", self.store.directory, len(self.open))

    def report(self) -> str:
        return f"{len(self.open)} open track(s), {len(self.entries)} in the index"

    async def stop(self) -> None:
        for task in (self._task, self._follow_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._connection is not None:
            await self._connection.close()
        await self._save_index()
        self.writer.close()

    # --- recovery -------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Runs on the writer thread, before anything else of this tracker runs."""
        self.entries = self.store.load_index()
        now = now_ms()
        limit_ms = self.settings.max_duration_seconds * 1000
        for entry in self.entries.values():
            if entry.closed_at is not None:
                continue
            self.store.end_torn_line(entry)
            last = self.store.last_time(entry)
            if now - entry.opened_at >= limit_ms:
                self._end(entry, "expired", (last or now))
                continue
            self.store.append(entry, {"t": now, "gap_from": last})
            self.open[entry.opportunity_id] = entry
            log.info("resumed %s %s -> %s (sampling paused since %s)", entry.symbol, entry.buy, entry.sell, last)
        dropped = self._drop_beyond_limit()
        if dropped:
            log.info("index.json: left out the %d oldest closed opportunities (tracker.index_max_entries = %d); "
                     "their track files stay", dropped, self.settings.index_max_entries)
        self.store.save_index(self.entries)

    # --- input ----------------------------------------------------------------------------------

    def _on_invalid(self, routing_key: str, error: ValidationError) -> None:
        log.warning("skipped a message that is not the contract on %s: %s", routing_key, error)

    def _on_quote(self, quote: Quote) -> None:
        self.quotes[(quote.source, quote.name)] = quote

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            try:
                event = OpportunityEvent.model_validate_json(message.body)
            except ValidationError as error:
                log.warning("skipped an event that is not an OpportunityEvent: %s", error)
                return
            if event.event == "open" and event.opportunity_id not in self.entries:
                entry = TrackEntry(
                    opportunity_id=event.opportunity_id, symbol=event.symbol, buy=event.buy, sell=event.sell,
                    opened_at=event.opened_at, file=f"{event.opportunity_id}.jsonl", peak_net_pct=event.peak_net_pct,
                )
                self.entries[entry.opportunity_id] = entry
                self.open[entry.opportunity_id] = entry
                await self._save_index()
                log.info("tracking %s: buy %s, sell %s", event.symbol, event.buy, event.sell)
            elif event.event == "close" and event.opportunity_id in self.open:
                await self._close(self.open[event.opportunity_id], f"closed by engine ({event.reason})", now_ms())

    async def _follow_universe(self, old: Universe, new: Universe, change: UniverseChange) -> None:
        """A rediscovered universe: its fees from now on; a track whose leg is no longer listed ends as
        `delisted` (the engine's close, if it comes, then finds nothing open)."""
        self.fees = fees_of(new)
        listed = {(listing.source, symbol.name) for symbol in new.symbols for listing in symbol.listings}
        gone = [entry for entry in self.open.values()
                if (entry.buy, entry.symbol) not in listed or (entry.sell, entry.symbol) not in listed]
        now = now_ms()
        for entry in gone:
            self._end(entry, "delisted", now)
        if gone:
            self._drop_beyond_limit()
            await self._save_index()
        log.info("new universe: fees of %d listings (%s); %d track(s) ended as delisted", len(self.fees),
                 change.describe(), len(gone))

    # --- sampling -------------------------------------------------------------------------------

    async def _sample_forever(self) -> None:
        interval = self.settings.sample_interval_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at = max(next_at + interval, loop.time())  # after a stalled write, resume; no burst of rows
            await asyncio.sleep(next_at - loop.time())
            await self.sample(now_ms())

    async def sample(self, now: int) -> None:
        """One row per open track; returns once the rows (and any close) are on disk."""
        limit_ms = self.settings.max_duration_seconds * 1000
        rows: list[tuple[str, bytes]] = []
        ended: list[tuple[TrackEntry, str]] = []
        for entry in list(self.open.values()):
            if now - entry.opened_at >= limit_ms:
                ended.append((entry, "expired"))
                continue
            buy, sell = self.quotes.get((entry.buy, entry.symbol)), self.quotes.get((entry.sell, entry.symbol))
            if buy is None or sell is None:
                continue
            default_fee = self.config.spreads.default_taker_fee
            net = net_pct(buy.ask, sell.bid, self.fees.get((entry.buy, entry.symbol), default_fee),
                          self.fees.get((entry.sell, entry.symbol), default_fee))
            rows.append((entry.file, orjson.dumps({
                "t": now, "buy_ask": buy.ask, "sell_bid": sell.bid, "spread_pct": spread_pct(buy.ask, sell.bid),
                "net_pct": net, "buy_ts": buy.timestamp, "sell_ts": sell.timestamp,
            })))
            entry.rows += 1
            entry.peak_net_pct = max(entry.peak_net_pct or net, net)
            if net <= self.config.spreads.exit_pct:
                ended.append((entry, "converged"))
        for entry, reason in ended:
            self._end(entry, reason, now)
        if rows:
            await self.writer.run(self.store.append_rows, rows)
        if ended:
            self._drop_beyond_limit()
            await self._save_index()

    async def _close(self, entry: TrackEntry, reason: str, at: int) -> None:
        self._end(entry, reason, at)
        self._drop_beyond_limit()
        await self._save_index()

    async def _save_index(self) -> None:
        await self.writer.run(self.store.write_index, index_payload(self.entries))

    def _drop_beyond_limit(self) -> int:
        """Keep index.json (and memory) to the open tracks and the last index_max_entries closed ones."""
        dropped = beyond_limit(self.entries, self.settings.index_max_entries)
        for opportunity_id in dropped:
            del self.entries[opportunity_id]
        return len(dropped)

    def _end(self, entry: TrackEntry, reason: str, at: int) -> None:
        entry.closed_at, entry.reason = at, reason
        self.open.pop(entry.opportunity_id, None)
        log.info("%s %s -> %s ended: %s after %.1f s, peak %.3f %%", entry.symbol, entry.buy, entry.sell, reason,
                 entry.duration_seconds or 0, entry.peak_net_pct or 0)


def main(argv: list[str] | None = None) -> int:
    return run_main(
        argv, "python -m consumers.spread_tracker", __doc__ or "",
        lambda config: SpreadTracker(config, read_universe(config.universe_dir)),
    )


if __name__ == "__main__":
    raise SystemExit(main())
