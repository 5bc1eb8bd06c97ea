"""Watch what the collector publishes: bind a temporary queue and print each message, validated.

    python scripts/consume.py                          # everything: futures.#
    python scripts/consume.py "futures.binance.*"      # one venue
    python scripts/consume.py futures.*.BTCUSDT --full # one symbol, whole JSON
    python scripts/consume.py "opportunity.#" --exchange futures_analytics --raw   # the spread engine's events
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
from pydantic import ValidationError

from models.futures_data import FuturesData
from publishers.broker_connection import connect_robust


def summary(message: FuturesData) -> str:
    ticker = message.ticker
    funding = (
        f" funding {message.funding_rate:+.6f}/{message.funding_interval_hours or '?'}h"
        if message.funding_rate is not None
        else ""
    )
    age = message.published_timestamp - message.received_timestamp
    return (
        f"{message.exchange:8} {message.symbol:20} bid {ticker.bid} x {ticker.bid_size}  "
        f"ask {ticker.ask} x {ticker.ask_size}  mark {message.mark_price}{funding}  (+{age} ms)"
    )


async def consume(urls: list[str], exchange_name: str, binding: str, full: bool, raw: bool) -> None:
    connection = await connect_robust(urls, "futures-scan consume.py")
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, arguments={"x-max-length": 10000})
        await queue.bind(exchange, binding)
        print(f"bound to {exchange_name} with {binding}; Ctrl+C to stop", file=sys.stderr)
        async with queue.iterator(no_ack=True) as messages:
            async for incoming in messages:
                if raw:
                    print(f"{incoming.routing_key} {incoming.body.decode()}")
                    continue
                try:
                    message = FuturesData.model_validate_json(incoming.body)
                except ValidationError as error:
                    print(f"{incoming.routing_key}: NOT A VALID MESSAGE: {error}", file=sys.stderr)
                    continue
                print(message.model_dump_json(indent=2) if full else f"{incoming.routing_key:28} {summary(message)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binding", nargs="?", default="futures.#", help="routing-key pattern (default futures.#)")
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URLS") or os.environ.get("RABBITMQ_URL")
                        or "amqp://guest:guest@127.0.0.1:5672/",
                        help="AMQP URL, or a cluster's node URLs comma-separated (failover in that order; default: "
                             "RABBITMQ_URLS, RABBITMQ_URL or amqp://guest:guest@127.0.0.1:5672/)")
    parser.add_argument("--exchange", default="futures_data", help="topic exchange (default futures_data)")
    parser.add_argument("--full", action="store_true", help="print whole messages as JSON")
    parser.add_argument("--raw", action="store_true",
                        help="print bodies as they are, without checking the market-data contract (e.g. analytics)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        urls = [url.strip() for url in args.url.split(",") if url.strip()]
        asyncio.run(consume(urls, args.exchange, args.binding, args.full, args.raw))


if __name__ == "__main__":
    main()
