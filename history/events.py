"""The design's event-merging rule, per direction, on the sampled signal rows.

N consecutive triggered samples (history.event_confirm_samples) open an event that starts at the first of
them; a triggered sample within M minutes (history.event_cooldown_minutes) of the event's last one extends
it, whatever untriggered samples came between; M minutes without one close it. Samples are consecutive when
their slots follow each other (a direction missing from a slot, its legs stale, breaks the run). Pure and
clock-free: the recorder passes the samples and the time, tests pass hand-worked sequences."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from history.rows import SignalEvent, SignalSample
from history.sampling import Direction
from models.analytics import source_word, symbol_word

CORE_FIGURES = ("spread_pct", "net_pct", "executable_net_pct", "funding_diff_8h_pct", "funding_apr_pct")
"""Aggregated into features_agg (first, last, mean, max, min, n) over an event's triggered samples."""


def event_id(symbol: str, buy: str, sell: str, start_ts: int) -> str:
    return f"{symbol_word(symbol)}.{source_word(buy)}.{source_word(sell)}.{start_ts}"


def aggregate(features: dict[str, Any], sample: SignalSample) -> None:
    """Fold one triggered sample into features_agg."""
    for figure in CORE_FIGURES:
        value = getattr(sample, figure)
        if value is None:
            continue
        seen = features.get(figure)
        if seen is None:
            features[figure] = {"first": value, "last": value, "mean": value, "max": value, "min": value, "n": 1}
            continue
        count = seen["n"] + 1
        seen.update(last=value, max=max(seen["max"], value), min=min(seen["min"], value),
                    mean=seen["mean"] + (value - seen["mean"]) / count, n=count)


def frozen(event: SignalEvent) -> SignalEvent:
    """A copy for the writer: the merger goes on changing its own while the batch waits to be written."""
    return replace(event, features_agg={figure: dict(values) for figure, values in event.features_agg.items()})


class EventMerger:
    def __init__(self, confirm_samples: int, cooldown_ms: int, sample_ms: int) -> None:
        self.confirm_samples = confirm_samples
        self.cooldown_ms = cooldown_ms
        self.sample_ms = sample_ms
        self.open: dict[Direction, SignalEvent] = {}
        self._runs: dict[Direction, list[SignalSample]] = {}
        """Triggered samples in a row that have not opened an event yet (fewer than N)."""

    def resume(self, events: list[SignalEvent]) -> list[SignalEvent]:
        """Events a previous run left open (read back from the store) go on merging, one per direction: the one
        that ended last, unless this run opened one of its own meanwhile. The others are returned closed (where
        they ended), to be written, so that no event stays open in the store for good."""
        superseded: list[SignalEvent] = []
        resumed: set[Direction] = set()
        for event in sorted((event for event in events if event.status != "closed"), key=lambda e: e.end_ts):
            direction = (event.symbol, event.buy, event.sell)
            held = self.open.get(direction)
            if held is not None and held.event_id == event.event_id:
                continue  # this run's own event, already written by it
            if held is not None and direction not in resumed:
                superseded.append(event)  # this run's own event came after it
                continue
            if held is not None:
                superseded.append(held)
            self.open[direction] = event
            resumed.add(direction)
        for event in superseded:
            event.status, event.closed_at = "closed", event.end_ts + self.cooldown_ms
        return [frozen(event) for event in superseded]

    def add(self, sample: SignalSample) -> list[SignalEvent]:
        """Events this sample opened, extended or (by coming after the cooldown) closed: rows to upsert."""
        direction = (sample.symbol, sample.buy, sample.sell)
        changed: list[SignalEvent] = []
        event = self.open.get(direction)
        if event is not None and sample.ts - event.end_ts > self.cooldown_ms:
            changed.append(self._close(direction, event))
            event = None
        if not sample.triggered:
            self._runs.pop(direction, None)
            return [frozen(event) for event in changed]
        if event is not None:
            event.end_ts, event.samples, event.status = sample.ts, event.samples + 1, "confirmed"
            aggregate(event.features_agg, sample)
            changed.append(event)
            return [frozen(event) for event in changed]
        run = self._runs.setdefault(direction, [])
        if run and sample.ts - run[-1].ts > self.sample_ms * 3 // 2:
            run.clear()
        run.append(sample)
        if len(run) >= self.confirm_samples:
            changed.append(self._open(direction, self._runs.pop(direction)))
        return [frozen(event) for event in changed]

    def close_quiet(self, now_ms: int) -> list[SignalEvent]:
        """Close the events with no trigger for longer than the cooldown: run on every sampling tick, so an
        event closes even when its direction stops being sampled."""
        quiet = [(direction, event) for direction, event in self.open.items()
                 if now_ms - event.end_ts > self.cooldown_ms]
        return [frozen(self._close(direction, event)) for direction, event in quiet]

    def _open(self, direction: Direction, run: list[SignalSample]) -> SignalEvent:
        first = run[0]
        event = SignalEvent(
            event_id=event_id(first.symbol, first.buy, first.sell, first.ts), symbol=first.symbol, buy=first.buy,
            sell=first.sell, buy_symbol=first.buy_symbol, sell_symbol=first.sell_symbol, start_ts=first.ts,
            end_ts=run[-1].ts, status="new", samples=len(run),
        )
        for sample in run:
            aggregate(event.features_agg, sample)
        self.open[direction] = event
        return event

    def _close(self, direction: Direction, event: SignalEvent) -> SignalEvent:
        del self.open[direction]
        event.status, event.closed_at = "closed", event.end_ts + self.cooldown_ms
        return event
