"""One module per venue, named like the venue in config.json. Each exports SOURCES: the Venue
objects of the markets it provides (futures first, then spot where the venue has one)."""

from __future__ import annotations

import importlib
from functools import cache
from typing import get_args

from collectors.venues.base import StreamSpec, Venue
from models.config import ExchangeName, MarketName

VENUE_NAMES: tuple[str, ...] = get_args(ExchangeName)


@cache
def venue_sources(name: str) -> tuple[Venue, ...]:
    module = importlib.import_module(f"collectors.venues.{name}")
    return tuple(module.SOURCES)


def sources_for(name: str, markets: list[MarketName]) -> list[Venue]:
    """The sources of one configured exchange for the configured markets, in that order."""
    by_market = {source.market: source for source in venue_sources(name)}
    return [by_market[market] for market in markets if market in by_market]


def futures_source(name: str) -> Venue:
    (source,) = sources_for(name, ["futures"])
    return source


__all__ = ["VENUE_NAMES", "StreamSpec", "Venue", "futures_source", "sources_for", "venue_sources"]
