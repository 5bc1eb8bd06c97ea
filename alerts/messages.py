"""What an alert says: one Alert per thing a user must hear about, rendered as a Telegram HTML message and as
the webhook's JSON. Every text that comes from the outside (symbols, source names, reasons) is escaped here,
once: `1000PEPE/USDT` or `mexc_spot` must never break a message."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

AlertKind = Literal[
    "opportunity_opened", "opportunity_closed", "source_stale", "source_back", "broker_lost", "broker_restored",
    "heartbeats_stopped", "heartbeats_resumed", "digest",
]

TITLES: dict[AlertKind, str] = {
    "opportunity_opened": "🟢 Opportunity opened",
    "opportunity_closed": "⚪ Opportunity closed",
    "source_stale": "🟠 Source stale",
    "source_back": "✅ Source back",
    "broker_lost": "🔴 Broker connection lost",
    "broker_restored": "✅ Broker connection restored",
    "heartbeats_stopped": "🔴 Collector heartbeats stopped",
    "heartbeats_resumed": "✅ Collector heartbeats resumed",
    "digest": "📋 More alerts than the per-minute limit",
}
DIGEST_SUBJECTS = 10
"""Subjects a digest names; the rest are counted."""


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    key: str
    """What makes two alerts the same one (kind and subject): the same key is sent at most once per
    alerts.repeat_seconds."""
    subject: str
    """What it is about, in a few words: `BTC/USDT okx.spot → binance`, `binance.spot`, a collector's name."""
    at: int
    """When it happened, ms since epoch UTC."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Labelled values shown one per line, in order (None values are left out)."""
    link: str | None = None

    def telegram_html(self) -> str:
        """The Bot API's HTML parse mode: only <, > and & are special, and they are escaped."""
        lines = [f"<b>{html.escape(TITLES[self.kind])}</b>", html.escape(self.subject)]
        lines += [f"{html.escape(label)}: <code>{html.escape(_shown(value))}</code>"
                  for label, value in self.figures.items() if value is not None]
        lines.append(f"<i>{_utc(self.at)}</i>")
        if self.link:
            lines.append(f'<a href="{html.escape(self.link, quote=True)}">dashboard</a>')
        return "\n".join(lines)

    def webhook_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "title": TITLES[self.kind], "subject": self.subject,
                "at": self.at, "figures": self.figures, "link": self.link}


class Held:
    """Alerts over the per-minute limit, as a digest tells of them: counts per kind and the first subjects (a
    burst of any size costs a few counters)."""

    def __init__(self) -> None:
        self.counts: dict[AlertKind, int] = {}
        self.subjects: dict[str, None] = {}
        self.unnamed = 0
        """Alerts about subjects beyond the first DIGEST_SUBJECTS."""

    def __len__(self) -> int:
        return sum(self.counts.values())

    def add(self, alert: Alert) -> None:
        self.counts[alert.kind] = self.counts.get(alert.kind, 0) + 1
        if alert.subject in self.subjects:
            return
        if len(self.subjects) < DIGEST_SUBJECTS:
            self.subjects[alert.subject] = None
        else:
            self.unnamed += 1

    def digest(self, at: int) -> Alert:
        about = "; ".join(self.subjects)
        if self.unnamed:
            about += f"; and {self.unnamed} more alerts"
        return Alert("digest", f"digest:{at}", f"{len(self)} alerts held back", at,
                     {**{TITLES[kind]: count for kind, count in self.counts.items()}, "about": about})


def exact(value: float) -> str:
    """A number as it was received, without a float's trailing .0: 97410, 97410.5, 0.00001234."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _shown(value: Any) -> str:
    return exact(value) if isinstance(value, float) else str(value)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
