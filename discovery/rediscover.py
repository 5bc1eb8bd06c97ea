"""Discovery rounds: one (scripts/discover.py) or forever (scripts/discover.py --every).

A round reads every source's market list and builds the universe. When it runs forever, a round writes
generated/ only when the universe's content changed (its generation time does not count) and logs what was
added and removed; the collector (`"symbols": "auto"`), the spread engine and the tracker follow the file.

A source whose market list fails to load in a round keeps the listings it had in the previous universe (and
is named in `failed_sources`): one venue's REST hiccup must not delist everything it lists. A round in which
too few sources load (`--min-sources`) or that fails outright writes nothing; the next round tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from discovery.build import DiscoveryFailed, SourceMarkets, build_universe, configured_sources, keep_only, load_sources
from discovery.follower import diff_universes, same_universe
from discovery.output import write_generated_off_loop
from discovery.validation import VALID, Verdict, validate
from models.config import AppConfig
from models.universe import Listing, Universe, read_universe

Say = Callable[[str], None]


async def discover(
    config: AppConfig, min_sources: int, validate_seconds: float | None, say: Say, previous: Universe | None = None
) -> tuple[Universe, list[Verdict] | None]:
    """One round. Raises DiscoveryFailed when fewer than `min_sources` sources answer."""
    loaded, failed = await load_sources(config, say, min_sources)
    carried = _carried_over(config, previous, failed, say)
    universe = build_universe(loaded + carried, failed)
    verdicts = None
    if validate_seconds is not None:
        say(f"validating {sum(len(s.listings) for s in universe.symbols)} listings over WebSocket "
            f"(up to {validate_seconds:g} s)")
        verdicts = await validate(config, universe, validate_seconds, say)
        invalid = {(v.listing.source, v.listing.symbol) for v in verdicts if v.outcome != VALID}
        quoting = keep_only(loaded, lambda listing: (listing.source, listing.symbol) not in invalid)
        universe = build_universe(quoting + carried, failed)  # a source that failed keeps what it had
    return universe, verdicts


def _carried_over(
    config: AppConfig, previous: Universe | None, failed: dict[str, str], say: Say
) -> list[SourceMarkets]:
    """The previous round's listings of each source that failed this round."""
    if previous is None or not failed:
        return []
    carried = []
    for source, _ in configured_sources(config):
        if source.source_id not in failed or source.source_id not in previous.sources:
            continue
        listings: list[Listing] = sorted(
            (listing for symbol in previous.symbols for listing in symbol.listings
             if listing.source == source.source_id),
            key=lambda listing: listing.symbol,
        )
        say(f"{source.source_id}: market list failed this round; keeping its {len(listings)} previous listings")
        carried.append(SourceMarkets(source, listings))
    return carried


async def rediscover_forever(
    config: AppConfig, output: str | Path, interval_seconds: float, min_sources: int,
    validate_seconds: float | None, say: Say,
) -> None:
    """A round every `interval_seconds` (measured from round start to round start), until cancelled."""
    previous = _existing(output, say)
    loop = asyncio.get_running_loop()
    rounds = 0
    while True:
        started = loop.time()
        rounds += 1
        try:
            universe, verdicts = await discover(config, min_sources, validate_seconds, say, previous)
        except asyncio.CancelledError:
            raise
        except DiscoveryFailed as error:
            say(f"round {rounds} failed, keeping the current universe: {error}")
        except Exception as error:  # a bug or an unexpected venue answer: the next round tries again
            say(f"round {rounds} failed, keeping the current universe: {type(error).__name__}: {error}")
        else:
            summary = f"{len(universe.symbols)} symbols, {len(universe.directions)} directions"
            if same_universe(previous, universe):
                say(f"round {rounds}: universe unchanged ({summary})")
            else:
                try:
                    await write_generated_off_loop(output, universe, verdicts)
                except OSError as error:
                    say(f"round {rounds}: could not write {output}/, keeping the current universe: {error}")
                else:
                    if previous is None:
                        say(f"round {rounds}: wrote the universe ({summary}) to {output}/")
                    else:
                        say(f"round {rounds}: universe changed: {diff_universes(previous, universe).describe()}; "
                            f"wrote {output}/")
                    previous = universe
        elapsed = loop.time() - started
        next_at = time.strftime("%H:%M:%S", time.gmtime(time.time() + max(0.0, interval_seconds - elapsed)))
        say(f"next round at {next_at} UTC")
        await asyncio.sleep(max(0.0, interval_seconds - elapsed))


def _existing(output: str | Path, say: Say) -> Universe | None:
    """The universe already in `output`, so a restart of --every does not rewrite an unchanged one."""
    try:
        return read_universe(output)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        say(f"{output}/universe.json is not a universe ({str(error)[:200]}); the first round replaces it")
        return None
