"""Alerts from the whole demo stack (simulator, collector, spread engine, monitor, RabbitMQ) to a local fake of
the Telegram Bot API: a price shift gives one "opened" and one "closed" message per opportunity with the
engine's figures, a silent venue gives "stale" then "back", the switch on /api/alerts stops and resumes sending,
and the bot token shows in no log line."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import aiohttp
import pytest
import pytest_asyncio

from alerts.messages import exact
from alerts.telegram import TOKEN_VARIABLE
from models.config import AlertsConfig
from tests.broker import Broker
from tests.fake_telegram import TOKEN, FakeBotApi
from tests.helpers import eventually
from tests.monitor_stack import MonitorStack, start_stack

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

SHIFTED = ("binance", "BTC/USDT:USDT")
WAIT = 30.0
"""Generous: conditions are waited on; a healthy run meets them within seconds."""


@pytest.fixture(scope="module")
def bot_token() -> Iterator[str]:
    before = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = TOKEN
    yield TOKEN
    if before is None:
        del os.environ[TOKEN_VARIABLE]
    else:
        os.environ[TOKEN_VARIABLE] = before


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot_api() -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi()
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(broker: Broker, bot_api: FakeBotApi, bot_token: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MonitorStack]:
    directory = tmp_path_factory.mktemp("alerts")
    alerts = AlertsConfig.model_validate({
        "telegram": {"enabled": True, "chat_id": -100123, "api_base": bot_api.api_base},
        "repeat_seconds": 0, "max_per_minute": 100, "state_file": str(directory / "alerts_state.json"),
    })
    async with AsyncExitStack() as exits:
        yield await start_stack(broker.url, directory, exits, alerts)


def texts(bot_api: FakeBotApi, title: str) -> list[str]:
    return [message["text"] for message in bot_api.delivered if title in message["text"]]


async def test_a_shift_gives_one_opened_and_one_closed_message_per_opportunity(
    stack: MonitorStack, bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    state = stack.monitor.state
    stack.simulator.shift(*SHIFTED, bps=80, seconds=6)
    shifted_at = time.monotonic()
    assert await eventually(lambda: time.monotonic() - shifted_at > 8 and state.opened_total > 0 and not state.open,
                            timeout=WAIT), "no opportunity opened and closed"
    opened = {event.opportunity_id: event for _, event in state.events if event.event == "open"}
    closed = {event.opportunity_id: event for _, event in state.events if event.event == "close"}
    assert await eventually(lambda: len(texts(bot_api, "Opportunity closed")) >= len(closed), timeout=WAIT)
    assert len(texts(bot_api, "Opportunity opened")) == len(opened)
    assert len(texts(bot_api, "Opportunity closed")) == len(closed) == len(opened)
    for event in opened.values():
        (text,) = [text for text in texts(bot_api, "Opportunity opened")
                   if f"buy {event.buy} → sell {event.sell}" in text]
        snapshot = event.snapshot
        assert f"net %: <code>{exact(round(snapshot.net_pct, 4))}</code>" in text
        assert f"sell at: <code>{exact(snapshot.sell.bid)} on binance (BTC/USDT:USDT)</code>" in text
        assert f"{stack.base_url}/ui#spread.BTCUSDT.{event.buy.replace('.', '-')}.binance\">dashboard</a>" in text
        (text,) = [text for text in texts(bot_api, "Opportunity closed")
                   if f"buy {event.buy} → sell {event.sell}" in text]
        assert re.search(r"reason: <code>(converged|stale)</code>", text)
        assert f"peak net %: <code>{exact(round(closed[event.opportunity_id].peak_net_pct, 4))}</code>" in text
    assert not [record for record in caplog.records if TOKEN in record.getMessage()]


async def test_a_silent_venue_gives_stale_then_back(stack: MonitorStack, bot_api: FakeBotApi) -> None:
    await stack.simulator.apply_fault("okx", "silent")
    try:
        assert await eventually(lambda: any("<b>🟠 Source stale</b>\nokx" in text
                                            for text in texts(bot_api, "Source stale")), timeout=WAIT)
    finally:
        await stack.simulator.apply_fault("okx", "resume")
    assert await eventually(lambda: any("<b>✅ Source back</b>\nokx" in text for text in texts(bot_api, "Source back")),
                            timeout=WAIT)
    assert not texts(bot_api, "heartbeats stopped")  # the collector itself kept reporting


async def test_the_switch_stops_sending_at_once_and_resumes(stack: MonitorStack, bot_api: FakeBotApi) -> None:
    url = f"{stack.base_url}/api/alerts"
    async with aiohttp.ClientSession() as session:
        token_before = os.environ.get("MONITOR_TOKEN")
        os.environ["MONITOR_TOKEN"] = "s3cret-monitor-token"
        try:
            async with session.post(f"{url}/telegram/toggle", json={"enabled": False}) as response:
                assert response.status == 401, "MONITOR_TOKEN set: the switch needs it"
        finally:
            if token_before is None:
                del os.environ["MONITOR_TOKEN"]
            else:
                os.environ["MONITOR_TOKEN"] = token_before
        async with session.post(f"{url}/telegram/toggle", json={"enabled": False}) as response:
            assert response.status == 200 and (await response.json())["enabled"] is False
        before = len(bot_api.requests)
        stack.simulator.shift(*SHIFTED, bps=80, seconds=4)
        opened = stack.monitor.state.opened_total
        assert await eventually(lambda: stack.monitor.state.opened_total > opened, timeout=WAIT)
        assert len(bot_api.requests) == before, "sent while switched off"
        async with session.post(f"{url}/telegram/toggle") as response:  # no body: flip
            assert response.status == 200 and (await response.json())["enabled"] is True
        async with session.get(url) as response:
            status = await response.json()
        assert status["channels"]["telegram"]["configured"] is True and status["channels"]["telegram"]["sent"] > 0
        assert status["channels"]["webhook"] == {"enabled": False, "configured": False,
                                                  "why": "alerts.webhook.url is not set in config.json"}
        async with session.post(f"{url}/webhook/toggle") as response:
            assert response.status == 409 and (await response.json())["error"] == "not_configured"
        async with session.post(f"{url}/pager/toggle") as response:
            assert response.status == 404
        async with session.post(f"{url}/telegram/toggle", json={"enabled": "yes"}) as response:
            assert response.status == 400
    # switched on again: the shift's opportunities close, and those messages go out
    assert await eventually(lambda: any("Opportunity closed" in message["text"]
                                        for message in bot_api.delivered[before:]), timeout=WAIT)
