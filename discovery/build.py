"""Read every source's market list and build the universe: names, listings, directions.

Only active USDT-quoted markets count (the quote is exactly USDT), linear USDT-settled perpetuals on
futures sources. Each venue symbol maps to one universe name, COIN/USDT: BTCUSDT, BTC-USDT-SWAP and
BTC_USDT are all BTC/USDT; 1000PEPEUSDT is PEPE/USDT with a base multiplier of 1000.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt_async
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS
from tenacity import AsyncRetrying, stop_after_attempt, wait_chain, wait_fixed

from collectors.venues import Venue, sources_for
from models.config import AppConfig
from models.futures_data import split_multiplier
from models.universe import Direction, Listing, Universe, UniverseSymbol

log = logging.getLogger("discovery")

QUOTE = "USDT"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SourceMarkets:
    source: Venue
    listings: list[Listing]


def configured_sources(config: AppConfig) -> list[tuple[Venue, dict[str, Any]]]:
    """(source, its ccxt config) for every configured exchange and market."""
    pairs = []
    for exchange in config.exchanges:
        for source in sources_for(exchange.name, config.markets):
            ccxt_config = ccxt_async.Exchange.deep_extend(source.ccxt_defaults, exchange.ccxt)
            pairs.append((source, ccxt_config))
    return pairs


async def load_source(
    source: Venue, ccxt_config: dict[str, Any], attempts: int, delays: list[float]
) -> SourceMarkets:
    exchange = getattr(ccxt_async, source.ccxt_id)(ccxt_config)
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts), wait=wait_chain(*(wait_fixed(delay) for delay in delays)), reraise=True
        ):
            with attempt:
                await exchange.load_markets()
        listings = [
            listing_of(source, exchange, market)
            for market in exchange.markets.values()
            if tradable(source, market)
        ]
        return SourceMarkets(source, sorted(listings, key=lambda listing: listing.symbol))
    finally:
        await exchange.close()


def tradable(source: Venue, market: dict[str, Any]) -> bool:
    if market.get("active") is False or market.get("quote") != QUOTE:
        return False
    if source.market == "spot":
        return bool(market.get("spot"))
    return bool(market.get("swap")) and market.get("linear") is True and market.get("settle") == QUOTE


def listing_of(source: Venue, exchange: Any, market: dict[str, Any]) -> Listing:
    _, multiplier = split_multiplier(market["base"])
    contract_size = market.get("contractSize") if source.market == "futures" else None
    min_amount = (market.get("limits") or {}).get("amount", {}).get("min")
    min_qty = None
    if min_amount is not None:
        min_qty = round(min_amount * (contract_size or 1) * multiplier, 12)
    return Listing(
        source=source.source_id,
        exchange=source.name,
        market=source.market,
        symbol=market["symbol"],
        venue_id=market["id"],
        base_multiplier=multiplier,
        tick_size=tick_size(exchange, (market.get("precision") or {}).get("price")),
        min_qty=min_qty,
        min_notional=(market.get("limits") or {}).get("cost", {}).get("min"),
        contract_size=contract_size,
        taker_fee=market.get("taker"),
    )


def tick_size(exchange: Any, precision: float | None) -> float | None:
    """ccxt's price precision is a tick in most venues, a number of decimals in some."""
    if precision is None:
        return None
    if exchange.precisionMode == DECIMAL_PLACES:
        return 10.0 ** -int(precision)
    if exchange.precisionMode == SIGNIFICANT_DIGITS:
        return None
    return float(precision)


def build_universe(loaded: list[SourceMarkets], failed: dict[str, str]) -> Universe:
    by_name: dict[str, dict[str, Listing]] = {}
    coins: dict[str, str] = {}
    for source_markets in loaded:
        for listing in source_markets.listings:
            name = f"{split_multiplier(listing.symbol.split('/', 1)[0])[0]}/{QUOTE}"
            coins[name] = name.split("/", 1)[0]
            by_source = by_name.setdefault(name, {})
            # one listing per source and name: a venue listing both BTC and a bundle keeps the plain one
            if listing.source not in by_source or listing.base_multiplier < by_source[listing.source].base_multiplier:
                by_source[listing.source] = listing
    symbols = [
        UniverseSymbol(
            id=number,
            name=name,
            coin=coins[name],
            listings=[by_name[name][source] for source in sorted(by_name[name])],
        )
        for number, name in enumerate(sorted(by_name), start=1)
    ]
    sources = sorted(source_markets.source.source_id for source_markets in loaded)
    markets = {source_markets.source.source_id: source_markets.source.market for source_markets in loaded}
    exchanges = {source_markets.source.source_id: source_markets.source.name for source_markets in loaded}
    listed = {source: {name for name, by_source in by_name.items() if source in by_source} for source in sources}
    directions = []
    for buy in sources:
        for sell in sources:
            if markets[sell] != "futures" or buy == sell:
                continue
            if markets[buy] == "futures" and exchanges[buy] == exchanges[sell]:
                continue
            common = sorted(listed[buy] & listed[sell])
            if common:
                directions.append(Direction(id=len(directions) + 1, buy=buy, sell=sell, symbols=common))
    return Universe(
        generated_at=time.time_ns() // 1_000_000,
        sources=sources,
        failed_sources=dict(sorted(failed.items())),
        symbols=symbols,
        directions=directions,
    )


async def load_sources(
    config: AppConfig, progress: Progress, minimum_sources: int
) -> tuple[list[SourceMarkets], dict[str, str]]:
    """Every source's tradable markets, loaded concurrently (each venue's own rate limiter keeps it
    gentle), and the sources that failed with why."""
    pairs = configured_sources(config)
    collection = config.collection
    done = 0

    async def load(source: Venue, ccxt_config: dict[str, Any]) -> SourceMarkets | BaseException:
        nonlocal done
        try:
            result: SourceMarkets | BaseException = await load_source(
                source, ccxt_config, collection.retry_attempts, collection.retry_delays
            )
        except Exception as error:
            result = error
        done += 1
        summary = (f"{len(result.listings)} USDT markets" if isinstance(result, SourceMarkets)
                   else f"FAILED: {type(result).__name__}: {str(result)[:120]}")
        progress(f"[{done}/{len(pairs)}] {source.source_id}: {summary}")
        return result

    results = await asyncio.gather(*(load(source, ccxt_config) for source, ccxt_config in pairs))
    loaded = [result for result in results if isinstance(result, SourceMarkets)]
    failed = {
        source.source_id: f"{type(result).__name__}: {str(result)[:300]}"
        for (source, _), result in zip(pairs, results, strict=True)
        if not isinstance(result, SourceMarkets)
    }
    if len(loaded) < minimum_sources:
        raise DiscoveryFailed(
            f"only {len(loaded)} of {len(pairs)} sources loaded (at least {minimum_sources} needed); "
            f"failed: {', '.join(failed) or 'none'}"
        )
    return loaded, failed


def keep_only(loaded: list[SourceMarkets], keep: Callable[[Listing], bool]) -> list[SourceMarkets]:
    return [
        SourceMarkets(markets.source, [listing for listing in markets.listings if keep(listing)]) for markets in loaded
    ]


class DiscoveryFailed(Exception):
    """Too few sources answered to build a useful universe."""
