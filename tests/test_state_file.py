"""control.state_file: a corrupt or hand-broken file is set aside with one clear ERROR and the collector
starts from config.json; saves run off the event loop, in order, and finish before the reply."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import orjson
import pytest

from control.registry import SymbolRegistry
from control.state_store import CollectorState, StateStore
from simulator.server import Simulator
from tests.broker import Broker
from tests.file_audit import FileAudit
from tests.helpers import SYMBOLS, all_streams_up
from tests.test_control import controlled

pytestmark = pytest.mark.timeout(120)

CONFIG_SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
WATCH = {"exchange": "binance", "symbol": "XRP/USDT:USDT", "ttl_seconds": 3600, "added_at": 1_700_000_000_000,
         "expires_at": 1_700_003_600_000}
VALID = {"version": 1, "config_symbols": CONFIG_SYMBOLS, "added": ["DOGE/USDT:USDT"], "removed": ["ETH/USDT:USDT"],
         "watchlist": [WATCH]}


def broken(**changes: object) -> bytes:
    return orjson.dumps({**VALID, **changes})


BAD_FILES = {
    "bad JSON": (b'{"version": 1, "added": ["DOGE/USDT:USDT"', "Invalid JSON"),
    "empty file": (b"", "Invalid JSON"),
    "not an object": (b'["DOGE/USDT:USDT"]', "Input should be an object"),
    "added is a string": (broken(added="DOGE/USDT:USDT"), "added: Input should be a valid array"),
    "added is a number": (broken(added=5), "added: Input should be a valid array"),
    "removed holds a number": (broken(removed=[42]), "removed.0: Input should be a valid string"),
    "symbol not unified": (broken(added=["dogeusdt"]), "added.0: 'dogeusdt' is not a ccxt unified symbol"),
    "symbol with a space": (broken(removed=["ETH /USDT"]), "removed.0: 'ETH /USDT' is not a ccxt unified symbol"),
    "expiry not a number": (broken(watchlist=[{**WATCH, "expires_at": "tomorrow"}]),
                            "watchlist.0.expires_at: Input should be a valid integer"),
    "expiry a numeric string": (broken(watchlist=[{**WATCH, "expires_at": "1700003600000"}]),
                                "watchlist.0.expires_at: Input should be a valid integer"),
    "ttl of zero": (broken(watchlist=[{**WATCH, "ttl_seconds": 0}]), "watchlist.0.ttl_seconds"),
    "watch entry missing a field": (broken(watchlist=[{"exchange": "binance", "symbol": "XRP/USDT:USDT"}]),
                                    "watchlist.0.ttl_seconds: Field required"),
    "unknown exchange shape": (broken(watchlist=[{**WATCH, "exchange": "Binance Futures"}]),
                               "watchlist.0.exchange: String should match pattern"),
    "a command instead of a state": (broken(commands=[{"command": "add_symbol", "symbol": "DOGE/USDT:USDT"}]),
                                     "commands: Extra inputs are not permitted"),
    "watchlist as an object": (broken(watchlist={"binance": ["XRP/USDT:USDT"]}),
                               "watchlist: Input should be a valid array"),
    "repeated pair": (broken(watchlist=[WATCH, WATCH]), "lists XRP/USDT:USDT on binance more than once"),
    "unknown version": (broken(version=2), "version: Input should be 1"),
}


def errors_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_broken_state_file_is_set_aside_with_one_error_and_config_json_wins(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload, problem = BAD_FILES[case]
    path = tmp_path / "collector_state.json"
    path.write_bytes(payload)
    registry = SymbolRegistry(CONFIG_SYMBOLS, StateStore(path))

    assert registry.restore() is False
    assert registry.symbols == CONFIG_SYMBOLS and registry.watchlist == []
    (error,) = errors_from(caplog)
    assert str(path) in error and problem in error and "starting from config.json" in error, error
    assert not path.exists()
    assert (tmp_path / "collector_state.json.corrupt").read_bytes() == payload
    assert f"moved to {path}.corrupt" in error


async def test_a_later_change_writes_a_fresh_file_and_an_earlier_corrupt_one_is_never_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "collector_state.json"
    for attempt, payload in enumerate([b"{oops", b"[]", broken(added=7)]):
        path.write_bytes(payload)
        registry = SymbolRegistry(CONFIG_SYMBOLS, StateStore(path))
        assert not registry.restore()
        aside = tmp_path / ("collector_state.json.corrupt" + (f".{attempt}" if attempt else ""))
        assert aside.read_bytes() == payload
    assert len(errors_from(caplog)) == 3

    registry.add("DOGE/USDT:USDT")
    await registry.save()
    assert CollectorState.model_validate_json(path.read_bytes()).added == ["DOGE/USDT:USDT"]
    again = SymbolRegistry(CONFIG_SYMBOLS, StateStore(path))
    assert again.restore() and again.symbols == [*CONFIG_SYMBOLS, "DOGE/USDT:USDT"]


def test_a_file_written_in_the_documented_format_is_restored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "collector_state.json"
    path.write_bytes(orjson.dumps(VALID, option=orjson.OPT_INDENT_2))
    registry = SymbolRegistry(CONFIG_SYMBOLS, StateStore(path))
    assert registry.restore()
    assert registry.symbols == ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
    assert [(entry.exchange, entry.symbol, entry.expires_at) for entry in registry.watchlist] == [
        ("binance", "XRP/USDT:USDT", 1_700_003_600_000)
    ]
    assert not errors_from(caplog) and path.exists()


async def test_saves_run_off_the_event_loop_in_the_order_they_were_made(tmp_path: Path) -> None:
    path = tmp_path / "state" / "collector_state.json"
    registry = SymbolRegistry(CONFIG_SYMBOLS, StateStore(path))
    loop_thread = threading.get_ident()
    with FileAudit(tmp_path) as audit:
        registry.add("DOGE/USDT:USDT")
        await registry.save()
    assert ("os.rename", str(path)) in [(event, seen) for event, seen, _ in audit.events]
    assert audit.on_thread(loop_thread) == [], "the state file was written on the event loop's thread"

    store = StateStore(path)
    states = [registry.state().model_copy(update={"added": [f"COIN{number}/USDT:USDT"]}) for number in range(40)]
    await asyncio.gather(*(store.save(state) for state in states))
    assert CollectorState.model_validate_json(path.read_bytes()).added == ["COIN39/USDT:USDT"]


async def test_the_collector_comes_up_from_config_json_past_a_hand_broken_state_file(
    simulator: Simulator, broker: Broker, exchange_name: str, control_names: tuple[str, str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state_file = tmp_path / "state" / "collector_state.json"
    state_file.parent.mkdir()
    payload = broken(config_symbols=SYMBOLS, removed=[], watchlist=[{**WATCH, "expires_at": "tomorrow"}])
    state_file.write_bytes(payload)
    async with controlled(simulator, broker, exchange_name, control_names, state_file) as (app, peer):
        assert await all_streams_up(app)
        assert (await peer.request("get_symbols"))["data"]["symbols"] == SYMBOLS
        assert (await peer.request("get_watchlist"))["data"]["count"] == 0
        (error,) = errors_from(caplog)
        assert str(state_file) in error and "watchlist.0.expires_at" in error
        assert (state_file.parent / "collector_state.json.corrupt").read_bytes() == payload

        reply = await peer.request("add_symbol", symbol="DOGE/USDT:USDT")
        assert reply["success"]
        assert CollectorState.model_validate_json(state_file.read_bytes()).added == ["DOGE/USDT:USDT"]
