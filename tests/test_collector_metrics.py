"""The collector's own /metrics, scraped as Prometheus would while it collects from the simulator."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.config import AppConfig
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import SYMBOLS, Consumer, collector_config, eventually, running

pytestmark = pytest.mark.timeout(90)

SOURCES = {("binance", "futures"), ("binance", "spot"), ("bybit", "futures"), ("bybit", "spot")}
SOURCE_COUNTERS = ("updates", "frames", "errors", "reconnects")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""(sample name, its labels) -> value."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_metrics(simulator: Simulator, broker: Broker, exchange: str, port: int) -> AppConfig:
    config = collector_config(simulator, broker.url, exchange)
    config.markets = ["futures", "spot"]
    config.metrics.port = port
    return config


async def scrape(http: aiohttp.ClientSession, port: int) -> Samples:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def per_source(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    found = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            by_name = dict(labels)
            found[(by_name["exchange"], by_name["market"])] = value
    return found


def value(samples: Samples, name: str) -> float:
    return samples[(name, frozenset())]


async def test_metrics_count_each_source_and_the_publish_latency(
    simulator: Simulator, broker: Broker, exchange_name: str, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    config = with_metrics(simulator, broker, exchange_name, port)
    async with running(config) as app:
        def counted_since(then: dict[str, tuple[int, int]]) -> bool:
            """Every source has more updates and frames (counted once a second) than `then`."""
            return len(app.collectors) == len(SOURCES) and all(
                c.stats.updates > then[c.venue.source_id][0] and c.stats.frames > then[c.venue.source_id][1]
                for c in app.collectors
            )

        assert await eventually(lambda: counted_since({c.venue.source_id: (0, 0) for c in app.collectors}), timeout=30)
        first = await scrape(http, port)
        then = {c.venue.source_id: (c.stats.updates, c.stats.frames) for c in app.collectors}
        published_then = app.publisher.stats.published
        assert await eventually(
            lambda: counted_since(then) and app.publisher.stats.published > published_then, timeout=30
        )
        second = await scrape(http, port)

    for counter in SOURCE_COUNTERS:
        assert set(per_source(second, f"futures_scan_{counter}_total")) == SOURCES, counter
    for source in SOURCES:
        for counter in ("updates", "frames"):
            before = per_source(first, f"futures_scan_{counter}_total")[source]
            after = per_source(second, f"futures_scan_{counter}_total")[source]
            assert 0 < before < after, (source, counter, before, after)
    assert per_source(second, "futures_scan_symbols") == dict.fromkeys(SOURCES, len(SYMBOLS))
    assert per_source(second, "futures_scan_stale_symbols") == dict.fromkeys(SOURCES, 0)
    ages = per_source(second, "futures_scan_last_update_age_seconds")
    assert set(ages) == SOURCES and all(0 <= age < 2 for age in ages.values()), ages
    streams = [(dict(labels), up) for (name, labels), up in second.items() if name == "futures_scan_stream_up"]
    assert {(labels["exchange"], labels["market"]) for labels, _ in streams} == SOURCES
    assert all(labels["stream"] and up == 1 for labels, up in streams), streams

    assert 0 < value(first, "futures_scan_published_total") < value(second, "futures_scan_published_total")
    assert value(second, "futures_scan_failed_total") == 0
    assert value(second, "futures_scan_broker_connected") == 1
    for counter in ("conflated", "expired", "broker_reconnects"):
        assert value(second, f"futures_scan_{counter}_total") >= 0

    histogram = "futures_scan_receipt_to_publish_seconds"
    count_before, count_after = value(first, f"{histogram}_count"), value(second, f"{histogram}_count")
    assert 0 < count_before < count_after
    assert 0 < value(second, f"{histogram}_sum") < count_after * 5  # seconds, not ms: below 5 s each on average
    buckets = sorted(
        (float(dict(labels)["le"]), count) for (name, labels), count in second.items() if name == f"{histogram}_bucket"
    )
    assert buckets[0][0] == 0.0001 and buckets[-2][0] == 5.0 and buckets[-1] == (float("inf"), count_after)
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)


async def test_a_taken_port_is_one_error_and_the_collector_still_publishes(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    async with running(with_metrics(simulator, broker, exchange_name, port)) as serving:
        assert await eventually(lambda: serving.publisher.stats.published > 0, timeout=30)
        second_config = with_metrics(simulator, broker, exchange_name, port)
        second_config.rabbitmq.connection_name = "futures-scan second"
        async with running(second_config) as second:
            (error,) = [r.getMessage() for r in caplog.records if r.name == "metrics" and r.levelno >= logging.ERROR]
            published = second.publisher.stats.published
            assert await eventually(lambda: second.publisher.stats.published > published + 100, timeout=30)
            assert second.publisher.stats.connected
        assert (await scrape(http, port))[("futures_scan_broker_connected", frozenset())] == 1  # the first serves on

    assert f"127.0.0.1:{port}" in error and "metrics.port" in error and "taken" in error, error
    assert len(consumer.messages) > 0
