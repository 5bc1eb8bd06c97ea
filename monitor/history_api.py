"""The monitor's history routes: what python -m consumers.recorder stored, read back for charts and research.

    GET /api/history/spreads?direction=&from=&to=&step=5m   a direction's series, events and funding times
    GET /api/events?symbol=&from=&to=&limit=                 signal events, newest first
    GET /api/events/{event_id}                               one event with its outcomes
    GET /api/funding/history?exchange=&symbol=&from=&to=     a perpetual's funding changes

The store (SQLite or PostgreSQL, whichever config.json's history section names) is opened read-only on the
first request, not at start: the monitor runs fine without a recorder, and these routes answer 503
history_unavailable until one has written a store, then work without a monitor restart.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from aiohttp import web

from history.rows import SeriesBar, SignalEvent
from history.store import DAY_MS, HistoryStore, SchemaTooNew, StoreUnavailable, open_store
from models.analytics import symbol_word
from models.config import AppConfig, ExchangeName
from models.futures_data import key_word
from models.universe import UNIVERSE_FILE, Universe, read_universe
from monitor.http import error_response, json_response
from monitor.params import Query, bad_request
from monitor.state import MonitorState, now_ms

log = logging.getLogger("monitor")

HOUR_MS = 3_600_000
MIDLINE_MS = 15 * 60 * 1000
"""midline_15m: the snapshot-weighted mean net over this much of trailing buckets."""
CHART_WINDOW_MS = 12 * HOUR_MS
MAX_SPREAD_WINDOW_MS = 7 * DAY_MS
FUNDING_WINDOW_MS = 7 * DAY_MS
MAX_FUNDING_WINDOW_MS = 31 * DAY_MS
EVENT_LOOKBACK_MS = DAY_MS
"""An event that started up to this long before a chart's window and is still running in it is drawn too."""
EVENTS_SCANNED = 10_000
"""Events of the direction read for one chart (8 days at most): far more than a direction produces."""
QUOTES = ("USDT", "USDC")
RECORDER_HINT = "run python -m consumers.recorder to record history"
STEP = re.compile(r"^(\d{1,6})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Direction:
    key: str
    """spread.BTCUSDT.okx-spot.binance: the monitor's (and the routing) key."""
    symbol: str
    """Universe name, BTC/USDT."""
    buy: str
    """Source, okx.spot."""
    sell: str


def resolve_direction(text: str, name_of: Callable[[str], str | None]) -> Direction | None:
    """spread.BTCUSDT.okx-spot.binance (or without `spread.`) -> its universe name and sources; None when it is
    not shaped like a key. `name_of` maps the SYMBOL word to a universe name when it knows it."""
    words = text.removeprefix("spread.").split(".")
    if len(words) != 3 or not all(words):
        return None
    word, buy_word, sell_word = words
    symbol = name_of(word) or name_from_word(word)
    if symbol is None:
        return None
    return Direction(f"spread.{word}.{buy_word}.{sell_word}", symbol, buy_word.replace("-", "."),
                     sell_word.replace("-", "."))


def name_from_word(word: str) -> str | None:
    """BTCUSDT -> BTC/USDT: the last resort when neither the live spreads nor the universe know the word."""
    for quote in QUOTES:
        if word.endswith(quote) and len(word) > len(quote):
            return f"{word[: -len(quote)]}/{quote}"
    return None


def resample(bars: Iterable[SeriesBar], step_ms: int, from_ms: int, bucket_ms: int = 300_000
             ) -> list[dict[str, Any]]:
    """Series buckets merged into steps of step_ms (aligned to the epoch), only steps from from_ms on.

    open is the first bucket's, close the last's, high/low the extremes, the means weighted by snapshots.
    midline_15m is the snapshot-weighted net_mean of the buckets (of bucket_ms) overlapping the 15 minutes up to
    each step's end, counting buckets before from_ms: pass those in for a full midline at the window's start."""
    ordered = sorted(bars, key=lambda bar: bar.ts)
    starts = [bar.ts for bar in ordered]
    weighted_net = [0.0]
    weights = [0]
    for bar in ordered:
        weighted_net.append(weighted_net[-1] + bar.net_mean * bar.snapshots)
        weights.append(weights[-1] + bar.snapshots)

    groups: dict[int, list[SeriesBar]] = {}
    for bar in ordered:
        if bar.ts >= from_ms:
            groups.setdefault(bar.ts - bar.ts % step_ms, []).append(bar)
    points = []
    for start, group in groups.items():
        end = start + step_ms
        first, last = bisect.bisect_right(starts, end - MIDLINE_MS - bucket_ms), bisect.bisect_left(starts, end)
        trailing = weights[last] - weights[first]
        points.append({
            "ts": start,
            "net_open": group[0].net_open,
            "net_high": max(bar.net_high for bar in group),
            "net_low": min(bar.net_low for bar in group),
            "net_close": group[-1].net_close,
            "net_mean": _weighted_mean((bar.net_mean, bar.snapshots) for bar in group),
            "midline_15m": (weighted_net[last] - weighted_net[first]) / trailing if trailing else None,
            "funding_diff_8h_pct_mean": _weighted_mean((bar.funding_diff_8h_pct_mean, bar.snapshots)
                                                       for bar in group),
            "buy_mid_mean": _weighted_mean((bar.buy_mid_mean, bar.snapshots) for bar in group),
            "sell_mid_mean": _weighted_mean((bar.sell_mid_mean, bar.snapshots) for bar in group),
            "snapshots": sum(bar.snapshots for bar in group),
        })
    return points


def _weighted_mean(values: Iterable[tuple[float | None, int]]) -> float | None:
    """Mean of the known values weighted by their counts; equal weights if every count is 0; None if none known."""
    known = [(value, count) for value, count in values if value is not None]
    total = sum(count for _, count in known)
    if not known:
        return None
    if total <= 0:
        return sum(value for value, _ in known) / len(known)
    return sum(value * count for value, count in known) / total


TIME_FORMATS = ("ms since epoch or ISO-8601 (2025-12-06T08:00:00Z; UTC when no zone is given), between 1970 and "
                "the year 9999")
READING = web.RequestKey("history_store", HistoryStore)
"""Where a request keeps the store it reads (a store is closed only once no request reads it)."""
EVENT_ID = re.compile(r"[\w.-]{1,200}")
"""<SYMBOL>.<buy>.<sell>.<start ms>: anything else names no event (and never reaches the store)."""
LAST_EPOCH_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last moment ISO-8601 (and Python's datetime) can write."""


def epoch_ms(text: str) -> int:
    """1764979200000 or 2025-12-06T00:00:00Z (UTC when it names no zone) -> ms since epoch; ValueError if neither.
    The API and scripts/history.py take times the same way."""
    if text.isdigit():
        ms = int(text)
    else:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
    if not 0 <= ms <= LAST_EPOCH_MS:
        raise ValueError(f"{text} is outside 1970 to 9999")
    return ms


def parse_time(query: Query, name: str) -> int | None:
    text = query.text(name, max_length=40)
    if text is None:
        return None
    try:
        return epoch_ms(text)
    except ValueError:
        raise bad_request(name, f"{name} must be {TIME_FORMATS}, not {text!r}") from None


def parse_window(query: Query, default_ms: int | None, max_ms: int | None) -> tuple[int, int]:
    """(from, to): `to` defaults to now, `from` to `to` minus default_ms (None: the beginning)."""
    to_ms = parse_time(query, "to")
    from_ms = parse_time(query, "from")
    if to_ms is None:
        to_ms = now_ms()
    if from_ms is None:
        from_ms = 0 if default_ms is None else to_ms - default_ms
    if from_ms > to_ms:
        raise bad_request("from", f"from ({from_ms}) is after to ({to_ms})")
    if max_ms is not None and to_ms - from_ms > max_ms:
        raise bad_request("from", f"the window from..to is over {max_ms // DAY_MS} days; ask for a shorter one")
    return from_ms, to_ms


def parse_step(query: Query, bucket_seconds: int) -> tuple[str, int]:
    """(the step as written, its ms): a whole multiple of history.series_bucket_seconds, at most 7 days."""
    text = query.text("step", max_length=12) or _step_text(bucket_seconds)
    match = STEP.match(text)
    if match is None:
        raise bad_request("step", f"step must be a number and a unit s, m, h or d (5m, 1h), not {text!r}")
    seconds = int(match[1]) * UNIT_SECONDS[match[2]]
    if seconds <= 0 or seconds % bucket_seconds or seconds * 1000 > MAX_SPREAD_WINDOW_MS:
        raise bad_request("step", f"step must be a whole multiple of the {bucket_seconds} s series bucket "
                                  f"(history.series_bucket_seconds), at most 7d; not {text!r}")
    return text, seconds * 1000


def _step_text(bucket_seconds: int) -> str:
    """The default step: 5m, or the series bucket when 5 minutes is not a multiple of it."""
    return "5m" if 300 % bucket_seconds == 0 else f"{bucket_seconds}s"


def event_row(event: SignalEvent) -> dict[str, Any]:
    return {**asdict(event), "duration_sec": event.duration_sec}


class HistoryApi:
    def __init__(self, config: AppConfig, state: MonitorState) -> None:
        self.config = config
        self.state = state
        self._store: HistoryStore | None = None
        self._opening = asyncio.Lock()
        self._readers: Counter[HistoryStore] = Counter()
        """Requests reading each store now: a store that failed is closed once its last reader is done."""
        self._retired: set[HistoryStore] = set()
        self._universe: tuple[tuple[int, int], Universe] | None = None
        """((mtime_ns, size) of universe.json, the universe read from it)."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/history/spreads", self._reading(self.spreads)),
            web.get("/api/events", self._reading(self.events)),
            web.get("/api/events/{event_id}", self._reading(self.event)),
            web.get("/api/funding/history", self._reading(self.funding)),
        ]

    async def close(self) -> None:
        store, self._store = self._store, None
        for each in {*self._retired, *([store] if store is not None else [])}:
            await each.close()
        self._retired.clear()

    # --- the store ---------------------------------------------------------------------------------------

    async def store(self, request: web.Request) -> HistoryStore:
        """The open store, for this request's reads; the first call (and the first after a failure) opens it, for
        reading only."""
        async with self._opening:
            if self._store is None:
                store = open_store(self.config.history)
                try:
                    await store.open(migrate=False)
                except (SchemaTooNew, StoreUnavailable):
                    await store.close()  # its connection attempt's resources (SQLite: a thread) go with it
                    raise
                log.info("monitor: reading history from %s", store.description)
                self._store = store
        request[READING] = self._store
        self._readers[self._store] += 1
        return self._store

    def _retire(self, store: HistoryStore | None) -> None:
        """The next request opens the store afresh; this one is closed when the requests reading it are done."""
        if store is not None and store is self._store:
            self._store = None
            self._retired.add(store)

    async def _done_reading(self, store: HistoryStore | None) -> None:
        if store is None:
            return
        self._readers[store] -= 1
        if self._readers[store] <= 0:
            del self._readers[store]
            if store in self._retired:
                self._retired.discard(store)
                await store.close()

    def _reading(self, handler: Callable[[web.Request], Awaitable[web.Response]]
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The handler, with an unreadable store answered 503; the next request opens it again."""
        async def handle(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except SchemaTooNew as error:
                return error_response(503, "history_schema_too_new", str(error))
            except StoreUnavailable as error:
                self._retire(request.get(READING))
                return error_response(503, "history_unavailable", _with_hint(str(error)))
            finally:
                await self._done_reading(request.get(READING))

        return handle

    # --- names -------------------------------------------------------------------------------------------

    def universe(self) -> Universe | None:
        """generated/universe.json, reread only when it changed; None when missing or unreadable."""
        path = Path(self.config.universe_dir) / UNIVERSE_FILE
        try:
            status = path.stat()
        except OSError:
            return None
        stamp = (status.st_mtime_ns, status.st_size)
        if self._universe is None or self._universe[0] != stamp:
            try:
                self._universe = (stamp, read_universe(self.config.universe_dir))
            except (OSError, ValueError) as error:
                log.warning("monitor: cannot read %s (%s); history names fall back to the symbol word", path, error)
                return None
        return self._universe[1]

    def name_of(self, word: str) -> str | None:
        """BTCUSDT -> BTC/USDT from a live spread snapshot or the universe; None when neither knows it."""
        for entry in self.state.spreads.values():
            if symbol_word(entry.snapshot.symbol) == word:
                return entry.snapshot.symbol
        universe = self.universe()
        if universe is not None:
            for symbol in universe.symbols:
                if symbol_word(symbol.name) == word:
                    return symbol.name
        return None

    def universe_name(self, text: str) -> str:
        return text if "/" in text else self.name_of(text) or name_from_word(text) or text

    def venue_symbol(self, exchange: str, text: str) -> str | None:
        """A perpetual's ccxt symbol on `exchange` from BTC/USDT:USDT or BTCUSDT (the venue's word, or the
        universe name's, so PEPEUSDT finds 1000PEPE/USDT:USDT)."""
        if "/" in text:
            return text
        for source, symbol in self.state.markets:
            if source == exchange and key_word(symbol) == text:
                return symbol
        universe = self.universe()
        if universe is not None:
            for entry in universe.symbols:
                for listing in entry.listings:
                    if listing.source == exchange and text in (key_word(listing.symbol), symbol_word(entry.name)):
                        return listing.symbol
        return None

    # --- routes ------------------------------------------------------------------------------------------

    async def spreads(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("direction", "from", "to", "step"))
        text = query.text("direction", max_length=200)
        if text is None:
            raise bad_request("direction", "direction is required, e.g. spread.BTCUSDT.okx-spot.binance")
        direction = resolve_direction(text, self.name_of)
        if direction is None:
            raise bad_request("direction", f"direction must look like spread.BTCUSDT.okx-spot.binance, not {text!r}")
        step_text, step_ms = parse_step(query, self.config.history.series_bucket_seconds)
        from_ms, to_ms = parse_window(query, CHART_WINDOW_MS, MAX_SPREAD_WINDOW_MS)
        store = await self.store(request)
        bars = await store.series(direction.symbol, direction.buy, direction.sell, from_ms - MIDLINE_MS, to_ms)
        scanned = await store.events(direction.symbol, from_ms - EVENT_LOOKBACK_MS, to_ms, EVENTS_SCANNED,
                                     (direction.buy, direction.sell))
        events = sorted((event for event in scanned if event.end_ts >= from_ms), key=lambda event: event.start_ts)
        spreads = self.config.spreads
        return json_response({
            "direction": direction.key, "symbol": direction.symbol, "buy": direction.buy, "sell": direction.sell,
            "from": from_ms, "to": to_ms, "step": step_text, "step_ms": step_ms,
            "entry_pct": spreads.entry_pct, "exit_pct": spreads.exit_pct,
            "points": resample(bars, step_ms, from_ms, self.config.history.series_bucket_seconds * 1000),
            "events": [{"event_id": event.event_id, "start_ts": event.start_ts, "end_ts": event.end_ts,
                        "status": event.status} for event in events],
            "funding_times": await self.funding_times(store, direction, events, from_ms, to_ms),
        })

    async def funding_times(self, store: HistoryStore, direction: Direction, events: list[SignalEvent],
                            from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        """Each futures leg's funding times within the window, from its recorded funding changes."""
        symbols = await self.leg_symbols(store, direction, events, to_ms)
        times = []
        for leg, source in (("buy", direction.buy), ("sell", direction.sell)):
            venue_symbol = symbols.get(leg)
            if "." in source or venue_symbol is None:
                continue  # a spot source (okx.spot) pays no funding
            changes = await store.funding_changes(source, venue_symbol, from_ms, to_ms)
            seen = {at for change in changes for at in (change.next_funding_time, change.previous_next_funding_time)
                    if at is not None and from_ms <= at <= to_ms}
            times += [{"leg": leg, "exchange": source, "symbol": venue_symbol, "ts": at} for at in sorted(seen)]
        return times

    async def leg_symbols(self, store: HistoryStore, direction: Direction, events: list[SignalEvent],
                          to_ms: int) -> dict[str, str]:
        """{"buy": ccxt symbol, "sell": ...} of the direction's venues: from its newest event in the window, else
        its samples in the window's last hour, else the live snapshot, else the universe."""
        if events:
            return {"buy": events[-1].buy_symbol, "sell": events[-1].sell_symbol}
        samples = await store.signal_samples(direction.symbol, direction.buy, direction.sell, to_ms - HOUR_MS, to_ms)
        if samples:
            return {"buy": samples[-1].buy_symbol, "sell": samples[-1].sell_symbol}
        live = self.state.spreads.get(direction.key)
        if live is not None:
            return {"buy": live.snapshot.buy.symbol, "sell": live.snapshot.sell.symbol}
        universe = self.universe()
        found = {}
        for leg, source in (("buy", direction.buy), ("sell", direction.sell)):
            listing = universe.listing(source, direction.symbol) if universe is not None else None
            if listing is not None:
                found[leg] = listing.symbol
        return found

    async def events(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("symbol", "from", "to", "limit"))
        text = query.text("symbol")
        limit = query.integer("limit", 100, 1, 1000, cap=True)
        from_ms, to_ms = parse_window(query, None, None)
        symbol = None if text is None else self.universe_name(text)
        events = await (await self.store(request)).events(symbol, from_ms, to_ms, limit)
        return json_response({"symbol": symbol, "from": from_ms, "to": to_ms, "limit": limit, "count": len(events),
                              "events": [event_row(event) for event in events]})

    async def event(self, request: web.Request) -> web.Response:
        Query(request.query, ())
        event_id = request.match_info["event_id"]
        store = await self.store(request)
        event = await store.event(event_id) if EVENT_ID.fullmatch(event_id) else None
        if event is None:
            return error_response(404, "event_not_found", f"no event {event_id[:200]!r} in the history store")
        return json_response({"event": event_row(event), "outcomes": await store.outcomes(event_id)})

    async def funding(self, request: web.Request) -> web.Response:
        query = Query(request.query, ("exchange", "symbol", "from", "to"))
        if query.text("exchange") is None:
            raise bad_request("exchange", "exchange is required, e.g. binance")
        exchange = query.choice("exchange", "", get_args(ExchangeName))
        text = query.text("symbol")
        if text is None:
            raise bad_request("symbol", "symbol is required: BTC/USDT:USDT or BTCUSDT")
        symbol = self.venue_symbol(exchange, text)
        if symbol is None:
            raise bad_request("symbol", f"{exchange} lists no perpetual {text!r} that the monitor or the universe "
                                        "knows; give its ccxt symbol, e.g. BTC/USDT:USDT")
        from_ms, to_ms = parse_window(query, FUNDING_WINDOW_MS, MAX_FUNDING_WINDOW_MS)
        changes = await (await self.store(request)).funding_changes(exchange, symbol, from_ms, to_ms)
        return json_response({"exchange": exchange, "symbol": symbol, "from": from_ms, "to": to_ms,
                              "count": len(changes), "changes": changes})


def _with_hint(message: str) -> str:
    return message if "consumers.recorder" in message else f"{message}; {RECORDER_HINT}"
