"""The market-data log: the collector declares a RabbitMQ stream (rabbitmq.log_stream), scripts/replay.py reads it
back from a point in time and prints it, writes it or republishes it. A real broker, a real collector on the
simulator, replay.py as a user runs it."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from models.config import LogStreamConfig
from models.futures_data import FuturesData
from scripts import replay
from simulator.server import Simulator
from tests.broker import Broker
from tests.helpers import Consumer, collector_config, delete_names, eventually, running
from utils.config_loader import ConfigError, load_config
from utils.topic_pattern import topic_matches

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
STREAM_BINDINGS = ["futures.binance.#", "spot.#"]
"""The simulator serves binance and bybit futures: bybit's must stay out of the stream."""
RECORDED_SECONDS = 6.0


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Recording:
    """A collector ran with the log for a while; what a plain queue consumer received meanwhile is the truth."""

    stream: str
    config_path: Path
    before_ms: int
    """Before the collector started."""
    bound_ms: int
    """When the collector logged the stream as declared and bound: everything published later is in it."""
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def message_time(body: dict[str, Any]) -> int:
    return body["published_timestamp"]


def replay_config(tmp: Path, broker_url: str, stream: str) -> Path:
    path = tmp / "config.json"
    path.write_text(json.dumps({
        "rabbitmq": {"url": broker_url, "log_stream": {"name": stream}},
        "exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "api_keys_file": None,
    }))
    return path


