"""One HTTP/WebSocket server hosting every simulated venue under its own path, plus an admin API.

    http://HOST:PORT/<venue>/...   the venue's REST and WebSocket endpoints (e.g. /binance/fapi/v1/exchangeInfo)
    http://HOST:PORT/admin/...     fault switches, delisting/listing, and the values each venue last sent
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import Any

from aiohttp import web

from simulator.book import ReferenceMarket, SimulatedBook
from simulator.instruments import INSTRUMENTS, universe, venue_listing
from simulator.venue import Gap, VenueSimulator

log = logging.getLogger("simulator")

DEFAULT_PORT = 8765
FAULTS = ("drop", "outage", "stall", "silent", "resume", "freeze", "unfreeze", "malformed", "crossed", "gap")
"""drop: cut every socket. outage: drop and refuse new connections for `seconds`. stall: open
connections stop getting data (new ones are fine). silent: the venue sends no data at all until
resume; with `stream` (e.g. Binance's bookTicker), only that stream goes quiet and the venue's other
streams run on (resume with the same `stream` revives it). freeze/unfreeze: prices stop/restart
moving. malformed/crossed: the next `count` frames are malformed / show bid above ask. gap: the next
`count` incremental order-book updates (optionally only of `market` futures/spot and `symbol`) are
withheld while the sequence moves on, as a lost frame."""
MARKETS = ("futures", "spot")


VENUE_NAMES = ("binance", "bybit", "okx", "bitget", "gateio", "htx", "mexc", "kucoin")
"""Each has its module simulator/<name>.py, exporting SIMULATOR (its VenueSimulator class)."""


def venue_class(name: str) -> type[VenueSimulator]:
    if name not in VENUE_NAMES:
        raise ValueError(f"unknown simulator venue {name!r}; available: {', '.join(VENUE_NAMES)}")
    return importlib.import_module(f"simulator.{name}").SIMULATOR


class Simulator:
    """Runs the chosen venues in the current event loop."""

    def __init__(
        self,
        venues: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        rate: float = 5.0,
        symbols: int | None = None,
        seed: int = 7,
        universe_size: int | None = None,
    ) -> None:
        """`universe_size`: list that many perpetuals (realistic names and multipliers, each venue a slightly
        different set) instead of today's 25; `symbols` then takes the first N of the universe."""
        names = venues or list(VENUE_NAMES)
        classes = {name: venue_class(name) for name in names}
        instruments = universe(universe_size, seed) if universe_size else INSTRUMENTS
        instruments = instruments[:symbols] if symbols else instruments
        reference = ReferenceMarket(seed)
        self.venues: dict[str, VenueSimulator] = {
            name: classes[name](venue_listing(instruments, name, seed), reference, rate, seed) for name in names
        }
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._feeds: list[asyncio.Task[None]] = []
        self._shift_ends: dict[int, asyncio.TimerHandle] = {}

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def ccxt_config(self, venue: str) -> dict[str, Any]:
        """The `ccxt` block of an exchange entry in config.json that points ccxt at this venue."""
        return self.venues[venue].ccxt_config(f"{self.http_base}/{venue}", f"{self.ws_base}/{venue}")

    def build_app(self) -> web.Application:
        app = web.Application()
        for name, venue in self.venues.items():
            sub = web.Application()
            sub.add_routes(venue.routes())
            app.add_subapp(f"/{name}/", sub)
        app.add_routes(
            [
                web.get("/admin/state", self._get_state),
                web.get("/admin/ccxt", self._get_ccxt),
                web.post("/admin/fault", self._post_fault),
                web.post("/admin/shift", self._post_shift),
                web.post("/admin/listing", self._post_listing),
            ]
        )
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]
        self._feeds = [asyncio.create_task(venue.run(), name=f"sim-{name}") for name, venue in self.venues.items()]
        log.info("exchange simulator listening on %s (venues: %s)", self.http_base, ", ".join(self.venues))

    async def stop(self) -> None:
        for task in self._feeds:
            task.cancel()
        for task in self._feeds:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for venue in self.venues.values():
            await venue.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def apply_fault(
        self, venue_name: str, fault: str, count: int = 1, seconds: float = 5.0,
        market: str | None = None, symbol: str | None = None, stream: str | None = None,
    ) -> dict[str, Any]:
        """Flip one fault switch; see FAULTS. Returns a short description of what was done."""
        venue = self.venues.get(venue_name)
        if venue is None:
            raise ValueError(f"unknown venue {venue_name!r}; running: {sorted(self.venues)}")
        faults = venue.faults
        if stream is not None:
            if fault not in ("silent", "resume"):
                raise ValueError(f"only silent and resume take a stream, not {fault!r}")
            if stream not in venue.stream_names:
                known = ", ".join(sorted(venue.stream_names)) or "none"
                raise ValueError(f"the {venue_name} simulator cannot silence a stream {stream!r}; it can: {known}")
            if fault == "silent":
                faults.silent_streams.add(stream)
            else:
                faults.silent_streams.discard(stream)
            return {"applied": fault, "stream": stream}
        if fault == "gap":
            return self._gap(venue_name, venue, count, market, symbol)
        if fault == "drop":
            return {"dropped": await venue.drop_connections()}
        if fault == "outage":
            return {"dropped": await venue.drop_connections(refuse_seconds=seconds), "refusing_seconds": seconds}
        if fault == "stall":
            return {"stalled": venue.stall_connections()}
        if fault == "silent":
            faults.silent = True
        elif fault == "resume":
            faults.silent = False
            faults.silent_streams.clear()
            faults.refuse_until = 0.0
        elif fault == "freeze":
            faults.frozen = True
        elif fault == "unfreeze":
            faults.frozen = False
        elif fault == "malformed":
            faults.malformed_pending += count
        elif fault == "crossed":
            faults.crossed_pending += count
        else:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        return {"applied": fault}

    @staticmethod
    def _gap(
        venue_name: str, venue: VenueSimulator, count: int, market: str | None, symbol: str | None
    ) -> dict[str, Any]:
        if market is not None and market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, not {market!r}")
        if symbol is not None:
            symbol_market = "futures" if ":" in symbol else "spot"
            if market not in (None, symbol_market):
                raise ValueError(f"{symbol} is a {symbol_market} symbol, not {market}")
            market = symbol_market
            if not venue.books_showing(symbol):
                raise ValueError(f"{symbol} is not listed on the {venue_name} simulator")
        if not 1 <= count <= 1000:
            raise ValueError("count must be within [1, 1000]")
        venue.faults.gaps.extend(Gap(market, symbol) for _ in range(count))
        return {"applied": "gap", "count": count, "market": market, "symbol": symbol}

    def shift(self, venue_name: str, symbol: str, bps: float, seconds: float) -> dict[str, Any]:
        """Move one venue's prices for one symbol by `bps` for `seconds`, then let them drift back.

        `symbol` is ccxt's unified symbol: a perpetual (BTC/USDT:USDT, or PEPE/USDT:USDT where the venue
        lists the coin itself) or, on venues with spot, a spot pair (BTC/USDT)."""
        venue = self.venues.get(venue_name)
        if venue is None:
            raise ValueError(f"unknown venue {venue_name!r}; running: {sorted(self.venues)}")
        if not -5000 <= bps <= 5000 or not 0 < seconds <= 86400:
            raise ValueError("bps must be within ±5000 and seconds within (0, 86400]")
        books = venue.books_showing(symbol)
        if not books:
            raise ValueError(f"{symbol} is not listed on the {venue_name} simulator")
        loop = asyncio.get_running_loop()
        for book in books:
            book.shift_bps = bps
            previous = self._shift_ends.pop(id(book), None)
            if previous is not None:
                previous.cancel()
            self._shift_ends[id(book)] = loop.call_later(seconds, self._end_shift, book)
        log.info("%s %s: prices shifted by %+g bps for %g s", venue_name, symbol, bps, seconds)
        return {"exchange": venue_name, "symbol": symbol, "bps": bps, "seconds": seconds}

    def set_listing(self, venue_name: str, market: str, symbol: str, listed: bool) -> dict[str, Any]:
        """Delist (`listed` false) or list again one instrument, by ccxt's unified symbol, as the venue would: its
        REST market list stops showing it as trading and its streams go quiet (see each venue's `listing_changed`)."""
        venue = self.venues.get(venue_name)
        if venue is None:
            raise ValueError(f"unknown venue {venue_name!r}; running: {sorted(self.venues)}")
        if market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, not {market!r}")
        if (market == "futures") != (":" in symbol):
            raise ValueError(f"{symbol} is not a {market} symbol")
        target = venue if market == "futures" else getattr(venue, "spot", None)
        books = venue.books_showing(symbol)
        if target is None or not books:
            raise ValueError(f"{symbol} is not an instrument of the {venue_name} {market} simulator")
        changed = [book.instrument.venue_id for book in books if target.set_listed(book.instrument.venue_id, listed)]
        return {"exchange": venue_name, "market": market, "symbol": symbol, "listed": listed, "changed": changed}

    def _end_shift(self, book: SimulatedBook) -> None:
        book.shift_bps = 0.0
        self._shift_ends.pop(id(book), None)

    async def _get_state(self, request: web.Request) -> web.Response:
        wanted = request.query.get("exchange")
        state = {name: venue.state() for name, venue in self.venues.items() if wanted in (None, name)}
        return web.json_response(state)

    async def _get_ccxt(self, request: web.Request) -> web.Response:
        """The `ccxt` block per venue, ready to paste into config.json."""
        return web.json_response({name: self.ccxt_config(name) for name in self.venues})

    async def _post_shift(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            result = self.shift(str(body["exchange"]), str(body["symbol"]), float(body["bps"]),
                                float(body["seconds"]))
        except (KeyError, TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(result)

    async def _post_listing(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            listed = body["listed"]
            if not isinstance(listed, bool):
                raise TypeError("listed must be true or false")
            result = self.set_listing(str(body["exchange"]), str(body.get("market", "futures")), str(body["symbol"]),
                                      listed)
        except (KeyError, TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(result)

    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            market, symbol = body.get("market"), body.get("symbol")
            result = await self.apply_fault(
                str(body["exchange"]),
                str(body["fault"]),
                count=int(body.get("count", 1)),
                seconds=float(body.get("seconds", 5.0)),
                stream=str(body["stream"]) if body.get("stream") is not None else None,
                market=None if market is None else str(market),
                symbol=None if symbol is None else str(symbol),
            )
        except (KeyError, TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(result)
