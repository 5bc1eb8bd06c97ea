"""The shared market-data publisher: conflating, batched, never blocking the feed.

Collectors call `submit()`, which records the update as pending for its routing key and returns.
Everything pending goes to the socket as one write: at the end of the current burst of venue
frames, or at once when the oldest pending update has waited `MAX_BATCH_DELAY_NS`.

At most `max_in_flight` messages are on their way to the broker (sent, not yet confirmed). When
RabbitMQ is slower than the feed, or gone, the rest waits as pending, one update per routing key:
newer updates replace older ones (counted as `conflated`), so memory is bounded by the number of
keys and staleness by the window, not by socket buffers. When the broker is back, every key's
latest state is sent; anything older than `max_message_age_ms` by then is dropped (`expired`).

Given several broker addresses (a cluster's nodes, `rabbitmq.urls`), a dial goes once round them, starting with
the one after the node dialed last: a connection lost on one node is dialed again at once on the next; the
configured backoff passes only between rounds that found no node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import aiormq
from pamqp import commands as spec
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_chain, wait_fixed

from models.config import mask_password
from publishers.aiormq_seams import (
    ConfirmDivertingReader,
    WriterKeepingTransport,
    broker_reply_text,
    take_confirms,
    watch_broker_close,
)
from publishers.amqp_frames import PublishFrameEncoder
from publishers.broker_addresses import CONNECT_TIMEOUT_SECONDS, AddressRing
from publishers.confirm_window import ConfirmWindow
from publishers.exchange_settings import ExchangeMismatchError, check_existing_exchange
from utils.latency import LatencyWindow

log = logging.getLogger("rabbitmq")

MAX_FRAMES_PER_WRITE = 1000
"""Messages per socket write; bounds one write's size after an outage."""
MAX_BATCH_DELAY_NS = 500_000
"""A burst of venue frames is cut into writes at least this often (0.5 ms)."""
STATUS_LATENCY_SAMPLES = 16384
"""Receipt->publish samples kept for the heartbeat's percentiles: sorting them stalls the loop ~2 ms per heartbeat."""
DIAL_FAILURES = (ConnectionError, OSError, aiormq.exceptions.AMQPError, TimeoutError)

AIORMQ_OUTAGE_REPORTS = (
    "error when creating transport",
    "Unexpected connection close from remote",
    "Cancelling cause reader exited abnormally",
)

_REPORTS_ITS_OWN_OUTAGES: ContextVar[bool] = ContextVar("rabbitmq_publisher_connection", default=False)
"""Set in the publisher's connection task; aiormq's tasks for that connection inherit it."""


def _not_our_outage_report(record: logging.LogRecord) -> bool:
    """aiormq logs each failed dial and each lost connection, with tracebacks; for its own connection
    the publisher reports an outage once, itself (one ERROR per outage, not per attempt). Every other
    aiormq/aio-pika connection in the process keeps aiormq's reports."""
    return not (_REPORTS_ITS_OWN_OUTAGES.get() and str(record.msg).startswith(AIORMQ_OUTAGE_REPORTS))


logging.getLogger("aiormq.connection").addFilter(_not_our_outage_report)

class Publishable(Protocol):
    """What the publisher needs from an update; the collector's market state provides it."""

    routing_key: str
    received_ms: int
    received_ns: int
    """time.perf_counter_ns() at receipt, for the receipt->publish latency."""

    def to_json(self, published_ms: int) -> bytes | None:
        """The message body, or None when the update is not publishable right now."""


@dataclass
class PublisherStats:
    published: int = 0
    """Messages the broker confirmed."""
    failed: int = 0
    """Updates that could not be serialized, and messages the broker refused (nack)."""
    conflated: int = 0
    expired: int = 0
    reconnects: int = 0
    """Outages recovered from: a lost connection, or a channel the broker closed."""
    connected: bool = False
    """False while nothing can be published."""

    def as_dict(self) -> dict[str, int | bool]:
        return dict(self.__dict__)


@dataclass
class _Link:
    """One open publishing channel and the socket its frames are written on."""

    writer: asyncio.StreamWriter
    encoder: PublishFrameEncoder
    open: bool = True
    """False from the moment the broker closes the channel: nothing may be written on it after."""
    closed: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """The broker's reason, once the channel is closed."""

    @property
    def usable(self) -> bool:
        return self.open and not self.writer.transport.is_closing()

    def mark_closed(self, reason: str) -> None:
        self.open = False
        if not self.closed.done():
            self.closed.set_result(reason)


