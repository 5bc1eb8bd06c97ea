"""Pair discovery on simulator venues: names, multipliers, directions, failures, validation, files."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from discovery.build import DiscoveryFailed, build_universe, load_sources
from discovery.output import write_generated
from discovery.validation import NO_DATA, VALID, validate
from main import point_at_simulator
from models.config import AppConfig
from models.universe import Universe, read_universe
from simulator.server import Simulator
from tests.broker import Broker
from tests.control_helpers import ControlPeer, enable_control
from tests.helpers import collector_config, running

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
VENUES = ["binance", "okx", "gateio", "mexc"]


def config_for(simulator: Simulator) -> AppConfig:
    config = AppConfig.model_validate(
        {"exchanges": list(simulator.venues), "symbols": ["BTC/USDT:USDT"], "markets": ["futures", "spot"],
         "collection": {"retry_attempts": 1, "retry_delays": [0.2]}, "api_keys_file": None}
    )
    point_at_simulator(config, simulator)
    return config


@pytest.fixture
async def simulator() -> Simulator:
    sim = Simulator(venues=VENUES, port=0, rate=10)
    await sim.start()
    yield sim
    await sim.stop()


async def test_universe_maps_every_venue_symbol_to_one_name_and_pairs_the_sources(simulator: Simulator) -> None:
    loaded, failed = await load_sources(config_for(simulator), lambda _: None, minimum_sources=2)
    universe = build_universe(loaded, failed)
    assert failed == {}
    assert universe.sources == ["binance", "binance.spot", "gateio", "mexc", "mexc.spot", "okx", "okx.spot"]
    names = [symbol.name for symbol in universe.symbols]
    assert names == sorted(names) and len(names) == 25 and [s.id for s in universe.symbols] == list(range(1, 26))
    pepe = next(symbol for symbol in universe.symbols if symbol.name == "PEPE/USDT")
    by_source = {listing.source: listing for listing in pepe.listings}
    assert (by_source["binance"].symbol, by_source["binance"].base_multiplier) == ("1000PEPE/USDT:USDT", 1000)
    assert (by_source["okx"].symbol, by_source["okx"].base_multiplier) == ("PEPE/USDT:USDT", 1)
    assert (by_source["gateio"].venue_id, by_source["mexc"].venue_id) == ("PEPE_USDT", "PEPE_USDT")
    assert by_source["binance.spot"].symbol == "PEPE/USDT" and by_source["okx"].contract_size == 10_000_000
    btc = next(symbol for symbol in universe.symbols if symbol.name == "BTC/USDT")
    btc_okx = next(listing for listing in btc.listings if listing.source == "okx")
    assert btc_okx.venue_id == "BTC-USDT-SWAP" and btc_okx.contract_size == 0.01 and btc_okx.tick_size == 0.1
    assert btc_okx.min_qty == pytest.approx(0.0001) and btc_okx.taker_fee is not None

    pairs = {(direction.buy, direction.sell) for direction in universe.directions}
    futures, spot = ["binance", "gateio", "mexc", "okx"], ["binance.spot", "mexc.spot", "okx.spot"]
    expected = {(a, b) for a in futures for b in futures if a != b} | {(a, b) for a in spot for b in futures}
    assert pairs == expected
    assert all(len(direction.symbols) == 25 for direction in universe.directions)
    assert [direction.id for direction in universe.directions] == list(range(1, len(expected) + 1))
    again = build_universe(loaded, failed)
    assert again.model_dump(exclude={"generated_at"}) == universe.model_dump(exclude={"generated_at"})


async def test_a_failing_source_is_left_out_down_to_the_minimum(simulator: Simulator) -> None:
    config = config_for(simulator)
    gate = next(exchange for exchange in config.exchanges if exchange.name == "gateio")
    gate.ccxt = {"urls": {"api": {"public": {"futures": "http://127.0.0.1:9/api/v4"}}}}  # nothing listens there
    loaded, failed = await load_sources(config, lambda _: None, minimum_sources=6)
    universe = build_universe(loaded, failed)
    assert list(universe.failed_sources) == ["gateio"]
    assert "gateio" not in universe.sources and all("gateio" not in (d.buy, d.sell) for d in universe.directions)
    with pytest.raises(DiscoveryFailed, match="only 6 of 7 sources loaded"):
        await load_sources(config, lambda _: None, minimum_sources=7)


async def test_validation_says_why_a_listing_did_not_quote(simulator: Simulator) -> None:
    config = config_for(simulator)
    config.exchanges = [exchange for exchange in config.exchanges if exchange.name in ("binance", "okx")]
    loaded, failed = await load_sources(config, lambda _: None, minimum_sources=2)
    universe = build_universe(loaded, failed)
    await simulator.apply_fault("okx", "silent")
    verdicts = await validate(config, universe, 6, lambda _: None)
    outcomes = {(v.listing.source, v.listing.symbol): v.outcome for v in verdicts}
    assert len(verdicts) == 4 * 25
    assert {outcome for (source, _), outcome in outcomes.items() if source.startswith("binance")} == {VALID}
    assert {outcome for (source, _), outcome in outcomes.items() if source.startswith("okx")} == {NO_DATA}


async def test_the_script_writes_generated_atomically_and_the_collector_streams_it(
    tmp_path: Path, broker: Broker, exchange_name: str, control_names: tuple[str, str]
) -> None:
    output = tmp_path / "generated"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "scripts/discover.py", "--demo", "--output", str(output), cwd=ROOT,
        env={**os.environ}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "[12/12]" in stderr.decode()  # progress, one line per source
    files = sorted(path.name for path in output.iterdir())
    assert files == ["directions.json", "directions.txt", "metadata.json", "symbols.txt", "universe.json",
                     "validation_report.txt"]  # and no temporary file left
    universe = read_universe(output)
    metadata = json.loads((output / "metadata.json").read_text())
    assert metadata["counts"]["symbols"] == len(universe.symbols) == 25 and metadata["validated"] is False
    assert "PEPE/USDT" in (output / "symbols.txt").read_text()

    # "symbols": "auto" streams the discovered perpetuals; reload_universe applies a newer file
    small = Universe.model_validate({**universe.model_dump(), "symbols": [
        symbol.model_dump() for symbol in universe.symbols if symbol.name in ("BTC/USDT", "ETH/USDT")]})
    write_generated(output, small, None)
    simulator = Simulator(venues=["binance"], port=0, rate=10)
    await simulator.start()
    try:
        config = enable_control(collector_config(simulator, broker.url, exchange_name), *control_names, None)
        config.symbols, config.universe_dir = "auto", str(output)
        peer = ControlPeer(broker.url, *control_names)
        await peer.start()
        try:
            async with running(config) as app:
                await peer.wait_listening()
                assert (await peer.request("get_symbols"))["data"]["symbols"] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
                write_generated(output, universe, None)
                reply = await peer.request("reload_universe")
                assert reply["success"] and reply["data"]["count"] == len(universe.futures_symbols())
                assert "SOL/USDT:USDT" in reply["data"]["added"]
                binance = app.collectors[0]
                deadline = asyncio.get_running_loop().time() + 20
                while "SOL/USDT:USDT" not in binance.states and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.1)
                assert "SOL/USDT:USDT" in binance.states
        finally:
            await peer.close()
    finally:
        await simulator.stop()
