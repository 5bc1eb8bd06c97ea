"""generated/: the universe for programs (JSON) and for people (text), each file written atomically."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from discovery.validation import VALID, Verdict
from models.universe import UNIVERSE_FILE, UNIVERSE_VERSION, Universe
from utils.atomic_file import write_atomically


def write_generated(directory: str | Path, universe: Universe, verdicts: list[Verdict] | None) -> list[Path]:
    directory = Path(directory)
    files = {
        UNIVERSE_FILE: orjson.dumps(universe.model_dump(), option=orjson.OPT_INDENT_2),
        "directions.json": orjson.dumps([d.model_dump() for d in universe.directions], option=orjson.OPT_INDENT_2),
        "symbols.txt": _symbols_text(universe).encode(),
        "directions.txt": _directions_text(universe).encode(),
        "validation_report.txt": _validation_text(verdicts).encode(),
        "metadata.json": orjson.dumps(
            {
                "generated_at": universe.generated_at,
                "written_at": time.time_ns() // 1_000_000,
                "version": UNIVERSE_VERSION,
                "sources": universe.sources,
                "failed_sources": universe.failed_sources,
                "counts": {
                    "sources": len(universe.sources),
                    "symbols": len(universe.symbols),
                    "listings": sum(len(symbol.listings) for symbol in universe.symbols),
                    "directions": len(universe.directions),
                },
                "validated": verdicts is not None,
            },
            option=orjson.OPT_INDENT_2,
        ),
    }
    written = []
    for name, payload in files.items():
        write_atomically(directory / name, payload)
        written.append(directory / name)
    return written


async def write_generated_off_loop(
    directory: str | Path, universe: Universe, verdicts: list[Verdict] | None
) -> list[Path]:
    """write_generated for a caller on an event loop (discovery beside a simulator or a collector): six
    fsynced files must not stall the sockets that loop serves."""
    return await asyncio.to_thread(write_generated, directory, universe, verdicts)


def _symbols_text(universe: Universe) -> str:
    lines = [f"# {len(universe.symbols)} symbols on {len(universe.sources)} sources"]
    for symbol in universe.symbols:
        listed = ", ".join(
            f"{listing.source} {listing.symbol}"
            + (f" (x{listing.base_multiplier})" if listing.base_multiplier > 1 else "")
            for listing in symbol.listings
        )
        lines.append(f"{symbol.id:5d} {symbol.name:16} {listed}")
    return "\n".join(lines) + "\n"


def _directions_text(universe: Universe) -> str:
    lines = [f"# {len(universe.directions)} directions: buy on the first source, sell on the second"]
    for direction in universe.directions:
        lines.append(f"{direction.id:5d} {direction.buy} -> {direction.sell}: {len(direction.symbols)} symbols: "
                     + ", ".join(direction.symbols))
    return "\n".join(lines) + "\n"


def _validation_text(verdicts: list[Verdict] | None) -> str:
    if verdicts is None:
        return "not validated (run scripts/discover.py --validate to check every listing's WebSocket quotes)\n"
    failed = [verdict for verdict in verdicts if verdict.outcome != VALID]
    lines = [f"# {len(verdicts) - len(failed)} of {len(verdicts)} listings quoted over WebSocket; failures:"]
    for verdict in sorted(failed, key=lambda v: (v.listing.source, v.listing.symbol)):
        lines.append(f"{verdict.listing.source:14} {verdict.listing.symbol:24} {verdict.outcome}: {verdict.detail}")
    return "\n".join(lines) + "\n"
