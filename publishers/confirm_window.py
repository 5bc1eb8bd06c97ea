"""Which publishes the broker has confirmed, for flow control by publisher confirms.

Data sitting in socket buffers cannot be recalled or conflated; keeping at most a window of
unconfirmed messages in flight keeps the rest pending in the publisher, where newer updates
replace older ones. The broker confirms by delivery tag (1, 2, 3 ... per channel), one at a time or
"everything up to N" (multiple), not necessarily in order.
"""

from __future__ import annotations


class ConfirmWindow:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new channel: tags start again at 1."""
        self.last_sent = 0
        self._confirmed_through = 0
        self._confirmed_ahead: set[int] = set()

    @property
    def in_flight(self) -> int:
        return self.last_sent - self._confirmed_through - len(self._confirmed_ahead)

    def sent(self, count: int) -> None:
        self.last_sent += count

    def confirm(self, delivery_tag: int, multiple: bool) -> int:
        """Record an ack or nack; returns how many messages it newly settles."""
        before = self.in_flight
        if multiple:
            if delivery_tag > self._confirmed_through:
                self._confirmed_through = delivery_tag
                self._confirmed_ahead = {tag for tag in self._confirmed_ahead if tag > delivery_tag}
        elif delivery_tag > self._confirmed_through:
            self._confirmed_ahead.add(delivery_tag)
            while self._confirmed_through + 1 in self._confirmed_ahead:
                self._confirmed_through += 1
                self._confirmed_ahead.discard(self._confirmed_through)
        return before - self.in_flight
