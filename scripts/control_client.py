"""Steer a running collector over RabbitMQ: change its symbols and watchlist, read its statistics.

Prints the collector's reply as JSON (indented on a terminal). Exit status: 0 success, 1 the
collector answered with an error, 3 no reply within --timeout, 4 RabbitMQ or the control queue
is not there.

With --all the command goes to every collector (sharded by venue or by symbol) through the broadcast
exchange; the answer merges theirs (which collector streams what, counters summed) and lists each
reply. It waits until every live collector (one whose status heartbeat arrives) answered, for --expect
replies, or for --timeout; exit status 3 then names the live collectors that did not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
import orjson

from control import merge
from control.client import ControlClient, ControlTimeout, ControlUnreachable, new_request

EXIT_OK, EXIT_ERROR_REPLY, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 3, 4
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_QUEUE = "futures_collector_control"
DEFAULT_BROADCAST_EXCHANGE = "futures_collector_control_all"
DEFAULT_STATUS_EXCHANGE = "futures_collector_status"

EXAMPLES = {
    "add_symbol": 'add_symbol "SOL/USDT:USDT"',
    "remove_symbol": 'remove_symbol "ETH/USDT:USDT"',
    "set_symbols": 'set_symbols "BTC/USDT:USDT,SOL/USDT:USDT"',
    "get_symbols": "get_symbols",
    "get_statistics": "get_statistics",
    "watch_add": 'watch_add "DOGE/USDT:USDT" --exchanges binance --ttl 3600',
    "watch_touch": 'watch_touch binance "DOGE/USDT:USDT"',
    "watch_remove": 'watch_remove "DOGE/USDT:USDT"',
    "get_watchlist": "get_watchlist",
    "reload_universe": "reload_universe",
    "all": "--all get_statistics",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    script = "python scripts/control_client.py"
    parser = argparse.ArgumentParser(
        prog=script,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {script} {example}" for example in EXAMPLES.values()),
    )
    parser.add_argument("--url", default=os.environ.get("RABBITMQ_URL", DEFAULT_URL),
                        help="AMQP URL, or a cluster's nodes comma-separated, tried in turn (default: RABBITMQ_URL, "
                        "else amqp://guest:guest@127.0.0.1:5672/)")
    parser.add_argument("--queue", default=DEFAULT_QUEUE,
                        help=f"the collector's control queue (default {DEFAULT_QUEUE})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply (default 10)")
    parser.add_argument("--all", action="store_true", dest="to_all",
                        help="send to every collector through the broadcast exchange and merge their replies")
    parser.add_argument("--expect", type=int, metavar="N",
                        help="with --all: done after N replies (default: when every live collector answered)")
    parser.add_argument("--broadcast-exchange", default=DEFAULT_BROADCAST_EXCHANGE,
                        help=f"with --all: control.broadcast_exchange (default {DEFAULT_BROADCAST_EXCHANGE})")
    parser.add_argument("--status-exchange", default=DEFAULT_STATUS_EXCHANGE,
                        help=f"with --all: rabbitmq.status_exchange, where live collectors beat (default "
                        f"{DEFAULT_STATUS_EXCHANGE})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=f"{text}  e.g. {EXAMPLES[name]}", description=text,
                                   epilog=f"example: {script} {EXAMPLES[name]}")

    command("add_symbol", "start streaming a symbol on every venue that lists it").add_argument(
        "symbol", help="ccxt unified symbol, e.g. SOL/USDT:USDT")
    command("remove_symbol", "stop streaming a symbol (unless the watchlist still wants it)").add_argument(
        "symbol")
    command("set_symbols", "replace the whole symbol set; the difference is applied").add_argument(
        "symbols", help="comma-separated unified symbols")
    command("get_symbols", "the symbol set and what each venue streams")
    command("get_statistics", "counters per venue and for RabbitMQ")
    watch_add = command("watch_add", "watch a symbol for a while (it expires by itself)")
    watch_add.add_argument("symbol")
    watch_add.add_argument("--exchanges", help="comma-separated venues (default: every venue that lists it)")
    watch_add.add_argument("--ttl", type=int, dest="ttl_seconds", help="seconds until it expires (default 86400)")
    watch_touch = command("watch_touch", "renew one watched pair for its TTL")
    watch_touch.add_argument("exchange")
    watch_touch.add_argument("symbol")
    watch_remove = command("watch_remove", "stop watching a symbol")
    watch_remove.add_argument("symbol")
    watch_remove.add_argument("--exchanges", help="comma-separated venues (default: all)")
    command("get_watchlist", "every watched pair with its expiry and status")
    command("reload_universe", 'with "symbols": "auto", apply the universe scripts/discover.py wrote last')
    args = parser.parse_args(argv)
    if args.expect is not None and not args.to_all:
        parser.error("--expect only applies with --all")
    return args


def request_for(args: argparse.Namespace) -> dict[str, Any]:
    request = new_request(args.command)
    for name in ("symbol", "exchange", "ttl_seconds"):
        value = getattr(args, name, None)
        if value is not None:
            request[name] = value
    if getattr(args, "symbols", None) is not None:
        request["symbols"] = [symbol.strip() for symbol in args.symbols.split(",") if symbol.strip()]
    if getattr(args, "exchanges", None):
        request["exchanges"] = [exchange.strip() for exchange in args.exchanges.split(",") if exchange.strip()]
    return request


async def call(url: str, queue: str, request: dict[str, Any], wait_seconds: float) -> tuple[int, dict[str, Any]]:
    client = ControlClient(addresses(url), queue, connection_name="futures-scan control_client")
    try:
        reply = await client.request(request, wait_seconds)
    except ControlUnreachable as error:
        return EXIT_UNREACHABLE, _local_error(request, "unreachable", str(error))
    except ControlTimeout as error:
        return EXIT_TIMEOUT, _local_error(request, "timeout", str(error))
    finally:
        await client.close()
    return (EXIT_OK if reply.get("success") else EXIT_ERROR_REPLY), reply


async def call_all(args: argparse.Namespace, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    client = ControlClient(addresses(args.url), args.queue, connection_name="futures-scan control_client --all")
    try:
        gathered = await client.request_all(
            request, args.broadcast_exchange, args.status_exchange, args.timeout, args.expect
        )
    except ControlUnreachable as error:
        return EXIT_UNREACHABLE, _local_error(request, "unreachable", str(error))
    finally:
        await client.close()
    if not gathered.replies:
        return EXIT_TIMEOUT, _local_error(request, "timeout", f"no collector replied within {args.timeout:g} s")
    merged = merge.merged_reply(request, gathered.replies, gathered.missing, args.timeout)
    status = EXIT_TIMEOUT if gathered.missing else EXIT_OK if merged["success"] else EXIT_ERROR_REPLY
    return status, merged


def addresses(url: str) -> list[str]:
    return [address.strip() for address in url.split(",") if address.strip()]


def _local_error(request: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    return {
        "correlation_id": request["correlation_id"],
        "success": False,
        "command": request["command"],
        "message": message,
        "error": code,
        "timestamp": time.time_ns() // 1_000_000,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    request = request_for(args)
    try:
        if args.to_all:
            status, reply = asyncio.run(call_all(args, request))
        else:
            status, reply = asyncio.run(call(args.url, args.queue, request, args.timeout))
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as error:
        status, reply = EXIT_UNREACHABLE, _local_error(request, "unreachable", f"RabbitMQ: {error}")
    option = orjson.OPT_INDENT_2 if sys.stdout.isatty() else 0
    print(orjson.dumps(reply, option=option).decode())
    return status


if __name__ == "__main__":
    sys.exit(main())
