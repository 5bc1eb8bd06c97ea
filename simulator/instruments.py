"""The instruments every simulated venue lists: one table, so venues agree on coins and prices."""

from __future__ import annotations

import math
import random
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


# --- a realistic universe (python -m simulator --universe-size N) ---------------------------------------------------

UNIVERSE_COINS: tuple[str, ...] = (
    "TON", "HBAR", "ICP", "ETC", "XLM", "RENDER", "IMX", "INJ", "STX", "SEI", "RUNE", "GRT", "AAVE", "MKR", "LDO",
    "ALGO", "FTM", "EGLD", "SAND", "MANA", "AXS", "THETA", "FLOW", "CHZ", "KAVA", "GALA", "APE", "CRV", "SNX", "DYDX",
    "COMP", "ENS", "1INCH", "ZEC", "DASH", "XMR", "EOS", "NEO", "IOTA", "QTUM", "ZIL", "ONT", "ICX", "WAVES", "KSM",
    "ENJ", "BAT", "ZRX", "YFI", "SUSHI", "UMA", "BAL", "RSR", "STORJ", "ANKR", "CELO", "SKL", "OCEAN", "BAND", "RLC",
    "CTSI", "LRC", "COTI", "OGN", "MASK", "CELR", "HOT", "ONE", "IOST", "DENT", "MTL", "NKN", "ARPA", "CHR", "ALICE",
    "DUSK", "C98", "ATA", "GTC", "AUDIO", "ROSE", "FLM", "REEF", "LINA", "PEOPLE", "JASMY", "WOO", "GMT", "API3",
    "OP", "STG", "SPELL", "LUNA", "LDO", "MAGIC", "HOOK", "HIGH", "ASTR", "AGLD", "GMX", "CFX", "SSV", "ID", "RDNT",
    "EDU", "SUI", "CYBER", "ARKM", "WLD", "PENDLE", "BLUR", "MAV", "ORDI", "TIA", "MEME", "PYTH", "JTO", "JUP",
    "STRK", "DYM", "ALT", "MANTA", "PIXEL", "PORTAL", "AEVO", "ETHFI", "ENA", "W", "TNSR", "SAGA", "OMNI", "REZ",
    "BB", "NOT", "IO", "ZK", "ZRO", "LISTA", "BANANA", "RENDER", "POL", "NEIRO", "EIGEN", "CATI", "HMSTR", "SCR",
    "GOAT", "MOODENG", "PNUT", "ACT", "GRASS", "DRIFT", "ME", "MOVE", "VIRTUAL", "PENGU", "USUAL", "AIXBT", "BIO",
    "S", "TRUMP", "LAYER", "IP", "KAITO", "BERA", "MUBARAK", "PARTI", "INIT", "WCT", "HYPER", "KMNO", "SIGN", "SOPH",
    "HUMA", "SXT", "NXPC", "AWE", "HOME", "RESOLV", "SAHARA", "NEWT", "ERA", "TREE", "PROVE", "WLFI", "ONDO", "TAO",
    "FET", "AR", "KAS", "BSV", "MINA", "XTZ", "VET", "ORCA", "RAY", "JOE", "GNO", "TRB", "LPT", "BICO", "POLYX",
    "XVS", "CAKE", "TWT", "SFP", "ALPHA", "BNT", "KNC", "MOVR", "GLMR", "ACH", "LQTY", "PERP", "TRU", "SUPER", "COMBO",
    "MAVIA", "ARK", "VANRY", "NFP", "AI", "XAI", "ACE", "MYRO", "WIF", "BOME", "ZETA", "ONG", "NTRN", "AXL", "METIS",
    "UXLINK", "SUN", "HIFI", "VOXEL", "BADGER", "POWR", "LOKA", "STEEM", "SYN", "MEW", "POPCAT", "BRETT", "MOG",
    "TURBO", "GIGA", "SPX", "FARTCOIN", "AI16Z", "GRIFFAIN", "ZEREBRO", "COOKIE", "SWARMS", "ARC", "ALCH", "ANIME",
    "VINE", "TST", "BROCCOLI", "NIL", "PAXG", "XAUT", "MORPHO", "USTC", "CKB", "DEGEN", "SLERF", "BEAMX", "RIF", "T",
    "ZEN", "SCRT", "OXT", "NMR", "REQ", "LSK", "ARDR", "SC", "DGB", "RVN", "XEM", "XVG", "ZRC", "HNT", "IOTX", "MDT",
    "AMB", "GAS", "QNT", "FXS", "CVX", "SAFE", "AUCTION", "FIDA", "PHB", "AERGO", "ILV", "YGG", "PYR", "DAR", "CVC",
    "G", "ETHW", "LUMIA", "SWELL", "COW", "VELODROME", "AVAAI", "KOMA", "FORM", "RED", "SHELL", "BABY", "PROMPT",
    "BLAST", "DOGS", "ZEUS", "GHST", "DODO", "HFT", "LEVER", "AGIX", "ORBS", "STMX", "BEL", "LIT", "UNFI", "KEY",
)
"""Coins listed as perpetuals on most of the eight venues, after the 25 of INSTRUMENTS (duplicates are skipped)."""

