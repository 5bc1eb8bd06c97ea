"""The top of book ccxt holds after every WebSocket frame, seen inside ccxt's own dispatch.

A fault that lives for one frame (a crossed bid the next push takes back) can be gone before a test that
awaits `watch_*()` runs again: when the loop falls behind, ccxt handles every frame already buffered before the
waiting task resumes, and it updates its order book in place. Reading the top right after each frame, while
ccxt's real parsing runs unchanged, sees every state the venue produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

Top = tuple[float, float]


class TopsAfterEachFrame:
    """Records `read()` after each frame every open client of `exchange` handles (subscribe first)."""

    def __init__(self, exchange: Any, read: Callable[[], Top | None]) -> None:
        assert exchange.clients, "subscribe before observing: the WebSocket client must exist"
        self.tops: list[Top] = []
        for client in exchange.clients.values():
            client.on_message_callback = self._observing(client.on_message_callback, read)

    def _observing(self, handle: Callable[[Any, Any], None], read: Callable[[], Top | None]) -> Callable[..., None]:
        def handle_then_read(client: Any, message: Any) -> None:
            handle(client, message)
            top = read()
            if top is not None:
                self.tops.append(top)

        return handle_then_read

    def crossed_then_healed(self) -> bool:
        crossed_at = next((i for i, (bid, ask) in enumerate(self.tops) if bid > ask), None)
        return crossed_at is not None and any(bid < ask for bid, ask in self.tops[crossed_at + 1:])

    async def wait_crossed_then_healed(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not self.crossed_then_healed():
                await asyncio.sleep(0.01)


async def observe_order_book(exchange: Any, symbol: str, limit: int | None = None) -> TopsAfterEachFrame:
    """Subscribe with watch_order_book, then record the book's top after each frame."""
    await exchange.watch_order_book(symbol, limit)
    return TopsAfterEachFrame(exchange, lambda: _book_top(exchange.orderbooks.get(symbol)))


async def observe_quotes(exchange: Any, symbol: str, via: Literal["ticker", "bids_asks"]) -> TopsAfterEachFrame:
    """Subscribe with watch_ticker or watch_bids_asks, then record the quote after each frame (from the
    cache that call fills: `tickers` or `bidsasks`)."""
    if via == "ticker":
        await exchange.watch_ticker(symbol)
        return TopsAfterEachFrame(exchange, lambda: _quote_top(exchange.tickers.get(symbol)))
    await exchange.watch_bids_asks([symbol])
    return TopsAfterEachFrame(exchange, lambda: _quote_top(exchange.bidsasks.get(symbol)))


async def past_the_snapshot(exchange: Any, symbol: str, timeout: float = 15) -> None:
    """Until the client applied a diff on top of its REST snapshot. Binance's diffs carry update ids, and a client
    drops one that the snapshot already covers (`u` <= lastUpdateId): a diff still in flight when the snapshot
    came. A fault the venue puts into that diff never reaches the book; set faults after this returns."""
    snapshot = exchange.orderbooks[symbol]["nonce"]
    async with asyncio.timeout(timeout):
        while exchange.orderbooks[symbol]["nonce"] == snapshot:
            await asyncio.sleep(0.01)


def _book_top(book: Any) -> Top | None:
    if book is None or not book["bids"] or not book["asks"]:
        return None
    return book["bids"][0][0], book["asks"][0][0]


def _quote_top(quote: Any) -> Top | None:
    if quote is None or quote.get("bid") is None or quote.get("ask") is None:
        return None
    return quote["bid"], quote["ask"]
