"""What the publisher does when its exchange already exists with other settings than the durable topic
exchange it declares.

RabbitMQ then refuses the declare (406 PRECONDITION_FAILED) and names the first setting that differs, e.g.
`inequivalent arg 'type' for exchange 'futures_data' in vhost '/': received 'topic' but current is 'fanout'`.
Another type routes messages away from the consumers' `futures.#` bindings, and an internal exchange refuses
publishes: retrying cannot help, so the collector refuses to start. Any other difference (durable,
auto_delete, arguments) changes only the exchange's lifetime or extras: publish to it as it is.
"""

from __future__ import annotations

import re

REFUSED_SETTINGS = frozenset({"type", "internal"})
_DIFFERING_SETTING = re.compile(r"inequivalent arg '([^']+)'")


class ExchangeMismatchError(Exception):
    """The exchange exists with settings the collector cannot publish to; fatal."""


def check_existing_exchange(exchange: str, broker_reply: str) -> None:
    """Raise ExchangeMismatchError unless the existing exchange can be published to as it is."""
    differing = _DIFFERING_SETTING.search(broker_reply)
    if differing is None or differing.group(1) in REFUSED_SETTINGS:
        raise ExchangeMismatchError(
            f"RabbitMQ exchange '{exchange}' exists with settings the collector cannot publish to "
            f"({broker_reply}); it needs a topic exchange. Delete that exchange or set rabbitmq.exchange to "
            "another name. Not starting."
        )
