"""Keeps one ccxt.pro subscription alive: subscribe, watch for loss or silence, back off, resubscribe.

ccxt.pro never reconnects by itself: when a socket fails, its pending futures are rejected and the
client is dropped, and only a new `watch_*` call dials again. A socket can also stay open and go
quiet (ccxt issues #23932, #25092), which only a watchdog on the age of the last update notices.

A supervisor owns one batch of symbols for one stream kind. Symbols can leave the batch while it
runs (`detach`); they stop being processed at once and are unsubscribed where the venue allows it.

A book stream's states hold ccxt's book by reference, and ccxt edits it in place: it applies a diff before
finding out it doesn't chain, and keeps the old levels across a reconnect until the new snapshot arrives.
So the states drop their book whenever the stream stops being trusted (its connection ends, a gap is found,
it resubscribes) and take one again only from the stream's own route: messages carry `orderbook: null`
in between.

A venue can refuse a subscription (a per-connection cap: KuCoin's `exceed max subscription count limitation of 400
per session`, MEXC spot's `Not Subscribed successfully! ... Blocked!`). The venue module reads its refusal frame;
the supervisor whose subscription was pending on that connection logs it once as an ERROR with the venue's words,
leaves the shared connection alone (the other streams on it are healthy) and tries again only after a long pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import ccxt
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    wait_chain,
    wait_fixed,
)

from collectors.ccxt_bridge import (
    SUBSCRIBER,
    DesyncHandler,
    client_is_alive,
    fail_client,
    on_connection_end,
    rest_requests_waiting,
)
from collectors.market_state import MarketState
from collectors.venues.base import StreamSpec
from models.config import CollectionConfig
from utils.statistics import ExchangeStats

HEALTHY_SESSION_SECONDS = 30.0
"""A session that lasted this long resets the backoff; shorter ones back off before redialing."""
UNWATCH_TIMEOUT_SECONDS = 10.0
REFUSAL_RETRY_SECONDS = 300.0
"""After a venue refused a subscription, the batch asks again only this much later: refusals (a cap) rarely
clear quickly, and asking in a tight loop can get an IP banned."""


class StreamLost(Exception):
    """The stream delivered data, then its connection closed or went silent."""


class SubscribeFailed(Exception):
    """Subscribing did not produce data."""


class SubscribeRefused(Exception):
    """The venue answered the subscribe request with a refusal (its own words are the message)."""


class StreamSupervisor:
    def __init__(
        self,
        exchange: Any,
        spec: StreamSpec,
        name: str,
        states: list[MarketState],
        submit: Callable[[MarketState], None],
        stats: ExchangeStats,
        collection: CollectionConfig,
    ) -> None:
        self.exchange = exchange
        self.spec = spec
        self.name = name
        self.states = {state.symbol: state for state in states}
        self.submit = submit
        self.stats = stats
        self.collection = collection
        self.log = logging.getLogger(stats.exchange)
        self.clients: set[Any] = set()
        self.last_data = 0.0
        self.subscribed: list[str] = []
        """The symbols of the current session's watch call (ccxt keys its subscription by them)."""
        self.refusals = 0

    async def run(self) -> None:
        for state in self.states.values():
            self._register(state)
        try:
            while self.states:
                started = time.monotonic()
                try:
                    async for attempt in self._retrying():
                        with attempt:
                            await self._session()
                except SubscribeRefused as refused:
                    self._on_refused(str(refused))
                    await asyncio.sleep(REFUSAL_RETRY_SECONDS)
                except StreamLost as lost:
                    self.stats.streams_up[self.name] = False
                    self.stats.reconnects += 1
                    self.log.warning("%s stream lost (%s); resubscribing", self.name, lost)
                    if time.monotonic() - started < HEALTHY_SESSION_SECONDS:
                        await asyncio.sleep(self.collection.retry_delays[0])
        finally:
            for symbol in self.states:
                self._unroute(symbol)
            self.stats.streams_up.pop(self.name, None)

    def _register(self, state: MarketState) -> None:
        route, on_desync = self._route(state), self._on_desync(state.symbol)
        for message_hash in self.spec.hashes_for(self.exchange, state.symbol):
            self.exchange.routes[message_hash] = route
            self.exchange.desyncs[message_hash] = on_desync

    def attach(self, state: MarketState) -> None:
        """Take back a symbol this batch still streams (it was detached, and the venue can only unsubscribe the
        whole batch): its updates feed `state` again, from this batch's connection only."""
        self.states[state.symbol] = state
        if self.spec.check is not None:
            self.spec.check.restart(state.symbol)
        self._register(state)

    def _on_refused(self, reason: str) -> None:
        self.refusals += 1
        self.stats.errors += 1
        self.stats.streams_up[self.name] = False
        if self.refusals == 1:
            self.log.error("%s: the venue refused the subscription: %s; the connection stays up for its other "
                           "streams; asking again in %g s", self.name, reason, REFUSAL_RETRY_SECONDS)
        else:
            self.log.warning("%s: refused again (%d times): %s; asking again in %g s", self.name, self.refusals,
                             reason, REFUSAL_RETRY_SECONDS)

    def detach(self, symbol: str) -> bool:
        """Stop processing `symbol` now; True when the batch has no symbol left."""
        if self.states.pop(symbol, None) is not None:
            self._unroute(symbol)
        return not self.states

    def _unroute(self, symbol: str) -> None:
        for message_hash in self.spec.hashes_for(self.exchange, symbol):
            self.exchange.routes.pop(message_hash, None)
            self.exchange.desyncs.pop(message_hash, None)

    async def unwatch(self, symbols: list[str]) -> None:
        """Best effort: tell the venue to stop sending `symbols` (failures only cost bandwidth)."""
        if not symbols:
            return
        try:
            async with asyncio.timeout(UNWATCH_TIMEOUT_SECONDS):
                await self.spec.unwatch(self.exchange, symbols)
        except Exception as error:
            self.log.debug("%s: unsubscribing %s failed: %s", self.name, ", ".join(symbols), error)
        else:
            self.log.info("%s unsubscribed %s", self.name, ", ".join(symbols))

    def _retrying(self) -> AsyncRetrying:
        delays = self.collection.retry_delays
        return AsyncRetrying(
            wait=wait_chain(*(wait_fixed(delay) for delay in delays)),
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type((StreamLost, SubscribeRefused)),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _log_retry(self, retry_state: RetryCallState) -> None:
        self.stats.errors += 1
        self.stats.streams_up[self.name] = False
        error = retry_state.outcome.exception() if retry_state.outcome else None
        attempt = retry_state.attempt_number
        delay = retry_state.upcoming_sleep
        level = logging.ERROR if attempt >= self.collection.retry_attempts else logging.WARNING
        self.log.log(level, "%s subscribe attempt %d failed: %s; retrying in %.1f s",
                     self.name, attempt, _describe(error), delay)

    async def _session(self) -> None:
        stale_after = self.collection.stale_after_seconds
        self.clients.clear()
        self.last_data = 0.0
        self.subscribed = list(self.states)
        self._distrust_books()
        if not self.subscribed:
            return
        await self._subscribe(stale_after)
        self.stats.streams_up[self.name] = True
        self.log.info("%s streaming %s", self.name, ", ".join(self.subscribed))
        check_every = min(1.0, stale_after / 4)
        while self.states:
            await asyncio.sleep(check_every)
            if not self.clients or not all(client_is_alive(self.exchange, client) for client in self.clients):
                raise StreamLost("connection closed")
            silent_for = time.monotonic() - self.last_data
            if silent_for > stale_after:
                self._tear_down(f"silent for {silent_for:.1f} s")
                raise StreamLost(f"silent for {silent_for:.1f} s; redialing")

    async def _subscribe(self, within: float) -> None:
        """Subscribe; returns once every symbol delivered. Raises SubscribeRefused when the venue refuses the
        request (nothing is torn down: the connection serves other streams), SubscribeFailed when nothing came within
        `within` seconds of the last request ccxt sent for this batch (its throttle can hold requests back), or of
        the moment the instance's REST queue (book snapshots) drained."""
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[str] = loop.create_future()

        def on_refusal(client: Any, reason: str, owner: str | None) -> None:
            if not refused.done() and owner in (None, self.name):
                refused.set_result(reason)

        known = self._subscription_keys()
        listeners = self.exchange.refusal_listeners
        listeners.add(on_refusal)
        token = SUBSCRIBER.set(self.name)
        try:
            watch = asyncio.ensure_future(self.spec.watch(self.exchange, self.subscribed))
        finally:
            SUBSCRIBER.reset(token)
        started = busy = time.monotonic()
        try:
            while True:
                sent = self.exchange.last_sent.get(self.name, started)
                remaining = max(sent, busy) + within - time.monotonic()
                done, _ = await asyncio.wait({watch, refused}, timeout=max(remaining, 0),
                                             return_when=asyncio.FIRST_COMPLETED)
                if done:
                    break
                if rest_requests_waiting(self.exchange):
                    busy = time.monotonic()  # its REST snapshots are still queued: `within` counts from their end
                elif self.exchange.last_sent.get(self.name, started) == sent:
                    break  # `within` has passed since the last request was sent and the REST queue drained
        finally:
            self.exchange.last_sent.pop(self.name, None)
            listeners.discard(on_refusal)
            if not watch.done():
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watch
        if watch in done:
            watch.result()
            return
        if refused in done:
            # ccxt remembers a subscription as sent and would never send it again: forget what this call added
            self._forget_subscriptions(known)
            raise SubscribeRefused(refused.result())
        self._tear_down(f"no data within {within:g} s of subscribing")
        raise SubscribeFailed(f"no data within {within:g} s of subscribing")

    def _subscription_keys(self) -> dict[str, set[str]]:
        return {url: set(client.subscriptions) for url, client in (self.exchange.clients or {}).items()}

    def _forget_subscriptions(self, known: dict[str, set[str]]) -> None:
        for url, client in (self.exchange.clients or {}).items():
            for key in set(client.subscriptions) - known.get(url, set()):
                client.subscriptions.pop(key, None)

    def _tear_down(self, reason: str) -> None:
        clients = self.clients or self._clients_by_subscription()
        for client in clients:
            fail_client(client, ccxt.NetworkError(f"{self.exchange.id} {self.name}: {reason}"))

    def _clients_by_subscription(self) -> set[Any]:
        hashes = {self.spec.hash_for(self.exchange, symbol) for symbol in self.subscribed}
        return {
            client
            for client in (self.exchange.clients or {}).values()
            if hashes.intersection(client.subscriptions) or hashes.intersection(client.futures)
        }

    def _route(self, state: MarketState) -> Callable[[Any, Any], None]:
        exchange, apply, submit, stats, clients = self.exchange, self.spec.apply, self.submit, self.stats, self.clients
        check = self.spec.check

        def route(parsed: Any, client: Any) -> None:
            if client.error is not None:  # a connection being torn down: what it still hands over isn't trusted
                return
            if check is not None and (reason := check(state, parsed, exchange.book_frame)) is not None:
                self._out_of_sync(state.symbol, reason, client)
                return
            if client not in clients:
                self._adopt(client)
            self.last_data = time.monotonic()
            state.mark_received(exchange.receipt_ms, exchange.receipt_ns)
            if apply(state, parsed):
                stats.updates += 1
                stats.last_update_ms = exchange.receipt_ms
                stats.venue_lag_ms.record(exchange.receipt_ms - state.timestamp)
                submit(state)

        return route

    def _adopt(self, client: Any) -> None:
        """A connection delivered this stream's data: when it ends, the books it fed are no longer the venue's."""
        self.clients.add(client)
        on_connection_end(client, self._on_connection_end)

    def _on_connection_end(self, client: Any) -> None:
        if client in self.clients:  # not a connection an earlier session used
            self._distrust_books()

    def _distrust_books(self) -> None:
        """Until the stream delivers again, its states publish no book and its continuity check starts over."""
        check = self.spec.check
        for symbol, state in self.states.items():
            if self.spec.carries_book:
                state.drop_book()
            if check is not None:
                check.restart(symbol)

    def _on_desync(self, symbol: str) -> DesyncHandler:
        """ccxt dropped `symbol` from a live session (e.g. a sequence gap in its book): redial, as for a
        failed `check`, so the whole batch resubscribes from fresh snapshots. While the first subscribe is
        still pending, the watch call itself raises and the retry covers it."""

        def on_desync(error: BaseException, client: Any) -> None:
            if not self.clients:
                return
            self._out_of_sync(symbol, _describe(error), client)

        return on_desync

    def _out_of_sync(self, symbol: str, reason: str, client: Any) -> None:
        """Redial the connection: every book on it starts again from a fresh snapshot."""
        reason = f"{symbol} out of sync ({reason})"
        self.log.warning("%s %s; redialing", self.name, reason)
        self._distrust_books()
        fail_client(client, ccxt.NetworkError(f"{self.exchange.id} {self.name}: {reason}"))


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error)
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
