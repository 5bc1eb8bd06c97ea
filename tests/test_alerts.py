"""Alerts through a local fake of the Telegram Bot API and a local webhook receiver (no network here): escaping,
429 honoured, failures given up on and counted, a burst cut to the per-minute limit plus one digest, the
on/off switch at once and across a restart, and the bot token in no log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from alerts.channel import Channel
from alerts.messages import Alert
from alerts.notifier import Notifier
from alerts.service import AlertService
from alerts.telegram import TOKEN_VARIABLE, TelegramBot
from alerts.webhook import Webhook
from models.config import AlertsConfig, AppConfig
from monitor.state import MonitorState
from tests.fake_telegram import TOKEN, FakeBotApi
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)

NOW = 1_780_000_000_000


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def telegram(session: aiohttp.ClientSession, bot_api: FakeBotApi, timeout_seconds: float = 5.0) -> Channel:
    bot = TelegramBot(session, bot_api.api_base, TOKEN, "-100123", timeout_seconds)
    return Channel("telegram", bot.send, enabled=True, outbox_size=1000, min_interval_seconds=0.05,
                   per_minute=1000, retry_delay_seconds=0.05)


def opened(symbol: str = "1000PEPE/USDT", key: str = "opportunity_opened:1") -> Alert:
    return Alert("opportunity_opened", key, f"{symbol} mexc_spot → binance <futures> & co", NOW,
                 {"net %": 0.6123, "executable net %": None, "fills (coins)": 123456.0},
                 "http://127.0.0.1:8080/ui#spread.1000PEPEUSDT.mexc-spot.binance")


@asynccontextmanager
async def running(channel: Channel) -> AsyncIterator[Channel]:
    channel.start()
    try:
        yield channel
    finally:
        await channel.stop()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


async def test_a_message_reaches_the_chat_escaped_as_html(session: aiohttp.ClientSession,
                                                         bot_api: FakeBotApi) -> None:
    channel = telegram(session, bot_api)
    async with running(channel):
        channel.offer(opened())
        assert await eventually(lambda: channel.sent == 1)
    (message,) = bot_api.delivered
    assert message["chat_id"] == "-100123" and message["parse_mode"] == "HTML"
    assert message["link_preview_options"] == {"is_disabled": True}
    text = message["text"]
    assert "1000PEPE/USDT mexc_spot → binance &lt;futures&gt; &amp; co" in text
    assert "net %: <code>0.6123</code>" in text and "fills (coins): <code>123456</code>" in text
    assert "executable net" not in text  # unknown figures are left out, not shown as None
    assert '<a href="http://127.0.0.1:8080/ui#spread.1000PEPEUSDT.mexc-spot.binance">dashboard</a>' in text


async def test_a_429_is_waited_out_and_the_message_still_goes(session: aiohttp.ClientSession,
                                                             bot_api: FakeBotApi) -> None:
    bot_api.answers = ["429"]
    channel = telegram(session, bot_api)
    async with running(channel):
        channel.offer(opened())
        assert await eventually(lambda: channel.sent == 1)
    refused, taken = bot_api.requests
    assert (refused.answered, taken.answered) == (429, 200)
    assert taken.at - refused.at >= bot_api.retry_after * 0.95
    assert channel.failed == 0 and "retry after 1" in (channel.last_error or "")


async def test_failures_are_counted_and_never_show_the_token(session: aiohttp.ClientSession, bot_api: FakeBotApi,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """400 (a wrong chat) is given up on at once; 500 after three tries; a Bot API that never answers times out."""
    bot_api.answers = ["400", "500", "500", "500", "hang", "hang", "hang"]
    channel = telegram(session, bot_api, timeout_seconds=0.5)
    async with running(channel):
        for number in range(3):
            channel.offer(opened(key=f"k{number}"))
        assert await eventually(lambda: channel.failed == 3, timeout=30), channel.status()
    assert channel.sent == 0 and len(bot_api.requests) == 7
    assert "TimeoutError" in (channel.last_error or "")
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 3 and "chat not found" in errors[0]
    assert not [record for record in caplog.records if TOKEN in record.getMessage()]
    assert TOKEN not in str(channel.status())


async def test_a_burst_becomes_the_per_minute_limit_and_one_digest(session: aiohttp.ClientSession,
                                                                   bot_api: FakeBotApi, tmp_path: Path) -> None:
    clock = Clock()
    config = AlertsConfig(max_per_minute=5, state_file=str(tmp_path / "switches.json"))
    notifier = Notifier(config, [telegram(session, bot_api)], now_ms=clock)
    await notifier.start()
    try:
        for number in range(100):
            notifier.notify(opened(symbol=f"COIN{number}/USDT", key=f"opportunity_opened:{number}"))
        assert await eventually(lambda: len(bot_api.delivered) == 5)
        assert notifier.held == 95
        clock.now += 60_000  # the minute is over: the held alerts go out as one message
        assert await eventually(lambda: len(bot_api.delivered) == 6)
    finally:
        await notifier.stop()
    digest = bot_api.delivered[-1]["text"]
    assert "95 alerts held back" in digest and "Opportunity opened: <code>95</code>" in digest
    assert "COIN5/USDT" in digest and "COIN14/USDT" in digest and "; and 85 more" in digest
    assert "COIN15/USDT" not in digest and notifier.digests == 1


async def test_the_same_alert_key_goes_out_once_per_repeat_interval(session: aiohttp.ClientSession,
                                                                    bot_api: FakeBotApi) -> None:
    clock = Clock()
    notifier = Notifier(AlertsConfig(repeat_seconds=300, state_file=None), [telegram(session, bot_api)],
                        now_ms=clock)
    await notifier.start()
    try:
        notifier.notify(opened())
        clock.now += 299_000
        notifier.notify(opened())
        clock.now += 1_000
        notifier.notify(opened())
        assert await eventually(lambda: len(bot_api.delivered) == 2)
    finally:
        await notifier.stop()
    assert notifier.repeats_suppressed == 1


async def test_switching_off_stops_at_once_on_resumes_and_a_restart_keeps_it(
    session: aiohttp.ClientSession, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    config = AlertsConfig(repeat_seconds=0, state_file=str(tmp_path / "switches.json"))
    channel = telegram(session, bot_api)
    channel.min_interval_seconds = 0.5  # a queue builds up behind the first message
    notifier = Notifier(config, [channel])
    await notifier.start()
    try:
        for number in range(5):
            notifier.notify(opened(key=f"k{number}"))
        assert await eventually(lambda: len(bot_api.delivered) == 1)
        await notifier.switch("telegram", False)
        sent_when_off = len(bot_api.requests)
        notifier.notify(opened(key="while-off"))  # switched off: nothing is queued
        assert channel.status()["queued"] == 0 and channel.dropped >= 3
    finally:
        await notifier.stop()
    assert len(bot_api.requests) == sent_when_off

    restarted_channel = telegram(session, bot_api)
    restarted = Notifier(config, [restarted_channel])
    await restarted.start()
    try:
        assert restarted_channel.enabled is False  # the saved switch wins over config.json's enabled
        await restarted.switch("telegram", True)
        restarted.notify(opened(key="after"))
        assert await eventually(lambda: restarted_channel.sent == 1)
    finally:
        await restarted.stop()


async def test_the_webhook_gets_the_alert_as_json(session: aiohttp.ClientSession) -> None:
    received: list[dict[str, object]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/futures-scan", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    hook = Webhook(session, f"http://user:secret@127.0.0.1:{port}/hooks/futures-scan?key=abc", 5.0)
    channel = Channel("webhook", hook.send, enabled=True, outbox_size=10)
    async with running(channel):
        channel.offer(opened())
        assert await eventually(lambda: channel.sent == 1)
        await runner.cleanup()
    (body,) = received
    assert body["kind"] == "opportunity_opened" and body["at"] == NOW
    assert body["figures"] == {"net %": 0.6123, "executable net %": None, "fills (coins)": 123456.0}
    assert hook.shown == "http://127.0.0.1/hooks/futures-scan"  # no credentials, no query string in logs


async def test_a_chat_id_without_the_bot_token_is_a_warning_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, "set, so that delenv restores whatever was there")
    monkeypatch.delenv(TOKEN_VARIABLE)
    caplog.set_level(logging.INFO, logger="alerts")
    config = AppConfig.model_validate({
        "exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"],
        "alerts": {"telegram": {"enabled": True, "chat_id": -100123}, "state_file": None},
    })
    service = AlertService(config, MonitorState(closed_kept=10, spread_max_age_ms=5000), lambda: True)
    await service.start(8080)
    await service.stop()
    said = {record.getMessage(): record.levelno for record in caplog.records}
    assert said[f"alerts: no telegram alerts: {TOKEN_VARIABLE} is not set (environment or .env)"] == logging.WARNING
    assert said["alerts: no webhook alerts: alerts.webhook.url is not set in config.json"] == logging.INFO
