"""The one place where the collector reaches into ccxt.pro's streaming internals.

`watch_*` calls return the latest state, folding updates that arrive while nobody awaits, and a
multi-symbol watch returns after each message, re-racing a future per symbol. Awaiting them in a
loop would lose updates and spend more CPU than ccxt's own parsing. Instead, each parsed update is
taken where ccxt hands it to its waiters: `Client.resolve(result, message_hash)`. The collector
calls `watch_*` once to subscribe and registers a route per message hash; every message ccxt
parses then reaches its route exactly once, in arrival order.

The second hook guards the receive loop: an exception in ccxt's message handler (a malformed frame)
would otherwise escape into asyncio and stop the connection's receive loop for good, a silent stall.

The third hook hears ccxt give up on one symbol while its socket stays open: on a sequence gap or a
checksum mismatch ccxt rejects that symbol's waiters, forgets its book, and leaves the symbol dead
until someone calls `watch_*` again, which a collector that subscribed once never would. ccxt's bitget
only rejects after an unsubscribe round trip, with the mismatching diff already applied to the book;
the rejection is made at once instead, so nothing can publish that book in the meantime.

The fifth hook (`handle_message`) hands a venue's refusal of a subscription, read by the venue module, to the
supervisors waiting on a subscription (see stream_supervisor).

`rest_requests_waiting` reads ccxt's REST throttle queue: a book stream's first data waits for its REST
snapshots, which queue behind every other snapshot the instance asked for.

The fourth hook hears a connection end (closed by the venue, failed, torn down), the moment the books it
fed stop being the venue's: ccxt keeps their old levels until a new snapshot arrives.

Continuity checks of our own (venues whose sequence numbers ccxt ignores) see the frame ccxt's order-book
handler was last given (`book_frame`) and, for venues whose deltas ccxt applies through `handle_book_delta`,
the last delta applied to each book (`last_delta`), whether live or replayed after a REST snapshot.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import ccxt
import ccxt.pro

Route = Callable[[Any, Any], None]
"""route(parsed ccxt structure, client) for one message hash."""

BadFrameHandler = Callable[[Any, BaseException], None]
"""handler(raw aiohttp WSMessage or parsed payload, error)."""

DesyncHandler = Callable[[BaseException, Any], None]
"""handler(error, client) for one message hash whose stream ccxt gave up on."""

LossListener = Callable[[Any], None]
"""listener(client) for a connection that ended."""

RefusalReader = Callable[[Any], "str | None"]
"""reader(decoded frame) -> the venue's words when the frame refuses a subscription, else None."""

RefusalListener = Callable[[Any, str, "str | None"], None]
"""listener(client, the venue's words, the subscriber whose request was refused, None when the frame doesn't say)."""

SUBSCRIBER: contextvars.ContextVar[str | None] = contextvars.ContextVar("futures_scan_subscriber", default=None)
"""Who is subscribing in this task (a supervisor's name): requests ccxt sends on its behalf are remembered by id,
so a refusal naming the request id reaches that supervisor only. ccxt sends from a task it spawns, which inherits
the context."""

LAST_DELTA = "futures_scan_last_delta"

log = logging.getLogger("ccxt_bridge")


