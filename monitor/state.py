"""What the monitor knows: the latest message of every kind on the bus, kept in memory, newest wins.

Filled by monitor/bus.py, read by the HTTP API, the WebSocket stream and /metrics. Everything here runs on
the one event loop, so no locks.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from consumers.quotes import source_of
from models.analytics import OpportunityEvent, SpreadSnapshot
from models.futures_data import FuturesData
from models.status import CollectorStatus
from utils.latency import LatencyWindow

HISTORY_SECONDS = 15 * 60
"""How far back a direction's net spread is kept for the dashboard's chart."""
HISTORY_STEP_MS = 2000
"""One chart point per direction per step (the last snapshot in it): bounded memory at any universe size."""
EVENTS_KEPT = 1000
"""Opportunity events a WebSocket client or a polling page can still catch up on."""
RANKING_TTL_MS = 250
"""A ranking of the directions is reused this long: hundreds of API requests a second sort once per period, and
each row still shows the direction's newest snapshot."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Received:
    """A message and when the monitor took it off its queue."""

    at: int


@dataclass(slots=True)
class MarketEntry(Received):
    message: FuturesData


@dataclass(slots=True)
class SpreadEntry(Received):
    key: str
    snapshot: SpreadSnapshot
    ranks: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """net, executable net and funding APR, -inf where unknown: what the rankings sort by, computed once."""


def ranks_of(snapshot: SpreadSnapshot) -> tuple[float, float, float]:
    executable, funding = snapshot.executable_net_pct, snapshot.funding_apr_pct
    unknown = -math.inf
    return (snapshot.net_pct, unknown if executable is None else executable, unknown if funding is None else funding)


@dataclass(slots=True)
class HeartbeatEntry(Received):
    status: CollectorStatus


CLOSED_IDS_KEPT = 10_000


@dataclass
class MonitorState:
    closed_kept: int = 100
    spread_max_age_ms: int = 5000
    """spreads.max_quote_age_ms: a direction without a snapshot for longer has a leg the engine now skips (a venue
    gone quiet, a delisted pair); it leaves the rankings, its last snapshot would otherwise stay on top for good."""
    markets: dict[tuple[str, str], MarketEntry] = field(default_factory=dict)
    """(source, ccxt symbol) -> the latest message."""
    spreads: dict[str, SpreadEntry] = field(default_factory=dict)
    """spread routing key -> the latest snapshot."""
    history: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)
    """spread routing key -> (time, net %) points, one per HISTORY_STEP_MS."""
    open: dict[str, OpportunityEvent] = field(default_factory=dict)
    closed: deque[OpportunityEvent] = field(default_factory=deque)
    events: deque[tuple[int, OpportunityEvent]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    """(sequence number, event): what a client that last saw sequence N has missed."""
    event_sequence: int = 0
    collectors: dict[str, HeartbeatEntry] = field(default_factory=dict)
    source_seen: dict[str, int] = field(default_factory=dict)
    """source -> when the monitor last received a market message of it."""
    consumed: Counter[str] = field(default_factory=Counter)
    """Messages taken off the queues, per kind: market, spread, opportunity, status."""
    invalid: Counter[str] = field(default_factory=Counter)
    """Messages that did not validate against their model, per kind."""
    opened_total: int = 0
    closed_total: Counter[str] = field(default_factory=Counter)
    """Closed opportunities per reason."""
    queue_lag_ms: LatencyWindow = field(default_factory=lambda: LatencyWindow(4096))
    """Monitor receipt minus the collector's publish time of market messages: how far behind the monitor is."""
    _rankings: dict[int, tuple[int, list[str]]] = field(default_factory=dict)
    """figure -> (when sorted, spread keys best first)."""
    _closed_ids: dict[str, None] = field(default_factory=dict)
    """The last CLOSED_IDS_KEPT closed opportunity ids, oldest first: an event that reaches the monitor after its
    opportunity's close (a producer that published out of order) must not bring it back as open for good."""

    def __post_init__(self) -> None:
        self.closed = deque(maxlen=self.closed_kept)

    def add_market(self, message: FuturesData, at: int) -> None:
        self.consumed["market"] += 1
        source = source_of(message)
        self.markets[source, message.symbol] = MarketEntry(at, message)
        self.source_seen[source] = at
        self.queue_lag_ms.record(at - message.published_timestamp)

    def add_spread(self, key: str, snapshot: SpreadSnapshot, at: int) -> None:
        self.consumed["spread"] += 1
        self.spreads[key] = SpreadEntry(at, key, snapshot, ranks_of(snapshot))
        points = self.history.get(key)
        if points is None:
            points = self.history[key] = deque(maxlen=HISTORY_SECONDS * 1000 // HISTORY_STEP_MS)
        point = (snapshot.timestamp, snapshot.net_pct)
        if points and points[-1][0] // HISTORY_STEP_MS == snapshot.timestamp // HISTORY_STEP_MS:
            points[-1] = point
        else:
            points.append(point)

    def ranking(self, figure: int, at: int) -> list[str]:
        """Keys of the directions with a snapshot received within spread_max_age_ms, best first by ranks[figure]
        (unknown last); at most RANKING_TTL_MS old."""
        cached = self._rankings.get(figure)
        if cached is not None and 0 <= at - cached[0] < RANKING_TTL_MS:
            return cached[1]
        spreads, oldest = self.spreads, at - self.spread_max_age_ms
        live = [key for key, entry in spreads.items() if entry.at >= oldest]
        keys = sorted(live, key=lambda key: spreads[key].ranks[figure], reverse=True)
        self._rankings[figure] = (at, keys)
        return keys

    def add_opportunity(self, event: OpportunityEvent) -> None:
        self.consumed["opportunity"] += 1
        if event.opportunity_id in self._closed_ids:
            return  # closed already: a repeated close, or an open/update that arrived after it
        self.event_sequence += 1
        self.events.append((self.event_sequence, event))
        if event.event == "close":
            self.open.pop(event.opportunity_id, None)
            self.closed.appendleft(event)
            self.closed_total[event.reason or "unknown"] += 1
            self._closed_ids[event.opportunity_id] = None
            if len(self._closed_ids) > CLOSED_IDS_KEPT:
                del self._closed_ids[next(iter(self._closed_ids))]
            return
        if event.event == "open" and event.opportunity_id not in self.open:
            self.opened_total += 1
        self.open[event.opportunity_id] = event

    def add_heartbeat(self, status: CollectorStatus, at: int) -> None:
        self.consumed["status"] += 1
        self.collectors[status.connection_name] = HeartbeatEntry(at, status)

    def events_since(self, sequence: int) -> list[tuple[int, OpportunityEvent]]:
        return [(number, event) for number, event in self.events if number > sequence]