class RabbitMQPublisher:
    def __init__(
        self,
        urls: str | Sequence[str],
        exchange: str,
        max_message_age_ms: int,
        retry_delays: Sequence[float] = (1.0, 2.0, 4.0),
        max_in_flight: int = 500,
        connection_name: str = "futures-scan publisher",
    ) -> None:
        """`urls`: one broker address, or a cluster's nodes in failover order."""
        self._addresses = AddressRing(urls)
        self._node = ""
        """The address of the connection being made or in use, password masked, for logs."""
        self._exchange = exchange
        self._max_age_ms = max_message_age_ms
        self._retry_delays = list(retry_delays)
        self._max_in_flight = max_in_flight
        self._connection_name = connection_name
        self.stats = PublisherStats()
        self.latency_ms = LatencyWindow()
        """Receipt -> written to the broker's socket, per message sent; the statistics block resets it each interval."""
        self.status_latency_ms = LatencyWindow(STATUS_LATENCY_SAMPLES)
        """The same samples for the status heartbeat, which resets it each heartbeat (its own interval)."""
        self.observe_latency_seconds: Callable[[float], None] | None = None
        """Set while /metrics is served: its receipt->publish histogram sees every message sent."""
        self._pending: dict[str, Publishable] = {}
        self._batch_started_ns = 0
        self._last_sent: dict[str, Publishable] = {}
        """The latest update sent per key, sent again after a reconnect."""
        self._window = ConfirmWindow()
        self._connection: aiormq.Connection | None = None
        self._writer: asyncio.StreamWriter | None = None
        """The connection's socket, where publishes are written."""
        self._reader: ConfirmDivertingReader | None = None
        """What aiormq reads the connection's frames from; the publishing channel's confirms stop there."""
        self._link: _Link | None = None
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._outage_started: float | None = None
        self._failed_attempts = 0
        """Channels or connections lost in this outage before publishing resumed; sets the backoff."""
        self._tolerated_mismatch = ""
        self._refused = asyncio.Event()
        self.refusal: ExchangeMismatchError | None = None

    # --- the feed side: synchronous, never waits ----------------------------------------------

    def submit(self, update: Publishable) -> None:
        pending = self._pending
        key = update.routing_key
        if key in pending:
            self.stats.conflated += 1
        elif not pending:
            self._batch_started_ns = time.perf_counter_ns()
            self._wake.set()
        pending[key] = update
        if time.perf_counter_ns() - self._batch_started_ns > MAX_BATCH_DELAY_NS:
            self._flush()

    def forget(self, routing_key: str) -> None:
        """A market is no longer collected: drop what is pending for it and don't resend it."""
        self._pending.pop(routing_key, None)
        self._last_sent.pop(routing_key, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return self._window.in_flight

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep_connected(), name="rabbitmq-connection"),
            asyncio.create_task(self._flush_forever(), name="rabbitmq-flush"),
        ]

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_refused(self) -> ExchangeMismatchError:
        """Returns once the exchange turned out unusable; the publisher has given up (see ExchangeMismatchError)."""
        await self._refused.wait()
        assert self.refusal is not None
        return self.refusal

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Send what is pending and wait for its confirms if the broker is there, then disconnect."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout):
                while (link := self._link) is not None and link.usable and (self._pending or self._window.in_flight):
                    self._flush()
                    await asyncio.sleep(0.01)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    # --- connection and channel -----------------------------------------------------------------

    async def _keep_connected(self) -> None:
        _REPORTS_ITS_OWN_OUTAGES.set(True)
        try:
            while not self._closing:
                await self._connect_with_retries()
                assert self._connection is not None
                reason = await self._publish_on(self._connection)
                self._link = None
                if not self._closing:
                    self._report_outage(f"connection lost ({self._node}): {reason}")
                    await self._disconnect()
                    await asyncio.sleep(self._next_delay())
        except ExchangeMismatchError as error:
            self._link = None
            log.error("%s", error)
            self.refusal = error
            self._refused.set()
            await self._disconnect()

    async def _connect_with_retries(self) -> None:
        retrying = AsyncRetrying(
            wait=wait_chain(*(wait_fixed(delay) for delay in self._retry_delays)),
            retry=retry_if_exception_type(DIAL_FAILURES),
            before_sleep=self._log_failed_attempt,
        )
        async for attempt in retrying:
            with attempt:
                self._connection = await self._connect()

    async def _connect(self) -> aiormq.Connection:
        """The first node of one round over the addresses that takes the connection; else the last one's error."""
        return await self._addresses.first_answering(self._dial, DIAL_FAILURES)

    async def _dial(self, url: str) -> aiormq.Connection:
        self._node = mask_password(url)
        transport = WriterKeepingTransport(tls=url.startswith("amqps://"))
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            connection = await aiormq.connect(
                url, client_properties={"connection_name": self._connection_name}, transport_factory=transport
            )
        assert transport.writer is not None
        self._writer = transport.writer
        self._reader = transport.reader
        return connection

    async def _publish_on(self, connection: aiormq.Connection) -> str:
        """Keep a publishing channel open on this connection, reopening it (same connection) when the
        broker closes it; returns why the connection closed."""
        connection_closed = asyncio.ensure_future(self._wait_closed(connection))
        try:
            while True:
                try:
                    link = await self._open_link(connection)
                except aiormq.exceptions.AMQPChannelError as error:
                    if connection_closed.done():
                        return connection_closed.result()
                    reason = broker_reply_text(error)
                else:
                    self._on_link_up(link)
                    await asyncio.wait((link.closed, connection_closed), return_when=asyncio.FIRST_COMPLETED)
                    link.open = False
                    self._link = None
                    if connection_closed.done():
                        return connection_closed.result()
                    reason = link.closed.result()
                self._report_outage(f"channel closed by the broker: {reason}")
                await asyncio.wait((connection_closed,), timeout=self._next_delay())
                if connection_closed.done():
                    return connection_closed.result()
        except ExchangeMismatchError:
            raise
        except Exception as error:
            if connection_closed.done():
                return connection_closed.result()
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        finally:
            connection_closed.cancel()

    async def _open_link(self, connection: aiormq.Connection) -> _Link:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            channel = await self._declared_channel(connection)
            # Confirms are tracked here, per window, not per message as aiormq would: put the channel in
            # confirm mode ourselves and take the broker's acks where aiormq's channel reader hands them over.
            await channel.rpc(spec.Confirm.Select())
        assert self._writer is not None
        encoder = PublishFrameEncoder(channel.number, self._exchange, connection.connection_tune.frame_max)
        link = _Link(self._writer, encoder)
        take_confirms(channel, self._on_confirm)
        if self._reader is not None:
            self._reader.divert_confirms(channel.number, self._settle)
        watch_broker_close(channel, link.mark_closed)
        channel.closing.add_done_callback(lambda closing: link.mark_closed(_closed_reason(closing)))
        return link

    async def _declared_channel(self, connection: aiormq.Connection) -> aiormq.abc.AbstractChannel:
        """A channel on which the exchange exists: declared as a durable topic exchange, or, when it
        exists with settings that only change its lifetime, taken as it is."""
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.exchange_declare(exchange=self._exchange, exchange_type="topic", durable=True)
        except aiormq.exceptions.ChannelPreconditionFailed as error:
            self._accept_existing_exchange(broker_reply_text(error))  # or raise ExchangeMismatchError
        else:
            return channel
        channel = await connection.channel(publisher_confirms=False)
        await channel.exchange_declare(exchange=self._exchange, passive=True)
        return channel

    def _accept_existing_exchange(self, mismatch: str) -> None:
        check_existing_exchange(self._exchange, mismatch)
        if mismatch != self._tolerated_mismatch:
            self._tolerated_mismatch = mismatch
            log.warning(
                "RabbitMQ exchange '%s' exists with other settings than the durable topic exchange the collector "
                "declares (%s); publishing to it as it is", self._exchange, mismatch,
            )

    def _on_link_up(self, link: _Link) -> None:
        self._link = link
        self._window.reset()
        if self._outage_started is None:
            log.info("connected to RabbitMQ at %s, exchange %s (topic)", self._node, self._exchange)
            self._publishing()
            return
        # Whatever was in flight when the link broke may be lost: send every key's latest state. The
        # outage is over once the broker confirms a publish (a refused one closes the channel again).
        for key, update in self._last_sent.items():
            self._pending.setdefault(key, update)
        self._flush()
        if not self._window.in_flight:
            self._end_outage()

    def _end_outage(self) -> None:
        assert self._outage_started is not None
        log.info(
            "RabbitMQ publishing restored after %.1f s (%s); the latest update of every key is sent again",
            time.monotonic() - self._outage_started, self._node,
        )
        self._outage_started = None
        self.stats.reconnects += 1
        self._publishing()

    def _publishing(self) -> None:
        self._failed_attempts = 0
        self.stats.connected = True
        self._connected.set()
        self._wake.set()

    def _next_delay(self) -> float:
        """No wait before the first retry of an outage; then the configured backoff."""
        attempt, self._failed_attempts = self._failed_attempts, self._failed_attempts + 1
        return 0.0 if attempt == 0 else self._retry_delays[min(attempt - 1, len(self._retry_delays) - 1)]

    def _log_failed_attempt(self, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        reason = f"{type(error).__name__}: {error}" if error else "unknown error"
        nodes = len(self._addresses.urls)
        where = self._node if nodes == 1 else f"any of the {nodes} nodes (the last tried: {self._node})"
        self._report_outage(f"cannot connect to {where}: {reason}")

    def _report_outage(self, reason: str) -> None:
        """One ERROR when publishing stops; retries of the same outage only at DEBUG."""
        self._connected.clear()
        self.stats.connected = False
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            log.error("RabbitMQ %s; keeping the latest update per routing key and retrying", reason)
        else:
            log.debug("RabbitMQ still unavailable: %s", reason)

    @staticmethod
    async def _wait_closed(connection: aiormq.Connection) -> str:
        try:
            await connection.closing
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return "closed"

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._link = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)

    async def _on_confirm(self, frame: spec.Basic.Ack | spec.Basic.Nack) -> None:
        """A confirm that came through aiormq (the reader passes one on now and then; see aiormq_seams)."""
        self._settle(frame.delivery_tag, frame.multiple, isinstance(frame, spec.Basic.Nack))

    def _settle(self, delivery_tag: int, multiple: bool, nack: bool) -> None:
        settled = self._window.confirm(delivery_tag, multiple)
        if nack:
            self.stats.failed += settled
            log.warning("the broker refused %d message(s) (nack up to tag %d)", settled, delivery_tag)
        else:
            self.stats.published += settled
            if self._outage_started is not None:
                self._end_outage()
        if self._pending:
            self._wake.set()

    # --- flushing -------------------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        """Write what is pending, in batches, as far as the link and the confirm window allow."""
        link = self._link
        if link is None or not link.usable:
            return
        while self._pending and (room := self._max_in_flight - self._window.in_flight) > 0:
            batch = self._take_batch(min(room, MAX_FRAMES_PER_WRITE))
            frames: list[bytes] = []
            published_ms = time.time_ns() // 1_000_000
            now_ns = time.perf_counter_ns()
            oldest_allowed = published_ms - self._max_age_ms
            last_sent = self._last_sent
            latency_window, status_window = self.latency_ms, self.status_latency_ms
            observe_seconds = self.observe_latency_seconds
            sent = 0
            for update in batch:
                if update.received_ms < oldest_allowed:
                    self.stats.expired += 1
                    continue
                try:
                    body = update.to_json(published_ms)
                except Exception:
                    self.stats.failed += 1
                    log.exception("could not serialize the update for %s; dropped", update.routing_key)
                    continue
                if body is None:
                    continue
                link.encoder.encode(update.routing_key, body, frames)
                latency_ms = (now_ns - update.received_ns) / 1e6
                latency_window.record(latency_ms)
                status_window.record(latency_ms)
                if observe_seconds is not None:
                    observe_seconds(latency_ms / 1000)
                last_sent[update.routing_key] = update
                sent += 1
            if sent:
                link.writer.write(b"".join(frames))
                self._window.sent(sent)

    def _take_batch(self, size: int) -> list[Publishable]:
        pending = self._pending
        if len(pending) <= size:
            self._pending = {}
            return list(pending.values())
        keys = list(pending)[:size]
        return [pending.pop(key) for key in keys]


def _closed_reason(closing: asyncio.Future[object]) -> str:
    if closing.cancelled():
        return "channel closed"
    error = closing.exception()
    return broker_reply_text(error) if error is not None else "channel closed"
