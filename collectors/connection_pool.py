"""Several connections to one venue, so no connection carries more subscriptions than the venue allows.

ccxt.pro keeps one socket per URL per exchange instance (Binance aside, which spreads over sockets by itself), and
most venues cap what one socket may carry: MEXC spot 30 subscriptions, KuCoin 400 topics, Bybit 21,000 characters
of arguments, Bitget 50 channels advised. Batching the subscribe requests does not help: they all land on the same
socket. So the pool holds extra ccxt instances of the same venue, each its own socket per URL, made cheaply: they
share the first instance's loaded markets (`set_markets_from_exchange`), no second market load.

With a cap, streams never use the first instance: it keeps the REST work (market list, funding polls), whose
requests would otherwise queue in ccxt's per-instance throttle ahead of the REST book snapshots a stream needs.

The pool also plans: each symbol costs the venue's `subscription_cost` per stream, each connection holds at most
`connection_budget`, and new symbols fill the connections that have room before a new one is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collectors.venues import StreamSpec, Venue


class BudgetExceeded(ValueError):
    """One symbol alone costs more than a whole connection may carry."""


class ConnectionPool:
    def __init__(self, venue: Venue, first: Any, make: Callable[[], Any]) -> None:
        self.venue = venue
        self.exchanges: list[Any] = [first]
        self._first_stream = 1 if venue.connection_budget is not None else 0
        self._make = make
        self.load: list[int] = [0]
        """Budget used on each connection, in `subscription_cost` units."""
        self.placement: dict[str, int] = {}
        """symbol -> index of the connection (exchange) that carries it."""
        self._freed: dict[str, int] = {}
        """symbol -> budget its stop frees (what it can unsubscribe; the venue keeps sending the rest)."""

    @property
    def budget(self) -> int | None:
        return self.venue.connection_budget

    def cost(self, specs: list[StreamSpec], market: dict[str, Any], releasable_only: bool = False) -> int:
        return sum(
            self.venue.subscription_cost(spec, market) for spec in specs if spec.unwatch_each or not releasable_only
        )

    def place(self, symbols: list[str], specs: list[StreamSpec], markets: dict[str, Any]) -> dict[int, list[str]]:
        """Assign new symbols to connections within the budget; returns connection index -> its new symbols."""
        placed: dict[int, list[str]] = {}
        budget = self.budget
        for symbol in symbols:
            index = 0
            if budget is not None:
                cost = self.cost(specs, markets[symbol])
                if cost > budget:
                    raise BudgetExceeded(f"{symbol} needs {cost} of a connection's {budget}")
                index = next((i for i, used in enumerate(self.load) if used + cost <= budget), len(self.load))
                if index == len(self.load):
                    self.load.append(0)
                self.load[index] += cost
                self._freed[symbol] = self.cost(specs, markets[symbol], releasable_only=True)
            self.placement[symbol] = index
            placed.setdefault(index, []).append(symbol)
        return placed

    def exchange(self, index: int) -> Any:
        """The ccxt instance of connection `index`, made on first use with the first instance's markets."""
        index += self._first_stream
        while len(self.exchanges) <= index:
            extra = self._make()
            extra.set_markets_from_exchange(self.exchanges[0])
            extra.open()  # binds it to the running loop, as load_markets does for the first instance
            self.exchanges.append(extra)
        return self.exchanges[index]

    def share_markets(self) -> None:
        """The first instance read the market list again (rediscovery): the others take the new one, so a symbol
        they stream resolves as the venue now lists it."""
        for extra in self.exchanges[1:]:
            extra.set_markets_from_exchange(self.exchanges[0])

    def release(self, symbol: str) -> None:
        """`symbol` stopped: what it unsubscribed frees its connection's budget (not what the venue keeps sending).
        Works from what was placed, so a symbol the venue has since delisted (gone from its markets) frees it too."""
        index = self.placement.pop(symbol, None)
        freed = self._freed.pop(symbol, 0)
        if index is not None and self.budget is not None:
            self.load[index] = max(0, self.load[index] - freed)

    @property
    def connections(self) -> int:
        """Instances that stream (each its own socket per URL)."""
        return max(1, len(self.exchanges) - self._first_stream)

    @property
    def frames_received(self) -> int:
        return sum(exchange.frames_received for exchange in self.exchanges)

    async def close(self) -> None:
        for exchange in self.exchanges[1:]:
            await exchange.close()
        del self.exchanges[1:]
