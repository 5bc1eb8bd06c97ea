"""Where the publisher reaches past aiormq's public API. Pinned to aiormq 7.2.4 (requirements.txt).

Publishes are hand-encoded and written straight to the socket (amqp_frames.py), so aiormq's channel
does not know about them. Three things must therefore come to the publisher from aiormq:
- the socket's StreamWriter, through aiormq's own transport factory;
- the broker's publisher confirms (Basic.Ack/Nack), counted per window instead of per message;
- the broker's Channel.Close, *before* aiormq answers it with Channel.CloseOk. Once the broker has the
  CloseOk, a frame on that channel number makes it close the whole connection (`CHANNEL_ERROR -
  expected 'channel.open'`), so the publisher must stop writing on it first.

The broker often acks each publish on its own: one frame per message. Through aiormq each ack costs a
generic frame parse (pamqp), a queue hop to the channel's reader task and a coroutine, about a fifth of
what ccxt spends parsing the venue message that caused it. `ConfirmDivertingReader` sits between the
socket and aiormq's frame reader and decodes the publishing channel's acks and nacks itself (a fixed
21-byte frame); every other frame, and one ack at least every second so aiormq's stuck-connection
watchdog keeps seeing traffic, goes to aiormq unchanged.

The last two replace methods of aiormq's `Channel` that its frame reader calls. Bumping aiormq means
re-reading `aiormq/channel.py` (`_reader`, `_on_confirm_frame`, `_on_close_frame`) against this file;
tests/test_publisher.py fails on another version to make sure that happens.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable

import aiormq
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from pamqp import commands as spec
from yarl import URL

PINNED_AIORMQ_VERSION = "7.2.4"

ConfirmHandler = Callable[[spec.Basic.Ack | spec.Basic.Nack], Awaitable[None]]
CloseHandler = Callable[[str], None]
RawConfirmHandler = Callable[[int, bool, bool], None]
"""(delivery_tag, multiple, nack): a confirm decoded straight off the socket."""

log = logging.getLogger("rabbitmq")

_FRAME_HEADER = struct.Struct(">BHI")
_CONFIRM_ARGUMENTS = struct.Struct(">QB")
_METHOD_FRAME = 1
_ACK = struct.pack(">HH", 60, 80)
_NACK = struct.pack(">HH", 60, 120)
_CONFIRM_PAYLOAD_SIZE = 13
"""class, method (2 + 2), delivery-tag (8), bits (1: multiple; a nack's requeue is bit 2)."""
PASS_TO_AIORMQ_EVERY_SECONDS = 1.0
"""aiormq declares a connection stuck when it has read no frame for ~3 heartbeat intervals; a broker busy
acking sends no heartbeats, so an ack goes through aiormq at least this often."""


class ConfirmDivertingReader:
    """The StreamReader aiormq reads frames from, minus the publishing channel's acks and nacks.

    It splits the socket's bytes into whole frames; aiormq's FrameReceiver (`at_eof`, `readexactly`,
    `read`) gets every frame it would have got, except confirms on the diverted channel, which go to
    the handler synchronously, in order."""

    def __init__(self, inner: asyncio.StreamReader) -> None:
        self._inner = inner
        self._raw = bytearray()
        """Bytes from the socket not yet split into frames."""
        self._out = bytearray()
        """Whole frames for aiormq."""
        self._started = False
        self._channel = 0
        """The diverted channel; 0 (the connection's own channel, which has no confirms) diverts nothing."""
        self._on_confirm: RawConfirmHandler | None = None
        self._passed_at = 0.0
        self.diverted = 0
        """Confirms decoded here (the others went through aiormq)."""

    def divert_confirms(self, channel: int, on_confirm: RawConfirmHandler) -> None:
        self._channel, self._on_confirm = channel, on_confirm

    def at_eof(self) -> bool:
        return not self._out and not self._raw and self._inner.at_eof()

    async def readexactly(self, n: int) -> bytes:
        while len(self._out) < n:
            chunk = await self._inner.read(65536)
            if not chunk:
                partial = bytes(self._out + self._raw)
                self._out.clear()
                self._raw.clear()
                raise asyncio.IncompleteReadError(partial, n)
            self._raw += chunk
            self._split()
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    async def read(self, n: int = -1) -> bytes:
        if not self._out and not self._raw:
            return await self._inner.read(n)
        data = bytes(self._out + self._raw)
        self._out.clear()
        self._raw.clear()
        return data

    def _split(self) -> None:
        raw, out = self._raw, self._out
        if not self._started:
            if len(raw) < 8:
                return
            self._started = True
            if raw.startswith(b"AMQP"):  # the broker's protocol header: it speaks another version
                out += raw
                raw.clear()
                self._channel = -1  # never parse past it
        if self._channel < 0:
            out += raw
            raw.clear()
            return
        now = time.monotonic()
        position, size_available = 0, len(raw)
        channel, on_confirm = self._channel, self._on_confirm
        while size_available - position >= 7:
            frame_type, frame_channel, size = _FRAME_HEADER.unpack_from(raw, position)
            end = position + 8 + size
            if end > size_available:
                break
            if (
                frame_channel == channel and frame_type == _METHOD_FRAME and size == _CONFIRM_PAYLOAD_SIZE
                and on_confirm is not None and now - self._passed_at < PASS_TO_AIORMQ_EVERY_SECONDS
                and (method := raw[position + 7 : position + 11]) in (_ACK, _NACK)
            ):
                delivery_tag, bits = _CONFIRM_ARGUMENTS.unpack_from(raw, position + 11)
                self.diverted += 1
                try:
                    on_confirm(delivery_tag, bool(bits & 1), method == _NACK)
                except Exception:
                    log.exception("publisher confirm handler failed")
            else:
                out += raw[position:end]
                self._passed_at = now
            position = end
        del raw[:position]


class WriterKeepingTransport(TransportFactory):
    """aiormq's own TCP/TLS transport, keeping its StreamWriter so publishes skip aiormq's queue, and
    reading through a ConfirmDivertingReader."""

    def __init__(self, tls: bool) -> None:
        self._inner = TLSTransportFactory() if tls else TCPTransportFactory()
        self.writer: asyncio.StreamWriter | None = None
        self.reader: ConfirmDivertingReader | None = None

    async def create(self, url: URL, **kwargs: object) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._inner.create(url, **kwargs)
        self.writer = writer
        self.reader = ConfirmDivertingReader(reader)
        return self.reader, writer  # type: ignore[return-value]  # duck-typed: aiormq uses three methods


def take_confirms(channel: aiormq.abc.AbstractChannel, on_confirm: ConfirmHandler) -> None:
    """Hand the broker's acks and nacks to `on_confirm`; the channel must be opened without
    publisher_confirms (aiormq's per-message bookkeeping) and put in confirm mode by the caller."""
    channel._on_confirm_frame = on_confirm  # type: ignore[attr-defined]


def watch_broker_close(channel: aiormq.abc.AbstractChannel, on_close: CloseHandler) -> None:
    """Call `on_close(reply_text)` the moment the broker's Channel.Close arrives.

    It runs synchronously, before aiormq queues its Channel.CloseOk: nothing written after it can
    reach the broker after the CloseOk."""
    answer_close = channel._on_close_frame  # type: ignore[attr-defined]

    async def on_close_frame(frame: spec.Channel.Close) -> None:
        on_close(frame.reply_text or f"channel closed by the broker (code {frame.reply_code})")
        await answer_close(frame)

    channel._on_close_frame = on_close_frame  # type: ignore[attr-defined]


def broker_reply_text(error: BaseException) -> str:
    """The broker's own words from an aiormq channel exception: its reply_text, e.g.
    `NOT_FOUND - no exchange 'futures_data' in vhost '/'` (aiormq puts it last in `args`)."""
    texts = [arg for arg in error.args if isinstance(arg, str)]
    return texts[-1] if texts else f"{type(error).__name__}: {error}"
