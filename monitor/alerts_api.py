"""/api/alerts: what the alert channels did, and their on/off switches.

    GET  /api/alerts                          per channel: enabled, configured, sent, failed, dropped, last error
    POST /api/alerts/{channel}/toggle         {"enabled": true|false}, or no body to flip; MONITOR_TOKEN guards it
"""

from __future__ import annotations

from aiohttp import web

from alerts.service import CHANNELS, AlertService
from monitor.http import authorized_body, bad_body, error_response, json_response
from monitor.params import Query


class AlertsApi:
    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/alerts", self.status), web.post("/api/alerts/{channel}/toggle", self.toggle)]

    async def status(self, request: web.Request) -> web.Response:
        Query(request.query, ())
        return json_response(self.alerts.status())

    async def toggle(self, request: web.Request) -> web.Response:
        body = await authorized_body(request, ("enabled",))
        name = request.match_info["channel"]
        if name not in CHANNELS:
            return error_response(404, "unknown_channel", f"no alert channel {name[:40]!r}; there are: "
                                                          f"{', '.join(CHANNELS)}")
        why = self.alerts.unconfigured.get(name)
        notifier = self.alerts.notifier
        if why is not None or notifier is None:
            return error_response(409, "not_configured", f"{name} cannot send: {why or 'alerts are starting'}")
        enabled = body.get("enabled", not notifier.channels[name].enabled)
        if not isinstance(enabled, bool):
            raise bad_body("enabled must be true or false")
        await notifier.switch(name, enabled)
        return json_response({"success": True, "channel": name, **notifier.channels[name].status()})
