"""python -m simulator: run the exchange simulator on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path

from simulator.instruments import MAX_UNIVERSE
from simulator.process import READY_PREFIX
from simulator.replay import CaptureError, ReplayServer, load_capture
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
            "\"market\" and \"symbol\" for gap, \"stream\" for silent/resume: one stream, e.g. Binance's "
            "bookTicker). "
            "POST /admin/listing with {\"exchange\": \"bybit\", \"market\": \"futures\", \"symbol\": "
            "\"ETH/USDT:USDT\", \"listed\": false} delists an instrument (true lists it again; Binance and Bybit "
            "perpetuals). "
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
    parser.add_argument(
        "--universe-size", type=_universe_size, default=None, metavar="N",
        help=f"list N perpetuals per venue (at most {MAX_UNIVERSE}) with realistic names and multipliers "
        "(1000PEPE, 1000BONK, ...), each venue a slightly different set chosen by --seed; default: the 25 majors",
    )
    parser.add_argument(
        "--port-file", type=Path, default=None, metavar="PATH",
        help="write the port listened on to PATH once ready (handy with --port 0)",
    )
    parser.add_argument(
        "--replay",
        metavar="DIR",
        type=Path,
        default=None,
        help="instead of simulating, serve recorded Binance USDⓈ-M traffic from DIR (e.g. "
        "tests/captures/binance-usdm-2021-07-22) as the venue `binance`; --venues/--rate/--symbols/--seed are unused",
    )
    parser.add_argument(
        "--replay-speed", type=_positive, default=1.0, metavar="N",
        help="with --replay: play N times faster (default 1)",
    )
    parser.add_argument(
        "--replay-start-delay",
        type=float,
        metavar="SECONDS",
        default=1.0,
        help="with --replay: seconds from the first subscription to a recorded stream to the first frame, so a "
        "client's other subscriptions are in place (default 1)",
    )
    parser.add_argument(
        "--ready-json", action="store_true",
        help=f"print one line `{READY_PREFIX}{{\"port\": ..., \"ccxt\": {{venue: overrides}}}}` on stdout once "
        "listening, instead of the text for humans (used by main.py --demo, which runs the simulator as a child)",
    )
    parser.add_argument(
        "--parent-pid", type=int, default=None, metavar="PID",
        help="stop when process PID is no longer this process's parent (a child never outlives its launcher)",
    )
    args = parser.parse_args(argv)
    if args.replay is not None:
        try:
            args.capture = load_capture(args.replay)
        except (CaptureError, OSError) as error:
            parser.error(f"--replay: {error}")
    return args


def _universe_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_UNIVERSE:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_UNIVERSE}, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


async def serve(args: argparse.Namespace) -> None:
    simulator: Simulator | ReplayServer
    if args.replay is not None:
        simulator = ReplayServer(args.capture, host=args.host, port=args.port, speed=args.replay_speed,
                                 start_delay=max(0.0, args.replay_start_delay))
    else:
        simulator = Simulator(
            venues=[name.strip() for name in args.venues.split(",") if name.strip()],
            host=args.host,
            port=args.port,
            rate=args.rate,
            symbols=args.symbols,
            seed=args.seed,
            universe_size=args.universe_size,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await simulator.start()
    except OSError as error:
        logging.getLogger("simulator").error("cannot listen on %s:%s: %s", args.host, args.port, error)
        raise SystemExit(1) from None
    if args.port_file is not None:
        args.port_file.write_text(f"{simulator.port}\n")
    if args.ready_json:
        ready = {"port": simulator.port, "ccxt": {name: simulator.ccxt_config(name) for name in simulator.venues}}
        print(READY_PREFIX + json.dumps(ready), flush=True)
    else:
        overrides = [{"name": name, "ccxt": simulator.ccxt_config(name)} for name in simulator.venues]
        print("Put these entries under \"exchanges\" in config.json to collect from the simulator:")
        print(json.dumps(overrides, indent=2), flush=True)
    watch = asyncio.create_task(watch_parent(args.parent_pid, stop)) if args.parent_pid else None
    await stop.wait()
    if watch is not None:
        watch.cancel()
    await simulator.stop()


async def watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once the launcher is gone (re-parented), wherever PR_SET_PDEATHSIG does not exist."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - nothing signals a re-parenting; poll it
        await asyncio.sleep(0.5)
    logging.getLogger("simulator").warning("parent process %d is gone; stopping", parent_pid)
    stop.set()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] [%(name)s] %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args()))


if __name__ == "__main__":
    main()
