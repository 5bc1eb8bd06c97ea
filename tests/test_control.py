"""The control plane against a real broker and the simulator: commands, errors, persistence, TTLs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import orjson
import pytest

from main import FuturesScan
from models.config import AppConfig
from simulator.server import Simulator
from tests.broker import Broker
from tests.control_helpers import ControlPeer, enable_control
from tests.helpers import Consumer, all_streams_up, collector_config, eventually, running

pytestmark = pytest.mark.timeout(120)

DOGE_KEYS = {"futures.binance.DOGEUSDT", "futures.bybit.DOGEUSDT"}


@asynccontextmanager
async def controlled(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], state_file: Path | None
) -> AsyncIterator[tuple[FuturesScan, ControlPeer]]:
    config = collector_config(simulator, broker.url, exchange_name)
    enable_control(config, *control_names, str(state_file) if state_file else None)
    peer = ControlPeer(broker.url, *control_names)
    await peer.start()
    try:
        async with running(config) as app:
            await peer.wait_listening()
            yield app, peer
    finally:
        await peer.close()


def keys_since(consumer: Consumer, moment: float) -> set[str]:
    return consumer.keys_since(moment)


async def test_add_streams_a_new_symbol_and_remove_stops_it_without_touching_the_others(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], consumer: Consumer
) -> None:
    async with controlled(simulator, broker, exchange_name, control_names, None) as (app, peer):
        assert await all_streams_up(app)
        reply = await peer.request("add_symbol", symbol="DOGE/USDT:USDT")
        assert reply["success"] and reply["command"] == "add_symbol"
        assert reply["data"]["listed_on"] == ["binance", "bybit"]
        assert reply["data"]["current_symbols"][-1] == "DOGE/USDT:USDT"
        assert await consumer.wait_until(lambda: set(consumer.latest) >= DOGE_KEYS, timeout=15)

        reply = await peer.request("remove_symbol", symbol="DOGE/USDT:USDT")
        assert reply["success"] and reply["data"]["current_symbols"] == ["BTC/USDT:USDT", "ETH/USDT:USDT",
                                                                          "SOL/USDT:USDT"]
        await asyncio.sleep(0.5)  # what was already on its way
        after = time.time()
        await asyncio.sleep(3)
        assert not DOGE_KEYS & keys_since(consumer, after), "DOGE still published after remove_symbol"
        assert {"futures.binance.BTCUSDT", "futures.bybit.BTCUSDT"} <= keys_since(consumer, after)
        for collector in app.collectors:  # the first batch never noticed
            assert collector.stats.reconnects == 0
            assert all(up for name, up in collector.stats.streams_up.items() if name.endswith("#1.1"))

        reply = await peer.request("set_symbols", symbols=["BTC/USDT:USDT", "DOGE/USDT:USDT"])
        assert reply["success"]
        assert (reply["data"]["added"], reply["data"]["removed"]) == (["DOGE/USDT:USDT"], ["ETH/USDT:USDT",
                                                                                             "SOL/USDT:USDT"])
        reply = await peer.request("get_symbols")
        assert reply["data"]["symbols"] == ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
        assert await consumer.wait_until(
            lambda: all(sorted(c.states) == ["BTC/USDT:USDT", "DOGE/USDT:USDT"] for c in app.collectors)
        )


async def test_every_error_code_is_answered_and_the_listener_keeps_serving(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], tmp_path: Path
) -> None:
    state_folder = tmp_path / "state"
    async with controlled(simulator, broker, exchange_name, control_names, state_folder / "s.json") as (app, peer):
        cases = [
            ({"command": "add_symbol", "symbol": "BTC/USDT:USDT"}, "duplicate_symbol", "already exists"),
            ({"command": "remove_symbol", "symbol": "DOGE/USDT:USDT"}, "symbol_not_found", "not in the symbol set"),
            ({"command": "add_symbol", "symbol": "NOPE/USDT:USDT"}, "symbol_not_found", "checked binance, bybit"),
            ({"command": "watch_touch", "exchange": "bybit", "symbol": "ADA/USDT:USDT"}, "symbol_not_found",
             "not on the watchlist"),
            ({"command": "launch_rockets"}, "unknown_command", "unknown command 'launch_rockets'"),
            ({"command": "add_symbol", "symbol": "btc-usdt; DROP TABLE"}, "invalid_command", "not a ccxt unified"),
            ({"command": "add_symbol", "symbol": 42}, "invalid_command", "symbol: Input should be a valid string"),
            ({"command": "add_symbol", "symbol": "ETH/USDT:USDT", "force": True}, "invalid_command",
             "force: Extra inputs are not permitted"),
            ({"command": "watch_add", "symbol": "ETH/USDT:USDT", "exchanges": ["kraken"]}, "invalid_command",
             "kraken not configured"),
            ({"command": "set_symbols", "symbols": ["BTC/USDT:USDT", "BTC/USDT:USDT"]}, "invalid_command",
             "more than once"),
            ({"command": "reload_universe"}, "invalid_command", 'is not "auto"'),
        ]
        for body, code, text in cases:
            correlation_id = str(uuid.uuid4())
            await peer.send_raw(orjson.dumps({**body, "correlation_id": correlation_id}))
            reply = await peer.reply_for(correlation_id)
            assert reply is not None, body
            assert (reply["success"], reply["error"]) == (False, code), reply
            assert text in reply["message"], reply

        for raw, code in [
            (b"{not json", "invalid_json"),
            (b"[1, 2, 3]", "invalid_command"),
            (orjson.dumps({"symbol": "BTC/USDT:USDT"}), "invalid_command"),  # no command
            (orjson.dumps({"command": "get_symbols"}), "invalid_command"),  # no correlation_id
            (b'{"command": "get_symbols", "pad": "' + b"x" * 70_000 + b'"}', "invalid_command"),
        ]:
            correlation_id = str(uuid.uuid4())
            await peer.send_raw(raw, correlation_id=correlation_id)
            reply = await peer.reply_for(correlation_id)
            assert reply is not None and reply["error"] == code, (raw[:40], reply)
        assert {key for key, reply in peer.replies if reply["error"] == "invalid_json"} == {"control.response.error"}

        # internal_error: the state file cannot be written (its folder became a file); nothing is applied
        assert not state_folder.exists()  # nothing was saved: every request so far was refused
        state_folder.write_text("")
        reply = await peer.request("add_symbol", symbol="DOGE/USDT:USDT")
        assert (reply["success"], reply["error"]) == (False, "internal_error")
        assert "DOGE/USDT:USDT" not in (await peer.request("get_symbols"))["data"]["symbols"]
        assert all("DOGE/USDT:USDT" not in collector.wanted for collector in app.collectors)
        assert (await peer.request("get_statistics"))["success"]


async def test_reply_to_and_correlation_id_properties_get_the_rpc_reply_too(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str]
) -> None:
    async with controlled(simulator, broker, exchange_name, control_names, None) as (_, peer):
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            inbox = await channel.declare_queue(exclusive=True)
            body = {"command": "get_statistics", "correlation_id": "body-id"}
            await peer.send_raw(orjson.dumps(body), correlation_id="rpc-id", reply_to=inbox.name)
            message = await _next_message(inbox)
        reply = orjson.loads(message.body)
        assert message.correlation_id == "rpc-id" and reply["correlation_id"] == "body-id"
        data = reply["data"]
        assert set(data["exchange_success"]) == {"binance", "bybit"}
        for field in ("exchange_errors", "rabbitmq_published", "rabbitmq_failed", "rabbitmq_conflated",
                      "rabbitmq_expired"):
            assert field in data
        assert {"messages_per_second", "reconnects", "last_update_age_seconds"} <= set(data["exchanges"]["binance"])
        assert await peer.reply_for("body-id") is not None  # and on the responses exchange


async def _next_message(queue: aio_pika.abc.AbstractQueue, timeout: float = 10.0) -> aio_pika.abc.AbstractMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("no reply on the reply_to queue")


async def test_symbol_changes_and_the_watchlist_survive_a_restart(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], tmp_path: Path
) -> None:
    state_file = tmp_path / "state" / "collector_state.json"
    async with controlled(simulator, broker, exchange_name, control_names, state_file) as (_, peer):
        assert (await peer.request("add_symbol", symbol="DOGE/USDT:USDT"))["success"]
        assert (await peer.request("remove_symbol", symbol="ETH/USDT:USDT"))["success"]
        reply = await peer.request("watch_add", symbol="XRP/USDT:USDT", exchanges=["binance"], ttl_seconds=3600)
        assert reply["success"] and reply["data"]["added"] == ["binance"]
    assert not list(state_file.parent.glob(".*"))  # no temporary file left behind

    async with controlled(simulator, broker, exchange_name, control_names, state_file) as (app, peer):
        assert (await peer.request("get_symbols"))["data"]["symbols"] == ["BTC/USDT:USDT", "SOL/USDT:USDT",
                                                                          "DOGE/USDT:USDT"]
        watchlist = (await peer.request("get_watchlist"))["data"]["watchlist"]
        assert [(e["exchange"], e["symbol"]) for e in watchlist] == [("binance", "XRP/USDT:USDT")]
        assert 3500 < watchlist[0]["remaining_seconds"] <= 3600
        binance, bybit = app.collectors
        assert await eventually(lambda: set(binance.states) == {"BTC/USDT:USDT", "SOL/USDT:USDT", "DOGE/USDT:USDT",
                                                                 "XRP/USDT:USDT"})
        assert await eventually(lambda: set(bybit.states) == {"BTC/USDT:USDT", "SOL/USDT:USDT", "DOGE/USDT:USDT"}, 10)


async def test_watchlist_pairs_expire_by_themselves_and_touch_extends_them(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], consumer: Consumer
) -> None:
    async with controlled(simulator, broker, exchange_name, control_names, None) as (app, peer):
        reply = await peer.request("watch_add", symbol="ADA/USDT:USDT", exchanges=["bybit"], ttl_seconds=3)
        assert reply["success"] and reply["data"]["ttl_seconds"] == 3
        assert (await peer.request("watch_add", symbol="BTC/USDT:USDT", ttl_seconds=2))["success"]
        assert await consumer.wait_until(lambda: "futures.bybit.ADAUSDT" in consumer.latest, timeout=10)
        status = {e["symbol"]: e["status"] for e in (await peer.request("get_watchlist"))["data"]["watchlist"]}
        assert status["ADA/USDT:USDT"] == "streaming"

        await asyncio.sleep(2)
        touched = await peer.request("watch_touch", exchange="bybit", symbol="ADA/USDT:USDT")
        assert touched["success"] and touched["data"]["remaining_seconds"] > 2.5
        await asyncio.sleep(2)  # past the first expiry, within the renewed one
        watchlist = (await peer.request("get_watchlist"))["data"]["watchlist"]
        assert [(e["exchange"], e["symbol"]) for e in watchlist] == [("bybit", "ADA/USDT:USDT")]  # BTC expired

        assert await eventually(lambda: "ADA/USDT:USDT" not in app.collectors[1].states, timeout=5)
        assert (await peer.request("get_watchlist"))["data"]["count"] == 0
        await asyncio.sleep(0.5)
        after = time.time()
        await asyncio.sleep(2)
        assert "futures.bybit.ADAUSDT" not in consumer.keys_since(after)
        assert "futures.bybit.BTCUSDT" in consumer.keys_since(after)  # still in the symbol set


def test_config_control_defaults_are_the_documented_names() -> None:
    config = AppConfig.model_validate({"exchanges": ["binance"], "symbols": ["BTC/USDT:USDT"]})
    assert (config.control.queue, config.control.responses_exchange) == (
        "futures_collector_control", "futures_collector_responses"
    )
