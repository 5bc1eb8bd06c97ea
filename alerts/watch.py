"""What deserves an alert, read off the monitor's state once a second: opportunity events since the last look,
and the changes of health the dashboard shows (a source stale or down and back, a collector's heartbeats
stopped and resumed, a broker connection lost and restored). Only changes raise alerts, never a state as such:
a monitor that starts next to a dead venue says nothing until it has seen that venue well."""

from __future__ import annotations

from collections.abc import Callable

from alerts.messages import Alert, exact
from models.analytics import OpportunityEvent, spread_key
from monitor import health
from monitor.state import MonitorState


class AlertWatch:
    def __init__(self, state: MonitorState, notify: Callable[[Alert], None], min_net_pct: float,
                 dashboard_url: str, bus_connected: Callable[[], bool]) -> None:
        self.state = state
        self.notify = notify
        self.min_net_pct = min_net_pct
        self.dashboard_url = dashboard_url.rstrip("/")
        self.bus_connected = bus_connected
        self._sequence = state.event_sequence
        """Opportunity events up to this one were looked at (those before the start are not alerted)."""
        self._alerted_open: set[str] = set()
        self._sources: dict[tuple[str, str], str] = {}
        """(collector, source) -> its last health, once it has been ok."""
        self._since: dict[tuple[str, str], int] = {}
        """When a source or collector went bad (ms), for the "back after" figure."""
        self._collectors: dict[str, str] = {}
        self._publishers: dict[str, tuple[bool, int]] = {}
        """collector -> (publisher connected, its reconnects) in the last heartbeat."""
        self._bus_up: bool | None = None

    def check(self, at: int) -> None:
        self._opportunities()
        if not self._bus(at):
            return  # without the bus the monitor sees nothing: no verdict on collectors or sources
        self._heartbeats(at)
        self._brokers(at)
        self._source_health(at)

    # --- opportunities ---------------------------------------------------------------------------

    def _opportunities(self) -> None:
        for sequence, event in self.state.events_since(self._sequence):
            self._sequence = sequence
            if event.event == "open" and event.snapshot.net_pct >= self.min_net_pct:
                self._alerted_open.add(event.opportunity_id)
                self.notify(self._opened(event))
            elif event.event == "close" and event.opportunity_id in self._alerted_open:
                self._alerted_open.discard(event.opportunity_id)
                self.notify(self._closed(event))

    def _link(self, event: OpportunityEvent) -> str:
        return f"{self.dashboard_url}#{spread_key(event.symbol, event.buy, event.sell)}"

    def _opened(self, event: OpportunityEvent) -> Alert:
        snapshot = event.snapshot
        return Alert(
            "opportunity_opened", f"opportunity_opened:{event.opportunity_id}", _direction(event),
            snapshot.timestamp, {
                "buy at": f"{exact(snapshot.buy.ask)} on {event.buy} ({snapshot.buy.symbol})",
                "sell at": f"{exact(snapshot.sell.bid)} on {event.sell} ({snapshot.sell.symbol})",
                "net %": round(snapshot.net_pct, 4),
                "executable net %": _rounded(snapshot.executable_net_pct),
                "fills (coins)": snapshot.executable_qty,
                "of notional (USDT)": snapshot.notional_usdt,
                "funding APR difference %": _rounded(snapshot.funding_apr_pct),
            }, self._link(event))

    def _closed(self, event: OpportunityEvent) -> Alert:
        snapshot = event.snapshot
        return Alert(
            "opportunity_closed", f"opportunity_closed:{event.opportunity_id}", _direction(event),
            snapshot.timestamp, {
                "reason": event.reason or "unknown",
                "lasted": _duration(snapshot.timestamp - event.opened_at),
                "peak net %": round(event.peak_net_pct, 4),
                "net % at close": round(snapshot.net_pct, 4),
            }, self._link(event))

    # --- health ----------------------------------------------------------------------------------

    def _bus(self, at: int) -> bool:
        up = self.bus_connected()
        if self._bus_up is None and not up:
            return False  # still connecting at start: its log says so; lost and restored count once it was up
        if self._bus_up is not None and up != self._bus_up:
            kind = "broker_restored" if up else "broker_lost"
            self.notify(Alert(kind, f"{kind}:monitor", "the monitor's own connection to RabbitMQ", at,
                              {"down for": _duration(at - self._since.pop(("", "monitor"), at))} if up else {}))
            if up:  # what changed meanwhile is judged afresh
                self._sources.clear()
                self._collectors.clear()
        if not up:
            self._since.setdefault(("", "monitor"), at)
        self._bus_up = up
        return up

    def _heartbeats(self, at: int) -> None:
        for row in health.collectors(self.state, at):
            name, status = row["collector"], row["status"]
            was = self._collectors.get(name)
            self._collectors[name] = status
            if was == "ok" and status == "down":
                self._since[("collector", name)] = at
                self.notify(Alert("heartbeats_stopped", f"heartbeats_stopped:{name}", f"collector {name}", at, {
                    "last heartbeat": f"{row['heartbeat_age_seconds']:.0f} s ago",
                    "expected every": f"{row['interval_seconds']:g} s"}))
            elif was == "down" and status == "ok":
                down_for = at - self._since.pop(("collector", name), at)
                self.notify(Alert("heartbeats_resumed", f"heartbeats_resumed:{name}", f"collector {name}", at,
                                  {"silent for": _duration(down_for), "uptime": f"{row['uptime_seconds']:.0f} s"}))

    def _brokers(self, at: int) -> None:
        for name, entry in self.state.collectors.items():
            publisher = entry.status.publisher
            seen = self._publishers.get(name)
            self._publishers[name] = (publisher.connected, publisher.reconnects)
            if seen is None:
                continue
            was_connected, reconnects = seen
            subject = f"collector {name} → RabbitMQ"
            if was_connected and not publisher.connected:
                self.notify(Alert("broker_lost", f"broker_lost:{name}", subject, at,
                                  {"failed publishes": publisher.failed}))
            elif publisher.connected and (not was_connected or publisher.reconnects > reconnects):
                self.notify(Alert("broker_restored", f"broker_restored:{name}", subject, at,
                                  {"reconnects": publisher.reconnects}))

    def _source_health(self, at: int) -> None:
        collectors_up = {name for name, status in self._collectors.items() if status == "ok"}
        for row in health.sources(self.state, at):
            if row["collector"] not in collectors_up:
                continue  # a collector that stopped is one alert (heartbeats), not one per source
            key, status = (row["collector"], row["source"]), row["status"]
            was = self._sources.get(key)
            if was is None and status != "ok":
                continue  # not seen well yet (starting, or dead since before the monitor came)
            self._sources[key] = status
            subject = row["source"]
            if was == "ok" and status != "ok":
                self._since[key] = at
                age = row["last_update_age_seconds"]
                self.notify(Alert("source_stale", f"source_stale:{subject}", subject, at, {
                    "status": status, "last update": None if age is None else f"{age:.0f} s ago",
                    "stale symbols": len(row["stale_symbols"]) or None, "collector": row["collector"]}))
            elif was is not None and was != "ok" and status == "ok":
                self.notify(Alert("source_back", f"source_back:{subject}", subject, at, {
                    "bad for": _duration(at - self._since.pop(key, at)),
                    "messages/s": round(row["messages_per_second"], 1), "collector": row["collector"]}))


def _direction(event: OpportunityEvent) -> str:
    return f"{event.symbol}: buy {event.buy} → sell {event.sell}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _duration(ms: int) -> str:
    seconds = max(0, ms // 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
