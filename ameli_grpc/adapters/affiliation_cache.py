"""The RFI's answers kept for a while in the process, whichever registry gave them.

A login asks the RFI of every NIR it lets through (SPEC §2 step 5), and an
affiliation changes over days, not seconds: each answer is kept for
``AMELI_RFI_CACHE_TTL`` seconds (0: not kept), keyed by the SHA-256 of the NIR,
at most ``size`` entries (the oldest go first). A person whose affiliation has
just changed is seen with it at the latest ``ttl`` seconds later, in every
process: the trade-off of not asking the registry on every login.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from ameli_grpc.domain.model import Affiliation
from ameli_grpc.domain.ports import IdentityRegistry

DEFAULT_SIZE = 10_000


def cache_key(nir: str) -> str:
    """The key of a NIR's answer: its SHA-256, so that the cache holds no NIR."""
    return hashlib.sha256(nir.encode()).hexdigest()


class AffiliationCache:
    """Answers by key, each until ``ttl`` seconds after it was remembered."""

    _entries: OrderedDict[str, tuple[float, Affiliation]]

    def __init__(
        self,
        ttl: float,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or size < 1:
            raise ValueError("RFI cache: the TTL must be >= 0 and the size > 0")
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries = OrderedDict()

    def get(self, key: str) -> Affiliation | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expire_at, affiliation = entry
        if self._clock() < expire_at:
            return affiliation
        del self._entries[key]
        return None

    def remember(self, key: str, affiliation: Affiliation) -> None:
        if self._ttl == 0:
            return
        self._entries[key] = (self._clock() + self._ttl, affiliation)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class CachedIdentityRegistry:
    """An ``IdentityRegistry`` whose answers are kept in an ``AffiliationCache``.

    For the registry read from the reference table; the HTTP registry keeps
    its own cache beside the lookups it shares between concurrent callers.
    """

    def __init__(self, registry: IdentityRegistry, cache: AffiliationCache) -> None:
        self._registry = registry
        self._cache = cache

    async def affiliation(self, nir: str) -> Affiliation:
        key = cache_key(nir)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        affiliation = await self._registry.affiliation(nir)
        self._cache.remember(key, affiliation)
        return affiliation
