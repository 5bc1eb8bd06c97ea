"""Which symbols this collector streams when several share one venue: shard K of N.

A symbol belongs to exactly one shard: CRC-32 of its unified name, modulo N. CRC-32 (not Python's `hash`, which
is salted per process) gives every process on every host the same answer, so shards never overlap and together
cover the set, however they are started. Spot pairs follow their perpetual (the registry's symbols are the
perpetuals), so one coin's futures and spot stay in one process.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

SHARD_TEXT = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")
MAX_SHARDS = 256


@dataclass(frozen=True)
class Shard:
    index: int
    """1-based: shard 1/2 and 2/2 make the whole."""
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'K/N' as a user writes it (--shard 2/4); a ValueError says what is wrong."""
        match = SHARD_TEXT.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not K/N (e.g. 1/2: the first of two shards)")
        index, count = int(match[1]), int(match[2])
        if not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"{text!r}: N must be 1..{MAX_SHARDS}")
        if not 1 <= index <= count:
            raise ValueError(f"{text!r}: K must be 1..{count} (shards are numbered from 1)")
        return cls(index, count)

    def owns(self, symbol: str) -> bool:
        return zlib.crc32(symbol.encode()) % self.count == self.index - 1

    @property
    def label(self) -> str:
        """shard-2-of-4: what names derived for this shard (queue, connection, state file) end in."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard(1, 1)
"""A collector that is not sharded owns every symbol."""
