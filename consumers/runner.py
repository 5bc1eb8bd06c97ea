"""What every downstream process shares: its command line, its config, its life until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Protocol

from models.config import AppConfig
from models.universe import read_universe
from publishers.durable_queues import QueueSettingsChanged
from utils.config_loader import ConfigError, config_path, load_config
from utils.logger import setup_logging


class Service(Protocol):
    log: logging.Logger

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def report(self) -> str:
        """One line for the log every statistics_interval_seconds."""


def run_main(argv: list[str] | None, prog: str, description: str, build: Callable[[AppConfig], Service],
             needs_universe: bool = True) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.json", metavar="PATH",
                        help="config.json: rabbitmq, universe_dir, spreads, tracker, monitor and history sections "
                             "(default config.json, else config.example.json)")
    args = parser.parse_args(argv)
    try:
        config = load_config(config_path(args.config, example_if_missing=True))
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if needs_universe:
        try:
            read_universe(config.universe_dir)
        except FileNotFoundError:
            print(f"no universe in {config.universe_dir}/: run python scripts/discover.py first", file=sys.stderr)
            return 2
    setup_logging(config.logging)
    service = build(config)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            return asyncio.run(_serve(service, config.collection.statistics_interval_seconds))
        except QueueSettingsChanged as error:  # a durable queue of another type: retrying cannot help
            service.log.error("%s", error)
            return 2
    return 0


async def _serve(service: Service, report_every: float) -> int:
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), report_every)
        service.log.info("%s", service.report())
    await service.stop()
    return 0