class StreamingMixin:
    """Mixed into a ccxt.pro exchange class; see `streaming_exchange_class`."""

    routes: dict[str, Route]
    desyncs: dict[str, DesyncHandler]
    on_bad_frame: BadFrameHandler
    frames_received: int
    receipt_ms: int
    receipt_ns: int
    book_frame: Any
    """The frame ccxt's order-book handler was last given."""
    refusal_reader: RefusalReader | None
    refusal_listeners: set[RefusalListener]
    last_sent: dict[str, float]
    """subscriber -> time.monotonic() of the last request ccxt sent for it (a subscribe timeout counts from there:
    ccxt's own throttle can hold requests back for seconds)."""

    def init_streaming(self, on_bad_frame: BadFrameHandler, refusal_reader: RefusalReader | None = None) -> None:
        self.routes = {}
        self.desyncs = {}
        self.on_bad_frame = on_bad_frame
        self.frames_received = 0
        self.receipt_ms = 0
        self.receipt_ns = 0
        self.book_frame = None
        self.refusal_reader = refusal_reader
        self.refusal_listeners = set()
        self.last_sent = {}

    def handle_message(self, client: Any, message: Any) -> Any:
        """A venue's refusal of a subscription goes to the supervisors waiting on one, not to ccxt: ccxt would turn
        it into an unusable frame (KuCoin) or reject every waiter of the connection (Bitget)."""
        reader = self.refusal_reader
        if reader is not None and isinstance(message, dict) and (reason := reader(message)) is not None:
            request_id = message.get("id", message.get("req_id"))
            owner = client.futures_scan_requests.get(str(request_id)) if request_id not in (None, "", 0) else None
            log.debug("%s refused a subscription of %s: %s", self.id, owner, reason)
            for listener in list(self.refusal_listeners):
                listener(client, reason, owner)
            return None
        return super().handle_message(client, message)  # type: ignore[misc]

    def handle_order_book(self, client: Any, message: Any) -> Any:
        self.book_frame = message
        return super().handle_order_book(client, message)  # type: ignore[misc]

    def handle_book_delta(self, orderbook: Any, delta: Any) -> Any:
        """ccxt's gate, kucoin and mexc apply each delta here, live or replayed from the cache after a REST
        snapshot (or skip it when it is older than the book); the book remembers the last one it was given."""
        applied = super().handle_book_delta(orderbook, delta)  # type: ignore[misc]
        setattr(orderbook, LAST_DELTA, delta)
        return applied

    def handle_check_sum_error(self, client: Any, symbol: str, message_hash: str) -> Any:
        """ccxt's bitget spawns this on a checksum mismatch, having applied the diff to the book, and would
        unsubscribe and wait for the venue's answer before rejecting; the collector redials instead, which
        resubscribes from a snapshot. So reject now, and skip the unsubscribe (it would race the redial)."""
        error = ccxt.ChecksumError(f"{self.id} {self.orderbook_checksum_message(symbol)}")  # type: ignore[attr-defined]
        client.reject(error, message_hash)
        return asyncio.sleep(0)

    def client(self, url: str) -> Any:
        client = super().client(url)  # type: ignore[misc]
        if not getattr(client, "futures_scan_hooked", False):
            self._hook(client)
        return client

    def _hook(self, client: Any) -> None:
        routes, desyncs = self.routes, self.desyncs
        ccxt_resolve = client.resolve
        ccxt_reject = client.reject
        ccxt_handle_message = client.handle_message
        ccxt_on_error, ccxt_on_close = client.on_error, client.on_close
        ccxt_send = client.send
        loss_listeners: list[LossListener] = []
        requests: dict[str, str] = {}

        def send(message: Any) -> Any:
            owner = SUBSCRIBER.get()
            if owner is not None:
                self.last_sent[owner] = time.monotonic()
            if owner is not None and isinstance(message, dict):
                request_id = message.get("id", message.get("req_id"))
                if request_id not in (None, ""):
                    if len(requests) > 10_000:
                        requests.clear()
                    requests[str(request_id)] = owner
            return ccxt_send(message)

        def resolve(result: Any, message_hash: str) -> Any:
            route = routes.get(message_hash)
            if route is not None:
                try:
                    route(result, client)
                except Exception as error:  # a bad value in an otherwise parseable frame
                    self.on_bad_frame(result, error)
            return ccxt_resolve(result, message_hash)

        def reject(error: Any, message_hash: str | None = None) -> Any:
            rejected = ccxt_reject(error, message_hash)
            if message_hash is not None and client.error is None and not client.closed() and _desync(error):
                on_desync = desyncs.get(message_hash)
                if on_desync is not None:
                    on_desync(error, client)
            return rejected

        def handle_message(message: Any) -> None:
            self.frames_received += 1
            self.receipt_ms = time.time_ns() // 1_000_000
            self.receipt_ns = time.perf_counter_ns()
            try:
                ccxt_handle_message(message)
            except Exception as error:
                self.on_bad_frame(message, error)

        def ended() -> None:
            listeners = list(loss_listeners)
            loss_listeners.clear()
            for listener in listeners:
                listener(client)

        def on_error(error: Any) -> None:
            ccxt_on_error(error)
            ended()

        def on_close(code: Any) -> None:
            ccxt_on_close(code)
            ended()

        client.resolve = resolve
        client.reject = reject
        client.handle_message = handle_message
        client.on_error = on_error
        client.on_close = on_close
        client.send = send
        client.futures_scan_requests = requests
        client.futures_scan_loss_listeners = loss_listeners
        client.futures_scan_hooked = True


def _desync(error: Any) -> bool:
    """ccxt's sign that one stream's state broke while the connection is fine: InvalidNonce (a sequence
    gap; ChecksumError is one), or a plain Python error a venue's handler caught and turned into a
    rejection. Venue refusals (ExchangeError) and connection errors (NetworkError) are not: the watch
    call or the supervisor's liveness check already sees those."""
    return isinstance(error, ccxt.InvalidNonce) or (
        isinstance(error, Exception) and not isinstance(error, ccxt.BaseError)
    )


@cache
def streaming_exchange_class(ccxt_id: str) -> type:
    """ccxt.pro.<ccxt_id> with the routing hooks mixed in."""
    base = getattr(ccxt.pro, ccxt_id)
    return type(f"Streaming{base.__name__}", (StreamingMixin, base), {})


def create_exchange(
    ccxt_id: str, config: dict[str, Any], on_bad_frame: BadFrameHandler, refusal_reader: RefusalReader | None = None
) -> Any:
    exchange = streaming_exchange_class(ccxt_id)(config)
    exchange.init_streaming(on_bad_frame, refusal_reader)
    return exchange


def client_is_alive(exchange: Any, client: Any) -> bool:
    """The client is still the exchange's connection for its URL and its socket is open."""
    return exchange.clients.get(client.url) is client and not client.closed()


def on_connection_end(client: Any, listener: LossListener) -> None:
    """Call `listener(client)` once, when the connection ends (at once if it already has)."""
    if client.error is not None or client.closed():
        listener(client)
    else:
        client.futures_scan_loss_listeners.append(listener)


def rest_requests_waiting(exchange: Any) -> bool:
    """Requests queue in the instance's REST throttle (e.g. the order-book snapshots of 300 symbols, ten a
    second on Binance): subscriptions that wait for them are slow, not dead."""
    throttler = getattr(exchange, "throttler", None)
    return bool(throttler is not None and throttler.queue)


def last_delta(book: Any) -> Any:
    """The last delta ccxt's `handle_book_delta` was given for this book (None if none yet); see the hook."""
    return getattr(book, LAST_DELTA, None)


def fail_client(client: Any, error: Exception) -> None:
    """Tear a connection down the way a network error would, so ccxt forgets it and redials."""
    if not client.closed() or client.error is None:
        client.on_error(error)
