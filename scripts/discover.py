"""Pair discovery: read every configured venue's market lists, build the universe of USDT symbols and
the directions a spread can take, optionally check each listing's WebSocket quotes, and write generated/.

    python scripts/discover.py                    # sources from config.json
    python scripts/discover.py --demo --validate  # against the built-in simulator, quotes checked
    python scripts/discover.py --every            # forever, every discovery.interval_seconds (default 6 h)
    python scripts/discover.py --every 300        # forever, every 300 s

With --every, a round writes generated/ only when the universe changed, and logs what was added and removed;
the collector ("symbols": "auto"), the spread engine and the tracker pick the new universe up while running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from discovery.build import DiscoveryFailed
from discovery.output import write_generated_off_loop
from discovery.rediscover import discover, rediscover_forever
from main import point_at_simulator, wait_for_stop_signal
from models.config import MIN_DISCOVERY_INTERVAL_SECONDS, AppConfig
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
    parser.add_argument("--every", nargs="?", type=float, const=0.0, default=None, metavar="SECONDS",
                        help="rediscover forever, a round every SECONDS (without a value: the config's "
                             "discovery.interval_seconds, default 21600); writes only when the universe changed")
    parser.add_argument("--demo-universe", type=int, default=None, metavar="N",
                        help="with --demo: the simulator lists N perpetuals per venue (as main.py --demo-universe)")
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def say_timed(line: str) -> None:
    """--every runs for days: each line carries its UTC time."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} {line}", file=sys.stderr, flush=True)


def every_seconds(config: AppConfig, args: argparse.Namespace) -> float | str:
    """The --every interval, or why there is none."""
    if args.every is None or args.every > 0:
        return args.every
    if args.every < 0:
        return f"--every must be positive, not {args.every:g}"
    if config.discovery.interval_seconds == 0:
        return "--every without SECONDS uses discovery.interval_seconds, which is 0 (off): set it or give SECONDS"
    return float(config.discovery.interval_seconds)


async def run(config: AppConfig, args: argparse.Namespace, every: float | None = None) -> int:
    simulator = None
    if args.demo:
        simulator = Simulator(venues=[exchange.name for exchange in config.exchanges], port=0,
                              universe_size=args.demo_universe)
        await simulator.start()
        point_at_simulator(config, simulator)
    validate_seconds = args.validate_seconds if args.validate else None
    try:
        if every is not None:
            if every < MIN_DISCOVERY_INTERVAL_SECONDS:
                say_timed(f"a round every {every:g} s: venues rate-limit market lists; use at least "
                          f"{MIN_DISCOVERY_INTERVAL_SECONDS} s against real exchanges")
            say_timed(f"rediscovering every {every:g} s into {args.output}/ ({len(config.exchanges)} exchanges, "
                      f"{', '.join(config.markets)})")
            await until_stopped(
                rediscover_forever(config, args.output, every, args.min_sources, validate_seconds, say_timed)
            )
            say_timed("stopped")
            return 0
        say(f"loading market lists of {len(config.exchanges)} exchanges ({', '.join(config.markets)})")
        try:
            universe, verdicts = await discover(config, args.min_sources, validate_seconds, say)
        except DiscoveryFailed as error:
            say(f"discovery failed: {error}")
            return 1
        written = await write_generated_off_loop(args.output, universe, verdicts)
    finally:
        if simulator is not None:
            await simulator.stop()
    for source, reason in universe.failed_sources.items():
        say(f"left out {source}: {reason}")
    say(f"{len(universe.symbols)} symbols, {len(universe.directions)} directions on {len(universe.sources)} "
        f"sources; wrote {', '.join(str(path) for path in written)}")
    return 0


async def until_stopped(forever: Coroutine[Any, Any, None]) -> None:
    """Run until SIGINT or SIGTERM; a round being written finishes its atomic files or leaves the old ones."""
    task = asyncio.create_task(forever)
    stop = asyncio.create_task(wait_for_stop_signal())
    await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stop):
        pending.cancel()
    await asyncio.gather(stop, return_exceptions=True)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(config_path(args.config, example_if_missing=args.demo))
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    every = every_seconds(config, args)
    if isinstance(every, str):
        print(f"configuration error: {every}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(config, args, every))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
