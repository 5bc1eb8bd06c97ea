"""The dashboard (/ui) in a real browser: Debian's Chromium driven by Playwright, against the whole stack running for
real (simulator, collector, spread engine, monitor, RabbitMQ).

It fills the spread table live over the WebSocket, shows each source's tile, shows an opportunity open then close
after a simulator shift, falls back to polling /ui/data when the WebSocket is refused (and goes live again once it
is allowed), and takes a screenshot with an opportunity open and its chart drawn.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, WebSocketRoute, expect

from tests.broker import Broker
from tests.browser import skip_without_chromium
from tests.monitor_stack import VENUES, MonitorStack, start_stack

SOURCES = sorted([*VENUES, *(f"{venue}.spot" for venue in VENUES)])
WAIT_MS = 20_000
"""Generous: conditions are waited on, never slept on; a healthy run meets them within a few seconds."""
SHIFTED = ("binance", "BTC/USDT:USDT")
"""Binance's BTC perpetual priced 80 bps up: buying BTC elsewhere and selling it on binance nets about 0.6 %."""

skip_without_chromium()

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MonitorStack]:
    async with AsyncExitStack() as exits:
        yield await start_stack(broker.url, tmp_path_factory.mktemp("dashboard"), exits)


async def open_dashboard(page: Page, stack: MonitorStack, mode: str = "live") -> None:
    await page.goto(f"{stack.base_url}/ui")
    await expect(page.locator("#mode")).to_have_attribute("data-mode", mode, timeout=WAIT_MS)
    await page.wait_for_function("document.querySelectorAll('#spreads tbody tr[data-key]').length >= 12",
                                 timeout=WAIT_MS)


async def next_update(page: Page) -> None:
    """Until the page takes a newer frame than the one it shows now."""
    updated = await page.locator("#freshness").get_attribute("data-updated")
    await page.wait_for_function("seen => document.querySelector('#freshness').dataset.updated !== seen", arg=updated,
                                 timeout=WAIT_MS)


async def column(page: Page, index: int, attribute: str | None = None) -> list[str]:
    """One column of the spread table, read in one go: the table is redrawn at every frame."""
    return await page.locator(f"#spreads tbody tr td:nth-child({index})").evaluate_all(
        "(cells, attribute) => cells.map(cell => (attribute ? cell.getAttribute(attribute) : cell.textContent) ?? '')",
        attribute)


async def wait_for_quiet(page: Page) -> None:
    """Until no opportunity is open: a shift must be waited out before the next test."""
    await expect(page.locator("#open-opportunities tbody tr")).to_have_count(0, timeout=WAIT_MS)


async def test_the_table_fills_live_sorts_and_each_source_has_a_tile(page: Page, stack: MonitorStack) -> None:
    await open_dashboard(page, stack)
    await expect(page.locator("#mode")).to_have_text("live")
    rows = page.locator("#spreads tbody tr")
    first = rows.first
    await expect(first.locator("td.dir")).to_have_text(re.compile(r"^(BTC|ETH)/USDT\s*\S+\s*→\s*\S+$"))
    net = await column(page, 5)
    assert all(re.fullmatch(r"[+−]?\d\.\d{3}", text) for text in net), net  # fixed decimals, signed
    ranked = [float(value) for value in await column(page, 5, "data-value")]
    assert ranked == sorted(ranked, reverse=True), "ranked by net, best first"
    await next_update(page)
    await next_update(page)  # live: frames keep coming
    await expect(page.locator("#freshness")).to_have_text(re.compile(r"^updated \d+\.\d s ago$"))

    await page.locator("#spreads th[data-sort=funding] button").click()
    await expect(page.locator("#spreads th[data-sort=funding]")).to_have_attribute("aria-sort", "descending")
    funding = [float(value) for value in await column(page, 8, "data-value") if value]
    assert len(funding) >= 12 and funding == sorted(funding, reverse=True), funding

    key = await rows.nth(3).get_attribute("data-key")
    assert key
    row = page.locator(f"#spreads tbody tr[data-key='{key}']")  # by key: the rows move between frames
    await row.click()
    await expect(row).to_have_class(re.compile(r"\bselected\b"))
    chart = page.locator("#chart")
    await expect(chart).to_have_attribute("data-key", key)
    await page.wait_for_function("Number(document.querySelector('#chart').dataset.points) >= 2", timeout=WAIT_MS)

    # the collector's heartbeats: one tile per source, all green, and the collector's own status
    for source in SOURCES:
        await expect(page.locator(f".tile[data-source='{source}']")).to_have_attribute("data-status", "ok",
                                                                                      timeout=WAIT_MS)
    await expect(page.locator("#exchanges .tile")).to_have_count(len(SOURCES))
    collector = page.locator(f"#collectors .collector[data-collector='{stack.config.rabbitmq.connection_name}']")
    await expect(collector).to_have_attribute("data-status", "ok")
    await expect(collector).to_contain_text("broker connected")


