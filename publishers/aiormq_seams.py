"""Where the publisher reaches past aiormq's public API. Pinned to aiormq 7.2.4 (requirements.txt).

Publishes are hand-encoded and written straight to the socket (amqp_frames.py), so aiormq's channel
does not know about them. Three things must therefore come to the publisher from aiormq:
- the socket's StreamWriter, through aiormq's own transport factory;
- the broker's publisher confirms (Basic.Ack/Nack), counted per window instead of per message;
- the broker's Channel.Close, *before* aiormq answers it with Channel.CloseOk. Once the broker has the
  CloseOk, a frame on that channel number makes it close the whole connection (`CHANNEL_ERROR -
  expected 'channel.open'`), so the publisher must stop writing on it first.

The last two replace methods of aiormq's `Channel` that its frame reader calls. Bumping aiormq means
re-reading `aiormq/channel.py` (`_reader`, `_on_confirm_frame`, `_on_close_frame`) against this file;
tests/test_publisher.py fails on another version to make sure that happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiormq
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from pamqp import commands as spec
from yarl import URL

PINNED_AIORMQ_VERSION = "7.2.4"

ConfirmHandler = Callable[[spec.Basic.Ack | spec.Basic.Nack], Awaitable[None]]
CloseHandler = Callable[[str], None]


class WriterKeepingTransport(TransportFactory):
    """aiormq's own TCP/TLS transport, keeping its StreamWriter so publishes skip aiormq's queue."""

    def __init__(self, tls: bool) -> None:
        self._inner = TLSTransportFactory() if tls else TCPTransportFactory()
        self.writer: asyncio.StreamWriter | None = None

    async def create(self, url: URL, **kwargs: object) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._inner.create(url, **kwargs)
        self.writer = writer
        return reader, writer


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
