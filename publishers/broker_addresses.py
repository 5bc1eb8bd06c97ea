"""A cluster's broker addresses in failover order, shared by every kind of connection the product opens."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from models.config import mask_password

log = logging.getLogger("rabbitmq")

CONNECT_TIMEOUT_SECONDS = 10.0
"""One dial of one node: a node whose host vanished must not hold up the next for minutes."""

Connection = TypeVar("Connection")


class AddressRing:
    """Round-robin over the addresses: each dial takes the one after the previous dial's, so a connection lost
    on one node is dialed again on the next, and a node that is down is not dialed twice in a row."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        """One address, or several (a cluster's nodes)."""
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("no RabbitMQ address given")
        self._next = 0

    def next(self) -> str:
        url = self.urls[self._next]
        self._next = (self._next + 1) % len(self.urls)
        return url

    def round(self) -> Iterator[str]:
        """Every address once, starting with the next one, for a dial that may try each node: the caller stops
        taking at the one that answered, so the next round starts after it."""
        for _ in self.urls:
            yield self.next()

    async def first_answering(
        self, dial: Callable[[str], Awaitable[Connection]], failures: tuple[type[BaseException], ...]
    ) -> Connection:
        """What `dial` makes of the first address of one round that takes it; each refusal (one of `failures`)
        at DEBUG, and the last one raised when no node answered."""
        failure: BaseException | None = None
        for url in self.round():
            try:
                return await dial(url)
            except failures as error:
                failure = error
                log.debug("RabbitMQ at %s did not take the connection: %r", mask_password(url), error)
        assert failure is not None
        raise failure
