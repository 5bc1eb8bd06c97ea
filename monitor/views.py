"""The JSON the API, the WebSocket stream and the dashboard share, built from MonitorState."""

from __future__ import annotations

from typing import Any, Literal

from models.analytics import OpportunityEvent, spread_key
from monitor import health
from monitor.state import MonitorState, SpreadEntry

SpreadSort = Literal["net", "executable", "funding"]
SORT_FIGURES: dict[str, int] = {"net": 0, "executable": 1, "funding": 2}
"""Which of SpreadEntry.ranks each sort uses: net_pct, executable_net_pct, funding_apr_pct."""
CLOSED_IN_FRAMES = 20
"""Closed opportunities each WebSocket tick carries (the connect frame and /ui/data carry all that are kept)."""


def spread_row(entry: SpreadEntry, at: int) -> dict[str, Any]:
    snapshot = entry.snapshot
    return {
        "key": entry.key,
        "direction": f"{snapshot.symbol} {snapshot.buy.source} → {snapshot.sell.source}",
        "age_ms": at - snapshot.timestamp,
        "monitor_received_timestamp": entry.at,
        **snapshot.model_dump(),
    }


def ranked_spreads(state: MonitorState, at: int, top: int, sort: SpreadSort = "net",
                   min_net: float | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(how many live directions match, the best `top` of them): a direction lacking the sort figure goes last."""
    spreads = state.spreads
    ranked = state.ranking(SORT_FIGURES[sort], at)
    if min_net is not None:
        ranked = [key for key in ranked if spreads[key].ranks[0] >= min_net]
    return len(ranked), [spread_row(spreads[key], at) for key in ranked[:top]]


def opportunity_row(event: OpportunityEvent, at: int) -> dict[str, Any]:
    snapshot = event.snapshot
    ended = event.snapshot.timestamp if event.event == "close" else at
    return {
        "opportunity_id": event.opportunity_id,
        "symbol": event.symbol,
        "buy": event.buy,
        "sell": event.sell,
        "key": spread_key(event.symbol, event.buy, event.sell),
        "opened_at": event.opened_at,
        "duration_seconds": round(max(0, ended - event.opened_at) / 1000, 1),
        "peak_net_pct": event.peak_net_pct,
        "net_pct": snapshot.net_pct,
        "executable_net_pct": snapshot.executable_net_pct,
        "funding_apr_pct": snapshot.funding_apr_pct,
        "state": "closed" if event.event == "close" else "open",
        "closed_at": snapshot.timestamp if event.event == "close" else None,
        "reason": event.reason,
        "last_event": event.event,
    }


def opportunities(state: MonitorState, at: int, closed: int | None = None) -> dict[str, Any]:
    live = []
    for event in state.open.values():
        row = opportunity_row(event, at)
        latest = state.spreads.get(row["key"])
        if latest is not None and latest.snapshot.timestamp > event.snapshot.timestamp:
            row["net_pct"] = latest.snapshot.net_pct  # the direction's newest snapshot: the current net
            row["executable_net_pct"] = latest.snapshot.executable_net_pct
            row["peak_net_pct"] = max(row["peak_net_pct"], latest.snapshot.net_pct)
        live.append(row)
    live.sort(key=lambda row: -row["net_pct"])
    recent = list(state.closed)[:closed] if closed is not None else list(state.closed)
    return {"open": live, "closed": [opportunity_row(event, at) for event in recent]}


def events(state: MonitorState, since: int, at: int) -> list[dict[str, Any]]:
    return [{"sequence": number, "event": event.event, **opportunity_row(event, at)}
            for number, event in state.events_since(since)]


def exchanges(state: MonitorState, at: int) -> dict[str, Any]:
    return {"collectors": health.collectors(state, at), "sources": health.sources(state, at)}


def market_row(source: str, entry_at: int, message: Any, at: int) -> dict[str, Any]:
    return {
        "source": source,
        "exchange": message.exchange,
        "market": message.market,
        "symbol": message.symbol,
        "age_ms": at - message.timestamp,
        "timestamps": {
            "venue": message.timestamp,
            "quote_venue": message.ticker.timestamp,
            "received": message.received_timestamp,
            "quote_received": message.ticker.received_timestamp,
            "published": message.published_timestamp,
            "monitor_received": entry_at,
        },
        "message": message.model_dump(),
    }


def dashboard(state: MonitorState, at: int, top: int, sort: SpreadSort, since: int | None, entry_pct: float,
              exit_pct: float) -> dict[str, Any]:
    """One frame of the dashboard: what a WebSocket tick and /ui/data carry. `since` None: a full state (every
    closed opportunity kept, no event list: the state holds their outcome); else the events after that sequence
    and the most recently closed opportunities."""
    total, spreads = ranked_spreads(state, at, top, sort)
    return {
        "type": "state" if since is None else "tick",
        "at": at,
        "sequence": state.event_sequence,
        "levels": {"entry_pct": entry_pct, "exit_pct": exit_pct},
        "directions": total,
        "spreads": spreads,
        "opportunities": opportunities(state, at, None if since is None else CLOSED_IN_FRAMES),
        "events": [] if since is None else events(state, since, at),
        "exchanges": exchanges(state, at),
    }
