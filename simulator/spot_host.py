"""A futures venue simulator that also serves the venue's spot market, under the same prefix and faults.

Mixed in before the venue's market class (class BinanceSimulator(SpotHost, BinanceMarketSimulator)):
each futures book update also moves the same coin's spot book, while someone watches spot.
"""

from __future__ import annotations

from typing import Any

from simulator.book import SimulatedBook
from simulator.venue import VenueSimulator

COUNTERS = ("connections", "connections_accepted", "frames_sent", "updates")


class SpotHost(VenueSimulator):
    spot: VenueSimulator

    def host_spot(self, spot: VenueSimulator) -> None:
        self.spot = spot
        spot.faults = self.faults
        self._spot_books_by_coin = {book.instrument.coin: book for book in spot.books.values()}

    def state(self) -> dict[str, Any]:
        """Futures symbols (BTC/USDT:USDT) and spot symbols (BTC/USDT) side by side; counters of both."""
        state = super().state()
        spot = self.spot.state()
        state["symbols"].update(spot["symbols"])
        for counter in COUNTERS:
            state[counter] += spot[counter]
        return state

    async def on_book_update(self, book: SimulatedBook) -> None:
        await super().on_book_update(book)
        spot_book = self._spot_books_by_coin.get(book.instrument.coin)
        if spot_book is not None and self.spot.sessions:  # spot moves only while someone watches it
            spot_book.step()
            self.spot.updates += 1
            await self.spot.on_book_update(spot_book)

    async def on_tick(self, now: int) -> None:
        await super().on_tick(now)
        await self.spot.on_tick(now)

    async def drop_connections(self, refuse_seconds: float = 0.0) -> int:
        return await super().drop_connections(refuse_seconds) + await self.spot.drop_connections(refuse_seconds)

    def stall_connections(self) -> int:
        return super().stall_connections() + self.spot.stall_connections()
