"""Reading the market-data log (the RabbitMQ stream of publishers/log_stream.py) back from a point in time.

The stream is read over AMQP 0-9-1 like a queue, with the differences streams impose: a prefetch is required, the
consumer acknowledges (an ack only returns credit; nothing is removed), and `x-stream-offset` says where to attach.
A timestamp offset lands on the start of a chunk written at or before it (whole seconds, the broker's clock), so the
reader attaches a little earlier and keeps each message by its own time: the AMQP timestamp property where a
publisher sets one, else the FuturesData body's published_timestamp (the collector sets no timestamp property).

What was read goes to a sink: JSON lines (stdout or a file), or a topic exchange, republished with publisher confirms
and a bounded number in flight, in the stream's order, at the original pace or faster.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, Protocol

import aiormq
import orjson
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pydantic import ValidationError

from models.futures_data import FuturesData
from publishers.aiormq_seams import broker_reply_text
from publishers.broker_addresses import CONNECT_TIMEOUT_SECONDS
from publishers.exchange_settings import ExchangeMismatchError, check_existing_exchange
from utils.statistics import now_ms

PREFETCH = 1000
"""Deliveries outstanding at once; RabbitMQ refuses a stream consumer without a prefetch."""
OFFSET_MARGIN_MS = 10_000
"""The stream is entered this much before --from: chunk timestamps are the broker's clock in whole seconds."""
END_GRACE_MS = 2_000
"""Past --to, reading goes on until a message this much later: several collectors' clocks and batches interleave."""
MAX_IN_FLIGHT = 500
"""Republished messages not yet confirmed by the broker; the reader waits beyond it."""
FINISH_TIMEOUT_SECONDS = 30.0
"""How long the last confirms may take at the end."""
_CURRENT_SIZE_CAP = re.compile(r"inequivalent arg 'x-max-length-bytes' .* current is the value '(\d+)'")
_CLOSED = object()
"""Queued when reading must end at once (the connection closed, or a stop was asked for)."""


class StreamUnavailable(Exception):
    """RabbitMQ cannot be reached, or there is no stream of that name."""


class ReplayFailed(Exception):
    """Replaying broke off midway: the connection was lost, or the broker refused a republished message."""


class ExchangeRefused(Exception):
    """The exchange to republish into exists with settings that cannot take the messages."""


@dataclass
class ReplayWindow:
    start_ms: int
    end_ms: int | None = None
    follow: bool = False
    """Keep reading at the log's end for new messages (until end_ms, if set) instead of stopping there."""


@dataclass
class ReplayCounts:
    read: int = 0
    """Messages delivered from the stream (from a little before the window on)."""
    matched: int = 0
    """In the window and the bindings: handed to the sink."""
    invalid: int = 0
    """Bodies that are not FuturesData; skipped."""
    first_ms: int | None = None
    last_ms: int | None = None
    """Message times of the first and last matched message."""


class Sink(Protocol):
    description: str
    delivered: int
    """Messages done: written, or republished and confirmed."""

    async def start(self) -> None: ...

    async def send(self, routing_key: str, body: bytes, time_ms: int) -> None: ...

    async def finish(self) -> None: ...


class JsonLinesSink:
    """One JSON document per line: {"routing_key": ..., "body": {...}}."""

    def __init__(self, out: BinaryIO, description: str, close: bool = False) -> None:
        self.description = description
        self.delivered = 0
        self._out = out
        self._close = close
        """A file of its own (--out) is closed at the end; stdout is not."""

    async def start(self) -> None:
        return None

    async def send(self, routing_key: str, body: bytes, time_ms: int) -> None:
        if b"\n" in body:  # valid JSON, but a line of its own is the format's one rule
            body = orjson.dumps(orjson.loads(body))
        self._out.write(b'{"routing_key":' + orjson.dumps(routing_key) + b',"body":' + body + b"}\n")
        self.delivered += 1

    async def finish(self) -> None:
        self._out.flush()
        if self._close:
            self._out.close()