async def record(broker_url: str, exchange: str, stream: str, config_path: Path) -> Recording:
    simulator = Simulator(venues=["binance", "bybit"], port=0, rate=20)
    await simulator.start()
    consumer = Consumer(broker_url, exchange, binding="#")
    await consumer.start()
    lines = _Lines()
    logger = logging.getLogger("log_stream")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    try:
        config = collector_config(simulator, broker_url, exchange)
        config.rabbitmq.log_stream = LogStreamConfig(name=stream, max_age="1h", max_bytes=100_000_000,
                                                     bindings=STREAM_BINDINGS)
        recording = Recording(stream, config_path, time.time_ns() // 1_000_000, 0)
        async with running(config) as app:
            assert await eventually(lambda: any(f"stream '{stream}'" in line for line in lines.lines), 30), lines.lines
            recording.bound_ms = time.time_ns() // 1_000_000
            assert await eventually(
                lambda: any(message_time(body) > recording.bound_ms + RECORDED_SECONDS * 1000
                            for _, body, _ in consumer.messages), 30)
        # stopped: every message the broker confirmed has reached the consumer's queue (bound with #)
        assert await eventually(lambda: len(consumer.messages) >= app.publisher.stats.published, 30)
        recording.published = [(key, body) for key, body, _ in consumer.messages]
        return recording
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        await consumer.close()
        await simulator.stop()


@pytest.fixture(scope="module")
def recording(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """One stream recorded for the module's replays (its own names, deleted after)."""
    tag = uuid.uuid4().hex[:12]
    exchange, stream = f"futures_data_test_{tag}", f"futures_data_log_test_{tag}"
    config_path = replay_config(tmp_path_factory.mktemp("replay"), broker.url, stream)
    try:
        yield asyncio.run(record(broker.url, exchange, stream, config_path))
    finally:
        asyncio.run(delete_names(broker.url, [exchange], [stream]))


def run_replay(recording: Recording, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/replay.py", "--config", str(recording.config_path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )


def printed(result: subprocess.CompletedProcess[str]) -> list[tuple[str, dict[str, Any]]]:
    assert result.returncode == 0, result.stderr
    return [(line["routing_key"], line["body"]) for line in map(json.loads, result.stdout.splitlines())]


def in_stream(recording: Recording, start_ms: int, end_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """What the stream must hold in [start, end]: every message published after it was bound, with a key its
    bindings take, in the order published."""
    return [
        (key, body) for key, body in recording.published
        if message_time(body) >= max(start_ms, recording.bound_ms + 1)
        and (end_ms is None or message_time(body) <= end_ms)
        and any(topic_matches(pattern, key) for pattern in STREAM_BINDINGS)
    ]


def test_replay_prints_every_logged_message_in_order_and_only_the_bound_keys(recording: Recording) -> None:
    result = run_replay(recording, "--from", str(recording.before_ms))
    lines = printed(result)
    assert lines, result.stderr
    for key, body in lines:
        message = FuturesData.model_validate(body)
        assert key.startswith("futures.binance."), key  # bybit's keys are not bound to the stream
        assert message.exchange == "binance"
    logged_since_bound = [line for line in lines if message_time(line[1]) > recording.bound_ms]
    expected = in_stream(recording, recording.before_ms)
    assert len(expected) > 100
    assert logged_since_bound == expected
    assert f"{len(lines)} printed" in result.stderr
    assert "replay: " in result.stderr.splitlines()[-1]


def test_binding_filters_by_topic_pattern(recording: Recording) -> None:
    lines = printed(run_replay(recording, "--from", str(recording.before_ms), "--binding", "futures.*.BTCUSDT",
                               "futures.#.SOLUSDT"))
    everything = printed(run_replay(recording, "--from", str(recording.before_ms)))
    assert {key for key, _ in lines} == {"futures.binance.BTCUSDT", "futures.binance.SOLUSDT"}
    assert lines == [line for line in everything if line[0].endswith(("BTCUSDT", "SOLUSDT"))]


def window_of(recording: Recording) -> tuple[int, int]:
    """A window in the middle of the recording, with seconds of log on either side."""
    start = recording.bound_ms + 1500
    return start, start + 2000


def test_from_to_window_keeps_only_the_messages_inside(recording: Recording, tmp_path: Path) -> None:
    start, end = window_of(recording)
    out = tmp_path / "window.jsonl"
    result = run_replay(recording, "--from", str(start), "--to", str(end), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [(line["routing_key"], line["body"]) for line in map(json.loads, out.read_text().splitlines())]
    assert lines == in_stream(recording, start, end)
    assert all(start <= message_time(body) <= end for _, body in lines)
    assert f"{len(lines)} written to {out}" in result.stderr


async def republish(recording: Recording, broker_url: str, *args: str) -> tuple[Consumer, str, str]:
    exchange = f"futures_data_replayed_{uuid.uuid4().hex[:12]}"
    consumer = Consumer(broker_url, exchange, binding="#")
    await consumer.start()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/replay.py", "--config", str(recording.config_path), "--publish-exchange", exchange,
        *args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, errors.decode()
    return consumer, exchange, errors.decode()


async def test_republishing_delivers_every_message_in_order(recording: Recording, broker: Broker) -> None:
    start, end = window_of(recording)
    expected = in_stream(recording, start, end)
    consumer, exchange, summary = await republish(recording, broker.url, "--from", str(start), "--to", str(end),
                                                  "--speed", "0")
    try:
        assert await consumer.wait_until(lambda: len(consumer.messages) >= len(expected), 30)
        assert [(key, body) for key, body, _ in consumer.messages] == expected
        assert f"{len(expected)} republished to exchange '{exchange}' (confirmed)" in summary
    finally:
        await consumer.close()
        await delete_names(broker.url, [exchange])


async def test_republishing_keeps_the_original_pace(recording: Recording, broker: Broker) -> None:
    start, end = window_of(recording)
    expected = in_stream(recording, start, end)
    span_seconds = (message_time(expected[-1][1]) - message_time(expected[0][1])) / 1000
    consumer, exchange, _ = await republish(recording, broker.url, "--from", str(start), "--to", str(end),
                                            "--speed", "1")
    try:
        assert await consumer.wait_until(lambda: len(consumer.messages) >= len(expected), 30)
        arrivals = [arrived for _, _, arrived in consumer.messages]
        assert arrivals[-1] - arrivals[0] >= 0.9 * span_seconds, (arrivals[-1] - arrivals[0], span_seconds)
    finally:
        await consumer.close()
        await delete_names(broker.url, [exchange])


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = replay.main(list(args))
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "status", "error"),
    [
        (["--from", "yesterday"], 2, "--from 'yesterday' is not a time: write milliseconds since the epoch"),
        (["--from", "1733436000"], 2, "looks like seconds (did you mean 1733436000000?)"),
        (["--from", "-1h", "--to", "-2h"], 2, "is before --from -1h"),
        (["--from", "2999-01-01T00:00"], 2, "is in the future; add --follow"),
        (["--from", "-1h", "--speed", "-1"], 2, "--speed -1: must be 0"),
        (["--from", "-1h", "--stream", "no_such_stream_wtB"], 4, "no stream 'no_such_stream_wtB' on amqp://"),
    ],
)
def test_bad_input_gets_a_clear_error(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int, error: str
) -> None:
    config = replay_config(tmp_path, broker.url, "futures_data_log")
    returned, errors = run_main(capsys, "--config", str(config), *args)
    assert returned == status, errors
    assert error in errors


def test_times_parse_as_ms_iso_and_relative() -> None:
    now = 1_765_000_000_000
    assert replay.parse_time("1765000000123", now, "--from") == 1_765_000_000_123
    assert replay.parse_time("2025-12-06T05:46:40", now, "--from") == 1_765_000_000_000  # UTC without a zone
    assert replay.parse_time("2025-12-06T06:46:40+01:00", now, "--from") == 1_765_000_000_000
    assert replay.parse_time("-2h", now, "--from") == now - 7_200_000
    assert replay.parse_time("-30m", now, "--from") == now - 1_800_000
    assert replay.parse_time("now", now, "--to") == now


async def classic_queue_with_one_message(broker_url: str, name: str) -> None:
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"keep me"), routing_key=name)


async def queue_length(broker_url: str, name: str) -> int:
    connection = await aio_pika.connect(broker_url)
    async with connection:
        queue = await (await connection.channel()).declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0


def test_a_classic_queue_of_that_name_is_refused_and_left_untouched(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"not_a_stream_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(classic_queue_with_one_message(broker.url, name))
        status, errors = run_main(capsys, "--config", str(replay_config(tmp_path, broker.url, name)), "--from", "-1h")
        assert status == 4, errors
        assert f"'{name}' on amqp://" in errors and "is a classic queue, not a stream" in errors
        assert asyncio.run(queue_length(broker.url, name)) == 1
    finally:
        asyncio.run(delete_names(broker.url, queues=[name]))


async def test_a_stream_declared_with_other_arguments_is_one_clear_error_and_publishing_goes_on(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    stream = f"futures_data_log_test_{uuid.uuid4().hex[:12]}"
    connection = await aio_pika.connect(broker.url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(stream, durable=True, arguments={
            "x-queue-type": "stream", "x-max-age": "2h", "x-max-length-bytes": 100_000_000})
        config = collector_config(simulator, broker.url, exchange_name)
        config.rabbitmq.log_stream = LogStreamConfig(name=stream, max_age="1h", max_bytes=100_000_000)
        caplog.set_level(logging.INFO)
        async with running(config):
            assert await eventually(lambda: "market-data log not declared" in caplog.text, 30)
            seen = len(consumer.messages)
            assert await consumer.wait_until(lambda: len(consumer.messages) > seen + 50, 30)
        errors = [r for r in caplog.records if r.name == "log_stream" and r.levelno >= logging.WARNING]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert "rabbitmq.log_stream.max_age differs" in errors[0].getMessage()
        assert "received '1h' but current is '2h'" in errors[0].getMessage()
    finally:
        await connection.close()
        await delete_names(broker.url, queues=[stream])


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("#", "futures.binance.BTCUSDT", True),
        ("futures.#", "futures", True),
        ("futures.*", "futures.binance.BTCUSDT", False),
        ("futures.*.BTCUSDT", "futures.bybit.BTCUSDT", True),
        ("futures.*.BTCUSDT", "spot.bybit.BTCUSDT", False),
        ("#.BTCUSDT", "spot.bybit.BTCUSDT", True),
        ("futures.#.BTCUSDT", "futures.BTCUSDT", True),
        ("futures.#.BTCUSDT", "futures.binance.ETHUSDT", False),
    ],
)
def test_topic_patterns_match_like_rabbitmq(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def test_log_stream_config_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    base = {"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"], "api_keys_file": None}
    path.write_text(orjson.dumps({**base, "rabbitmq": {"log_stream": {"max_age": "24 hours"}}}).decode())
    with pytest.raises(ConfigError, match=r"rabbitmq\.log_stream\.max_age: Value error, must be a whole number and "
                                          r"one unit of Y, M, D, h, m, s"):
        load_config(path, environ={})
    path.write_text(orjson.dumps({**base, "rabbitmq": {"log_stream": {"bindings": ["futures #"]}}}).decode())
    with pytest.raises(ConfigError, match=r"rabbitmq\.log_stream\.bindings: Value error, 'futures #' is not a"):
        load_config(path, environ={})
    path.write_text(orjson.dumps({**base, "rabbitmq": {"log_stream": {}}}).decode())
    settings = load_config(path, environ={}).rabbitmq.log_stream
    assert settings == LogStreamConfig(name="futures_data_log", max_age="24h", max_bytes=5_000_000_000,
                                       bindings=["futures.#", "spot.#"])


async def test_follow_replays_what_is_published_meanwhile_until_to(
    simulator: Simulator, broker: Broker, exchange_name: str, consumer: Consumer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--follow keeps reading at the log's end, and ends by itself once --to has passed."""
    stream = f"futures_data_log_test_{uuid.uuid4().hex[:12]}"
    config = collector_config(simulator, broker.url, exchange_name)
    config.rabbitmq.log_stream = LogStreamConfig(name=stream, max_age="1h", max_bytes=100_000_000)
    caplog.set_level(logging.INFO, logger="log_stream")
    try:
        async with running(config):
            assert await eventually(lambda: f"stream '{stream}'" in caplog.text, 30)
            start = time.time_ns() // 1_000_000
            end = start + 3000
            process = await asyncio.create_subprocess_exec(
                sys.executable, "scripts/replay.py", "--config", str(replay_config(tmp_path, broker.url, stream)),
                "--from", str(start), "--to", str(end), "--follow", cwd=ROOT, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            output, errors = await asyncio.wait_for(process.communicate(), 60)
            assert await eventually(lambda: any(message_time(body) > end for _, body, _ in consumer.messages))
        assert process.returncode == 0, errors.decode()
        lines = [json.loads(line) for line in output.decode().splitlines()]
        times = [message_time(line["body"]) for line in lines]
        assert times and min(times) >= start and max(times) <= end
        assert max(times) - min(times) > 2000  # it read on while the collector published, not just what was there
        published = [(key, body) for key, body, _ in consumer.messages if start <= message_time(body) <= end]
        assert [(line["routing_key"], line["body"]) for line in lines] == published
    finally:
        await delete_names(broker.url, queues=[stream])