async def test_a_shift_opens_an_opportunity_that_then_closes(page: Page, stack: MonitorStack) -> None:
    await open_dashboard(page, stack)
    await wait_for_quiet(page)
    stack.simulator.shift(*SHIFTED, bps=80, seconds=6)
    opened = page.locator("#open-opportunities tbody tr[data-key='spread.BTCUSDT.okx.binance']")
    await expect(opened).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator("#open-count")).not_to_have_text("0")
    identifier = await opened.get_attribute("data-id")
    assert identifier
    net = opened.locator("td:nth-child(3)")
    await expect(net).to_have_text(re.compile(r"^\+0\.[3-9]\d{2}$"))  # over the 0.3 % entry
    duration = opened.locator("td.duration")
    shown = await duration.text_content()
    await page.wait_for_function(  # the duration ticks by itself
        "([id, seen]) => { const cell = document.querySelector(`#open-opportunities tr[data-id='${id}'] td.duration`);"
        " return cell !== null && cell.textContent !== seen; }", arg=[identifier, shown], timeout=WAIT_MS)

    closed = page.locator(f"#closed-opportunities tbody tr[data-id='{identifier}']")
    await expect(closed).to_have_count(1, timeout=WAIT_MS)
    await expect(closed).to_have_attribute("data-reason", "converged")
    await expect(page.locator(f"#open-opportunities tbody tr[data-id='{identifier}']")).to_have_count(0)
    await wait_for_quiet(page)


async def test_a_refused_websocket_falls_back_to_polling_and_recovers(page: Page, stack: MonitorStack) -> None:
    # page.route() never sees a WebSocket upgrade; route_web_socket() does: while `refused`, every socket the page
    # opens is closed at once (the page never gets a frame), after that it is passed through to the monitor
    refused = True
    attempts = 0
    retried = asyncio.Event()

    async def refuse(socket: WebSocketRoute) -> None:
        nonlocal attempts
        if not refused:
            socket.connect_to_server()
            return
        attempts += 1
        if attempts >= 2:
            retried.set()
        await socket.close(code=1011, reason="refused by the test")

    await page.route_web_socket("**/ws/stream*", refuse)
    polled: list[str] = []
    page.on("request", lambda request: polled.append(request.url) if "/ui/data" in request.url else None)

    await open_dashboard(page, stack, mode="polling")
    await expect(page.locator("#mode")).to_have_text("polling")
    await next_update(page)
    await next_update(page)  # it keeps updating, from /ui/data
    await expect(page.locator("#freshness")).to_have_text(re.compile(r"^updated \d+\.\d s ago$"))
    assert len(polled) >= 3, polled
    assert "since=" not in polled[0] and all("since=" in url for url in polled[1:]), polled  # state, then ticks
    await asyncio.wait_for(retried.wait(), WAIT_MS / 1000)  # it keeps trying the WebSocket in the background

    refused = False
    await expect(page.locator("#mode")).to_have_attribute("data-mode", "live", timeout=WAIT_MS)
    await next_update(page)
    count = len(polled)
    await next_update(page)
    await next_update(page)
    assert len(polled) == count, "polling stopped once the WebSocket was live again"


async def test_screenshot_with_an_open_opportunity_and_its_chart(page: Page, stack: MonitorStack, tmp_path: Path
                                                                 ) -> None:
    await open_dashboard(page, stack)
    for source in SOURCES:
        await expect(page.locator(f".tile[data-source='{source}']")).to_have_attribute("data-status", "ok",
                                                                                      timeout=WAIT_MS)
    await wait_for_quiet(page)
    stack.simulator.shift(*SHIFTED, bps=80, seconds=10)
    try:
        opened = page.locator("#open-opportunities tbody tr[data-key='spread.BTCUSDT.bybit.binance']")
        await expect(opened).to_have_count(1, timeout=WAIT_MS)
        await opened.click()
        await expect(page.locator("#chart")).to_have_attribute("data-key", "spread.BTCUSDT.bybit.binance")
        await expect(page.locator("#spreads tbody tr.selected")).to_have_attribute("data-key",
                                                                                   "spread.BTCUSDT.bybit.binance")
        await page.wait_for_function(  # the chart has drawn the shift above the entry level
            "() => { const chart = document.querySelector('#chart');"
            " return Number(chart.dataset.points) >= 3 && Number(chart.dataset.last) >= 0.3; }", timeout=WAIT_MS)
        await expect(page.locator("#chart-title")).to_contain_text("BTC/USDT")
        await expect(page.locator("#chart-title")).to_contain_text("bybit → binance")
        await expect(page.locator("#open-opportunities tbody tr.flash")).to_have_count(0, timeout=WAIT_MS)
        screenshot = tmp_path / "dashboard.png"  # for a look after a failure; docs/ holds the demo's own
        await page.screenshot(path=screenshot)
        assert screenshot.stat().st_size > 20_000
    finally:
        stack.simulator.shift(*SHIFTED, bps=0, seconds=0.1)  # undo the shift for whoever runs next
