"""POST /admin/shift: one venue's prices for one symbol move by some bps for a while, then come back."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from simulator.server import Simulator

pytestmark = pytest.mark.timeout(60)


def mid(simulator: Simulator, venue: str, symbol: str) -> float:
    (book,) = simulator.venues[venue].books_showing(symbol)
    return (book.best_bid + book.best_ask) / 2


async def test_a_shift_moves_one_venue_and_one_symbol_then_ends() -> None:
    simulator = Simulator(venues=["binance", "okx"], port=0, rate=40)
    await simulator.start()
    try:
        before = {key: mid(simulator, *key) for key in [("binance", "BTC/USDT:USDT"), ("binance", "ETH/USDT:USDT"),
                                                        ("okx", "BTC/USDT:USDT")]}
        async with aiohttp.ClientSession() as http:
            body = {"exchange": "binance", "symbol": "BTC/USDT:USDT", "bps": 80, "seconds": 1.5}
            async with http.post(f"{simulator.http_base}/admin/shift", json=body) as response:
                assert response.status == 200
                assert await response.json() == body
            for wrong, reason in [({"exchange": "kraken", "symbol": "BTC/USDT:USDT", "bps": 1, "seconds": 1},
                                   "unknown venue"),
                                  ({"exchange": "okx", "symbol": "NOPE/USDT:USDT", "bps": 1, "seconds": 1},
                                   "not listed"),
                                  ({"exchange": "okx", "symbol": "BTC/USDT:USDT", "bps": 9000, "seconds": 1}, "bps"),
                                  ({"exchange": "okx", "symbol": "BTC/USDT:USDT"}, "bps")]:
                async with http.post(f"{simulator.http_base}/admin/shift", json=wrong) as response:
                    assert response.status == 400
                    assert reason in (await response.json())["error"]
        await asyncio.sleep(1.0)
        moved = {key: (mid(simulator, *key) - value) / value * 10_000 for key, value in before.items()}
        assert 60 < moved[("binance", "BTC/USDT:USDT")] < 100
        assert abs(moved[("binance", "ETH/USDT:USDT")]) < 20 and abs(moved[("okx", "BTC/USDT:USDT")]) < 20
        await asyncio.sleep(1.5)
        (book,) = simulator.venues["binance"].books_showing("BTC/USDT:USDT")
        assert book.shift_bps == 0
        back = (mid(simulator, "binance", "BTC/USDT:USDT") - mid(simulator, "okx", "BTC/USDT:USDT"))
        assert abs(back / before[("okx", "BTC/USDT:USDT")] * 10_000) < 20
    finally:
        await simulator.stop()
