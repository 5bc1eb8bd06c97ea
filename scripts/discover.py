"""Pair discovery: read every configured venue's market lists, build the universe of USDT symbols and
the directions a spread can take, optionally check each listing's WebSocket quotes, and write generated/.

    python scripts/discover.py                    # sources from config.json
    python scripts/discover.py --demo --validate  # against the built-in simulator, quotes checked
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from discovery.build import DiscoveryFailed, build_universe, keep_only, load_sources
from discovery.output import write_generated_off_loop
from discovery.validation import VALID, validate
from main import point_at_simulator
from models.config import AppConfig
from simulator.server import Simulator
from utils.config_loader import ConfigError, config_path, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/discover.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.json", metavar="PATH",
                        help="config file: exchanges, markets, ccxt overrides (default config.json; with --demo, "
                             "config.example.json when config.json is missing)")
    parser.add_argument("--output", default="generated", metavar="DIR", help="where to write (default generated/)")
    parser.add_argument("--validate", action="store_true",
                        help="keep only listings that deliver a quote with 0 < bid <= ask over WebSocket")
    parser.add_argument("--validate-seconds", type=float, default=20.0, metavar="S",
                        help="time budget for --validate (default 20)")
    parser.add_argument("--min-sources", type=int, default=2, metavar="N",
                        help="give up (exit 1) when fewer sources load (default 2)")
    parser.add_argument("--demo", action="store_true", help="discover on the built-in exchange simulator")
    parser.add_argument("--demo-universe", type=int, default=None, metavar="N",
                        help="with --demo: the simulator lists N perpetuals per venue (as main.py --demo-universe)")
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run(config: AppConfig, args: argparse.Namespace) -> int:
    simulator = None
    if args.demo:
        simulator = Simulator(venues=[exchange.name for exchange in config.exchanges], port=0,
                              universe_size=args.demo_universe)
        await simulator.start()
        point_at_simulator(config, simulator)
    try:
        say(f"loading market lists of {len(config.exchanges)} exchanges ({', '.join(config.markets)})")
        try:
            loaded, failed = await load_sources(config, say, args.min_sources)
        except DiscoveryFailed as error:
            say(f"discovery failed: {error}")
            return 1
        universe = build_universe(loaded, failed)
        verdicts = None
        if args.validate:
            say(f"validating {sum(len(s.listings) for s in universe.symbols)} listings over WebSocket "
                f"(up to {args.validate_seconds:g} s)")
            verdicts = await validate(config, universe, args.validate_seconds, say)
            invalid = {(v.listing.source, v.listing.symbol) for v in verdicts if v.outcome != VALID}
            quoting = keep_only(loaded, lambda listing: (listing.source, listing.symbol) not in invalid)
            universe = build_universe(quoting, failed)
        written = await write_generated_off_loop(args.output, universe, verdicts)
    finally:
        if simulator is not None:
            await simulator.stop()
    for source, reason in universe.failed_sources.items():
        say(f"left out {source}: {reason}")
    say(f"{len(universe.symbols)} symbols, {len(universe.directions)} directions on {len(universe.sources)} "
        f"sources; wrote {', '.join(str(path) for path in written)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(config_path(args.config, example_if_missing=args.demo))
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    return asyncio.run(run(config, args))


if __name__ == "__main__":
    sys.exit(main())