THOUSAND_BUNDLES: tuple[str, ...] = ("BONK", "FLOKI", "LUNC", "XEC", "SATS", "RATS", "CAT", "CHEEMS", "WHY", "X")
"""Coins so cheap that futures venues list 1000 of them as one unit (1000BONKUSDT); OKX and Gate list the coin."""

VENUE_DROP_SHARE = 0.03
"""Share of the universe beyond the 25 majors that a venue does not list (each venue a different few)."""


def universe(size: int, seed: int = 7) -> tuple[Instrument, ...]:
    """`size` perpetuals: the 25 of INSTRUMENTS first (so small universes keep today's list), then realistic coins
    and 1000x bundles with prices, ticks and lot sizes drawn deterministically from `seed`."""
    if size <= len(INSTRUMENTS):
        return INSTRUMENTS[:size]
    rng = random.Random(f"universe:{seed}")
    names = _universe_names()
    wanted = size - len(INSTRUMENTS)
    if wanted > len(names):
        raise ValueError(f"a universe holds at most {MAX_UNIVERSE} instruments, not {size}")
    generated = [_generated(coin, multiplier, rng) for coin, multiplier in names[:wanted]]
    return (*INSTRUMENTS, *generated)


def _universe_names() -> list[tuple[str, int]]:
    """(coin, multiplier) beyond the majors, in listing order: a 1000x bundle every so often, as on the venues."""
    taken = {instrument.coin for instrument in INSTRUMENTS}
    names: list[tuple[str, int]] = []
    bundles = iter(THOUSAND_BUNDLES)
    for index, coin in enumerate(UNIVERSE_COINS):
        if index % 25 == 12:
            bundle = next(bundles, None)
            if bundle is not None and bundle not in taken:
                taken.add(bundle)
                names.append((bundle, 1000))
        if coin not in taken:
            taken.add(coin)
            names.append((coin, 1))
    names.extend((coin, 1000) for coin in bundles if coin not in taken)
    return names


MAX_UNIVERSE = len(INSTRUMENTS) + len(_universe_names())


def _generated(coin: str, multiplier: int, rng: random.Random) -> Instrument:
    """Price log-uniform over $0.01..$60 (a bundle's unit: 1000 coins of $0.00001..$0.06), five significant digits
    of tick, a quantity step worth about a dollar cent to ten dollars."""
    price = 10 ** rng.uniform(-2, 1.8)
    exponent = math.floor(math.log10(price))
    tick = Decimal(1).scaleb(exponent - 4)
    start = Decimal(str(price)).quantize(tick)
    qty_exponent = max(-3, min(2, -exponent))
    qty_step = Decimal(1).scaleb(qty_exponent - 1) if qty_exponent > 0 else Decimal(1).scaleb(qty_exponent)
    return Instrument(
        coin, f"{start:f}", f"{tick:f}", f"{qty_step.normalize():f}" if qty_step < 1 else str(int(qty_step)),
        lot_size=rng.choice((2000, 5000, 10000, 20000)), multiplier=multiplier,
        funding_interval_hours=rng.choice((8, 8, 8, 4, 4, 1)),
    )


def venue_listing(instruments: tuple[Instrument, ...], venue: str, seed: int = 7) -> tuple[Instrument, ...]:
    """What one venue lists of a universe: every major, and all but a venue-specific few of the rest. A universe no
    larger than INSTRUMENTS is listed whole (today's simulator)."""
    if len(instruments) <= len(INSTRUMENTS):
        return instruments
    rng = random.Random(f"listing:{venue}:{seed}")
    majors = instruments[: len(INSTRUMENTS)]
    rest = [instrument for instrument in instruments[len(INSTRUMENTS):] if rng.random() >= VENUE_DROP_SHARE]
    return (*majors, *rest)
