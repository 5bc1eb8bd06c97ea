"""The instruments every simulated venue lists: one table, so venues agree on coins and prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property


@dataclass(frozen=True)
class Instrument:
    """A USDT-margined linear perpetual as the simulator models it.

    `coin` is the underlying asset and `multiplier` how many coins one unit of the venue's base is:
    1000PEPE has coin PEPE and multiplier 1000, so its price is the price of 1000 PEPE.
    """

    coin: str
    start_price: str
    tick_size: str
    qty_step: str
    lot_size: int = 1
    """Typical resting size of one book level, in qty steps."""
    multiplier: int = 1
    funding_interval_hours: int = 8

    @property
    def base(self) -> str:
        return f"{self.multiplier}{self.coin}" if self.multiplier != 1 else self.coin

    @property
    def venue_id(self) -> str:
        """The venue's market id, e.g. BTCUSDT (both Binance and Bybit use this form)."""
        return f"{self.base}USDT"

    @property
    def unified_symbol(self) -> str:
        """ccxt's unified symbol, e.g. BTC/USDT:USDT."""
        return f"{self.base}/USDT:USDT"

    @cached_property
    def price_decimals(self) -> int:
        return _decimals(self.tick_size)

    @cached_property
    def qty_decimals(self) -> int:
        return _decimals(self.qty_step)


def _decimals(step: str) -> int:
    exponent = Decimal(step).normalize().as_tuple().exponent
    return max(0, -int(exponent))


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("BTC", "97000.0", "0.1", "0.001", lot_size=400),
    Instrument("ETH", "3400.00", "0.01", "0.001", lot_size=3000),
    Instrument("SOL", "190.000", "0.001", "0.01", lot_size=2000),
    Instrument("XRP", "2.2000", "0.0001", "0.1", lot_size=5000),
    Instrument("DOGE", "0.320000", "0.000001", "1", lot_size=20000),
    Instrument("ADA", "0.95000", "0.00001", "1", lot_size=8000),
    Instrument("LINK", "22.500", "0.001", "0.01", lot_size=5000),
    Instrument("PEPE", "0.0185000", "0.0000001", "1", lot_size=50000, multiplier=1000, funding_interval_hours=4),
    Instrument("BNB", "690.00", "0.01", "0.01", lot_size=500),
    Instrument("AVAX", "38.000", "0.001", "0.1", lot_size=3000),
    Instrument("DOT", "7.500", "0.001", "0.1", lot_size=6000),
    Instrument("LTC", "105.00", "0.01", "0.001", lot_size=20000),
    Instrument("BCH", "450.00", "0.01", "0.001", lot_size=5000),
    Instrument("TRX", "0.25000", "0.00001", "1", lot_size=30000),
    Instrument("NEAR", "5.2000", "0.0001", "0.1", lot_size=4000),
    Instrument("APT", "9.5000", "0.0001", "0.01", lot_size=20000),
    Instrument("ARB", "0.80000", "0.00001", "0.1", lot_size=30000),
    Instrument("OP", "1.9000", "0.0001", "0.1", lot_size=20000),
    Instrument("SUI", "4.2000", "0.0001", "0.1", lot_size=20000),
    Instrument("FIL", "5.500", "0.001", "0.1", lot_size=5000),
    Instrument("ATOM", "6.800", "0.001", "0.01", lot_size=30000),
    Instrument("SHIB", "0.022000", "0.000001", "1", lot_size=80000, multiplier=1000),
    Instrument("WIF", "2.1000", "0.0001", "0.1", lot_size=10000, funding_interval_hours=4),
    Instrument("UNI", "13.500", "0.001", "0.1", lot_size=3000),
    Instrument("TIA", "5.0000", "0.0001", "0.1", lot_size=5000, funding_interval_hours=1),
)

SPOT_MIN_TICK = Decimal("0.00000001")


def spot_instrument(instrument: Instrument) -> Instrument:
    """The spot pair of a perpetual's coin. Venues list bundles (1000PEPE) only on futures: the spot pair
    trades single coins (PEPEUSDT), so price, tick and lot are divided out of the bundle."""
    if instrument.multiplier == 1:
        return instrument
    multiplier = Decimal(instrument.multiplier)
    return Instrument(
        instrument.coin,
        f"{Decimal(instrument.start_price) / multiplier:f}",
        f"{max(Decimal(instrument.tick_size) / multiplier, SPOT_MIN_TICK):f}",
        instrument.qty_step,
        lot_size=instrument.lot_size * instrument.multiplier,
    )


BY_BASE: dict[str, Instrument] = {instrument.base: instrument for instrument in INSTRUMENTS}
