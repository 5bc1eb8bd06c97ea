from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from simulator.server import Simulator
from tests.broker import Broker, provide_broker
from tests.browser import chromium, dashboard_page
from tests.helpers import Consumer, delete_names
from tests.postgres_db import scratch_database


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    with provide_broker() as provided:
        yield provided


@pytest.fixture
async def exchange_name(broker: Broker) -> AsyncIterator[str]:
    """A topic exchange of this test's own, removed afterwards so runs never collide or pile up."""
    name = f"futures_data_test_{uuid.uuid4().hex[:12]}"
    yield name
    await delete_names(broker.url, [name])


@pytest.fixture
async def control_names(broker: Broker, exchange_name: str) -> AsyncIterator[tuple[str, str]]:
    """(control queue, responses exchange) of this test's own, removed afterwards with the broadcast exchange
    `<queue>_all` its collectors bind the queue to."""
    queue, responses = f"{exchange_name}_control", f"{exchange_name}_responses"
    yield queue, responses
    await delete_names(broker.url, [responses, f"{queue}_all"], [queue])


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A PostgreSQL database of the test module's own, dropped after it (the module skips where none answers)."""
    yield from scratch_database()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(venues=["binance", "bybit"], port=0, rate=20)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def consumer(broker: Broker, exchange_name: str) -> AsyncIterator[Consumer]:
    subscriber = Consumer(broker.url, exchange_name, binding="#")
    await subscriber.start()
    yield subscriber
    await subscriber.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium per browser-test module (they skip themselves where it is missing)."""
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with dashboard_page(browser) as opened:
        yield opened
