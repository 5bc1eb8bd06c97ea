"""The dashboard's 12-hour chart in Debian's Chromium (Playwright), served by the monitor's own routes over a real
SQLite store: with recorded buckets it draws the net line and the midline and knows the events and funding times;
without a store it says how to get one. No bus: the page polls /ui/data (empty) and the direction is picked by the
URL's #key, as a reload of a selected direction does."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from history.rows import Batch, FundingChange, SeriesBar, SignalEvent
from tests.browser import skip_without_chromium
from tests.test_history_api import KEY, fill_store, history_config, serve_monitor_routes

WAIT_MS = 15_000
BUCKET_MS = 300_000
BUCKETS = 24
"""Two hours of 5-minute buckets, ending with the current one."""

skip_without_chromium()

pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]


def recorded_hours() -> Batch:
    """The last two hours of the direction: a net rising through the entry level, one closed event, a funding."""
    now = int(time.time() * 1000)
    first = now - now % BUCKET_MS - (BUCKETS - 1) * BUCKET_MS
    bars = [SeriesBar(ts=first + index * BUCKET_MS, symbol="BTC/USDT", buy="okx.spot", sell="binance",
                      net_open=0.02 * index, net_high=0.02 * index + 0.05, net_low=0.02 * index - 0.05,
                      net_close=0.02 * index + 0.01, net_mean=0.02 * index, funding_diff_8h_pct_mean=0.01,
                      buy_mid_mean=97000, sell_mid_mean=97300, snapshots=300) for index in range(BUCKETS)]
    start, end = first + 16 * BUCKET_MS, first + 19 * BUCKET_MS
    event = SignalEvent(event_id=f"BTCUSDT.okx-spot.binance.{start}", symbol="BTC/USDT", buy="okx.spot",
                        sell="binance", buy_symbol="BTC/USDT", sell_symbol="BTC/USDT:USDT", start_ts=start,
                        end_ts=end, status="closed", samples=4)
    funding = FundingChange(ts=first, exchange="binance", symbol="BTC/USDT:USDT", funding_rate=0.0001,
                            funding_interval_hours=8, next_funding_time=first + 10 * BUCKET_MS,
                            previous_rate=None, previous_next_funding_time=None, received_ts=first)
    return Batch(series=bars, events=[event], funding=[funding])


async def painted(page: Page, css_color: str) -> int:
    """Pixels of the 12-hour canvas within a few levels of this colour: what was drawn in it."""
    return await page.evaluate(
        """(name) => {
          const canvas = document.querySelector('#history-chart');
          const hex = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
          const want = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let count = 0;
          for (let at = 0; at < data.length; at += 4) {
            if (data[at + 3] > 200 && want.every((value, index) => Math.abs(data[at + index] - value) < 12)) count++;
          }
          return count;
        }""", css_color)


async def test_the_12_hour_chart_draws_the_recorded_direction(page: Page, tmp_path: Path) -> None:
    config = history_config(tmp_path, tmp_path / "history.sqlite")
    await fill_store(tmp_path / "history.sqlite", config, recorded_hours())
    async with AsyncExitStack() as exits:
        base_url = await serve_monitor_routes(config, exits)
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url) if "/api/history/" in request.url else None)
        await page.clock.install()  # time flows, and can be moved on to the next refresh
        await page.goto(f"{base_url}/ui#{KEY}")
        chart = page.locator("#history-chart")
        await expect(chart).to_have_attribute("data-status", "ok", timeout=WAIT_MS)
        await expect(chart).to_have_attribute("data-key", KEY)
        await expect(chart).to_have_attribute("data-points", str(BUCKETS))
        await expect(chart).to_have_attribute("data-events", "1")
        await expect(chart).to_have_attribute("data-funding", "1")
        await expect(page.locator("#history-message")).to_be_hidden()
        size = await chart.bounding_box()
        assert size is not None and size["width"] > 400 and size["height"] >= 140, f"it fills its box: {size}"
        # two of the 12 hours recorded: about 130 pixels of net line, 35 of dashed midline, 300 of entry level and
        # marker in a 1440x900 page; half of that is drawn whatever the fonts and antialiasing
        assert await painted(page, "--blue") > 60, "the net line is not drawn"
        assert await painted(page, "--violet") > 15, "the midline is not drawn"
        assert await painted(page, "--green") > 150, "the entry level and marker are not drawn"

        assert len(fetched) == 1, fetched
        async with page.expect_request(lambda request: "/api/history/spreads" in request.url, timeout=WAIT_MS):
            await page.clock.fast_forward(61_000)  # refetched once a minute has passed
        assert len(fetched) == 2, fetched
        await expect(chart).to_have_attribute("data-points", str(BUCKETS))


async def test_without_a_store_the_chart_says_to_start_the_recorder(page: Page, tmp_path: Path) -> None:
    config = history_config(tmp_path, tmp_path / "none" / "history.sqlite")
    async with AsyncExitStack() as exits:
        base_url = await serve_monitor_routes(config, exits)
        await page.goto(f"{base_url}/ui#{KEY}")
        await expect(page.locator("#history-chart")).to_have_attribute("data-status", "unavailable", timeout=WAIT_MS)
        message = page.locator("#history-message")
        await expect(message).to_be_visible()
        await expect(message).to_have_text("no history yet (start python -m consumers.recorder)")
        assert await painted(page, "--blue") == 0
