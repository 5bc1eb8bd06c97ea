"""What a venue module declares: its ccxt class, the streams it runs and how each feeds the state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from collectors.market_state import MarketState
from models.futures_data import split_multiplier


@dataclass(frozen=True)
class StreamSpec:
    """One ccxt.pro subscription kind, e.g. Binance bookTicker for a batch of symbols."""

    name: str
    message_hash_prefix: str
    """ccxt resolves each parsed update under prefix + unified symbol, e.g. 'orderbook::BTC/USDT:USDT'."""
    watch: Callable[[Any, list[str]], Awaitable[Any]]
    """Subscribes the symbols; returns after the first update."""
    apply: Callable[[MarketState, Any], bool]
    """Merge ccxt's parsed structure into the state; True when the state is publishable."""
    unwatch: Callable[[Any, list[str]], Awaitable[Any]]
    """Unsubscribes the symbols."""
    unwatch_each: bool = False
    """The venue can unsubscribe single symbols of a batch; otherwise only the batch as subscribed."""
    max_symbols: int = 200
    """Symbols per subscription (per ccxt call / connection), within the venue's limits."""
    message_hash: Callable[[Any, str], str] | None = None
    """(exchange, symbol) -> the hash, for venues where ccxt resolves under something other than
    prefix + symbol (e.g. the venue's channel name)."""
    extra_hashes: Callable[[Any, str], list[str]] | None = None
    """(exchange, symbol) -> further hashes whose updates feed the same state through this stream (e.g.
    channels subscribed alongside the main one)."""
    carries_book: bool = False
    """The stream delivers the symbol's order book. When it breaks (a lost connection, a resubscribe, a gap)
    the state drops its book, so messages carry none until the stream delivers one again."""
    check: SequenceCheck | None = None
    """Looks at each book update before it is applied, for a gap ccxt tolerates; a returned reason means the
    stream can no longer be trusted: the connection is redialed and its books resync."""
    topics_per_symbol: int = 1
    """Subscriptions the venue counts per symbol of this stream (channels riding on it count too)."""

    def hash_for(self, exchange: Any, symbol: str) -> str:
        if self.message_hash is not None:
            return self.message_hash(exchange, symbol)
        return self.message_hash_prefix + symbol

    def hashes_for(self, exchange: Any, symbol: str) -> list[str]:
        """Every hash routed to the symbol's state: the main one first."""
        extra = self.extra_hashes(exchange, symbol) if self.extra_hashes is not None else []
        return [self.hash_for(exchange, symbol), *extra]


