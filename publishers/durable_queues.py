"""The durable queues that must outlive a broker node: declared with `rabbitmq.queue_type`.

The collector's control queue, the spread tracker's event queue and the recorder's queue carry what must not be
lost (a command, an opportunity event, a spread history). `quorum` replicates them over a cluster's nodes (Raft):
a node's loss loses none of them. A quorum queue must be durable, non-exclusive and not auto-delete, so every one
of these queues is declared so, whatever its type.

RabbitMQ fixes a queue's arguments at its first declaration and refuses a later one with others (406
PRECONDITION_FAILED, which closes the channel); a queue's type can never change. That refusal becomes one
QueueSettingsChanged naming the queue and the two ways out, for the process to report once: retrying cannot help.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from aio_pika.abc import AbstractChannel, AbstractQueue
from aio_pika.exceptions import ChannelPreconditionFailed

QueueType = Literal["classic", "quorum"]

_CURRENT_TYPE = re.compile(r"inequivalent arg 'x-queue-type'.*current is (?:the value )?(?:'(\w+)'|none)")


class QueueSettingsChanged(Exception):
    """A durable queue exists with other settings than the config's: RabbitMQ refuses to redeclare it."""


def durable_queue_arguments(queue_type: QueueType, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The declare arguments of a durable queue of this type (`x-queue-type`), beside the queue's own ones.
    `classic` is sent too: RabbitMQ takes it as equal to a queue declared without the argument."""
    return {**(arguments or {}), "x-queue-type": queue_type}


async def declare_durable_queue(
    channel: AbstractChannel, name: str, queue_type: QueueType, arguments: Mapping[str, Any] | None = None,
    own_settings: str = "",
) -> AbstractQueue:
    """Declare the durable queue, or raise QueueSettingsChanged when it exists otherwise. `own_settings` names,
    for the message, the config behind `arguments` (e.g. "x-max-length=100000 (history.queue_max_length)")."""
    try:
        return await channel.declare_queue(
            name, durable=True, exclusive=False, auto_delete=False,
            arguments=durable_queue_arguments(queue_type, arguments),
        )
    except ChannelPreconditionFailed as error:
        raise QueueSettingsChanged(mismatch_message(name, queue_type, str(error), own_settings)) from None


def mismatch_message(name: str, queue_type: QueueType, refusal: str, own_settings: str = "") -> str:
    """What the user reads: which queue, what differs, how to get going again."""
    delete = (f"delete it (rabbitmqctl delete_queue {name}, or the management UI; the messages in it go with it) "
              "and start again")
    type_mismatch = _CURRENT_TYPE.search(refusal)
    if type_mismatch is not None:
        current = type_mismatch.group(1) or "classic"
        return (f"RabbitMQ keeps the durable queue {name!r} as a {current} queue, but rabbitmq.queue_type is "
                f"{queue_type!r} and a queue's type cannot change: {delete}, or set rabbitmq.queue_type back to "
                f"{current!r}")
    wanted = f"a durable {queue_type} queue" + (f" with {own_settings}" if own_settings else "")
    return f"RabbitMQ keeps the queue {name!r} with other settings than {wanted} ({refusal}); {delete}, or set " \
           "the config back to what it was"
