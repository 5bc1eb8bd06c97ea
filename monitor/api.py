"""The monitor's HTTP routes: health, snapshots, spreads, opportunities, exchanges, the dashboard's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from models.config import AppConfig
from models.futures_data import key_word
from monitor import health, views
from monitor.http import json_response
from monitor.params import Query, bad_request
from monitor.state import MonitorState, now_ms

STATIC = Path(__file__).parent / "static"
DATA_FLOWS_SECONDS = 30.0
"""/health needs a market message consumed within this long."""


class Api:
    def __init__(self, config: AppConfig, state: MonitorState) -> None:
        self.config = config
        self.state = state
        self.max_top = config.monitor.max_top

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self.health),
            web.get("/snapshot", self.snapshot),
            web.get("/api/spreads", self.spreads),
            web.get("/api/spreads/history", self.spread_history),
            web.get("/api/opportunities", self.opportunities),
            web.get("/api/exchanges", self.exchanges),
            web.get("/ui/data", self.ui_data),
            web.get("/ui", self.ui),
            web.get("/", self.root),
            web.static("/ui/static", STATIC, append_version=True),
        ]

    def frame(self, top: int, sort: views.SpreadSort, since: int | None) -> dict[str, Any]:
        """A dashboard frame (the WebSocket's and /ui/data's); `since` None: the full state."""
        spreads = self.config.spreads
        return views.dashboard(self.state, now_ms(), top, sort, since, spreads.entry_pct, spreads.exit_pct)

    async def health(self, request: web.Request) -> web.Response:
        Query(request.query, ())
        at = now_ms()
        state = self.state
        collectors = health.collectors(state, at)
        sources = health.sources(state, at)
        newest = max((entry.at for entry in state.markets.values()), default=None)
        flowing = newest is not None and at - newest <= DATA_FLOWS_SECONDS * 1000
        healthy = any(row["status"] == "ok" for row in collectors) and flowing and any(
            row["status"] == "ok" for row in sources)
        p50, p99 = state.queue_lag_ms.percentiles(0.5, 0.99)
        body = {
            "status": "ok" if healthy else "unhealthy",
            "at": at,
            "collectors": [
                {**row, "sources": [source for source in sources if source["collector"] == row["collector"]]}
                for row in collectors
            ],
            "monitor": {
                "last_market_message_age_seconds": None if newest is None else round((at - newest) / 1000, 3),
                "queue_lag_ms": {"p50": p50, "p99": p99},
                "consumed": dict(state.consumed),
                "invalid": dict(state.invalid),
            },
        }
        return json_response(body, 200 if healthy else 503)

    async def snapshot(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("exchange", "market", "symbol"))
        exchange = query.text("exchange")
        market = query.choice("market", "", ("", "futures", "spot")) or None
        symbol = query.text("symbol")
        at = now_ms()
        rows = []
        for (source, ccxt_symbol), entry in sorted(self.state.markets.items()):
            message = entry.message
            if exchange is not None and message.exchange != exchange:
                continue
            if market is not None and message.market != market:
                continue
            if symbol is not None and symbol not in (ccxt_symbol, key_word(ccxt_symbol)):
                continue
            rows.append(views.market_row(source, entry.at, message, at))
        return json_response({"at": at, "count": len(rows), "markets": rows})

    async def spreads(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("top", "sort", "min_net"))
        top = query.integer("top", 20, 1, self.max_top, cap=True)
        sort = query.choice("sort", "net", tuple(views.SORT_FIGURES))
        min_net = query.number("min_net")
        at = now_ms()
        total, rows = views.ranked_spreads(self.state, at, top, sort, min_net)  # type: ignore[arg-type]
        return json_response({"at": at, "sort": sort, "top": top, "min_net": min_net, "matching": total,
                              "spreads": rows})

    async def spread_history(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("key",))
        key = query.text("key", max_length=200)
        if key is None:
            raise bad_request("key", "key is required: a spread routing key, e.g. spread.BTCUSDT.okx.binance")
        points = self.state.history.get(key)
        if points is None:
            return json_response({"error": "not_found", "message": f"no spread snapshot for {key[:200]!r}"}, 404)
        spreads = self.config.spreads
        return json_response({"key": key, "entry_pct": spreads.entry_pct, "exit_pct": spreads.exit_pct,
                              "points": list(points)})

    async def opportunities(self, request: web.Request) -> web.Response:
        Query(request.query, ())
        at = now_ms()
        return json_response({"at": at, **views.opportunities(self.state, at)})

    async def exchanges(self, request: web.Request) -> web.Response:
        Query(request.query, ())
        at = now_ms()
        return json_response({"at": at, **views.exchanges(self.state, at)})

    async def ui_data(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("top", "sort", "since"))
        top = query.integer("top", 20, 1, self.max_top, cap=True)
        sort = query.choice("sort", "net", tuple(views.SORT_FIGURES))
        since = query.integer("since", -1, 0, 2**62)
        return json_response(self.frame(top, sort, None if since < 0 else since))  # type: ignore[arg-type]

    async def ui(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui")
