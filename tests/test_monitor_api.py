"""The monitor's HTTP and WebSocket API against a running demo stack (simulator, collector, engine, real
RabbitMQ): every endpoint, its filters and its errors, as a user would call them with curl or a script."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from models.futures_data import FuturesData
from monitor.service import MonitorService
from tests.broker import Broker
from tests.helpers import delete_names, eventually
from tests.monitor_stack import SYMBOLS, VENUES, MonitorStack, start_stack

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

SOURCES = {*VENUES, *(f"{venue}.spot" for venue in VENUES)}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(broker: Broker) -> AsyncIterator[MonitorStack]:
    with tempfile.TemporaryDirectory() as directory:
        async with AsyncExitStack() as exits:
            running = await start_stack(broker.url, Path(directory), exits)
            async with aiohttp.ClientSession() as session:
                async def everything_flows() -> bool:
                    _, body = await get(session, running, "/api/exchanges")
                    return {row["source"] for row in body["sources"] if row["status"] == "ok"} == SOURCES

                assert await poll(everything_flows, 60), "not every source became ok on the monitor"
            yield running


@pytest_asyncio.fixture(loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get(session: aiohttp.ClientSession, stack: MonitorStack, path: str) -> tuple[int, Any]:
    async with session.get(stack.base_url + path) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def poll(condition: Any, timeout: float) -> bool:
    """An async condition, checked every 200 ms until it holds or `timeout` seconds pass."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_health_reports_every_source_of_the_collector(stack: MonitorStack, session: aiohttp.ClientSession
                                                            ) -> None:
    status, body = await get(session, stack, "/health")
    assert status == 200 and body["status"] == "ok", body
    (collector,) = body["collectors"]
    assert collector["collector"] == stack.config.rabbitmq.connection_name and collector["status"] == "ok"
    assert collector["publisher"]["connected"] is True and collector["publisher"]["published"] > 0
    sources = {row["source"]: row for row in collector["sources"]}
    assert set(sources) == SOURCES
    for row in sources.values():
        assert row["status"] == "ok" and row["messages_per_second"] > 0 and row["symbols"] == len(SYMBOLS)
        assert row["last_update_age_seconds"] < 3 and row["receipt_minus_venue_ms"]["p50"] is not None
    assert body["monitor"]["queue_lag_ms"]["p99"] is not None and body["monitor"]["consumed"]["market"] > 0


async def test_health_is_503_without_a_collector_heartbeat(stack: MonitorStack, session: aiohttp.ClientSession,
                                                           broker: Broker) -> None:
    """A monitor listening where no collector reports: market data alone does not make it healthy."""
    config = stack.config.model_copy(deep=True)
    config.rabbitmq.status_exchange = f"{config.rabbitmq.status_exchange}_nobody"
    lonely = MonitorService(config)
    await lonely.start()
    try:
        async with session.get(f"http://127.0.0.1:{lonely.port}/health") as response:
            body = await response.json()
        assert response.status == 503 and body["status"] == "unhealthy" and body["collectors"] == []
    finally:
        await lonely.stop()
        await delete_names(broker.url, [config.rabbitmq.status_exchange])


async def test_snapshot_filters_and_carries_the_timestamp_chain(stack: MonitorStack,
                                                                session: aiohttp.ClientSession) -> None:
    status, body = await get(session, stack, "/snapshot")
    assert status == 200
    assert {(row["source"], row["symbol"]) for row in body["markets"]} == {
        (source, symbol if "." not in source else symbol.split(":")[0]) for source in SOURCES for symbol in SYMBOLS}
    for row in body["markets"]:
        FuturesData.model_validate(row["message"])
        chain = row["timestamps"]
        assert chain["received"] <= chain["published"] <= chain["monitor_received"]
        assert chain["quote_received"] <= chain["received"] and row["age_ms"] >= 0
    status, body = await get(session, stack, "/snapshot?exchange=okx&market=spot&symbol=BTCUSDT")
    assert status == 200 and [(row["source"], row["symbol"]) for row in body["markets"]] == [("okx.spot", "BTC/USDT")]
    status, body = await get(session, stack, "/snapshot?symbol=ETH/USDT:USDT")
    assert {row["source"] for row in body["markets"]} == set(VENUES)


@pytest.mark.parametrize(("path", "parameter"), [
    ("/snapshot?market=options", "market"),
    ("/snapshot?venue=okx", "venue"),
    ("/api/spreads?top=abc", "top"),
    ("/api/spreads?top=0", "top"),
    ("/api/spreads?sort=profit", "sort"),
    ("/api/spreads?min_net=nan", "min_net"),
    ("/api/spreads/history", "key"),
    ("/api/opportunities?limit=5", "limit"),
    ("/ui/data?since=-1", "since"),
    ("/ws/stream?interval_ms=5", "interval_ms"),
])
async def test_a_bad_parameter_is_a_400_naming_it(stack: MonitorStack, session: aiohttp.ClientSession, path: str,
                                                  parameter: str) -> None:
    status, body = await get(session, stack, path)
    assert status == 400 and body["error"] == "bad_parameter" and body["parameter"] == parameter, body
    assert parameter in body["message"]


