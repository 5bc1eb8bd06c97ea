"""Hostile input on the control queue: hundreds of malformed requests, each answered, none fatal."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.protocol import COMMANDS
from simulator.server import Simulator
from tests.broker import Broker
from tests.control_helpers import ControlPeer, enable_control
from tests.helpers import collector_config, running

ERROR_CODES = {"invalid_command", "invalid_json", "unknown_command", "symbol_not_found", "duplicate_symbol"}

integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders emit
json_scalars = st.none() | st.booleans() | integers | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["symbol", "symbols", "exchange", "exchanges", "ttl_seconds", "correlation_id",
                               "timestamp"])

garbage_bytes = st.binary(max_size=300).map(lambda raw: b"\x00" + raw)  # never valid JSON
not_an_object = (st.lists(json_values, max_size=4) | json_scalars).map(orjson.dumps)
known_command_with_an_unknown_field = st.builds(
    lambda command, fields, extra: orjson.dumps({"command": command, **fields, "x_" + extra: 1}),
    st.sampled_from(COMMANDS),
    st.dictionaries(field_names, json_values, max_size=4),
    st.text(min_size=1, max_size=10),
)
unknown_command = st.builds(
    lambda command, fields: orjson.dumps({"command": command, "correlation_id": "c", **fields}),
    st.text(max_size=40).filter(lambda text: text not in COMMANDS) | integers | st.none(),
    st.dictionaries(field_names, json_values, max_size=3),
)
absurd_symbol = st.builds(
    lambda command, symbol: orjson.dumps({"command": command, "correlation_id": "c", "symbol": symbol}),
    st.sampled_from(["add_symbol", "remove_symbol", "watch_add"]),
    st.text(max_size=200) | json_values,
)
wrong_types = st.builds(
    lambda command, value: orjson.dumps({"command": command, "correlation_id": value}),
    st.sampled_from(["get_symbols", "get_statistics", "get_watchlist"]),
    integers | st.lists(integers, max_size=3) | st.just("") | st.text(min_size=201, max_size=300),
)
malformed = st.one_of(
    garbage_bytes, not_an_object, known_command_with_an_unknown_field, unknown_command, absurd_symbol, wrong_types
)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=st.lists(malformed, min_size=300, max_size=300))
def test_malformed_requests_each_get_an_error_reply_and_the_listener_keeps_serving(
    bodies: list[bytes], broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="control")
    answers = asyncio.run(_fuzz(bodies, broker))
    unreadable = [answer for answer in answers if answer["error"] in {"invalid_command", "invalid_json",
                                                                        "unknown_command"}]
    refused = [r for r in caplog.records if r.name == "control" and "refused a control message" in r.getMessage()]
    assert len(refused) == len(unreadable)  # one WARNING per message that could not be read as a request
    assert all(r.levelno == logging.WARNING for r in refused)


async def _fuzz(bodies: list[bytes], broker: Broker) -> list[dict[str, Any]]:
    name = f"futures_fuzz_{uuid.uuid4().hex[:10]}"
    simulator = Simulator(port=0, rate=2, venues=["binance"])
    await simulator.start()
    config = enable_control(collector_config(simulator, broker.url, name), f"{name}_control", f"{name}_responses", None)
    peer = ControlPeer(broker.url, f"{name}_control", f"{name}_responses")
    await peer.start()
    try:
        async with running(config):
            await peer.wait_listening()
            before = len(peer.replies)
            for index, body in enumerate(bodies):
                await peer.send_raw(body, correlation_id=f"fuzz-{index}")
            deadline = time.monotonic() + 60
            while len(peer.replies) - before < len(bodies) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            answers: list[dict[str, Any]] = [reply for _, reply in peer.replies[before:]]
            assert len(answers) == len(bodies), f"{len(answers)} replies to {len(bodies)} requests"
            assert all(answer["success"] is False and answer["error"] in ERROR_CODES for answer in answers)
            assert all(key.startswith("control.response.") for key, _ in peer.replies)
            reply = await peer.request("get_symbols")
            assert reply["success"] and reply["data"]["symbols"] == config.symbols
            return answers
    finally:
        await peer.close()
        await simulator.stop()
        await _delete(broker.url, name)


async def _delete(url: str, name: str) -> None:
    import aio_pika  # noqa: PLC0415

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{name}_control")
        for exchange in (name, f"{name}_responses", f"{name}_control_all"):
            await channel.exchange_delete(exchange)
