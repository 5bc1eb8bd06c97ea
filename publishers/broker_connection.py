"""How every aio-pika client of the product connects: to one broker, or to a cluster's nodes with failover.

`connect_robust` is for long-lived connections (the control listener, the status heartbeat, the consumers, the
monitor): restored by aio-pika after a loss, on the next node of `rabbitmq.urls` (FailoverRobustConnection).
`connect_first` is for a plain connection a caller redials itself (the control client): the first node that
answers, starting after the one dialed last. The raw publisher (publishers/rabbitmq_publisher.py) dials through
aiormq and walks the same AddressRing itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from publishers.aio_pika_seams import FailoverRobustConnection
from publishers.broker_addresses import CONNECT_TIMEOUT_SECONDS, AddressRing

RECONNECT_INTERVAL_SECONDS = 5.0
"""aio-pika's pause between two rounds of dials over every node (its default)."""


def robust_connection(
    urls: str | Sequence[str], connection_name: str, *, fail_fast: bool = True,
    reconnect_interval: float = RECONNECT_INTERVAL_SECONDS,
) -> FailoverRobustConnection:
    """Not connected yet: `await connection.connect()` dials. For a caller that must hold the connection (to close
    it) while the dial may still be going on; else use connect_robust."""
    return FailoverRobustConnection(
        urls, dial_timeout=CONNECT_TIMEOUT_SECONDS, client_properties={"connection_name": connection_name},
        fail_fast=fail_fast, reconnect_interval=reconnect_interval,
    )


async def connect_robust(
    urls: str | Sequence[str], connection_name: str, *, fail_fast: bool = True,
    reconnect_interval: float = RECONNECT_INTERVAL_SECONDS,
) -> FailoverRobustConnection:
    """Connected on the first node that answers. With fail_fast (aio-pika's default) it raises when none does;
    without, it waits until one does. After a loss the connection redials, on the next node first, by itself."""
    connection = robust_connection(urls, connection_name, fail_fast=fail_fast, reconnect_interval=reconnect_interval)
    try:
        await connection.connect()
    except BaseException:
        await connection.close()
        raise
    return connection


async def connect_first(addresses: AddressRing, connection_name: str) -> AbstractConnection:
    """A plain connection to the first node of one round over `addresses` that answers; the last error when
    none does."""

    async def dial(url: str) -> AbstractConnection:
        return await aio_pika.connect(url, client_properties={"connection_name": connection_name},
                                      timeout=CONNECT_TIMEOUT_SECONDS)

    return await addresses.first_answering(dial, CONNECTION_EXCEPTIONS)
