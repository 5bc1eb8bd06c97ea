"""cryptofeed as the bench's peer: its Binance USDⓈ-M feed (BinanceFutures), best bid/ask (TICKER, Binance's
bookTicker), into its RabbitMQ backend (TickerRabbit, exchange mode), pointed at the exchange simulator.

Runs inside the bench's own virtualenv (.venv-bench, made by scripts/bench_cryptofeed.py) with cryptofeed 2.4.1, so
it imports only cryptofeed and the standard library. cryptofeed's code is used as installed; what points it at the
simulator lives here, in the bench only:

- the feed's endpoints: a BinanceFutures subclass whose `websocket_endpoints` and `rest_endpoints` are the
  simulator's (cryptofeed dials `<ws>/stream?streams=...`, Binance's combined-stream path, which the simulator serves);
- cryptofeed's WSAsyncConn refuses any address but wss://, and the simulator speaks plain ws:// on loopback: the
  feed module's WSAsyncConn is swapped for a subclass that takes ws:// too;
- uvloop 0.23: FeedHandler installs uvloop's policy, then run() calls asyncio.get_event_loop(), which no longer
  makes a loop; one is set before run().

    .venv-bench/bin/python scripts/cryptofeed_peer.py --http http://127.0.0.1:8765/binance \\
        --ws ws://127.0.0.1:8765/binance --amqp guest:guest@127.0.0.1:5672/ --exchange bench_x --symbols BTCUSDT,ETHUSDT
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import cryptofeed.feed
from cryptofeed import FeedHandler
from cryptofeed.backends.rabbitmq import TickerRabbit
from cryptofeed.connection import RestEndpoint, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import TICKER
from cryptofeed.exchanges import BinanceFutures

ROUTING_KEY = "cryptofeed.binance_futures.ticker"


class PlainWebSocketConn(WSAsyncConn):
    """WSAsyncConn that also dials ws:// (the simulator on loopback); everything else is cryptofeed's."""

    def __init__(self, address: str, conn_id: str, **kwargs: Any) -> None:
        plain = address.startswith("ws://")
        super().__init__("wss://" + address[len("ws://"):] if plain else address, conn_id, **kwargs)
        self.address = address


def simulated_binance_futures(http_base: str, ws_base: str) -> type[BinanceFutures]:
    """BinanceFutures with the simulator's endpoints instead of fapi.binance.com / fstream.binance.com."""
    real_routes = BinanceFutures.rest_endpoints[0].routes
    return type("SimulatedBinanceFutures", (BinanceFutures,), {
        "websocket_endpoints": [WebsocketEndpoint(ws_base, options={"compression": None})],
        "rest_endpoints": [RestEndpoint(http_base, routes=real_routes)],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", required=True, help="the simulator's Binance REST base (…/binance)")
    parser.add_argument("--ws", required=True, help="the simulator's Binance WebSocket base (ws://…/binance)")
    parser.add_argument("--amqp", required=True, help="broker as cryptofeed's backend takes it: user:pass@host:port/")
    parser.add_argument("--exchange", required=True, help="topic exchange the backend publishes to")
    parser.add_argument("--symbols", required=True, help="venue ids, comma-separated (BTCUSDT,ETHUSDT)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="event loop (cryptofeed's default: uvloop)")
    parser.add_argument("--log-file", default="feedhandler.log", help="cryptofeed's log file")
    args = parser.parse_args()

    cryptofeed.feed.WSAsyncConn = PlainWebSocketConn  # type: ignore[misc]
    feed_class = simulated_binance_futures(args.http, args.ws)
    by_venue_id = {venue_id: symbol for symbol, venue_id in feed_class.symbol_mapping().items()}
    unknown = [venue_id for venue_id in args.symbols.split(",") if venue_id not in by_venue_id]
    if unknown:
        raise SystemExit(f"cryptofeed_peer: the simulator does not list {', '.join(unknown)}")
    handler = FeedHandler(config={"uvloop": args.loop == "uvloop", "log": {"filename": args.log_file,
                                                                            "level": "WARNING"}})
    asyncio.set_event_loop(asyncio.new_event_loop())  # uvloop 0.23: run() no longer makes one
    backend = TickerRabbit(host=args.amqp, exchange_mode=True, exchange_name=args.exchange, routing_key=ROUTING_KEY)
    handler.add_feed(feed_class(symbols=[by_venue_id[venue_id] for venue_id in args.symbols.split(",")],
                                channels=[TICKER], callbacks={TICKER: backend}))
    handler.run()


if __name__ == "__main__":
    main()
