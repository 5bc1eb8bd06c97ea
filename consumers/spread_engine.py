"""python -m consumers.spread_engine: spreads and opportunities from the collector's stream.

Consumes futures.# and spot.# like any user's consumer, evaluates every direction of the discovered
universe that an update concerns, and publishes to the `futures_analytics` topic exchange:
spread snapshots on spread.<SYMBOL>.<buy>.<sell> (latest wins, at most max_snapshots_per_second per
key) and opportunity lifecycle events on opportunity.open|update|close.<SYMBOL> (never conflated).
Open opportunities whose legs stopped updating are closed as stale by a sweep every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aio_pika
import orjson
from pydantic import ValidationError

from consumers.quotes import Quote, subscribe_quotes
from consumers.runner import run_main
from consumers.spread_evaluator import SpreadEvaluator
from discovery.follower import UniverseChange, UniverseFollower
from models.analytics import OpportunityEvent, SpreadSnapshot, opportunity_key, spread_key
from models.config import AppConfig
from models.universe import Universe, read_universe
from publishers.broker_connection import connect_robust
from publishers.rabbitmq_publisher import RabbitMQPublisher

log = logging.getLogger("spread_engine")

STALE_SWEEP_SECONDS = 1.0
"""How often open opportunities are checked for stale legs: at least this often, a quarter of max_quote_age_ms
when that is shorter, but never more often than every MIN_STALE_SWEEP_SECONDS."""
MIN_STALE_SWEEP_SECONDS = 0.05
EVENTS_DRAIN_SECONDS = 5.0
"""On stop, how long opportunity events already made may take to reach the broker."""


@dataclass
class Outgoing:
    """A serialized snapshot for the conflating publisher."""

    routing_key: str
    body: bytes
    received_ms: int
    received_ns: int

    def to_json(self, published_ms: int) -> bytes:
        return self.body


class SpreadEngine:
    log = log

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        settings = config.spreads
        self.evaluator = SpreadEvaluator(read_universe(config.universe_dir), settings)
        self.snapshots = RabbitMQPublisher(
            urls=config.rabbitmq.amqp_urls(), exchange=settings.analytics_exchange,
            max_message_age_ms=config.collection.max_message_age_ms, retry_delays=config.collection.retry_delays,
            connection_name=f"{config.rabbitmq.connection_name} spread engine",
        )
        self._interval_ms = 1000 / settings.max_snapshots_per_second
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, Outgoing] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._events: aio_pika.abc.AbstractExchange | None = None
        self._events_out: asyncio.Queue[OpportunityEvent] = asyncio.Queue()
        self.invalid_messages = 0
        self._quotes: aio_pika.abc.AbstractChannel | None = None
        self._events_publisher: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.universe_follower = UniverseFollower(config.universe_dir, config.discovery.watch_seconds,
                                                  self._follow_universe, self.evaluator.universe, log)

    async def start(self) -> None:
        await self.snapshots.start()
        self._connection = await connect_robust(
            self.config.rabbitmq.amqp_urls(), f"{self.config.rabbitmq.connection_name} spread engine in"
        )
        channel = await self._connection.channel()
        self._events = await channel.declare_exchange(
            self.config.spreads.analytics_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._quotes = await self._connection.channel()
        await self._quotes.set_qos(prefetch_count=1000)
        await subscribe_quotes(self._quotes, self.config.rabbitmq.exchange, self._on_quote, self._on_invalid)
        self._events_publisher = asyncio.create_task(self._publish_events_in_order(), name="spread-events")
        self._tasks = [asyncio.create_task(self._release_held(), name="spread-release"),
                       asyncio.create_task(self._sweep_stale(), name="spread-stale-sweep"),
                       asyncio.create_task(self.universe_follower.run(), name="spread-universe-follower")]
        universe = self.evaluator.universe
        log.info("evaluating %d directions over %d symbols; publishing to %s", len(universe.directions),
                 len(universe.symbols), self.config.spreads.analytics_exchange)

    def report(self) -> str:
        counters = self.evaluator.counters
        return (f"{counters.updates} updates, {counters.evaluations} evaluations, skipped {counters.skipped_stale} "
                f"stale and {counters.skipped_skew} skewed, {counters.opened} opened, {counters.closed} closed "
                f"({counters.closed_stale} stale), "
                f"{self.snapshots.stats.published} snapshots published, {self.invalid_messages} invalid messages")

    async def stop(self) -> None:
        """Stop making events (quotes, sweeps), then let the ones made go out, then close."""
        if self._quotes is not None:
            with contextlib.suppress(Exception):  # a channel the broker already closed
                await self._quotes.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._events_publisher is not None:
            with contextlib.suppress(TimeoutError):  # the events already made go out, if the broker takes them
                await asyncio.wait_for(self._events_out.join(), EVENTS_DRAIN_SECONDS)
            self._events_publisher.cancel()
            await asyncio.gather(self._events_publisher, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        await self.snapshots.close()

    def _on_invalid(self, routing_key: str, error: ValidationError) -> None:
        self.invalid_messages += 1
        log.warning("skipped a message that is not the contract on %s: %s", routing_key, error)

    def _on_quote(self, quote: Quote) -> None:
        for snapshot, transition, event in self.evaluator.on_quote(quote):
            if snapshot is not None:
                self._offer(snapshot)
            if event is not None and (transition is not None or self._update_due(event)):
                self._events_out.put_nowait(event)

    async def _sweep_stale(self) -> None:
        """Close opportunities whose legs went quiet: no update arrives that would close them otherwise."""
        interval = max(MIN_STALE_SWEEP_SECONDS, min(STALE_SWEEP_SECONDS, self.config.spreads.max_quote_age_ms / 4000))
        while True:
            await asyncio.sleep(interval)
            for event in self.evaluator.close_stale():
                self._events_out.put_nowait(event)

    async def _follow_universe(self, old: Universe, new: Universe, change: UniverseChange) -> None:
        """A rediscovered universe: evaluate its directions from now on; close what a delisting ended."""
        closed = self.evaluator.replace_universe(new)
        log.info("new universe: %d directions over %d symbols (%s); %d open opportunit(ies) closed as delisted",
                 len(new.directions), len(new.symbols), change.describe(), len(closed))
        for event in closed:
            self._events_out.put_nowait(event)

    def _offer(self, snapshot: SpreadSnapshot) -> None:
        """Latest wins per key, and at most one per interval; held ones go out when their time comes."""
        key = spread_key(snapshot.symbol, snapshot.buy.source, snapshot.sell.source)
        outgoing = Outgoing(key, orjson.dumps(snapshot.model_dump()), snapshot.timestamp, time.perf_counter_ns())
        now = time.monotonic() * 1000
        if now - self._last_sent.get(key, -self._interval_ms) >= self._interval_ms:
            self._last_sent[key] = now
            self._held.pop(key, None)
            self.snapshots.submit(outgoing)
        else:
            self._held[key] = outgoing

    async def _release_held(self) -> None:
        while True:
            await asyncio.sleep(self._interval_ms / 2000)
            now = time.monotonic() * 1000
            for key, outgoing in list(self._held.items()):
                if now - self._last_sent.get(key, 0) >= self._interval_ms:
                    self._last_sent[key] = now
                    del self._held[key]
                    self.snapshots.submit(outgoing)

    def _update_due(self, event: OpportunityEvent) -> bool:
        key = f"update:{event.opportunity_id}"
        now = time.monotonic() * 1000
        if now - self._last_sent.get(key, 0) < 1000:
            return False
        self._last_sent[key] = now
        return True

    async def _publish_events_in_order(self) -> None:
        """Events leave in the order the evaluator made them, one at a time. Published from each caller, an update
        computed before a stale sweep could go out after that sweep's close (a publish awaits the broker), and a
        consumer would see the opportunity come back from the dead and stay open for good."""
        while True:
            event = await self._events_out.get()
            try:
                await self._publish_event(event)
            except Exception as error:  # the broker is away: the events after it still go out when it can
                log.warning("could not publish the %s of %s: %s: %s", event.event, event.opportunity_id,
                            type(error).__name__, error)
            finally:
                self._events_out.task_done()

    async def _publish_event(self, event: OpportunityEvent) -> None:
        assert self._events is not None
        if event.event == "close":
            self._last_sent.pop(f"update:{event.opportunity_id}", None)
        log.log(logging.INFO if event.event != "update" else logging.DEBUG,
                "opportunity %s %s: buy %s, sell %s, net %.3f %% (peak %.3f %%)%s", event.event, event.symbol,
                event.buy, event.sell, event.snapshot.net_pct, event.peak_net_pct,
                f", {event.reason}" if event.reason else "")
        await self._events.publish(
            aio_pika.Message(orjson.dumps(event.model_dump()), content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=opportunity_key(event.event, event.symbol),
        )


def main(argv: list[str] | None = None) -> int:
    return run_main(argv, "python -m consumers.spread_engine", __doc__ or "", SpreadEngine)


if __name__ == "__main__":
    raise SystemExit(main())
