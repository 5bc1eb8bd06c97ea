"""python -m simulator: run the exchange simulator on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal

from simulator.server import DEFAULT_PORT, FAULTS, VENUE_NAMES, Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description=(
            "Local exchange simulator speaking each venue's real REST and WebSocket formats, so ccxt.pro "
            "runs unmodified against it. Prints the `ccxt` overrides to put in config.json."
        ),
        epilog=(
            "Fault switches: POST /admin/fault with JSON {\"exchange\": \"binance\", \"fault\": F} where F is one of "
            f"{', '.join(FAULTS)} (optional \"count\" for malformed/crossed/gap, \"seconds\" for outage, "
            "\"market\" and \"symbol\" for gap). "
            "GET /admin/state shows what each venue currently sends."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument(
        "--venues",
        default=",".join(VENUE_NAMES),
        help="comma-separated venues to simulate (default: all)",
    )
    parser.add_argument("--rate", type=float, default=5.0, help="book updates per symbol per second (default 5)")
    parser.add_argument("--symbols", type=int, default=None, help="list only the first N instruments (default: all)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    simulator = Simulator(
        venues=[name.strip() for name in args.venues.split(",") if name.strip()],
        host=args.host,
        port=args.port,
        rate=args.rate,
        symbols=args.symbols,
        seed=args.seed,
    )
    await simulator.start()
    overrides = [{"name": name, "ccxt": simulator.ccxt_config(name)} for name in simulator.venues]
    print("Put these entries under \"exchanges\" in config.json to collect from the simulator:")
    print(json.dumps(overrides, indent=2))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await simulator.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] [%(name)s] %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args()))


if __name__ == "__main__":
    main()