class ExchangeSink:
    """Republishes into a topic exchange under the same routing keys, with publisher confirms and at most
    MAX_IN_FLIGHT unconfirmed; a message the broker refuses, or a lost connection, stops the replay (nothing is
    skipped silently)."""

    PROPERTIES = spec.Basic.Properties(content_type="application/json", delivery_mode=1)

    def __init__(self, url: str, exchange: str, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.description = f"republished to exchange '{exchange}' (confirmed)"
        self.delivered = 0
        self.last_confirmed_ms: int | None = None
        self._url = url
        self._exchange = exchange
        self._room = asyncio.Semaphore(max_in_flight)
        self._in_flight: dict[asyncio.Task[object], int] = {}
        self._failure: str | None = None
        self._connection: aiormq.Connection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None

    async def start(self) -> None:
        self._connection = await _connect(self._url, "futures-scan replay publisher")
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            await channel.exchange_declare(self._exchange, exchange_type="topic", durable=True)
        except aiormq.exceptions.ChannelPreconditionFailed as error:
            reply = broker_reply_text(error)
            try:
                check_existing_exchange(self._exchange, reply)
            except ExchangeMismatchError:
                raise ExchangeRefused(
                    f"--publish-exchange '{self._exchange}' exists with settings replayed market data cannot be "
                    f"published to ({reply}); it needs a topic exchange: name another one"
                ) from None
            channel = await self._connection.channel(publisher_confirms=True)  # a topic exchange, other lifetime
        self._channel = channel

    async def send(self, routing_key: str, body: bytes, time_ms: int) -> None:
        self._raise_if_failed()
        await self._room.acquire()
        self._raise_if_failed()
        assert self._channel is not None
        # aiormq writes publishes in the order their tasks reach its channel lock (FIFO), which is this order
        task = asyncio.create_task(self._channel.basic_publish(
            body, exchange=self._exchange, routing_key=routing_key, properties=self.PROPERTIES, wait=False
        ))
        self._in_flight[task] = time_ms
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[object]) -> None:
        time_ms = self._in_flight.pop(task)
        self._room.release()
        if task.cancelled():
            self._failure = self._failure or "publishing was cancelled"
            return
        error = task.exception()
        if error is not None:
            reason = broker_reply_text(error) if isinstance(error, aiormq.exceptions.AMQPError) else repr(error)
            self._failure = self._failure or f"the connection to RabbitMQ failed ({reason})"
        elif isinstance(task.result(), spec.Basic.Ack):
            self.delivered += 1
            if self._failure is None:
                self.last_confirmed_ms = max(self.last_confirmed_ms or time_ms, time_ms)
        else:
            self._failure = self._failure or "the broker refused a message (nack)"

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise ReplayFailed(self._failure)

    async def finish(self) -> None:
        """Wait for every confirm, then close; raise if anything was not confirmed."""
        try:
            if self._in_flight:
                _, late = await asyncio.wait(list(self._in_flight), timeout=FINISH_TIMEOUT_SECONDS)
                if late:
                    unconfirmed = f"{len(late)} message(s) unconfirmed after {FINISH_TIMEOUT_SECONDS:g} s"
                    self._failure = self._failure or unconfirmed
            self._raise_if_failed()
        finally:
            if self._connection is not None and not self._connection.is_closed:
                await self._connection.close()


