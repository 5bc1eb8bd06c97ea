"""The one place that reaches into aio-pika's robust connection (aio-pika 10.2.1, pinned in requirements.txt).

Two internals are relied on:

- aio-pika's robust channel reopens itself when it closes, even when it closed because its connection did: on
  the dead connection that fails, and aio-pika logs an ERROR (`ChannelInvalidStateError` or `RuntimeError ...
  closed` from aio_pika.tools) at every broker restart. The robust connection restores its channels once it has
  reconnected, so that case is left to it (ChannelRestoredByItsConnection). Guarded end to end by
  tests/test_control_listener.py and tests/test_status_heartbeat.py (a broker restart must log no aio-pika ERROR).
- aio-pika's robust connection redials one URL only. Each of its dials runs the private
  `RobustConnection.__connect_transport` (name-mangled `_RobustConnection__connect_transport`), which calls
  `Connection.connect(self)`, which dials `self.url`. FailoverRobustConnection overrides that method to set
  `self.url` to each broker address in turn (AddressRing) before dialing, so a connection lost on one cluster node
  is restored on the next, with aio-pika's own channel, queue, binding and consumer restore on top. Guarded by
  tests/test_failover.py (a three-node cluster, one node stopped); importing this module fails loudly if the
  method is gone.

Callers connect through publishers/broker_connection.py, not with these classes directly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import TimeoutType
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_channel import RobustChannel
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from models.config import mask_password
from publishers.broker_addresses import AddressRing

log = logging.getLogger("rabbitmq")

_DIAL_METHOD = "_RobustConnection__connect_transport"
_dial_one: Callable[[RobustConnection], Awaitable[None]] | None = getattr(RobustConnection, _DIAL_METHOD, None)
if _dial_one is None:
    raise ImportError(
        f"aio-pika {aio_pika.__version__} has no RobustConnection.__connect_transport, which "
        "publishers/aio_pika_seams.py overrides for broker failover (written against aio-pika 10.2.1)"
    )


class ChannelRestoredByItsConnection(RobustChannel):
    async def restore(self, channel: object = None) -> None:
        transport = self._connection.transport
        if transport is None or transport.connection.is_closed:
            return
        await super().restore()


class QuietRobustConnection(RobustConnection):
    """A robust connection whose channels leave their restoring to it after a broker restart."""

    CHANNEL_CLASS = ChannelRestoredByItsConnection


class FailoverRobustConnection(QuietRobustConnection):
    """A QuietRobustConnection over several broker addresses: each dial goes once round them, starting with the
    one after the address dialed last, until one answers; aio-pika's reconnect_interval passes between rounds.
    aiormq reads its query parameters (heartbeat, ...) from each address; aio-pika's own (reconnect_interval,
    fail_fast, ...) are read once, from the first. `dial_timeout` bounds
    the dial of one address, so a node whose host vanished does not hold up the next for minutes."""

    def __init__(self, urls: str | Sequence[str], dial_timeout: float | None = None, **kwargs: Any) -> None:
        self.addresses = AddressRing(urls)
        self._dial_timeout = dial_timeout
        super().__init__(URL(self.addresses.urls[0]), **kwargs)
        self._node: str | None = None
        """The address of the last connection made."""

    async def connect(self, timeout: TimeoutType = None) -> None:  # noqa: ASYNC109 (aio-pika's signature)
        await super().connect(self._dial_timeout if timeout is None else timeout)

    async def _RobustConnection__connect_transport(self) -> None:
        """Replaces RobustConnection's dial (see the module docstring): the same dial, on each address in turn."""
        assert _dial_one is not None

        async def dial(address: str) -> None:
            self.url = URL(address)
            await _dial_one(self)

        await self.addresses.first_answering(dial, CONNECTION_EXCEPTIONS)  # TimeoutError is an OSError

    async def _on_connected(self) -> None:
        await super()._on_connected()
        node = str(self.url)
        if self._node is not None and node != self._node:
            log.info("%s: connected to RabbitMQ node %s (was %s)", self._name, mask_password(node),
                     mask_password(self._node))
        self._node = node

    @property
    def _name(self) -> str:
        properties = self.kwargs.get("client_properties") or {}
        return str(properties.get("connection_name", "aio-pika connection"))
