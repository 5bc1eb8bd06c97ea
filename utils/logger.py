"""One logging set-up for the whole process: console and app.log, one format, per-component names."""

from __future__ import annotations

import logging
import sys

from models.config import LoggingConfig

LOG_FORMAT = "%(asctime)s [%(levelname)s] [%(name)s] %(message)s"

NOISY_LIBRARIES = ("aiormq", "aio_pika", "asyncio", "aiohttp.access")


def setup_logging(config: LoggingConfig, process_label: str | None = None) -> None:
    """`process_label` (a shard's, e.g. shard-1-of-2) tells apart the lines of processes sharing one log."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if config.file:
        handlers.append(logging.FileHandler(config.file, encoding="utf-8"))
    log_format = LOG_FORMAT.replace("[%(name)s]", f"[{process_label}] [%(name)s]") if process_label else LOG_FORMAT
    logging.basicConfig(level=config.level, format=log_format, handlers=handlers, force=True)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
