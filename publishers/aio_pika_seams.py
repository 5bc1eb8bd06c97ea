"""The one place that reaches into aio-pika's robust connection (aio-pika 10.2.1, pinned in requirements.txt).

aio-pika's robust channel reopens itself when it closes, even when it closed because its connection did: on
the dead connection that fails, and aio-pika logs an ERROR (`ChannelInvalidStateError` or `RuntimeError ...
closed` from aio_pika.tools) at every broker restart. The robust connection restores its channels once it has
reconnected, so that case is left to it. Guarded end to end by tests/test_control_listener.py and
tests/test_status_heartbeat.py (a broker restart must log no aio-pika ERROR).

    connection = await aio_pika.connect_robust(url, connection_class=QuietRobustConnection)
"""

from __future__ import annotations

from aio_pika.robust_channel import RobustChannel
from aio_pika.robust_connection import RobustConnection


class ChannelRestoredByItsConnection(RobustChannel):
    async def restore(self, channel: object = None) -> None:
        transport = self._connection.transport
        if transport is None or transport.connection.is_closed:
            return
        await super().restore()


class QuietRobustConnection(RobustConnection):
    """A robust connection whose channels leave their restoring to it after a broker restart."""

    CHANNEL_CLASS = ChannelRestoredByItsConnection
