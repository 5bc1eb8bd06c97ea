"""One logging set-up for the whole process: console and app.log, one format, per-component names."""

from __future__ import annotations

import logging
import sys

from models.config import LoggingConfig

LOG_FORMAT = "%(asctime)s [%(levelname)s] [%(name)s] %(message)s"

NOISY_LIBRARIES = ("aiormq", "aio_pika", "asyncio", "aiohttp.access")


def setup_logging(config: LoggingConfig) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if config.file:
        handlers.append(logging.FileHandler(config.file, encoding="utf-8"))
    logging.basicConfig(level=config.level, format=LOG_FORMAT, handlers=handlers, force=True)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