class LogReplay:
    """Reads the stream from the window's start, keeps what is in the window and matches the bindings, and hands it
    to the sink paced by the messages' own times (`speed` x faster; 0 = as fast as possible)."""

    def __init__(self, url: str, safe_url: str, stream: str, window: ReplayWindow, matches: Callable[[str], bool],
                 sink: Sink, speed: float, idle_seconds: float) -> None:
        self.counts = ReplayCounts()
        self._url = url
        self._safe_url = safe_url
        self._stream = stream
        self._window = window
        self._matches = matches
        self._sink = sink
        self._speed = speed
        self._idle_seconds = idle_seconds
        self._deliveries: asyncio.Queue[DeliveredMessage | object] = asyncio.Queue()
        self._anchor: tuple[int, float] | None = None
        """(message time, monotonic time) of the first message handed on: the pace is measured from it."""

    def stop(self) -> None:
        """End after the message at hand (Ctrl+C with --follow); what was read is still flushed and confirmed."""
        self._deliveries.put_nowait(_CLOSED)

    async def run(self) -> None:
        connection = await self._connect()
        try:
            await self._sink.start()
            channel = await self._attach(connection)
            connection.closing.add_done_callback(lambda _: self._deliveries.put_nowait(_CLOSED))
            await self._read(channel, connection)
            await self._sink.finish()
        finally:
            if not connection.is_closed:
                await connection.close()

    async def _connect(self) -> aiormq.Connection:
        try:
            return await _connect(self._url, "futures-scan replay")
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as error:
            raise StreamUnavailable(f"RabbitMQ at {self._safe_url} unreachable: {error!r}") from None

    async def _attach(self, connection: aiormq.Connection) -> aiormq.abc.AbstractChannel:
        await self._check_is_stream(connection)
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=PREFETCH)
        offset = datetime.fromtimestamp((self._window.start_ms - OFFSET_MARGIN_MS) / 1000, UTC)
        try:
            await channel.basic_consume(self._stream, self._deliveries.put, arguments={"x-stream-offset": offset})
        except aiormq.exceptions.AMQPChannelError as error:
            raise StreamUnavailable(f"RabbitMQ refused to read '{self._stream}': {broker_reply_text(error)}") from None
        return channel

    async def _check_is_stream(self, connection: aiormq.Connection) -> None:
        """Refuse a missing queue, and a classic or quorum queue of that name: reading one would take its messages
        away. A declare asking for a classic queue tells which, and changes nothing: RabbitMQ compares the arguments
        in a fixed order and names the first that differs, so a stream answers `inequivalent arg 'x-queue-type' ...
        current is 'stream'` once the one argument it may have that comes earlier (its size cap) is asked as it is."""
        channel = await connection.channel()
        try:
            await channel.queue_declare(self._stream, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise StreamUnavailable(
                f"no stream '{self._stream}' on {self._safe_url}: the collector declares it when rabbitmq.log_stream "
                "is set in its config (check the name, or pass --stream)"
            ) from None
        arguments: dict[str, object] = {"x-queue-type": "classic"}
        for _ in range(2):
            channel = await connection.channel()
            try:
                await channel.queue_declare(self._stream, durable=True, arguments=arguments)
            except aiormq.exceptions.ChannelPreconditionFailed as error:
                reply = broker_reply_text(error)
                if "current is 'stream'" in reply:
                    return
                size_cap = _CURRENT_SIZE_CAP.search(reply)
                if size_cap is None or "x-max-length-bytes" in arguments:
                    raise StreamUnavailable(f"'{self._stream}' on {self._safe_url} is not a stream ({reply})") from None
                arguments["x-max-length-bytes"] = int(size_cap.group(1))
            else:
                break
        raise StreamUnavailable(
            f"'{self._stream}' on {self._safe_url} is a classic queue, not a stream: reading it would remove its "
            "messages, so it is left alone"
        )

    async def _read(self, channel: aiormq.abc.AbstractChannel, connection: aiormq.Connection) -> None:
        window, counts = self._window, self.counts
        log_end_ms = now_ms()
        """Without --follow, the log's end is where it was when reading began."""
        while True:
            try:
                delivery = await asyncio.wait_for(self._deliveries.get(), self._wait_limit())
            except TimeoutError:
                return  # caught up: nothing more arrived for a while (or --to passed, following)
            if delivery is _CLOSED:
                if connection.is_closed:
                    raise ReplayFailed(f"the connection to RabbitMQ was lost after {counts.read} messages")
                return
            assert isinstance(delivery, DeliveredMessage)
            await channel.basic_ack(delivery.delivery_tag)
            counts.read += 1
            time_ms = self._message_time(delivery)
            if time_ms is None:
                counts.invalid += 1
                continue
            if window.end_ms is not None and time_ms > window.end_ms:
                if time_ms > window.end_ms + END_GRACE_MS:
                    return
                continue
            if not window.follow and time_ms >= log_end_ms:
                return
            routing_key = delivery.routing_key or ""
            if time_ms < window.start_ms or not self._matches(routing_key):
                continue
            await self._pace(time_ms)
            await self._sink.send(routing_key, delivery.body, time_ms)
            counts.matched += 1
            counts.first_ms = counts.first_ms if counts.first_ms is not None else time_ms
            counts.last_ms = time_ms

    def _wait_limit(self) -> float | None:
        """Seconds to wait for the next message before the log counts as read to its end."""
        if not self._window.follow:
            return self._idle_seconds
        if self._window.end_ms is None:
            return None
        return max(0.0, (self._window.end_ms + END_GRACE_MS) / 1000 - time.time())

    @staticmethod
    def _message_time(delivery: DeliveredMessage) -> int | None:
        """The AMQP timestamp where the publisher set one, else the body's published_timestamp; None when the body
        is not FuturesData."""
        try:
            message = FuturesData.model_validate_json(delivery.body)
        except ValidationError:
            return None
        stamped = delivery.header.properties.timestamp
        return int(stamped.timestamp() * 1000) if stamped is not None else message.published_timestamp

    async def _pace(self, time_ms: int) -> None:
        if self._speed <= 0:
            return
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (time_ms, now)
            return
        first_ms, started = self._anchor
        delay = started + (time_ms - first_ms) / 1000 / self._speed - now
        if delay > 0:
            await asyncio.sleep(delay)


async def _connect(url: str, connection_name: str) -> aiormq.Connection:
    return await asyncio.wait_for(
        aiormq.connect(url, client_properties={"connection_name": connection_name}), CONNECT_TIMEOUT_SECONDS
    )