async def test_spreads_are_ranked_filtered_and_capped(stack: MonitorStack, session: aiohttp.ClientSession) -> None:
    status, body = await get(session, stack, "/api/spreads?top=5")
    assert status == 200 and len(body["spreads"]) == 5 and body["matching"] > 5
    nets = [row["net_pct"] for row in body["spreads"]]
    assert nets == sorted(nets, reverse=True)
    _, body = await get(session, stack, "/api/spreads?top=500&sort=executable")
    assert body["top"] == stack.config.monitor.max_top  # capped, and said so
    executable = [row["executable_net_pct"] for row in body["spreads"] if row["executable_net_pct"] is not None]
    assert executable and executable == sorted(executable, reverse=True)
    _, body = await get(session, stack, "/api/spreads?top=50&sort=funding")
    funding = [row["funding_apr_pct"] for row in body["spreads"]]
    known = [value for value in funding if value is not None]
    assert known == sorted(known, reverse=True) and funding[: len(known)] == known  # unknown funding last
    threshold = nets[2]
    _, body = await get(session, stack, f"/api/spreads?top=50&min_net={threshold}")
    assert body["spreads"] and all(row["net_pct"] >= threshold for row in body["spreads"])
    key = body["spreads"][0]["key"]
    status, history = await get(session, stack, f"/api/spreads/history?key={key}")
    assert status == 200 and history["points"] and history["entry_pct"] == stack.config.spreads.entry_pct
    status, _ = await get(session, stack, "/api/spreads/history?key=spread.NOPEUSDT.okx.binance")
    assert status == 404


async def test_a_shift_shows_an_open_then_a_closed_opportunity(stack: MonitorStack,
                                                               session: aiohttp.ClientSession) -> None:
    stack.simulator.shift("binance", "ETH/USDT:USDT", bps=80, seconds=4)

    async def opened() -> bool:
        _, body = await get(session, stack, "/api/opportunities")
        return any(row["symbol"] == "ETH/USDT" and row["sell"] == "binance" for row in body["open"])

    assert await poll(opened, 20), "the shift never showed as an open opportunity"
    _, body = await get(session, stack, "/api/opportunities")
    live = next(row for row in body["open"] if row["symbol"] == "ETH/USDT" and row["sell"] == "binance")
    assert live["peak_net_pct"] >= stack.config.spreads.entry_pct and live["duration_seconds"] >= 0

    async def closed() -> bool:
        _, body = await get(session, stack, "/api/opportunities")
        return any(row["opportunity_id"] == live["opportunity_id"] for row in body["closed"])

    assert await poll(closed, 30), "the opportunity never closed"
    _, body = await get(session, stack, "/api/opportunities")
    ended = next(row for row in body["closed"] if row["opportunity_id"] == live["opportunity_id"])
    assert ended["reason"] in ("converged", "stale") and ended["duration_seconds"] > 0
    assert ended["peak_net_pct"] >= live["peak_net_pct"] and ended["closed_at"] is not None