class SequenceCheck(ABC):
    """Continuity of an incremental book that ccxt doesn't verify, per symbol: each update must start right after
    the last one (a dropped update skips numbers; a late one goes back). The first update after a (re)subscribe,
    a snapshot, only says where the sequence stands; so does any snapshot the venue sends mid-stream."""

    ccxt_skips_stale: ClassVar[bool] = False
    """ccxt itself skips an update older than its book (leaving the book as it was): such an update, one that ends
    at or before where the sequence stands, is harmless and not a gap. It is common right after a snapshot, when
    the REST snapshot is newer than diffs still in flight, and more so on a busy host."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def restart(self, symbol: str) -> None:
        """The symbol resubscribes: its next update is a fresh start."""
        self._last.pop(symbol, None)

    def __call__(self, state: MarketState, book: Any, frame: Any) -> str | None:
        """`book`: ccxt's book for the symbol after the update; `frame`: the last frame ccxt's book handler saw
        (this update's, except for a book ccxt completed from a REST snapshot)."""
        symbol = state.symbol
        previous = self._last.get(symbol)
        if previous is None:
            position = self.position(book, frame)
            if position is not None:
                self._last[symbol] = position
            return None
        first, last = self.span(book, frame)
        if self.ccxt_skips_stale and last is not None and last <= previous:
            return None
        if last is not None:
            self._last[symbol] = last
        if first is None or first == previous + 1:
            return None
        return f"update {first} after {previous}" if first != previous else f"update {first} again"

    @abstractmethod
    def span(self, book: Any, frame: Any) -> tuple[int | None, int | None]:
        """(first, last) sequence number of the update just applied; first is None for a snapshot."""

    def position(self, book: Any, frame: Any) -> int | None:
        """Where the sequence stands after the first book of a subscription (a snapshot)."""
        return self.span(book, frame)[1]


class NonceSequenceCheck(SequenceCheck):
    """ccxt's book `nonce` is the sequence number of the last update applied, one up per update (KuCoin's level2
    `sequence`, MEXC's contract `version`). ccxt skips an update older than its book without touching the nonce,
    which shows up here as the same number again: harmless, not a gap."""

    ccxt_skips_stale = True

    def span(self, book: Any, frame: Any) -> tuple[int | None, int | None]:
        nonce = book.get("nonce")
        return nonce, nonce


@dataclass(frozen=True)
class FundingSnapshot:
    """What a venue doesn't stream, read over REST (funding, mark, index, sometimes 24 h statistics);
    None where the response lacks a field."""

    rate: float | None = None
    next_time: int | None = None
    interval_hours: float | None = None
    mark_price: float | None = None
    index_price: float | None = None
    last: float | None = None
    volume_24h: float | None = None
    """In coins."""
    timestamp: int | None = None

    @property
    def has_prices(self) -> bool:
        return any(
            value is not None
            for value in (self.rate, self.next_time, self.mark_price, self.index_price, self.last, self.volume_24h)
        )


class Venue(ABC):
    """One source: a venue's futures (linear USDT perpetuals) or its spot market."""

    name: ClassVar[str]
    """Config name, also the routing key's middle part."""
    market: ClassVar[Literal["futures", "spot"]] = "futures"
    ccxt_id: ClassVar[str]
    ccxt_defaults: ClassVar[dict[str, Any]] = {}
    """Constructor config the collector needs; the user's `ccxt` block is merged over it."""
    sizes_in_contracts: ClassVar[bool] = True
    """ccxt reports this venue's book and quote sizes in contracts; they are multiplied by the
    market's contractSize. False where ccxt already converts them to coins."""

    connection_budget: ClassVar[int | None] = None
    """What one connection may carry, in the units of `subscription_cost` (topics, or characters on Bybit), within
    the venue's per-connection cap. The collector opens as many connections as the wanted symbols need. None: one
    connection carries everything, or ccxt spreads the subscriptions over sockets itself (Binance)."""

    def subscription_cost(self, spec: StreamSpec, market: dict[str, Any]) -> int:
        """What subscribing one symbol (`market`) to `spec` takes from `connection_budget`."""
        return spec.topics_per_symbol

    def refusal(self, message: Any) -> str | None:
        """The venue's own words when `message` (a decoded frame) refuses a subscription, else None."""
        return None

    @property
    def source_id(self) -> str:
        """binance, binance.spot, ...: the name in logs, statistics and control replies."""
        return self.name if self.market == "futures" else f"{self.name}.{self.market}"

    def symbol_for(self, symbol: str) -> str:
        """This source's symbol for a configured one. Spot trades single coins: BTC/USDT:USDT is BTC/USDT,
        and a bundle perpetual like 1000PEPE/USDT:USDT is PEPE/USDT."""
        if self.market != "spot":
            return symbol
        base, quote = symbol.split(":", 1)[0].split("/", 1)
        coin, _ = split_multiplier(base)
        return f"{coin}/{quote}"

    @abstractmethod
    def streams(self, orderbook_depth: int) -> list[StreamSpec]:
        """The subscriptions that together fill every field of the contract."""

    def funding_interval_hours(self, market: dict[str, Any]) -> float | None:
        """From the loaded market, where the venue's market list carries it."""
        return None

    async def poll_funding(self, exchange: Any, symbols: list[str]) -> dict[str, FundingSnapshot]:
        """Funding data a venue doesn't stream, read over REST every funding_poll_seconds."""
        return {}

    @property
    def polls_funding(self) -> bool:
        return type(self).poll_funding is not Venue.poll_funding


def event_error(message: dict[str, Any]) -> str | None:
    """OKX's and Bitget's refusal: {"event": "error", "code": ..., "msg": ...}."""
    if message.get("event") != "error":
        return None
    return f"{message.get('code')} {message.get('msg')}".strip()


def number(value: Any) -> float | None:
    """A venue's numeric string (or number) as float; None for missing or empty."""
    if value is None or value == "":
        return None
    return float(value)


def integer(value: Any) -> int | None:
    if value is None or value in {"", "0", 0}:
        return None
    return int(value)
