"""Latency percentiles over a bounded window, cheap enough to record every message."""

from __future__ import annotations

from array import array


class LatencyWindow:
    """The most recent `capacity` samples in a ring buffer; percentiles computed on demand."""

    def __init__(self, capacity: int = 65536) -> None:
        self._samples = array("d", bytes(8 * capacity))
        self._capacity = capacity
        self._count = 0

    def record(self, value: float) -> None:
        self._samples[self._count % self._capacity] = value
        self._count += 1

    def percentiles(self, *quantiles: float) -> list[float | None]:
        size = min(self._count, self._capacity)
        if size == 0:
            return [None for _ in quantiles]
        ordered = sorted(self._samples[:size])
        return [ordered[min(size - 1, int(q * size))] for q in quantiles]

    def reset(self) -> None:
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, self._capacity)