async def test_the_watchlist_is_the_collectors_over_the_control_plane(
    stack: MonitorStack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = stack.base_url + "/api/watchlist"
    async with session.post(base, json={"symbol": "SOL/USDT:USDT", "exchanges": ["okx"], "ttl_seconds": 600}) as r:
        assert r.status == 200 and (await r.json())["data"]["added"] == ["okx"]
    async with session.get(base) as r:
        listed = (await r.json())["data"]["watchlist"]
        assert [(entry["symbol"], entry["exchange"]) for entry in listed] == [("SOL/USDT:USDT", "okx")]
    async with session.post(base + "/touch", json={"symbol": "SOL/USDT:USDT", "exchange": "okx"}) as r:
        assert r.status == 200
    async with session.post(base, json={"symbol": "sol"}) as r:
        body = await r.json()
        assert r.status == 400 and body["error"] == "invalid_command" and "sol" in body["message"]
    async with session.post(base, data=b"{not json") as r:
        assert r.status == 400 and "JSON" in (await r.json())["message"]
    async with session.post(base, json={"symbol": "SOL/USDT:USDT", "ttl": 5}) as r:
        assert r.status == 400 and "ttl" in (await r.json())["message"]
    async with session.delete(base, json={"symbol": "DOGE/USDT:USDT"}) as r:
        assert r.status == 404 and (await r.json())["error"] == "symbol_not_found"

    monkeypatch.setenv("MONITOR_TOKEN", "s3cret")
    async with session.delete(base, json={"symbol": "SOL/USDT:USDT"}) as r:
        assert r.status == 401
    async with session.delete(base, json={"symbol": "SOL/USDT:USDT"}, headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
    async with session.get(base) as r:
        assert r.status == 200  # reading needs no token
    async with session.delete(base, json={"symbol": "SOL/USDT:USDT"}, headers={"Authorization": "Bearer s3cret"}) as r:
        assert r.status == 200


async def test_a_silent_or_missing_collector_is_a_504_or_503(stack: MonitorStack, session: aiohttp.ClientSession,
                                                            broker: Broker) -> None:
    config = stack.config.model_copy(deep=True)
    config.control = config.control.model_copy(update={"queue": f"{config.control.queue}_nobody"})
    config.monitor = config.monitor.model_copy(update={"control_timeout_seconds": 1})
    elsewhere = MonitorService(config)
    await elsewhere.start()
    connection = await aio_pika.connect(broker.url)
    try:
        url = f"http://127.0.0.1:{elsewhere.port}/api/watchlist"
        async with session.get(url) as response:
            assert response.status == 503 and (await response.json())["error"] == "unreachable"
        channel = await connection.channel()
        await channel.declare_queue(config.control.queue, auto_delete=True)  # a queue nobody reads
        async with session.get(url) as response:
            assert response.status == 504 and (await response.json())["error"] == "timeout"
    finally:
        await connection.close()
        await elsewhere.stop()


async def test_the_dashboard_data_is_a_state_then_the_events_since(stack: MonitorStack,
                                                                    session: aiohttp.ClientSession) -> None:
    status, state = await get(session, stack, "/ui/data?top=4&sort=funding")
    assert status == 200 and state["type"] == "state" and state["events"] == [] and len(state["spreads"]) == 4
    funding = [row["funding_apr_pct"] for row in state["spreads"]]
    assert funding == sorted(funding, reverse=True)  # the top 4 by funding, not the top 4 by net
    _, tick = await get(session, stack, f"/ui/data?top=4&since={state['sequence']}")
    assert tick["type"] == "tick" and all(event["sequence"] > state["sequence"] for event in tick["events"])


async def test_the_stream_pushes_state_then_ticks_and_caps_clients(stack: MonitorStack,
                                                                  session: aiohttp.ClientSession) -> None:
    url = stack.base_url + "/ws/stream?top=3&interval_ms=200"
    async with session.ws_connect(url) as socket_:
        first = await socket_.receive_json(timeout=10)
        assert first["type"] == "state" and len(first["spreads"]) == 3 and first["exchanges"]["sources"]
        ticks = [await socket_.receive_json(timeout=10) for _ in range(3)]
        assert [frame["type"] for frame in ticks] == ["tick"] * 3
        assert ticks[-1]["at"] - ticks[0]["at"] >= 300
    clients = [await session.ws_connect(url) for _ in range(stack.config.monitor.max_ws_clients)]
    try:
        async with session.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13",
                                             "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}) as r:
            assert r.status == 503 and (await r.json())["error"] == "too_many_clients"
    finally:
        for client in clients:
            await client.close()


async def test_a_client_that_reads_nothing_drops_frames_and_slows_no_one(stack: MonitorStack,
                                                                       session: aiohttp.ClientSession) -> None:
    hub = stack.monitor.hub
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once: the monitor cannot send
    stalled.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(stalled, ("127.0.0.1", stack.monitor.port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(stalled, (
        f"GET /ws/stream?top=50&interval_ms=100 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
        f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    dropped_before = hub.frames_dropped
    try:
        assert await eventually(lambda: hub.frames_dropped > dropped_before, timeout=30), "no frame was dropped"
        async with session.ws_connect(stack.base_url + "/ws/stream?top=3&interval_ms=200") as reader:
            frames = [await reader.receive_json(timeout=5) for _ in range(10)]
        span = frames[-1]["at"] - frames[1]["at"]
        assert span < 8 * 200 * 2, f"8 intervals of 200 ms took {span} ms next to a stalled client"
    finally:
        stalled.close()


async def test_metrics_are_prometheus_text_with_labels(stack: MonitorStack, session: aiohttp.ClientSession) -> None:
    async with session.get(stack.base_url + "/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        families = {family.name: family for family in text_string_to_metric_families(await response.text())}
    up = {(s.labels["exchange"], s.labels["market"]): s.value for s in families["futures_scan_source_up"].samples}
    assert set(up) == {(venue, market) for venue in VENUES for market in ("futures", "spot")}
    assert all(value == 1 for value in up.values())
    updates = families["futures_scan_updates"].samples
    assert all(sample.name == "futures_scan_updates_total" and sample.value > 0 for sample in updates)
    (connected,) = families["futures_scan_broker_connected"].samples
    assert connected.value == 1 and connected.labels["collector"] == stack.config.rabbitmq.connection_name
    assert "futures_scan_open_opportunities" in families and "futures_scan_spreads_evaluated" in families


async def test_a_silenced_venue_goes_stale_then_comes_back(stack: MonitorStack,
                                                           session: aiohttp.ClientSession) -> None:
    """Last: it disturbs the shared stack, and waits until the venue is back."""

    async def statuses() -> dict[str, str]:
        _, body = await get(session, stack, "/api/exchanges")
        return {row["source"]: row["status"] for row in body["sources"]}

    await stack.simulator.apply_fault("okx", "silent")
    try:
        async def okx_stale() -> bool:
            now = await statuses()
            return now["okx"] != "ok" and now["binance"] == "ok"

        assert await poll(okx_stale, 20), await statuses()
    finally:
        await stack.simulator.apply_fault("okx", "resume")

    async def okx_back() -> bool:
        return (await statuses())["okx"] == "ok"

    assert await poll(okx_back, 30), await statuses()
