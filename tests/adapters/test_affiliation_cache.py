"""The RFI's answers kept for ``AMELI_RFI_CACHE_TTL`` seconds, in front of any registry."""

from __future__ import annotations

import pytest

from ameli_grpc.adapters.affiliation_cache import AffiliationCache, CachedIdentityRegistry
from ameli_grpc.domain.model import Affiliation
from tests.support.clock import Seconds

NIR = "1850775123456"


class CountingRegistry:
    """Answers what it was told, and counts the questions."""

    def __init__(self, answer: Affiliation) -> None:
        self.answer = answer
        self.asked = 0

    async def affiliation(self, nir: str) -> Affiliation:
        self.asked += 1
        return self.answer


async def test_an_answer_is_reused_until_the_ttl_then_asked_again() -> None:
    """Within the TTL the registry is asked once; after it, the new answer is seen."""
    clock, registry = Seconds(), CountingRegistry(Affiliation.AFFILIATED)
    cached = CachedIdentityRegistry(registry, AffiliationCache(60, clock=clock))

    assert await cached.affiliation(NIR) is Affiliation.AFFILIATED
    registry.answer = Affiliation.NOT_COVERED
    clock.now += 59.9
    assert await cached.affiliation(NIR) is Affiliation.AFFILIATED
    assert registry.asked == 1

    clock.now += 0.1
    assert await cached.affiliation(NIR) is Affiliation.NOT_COVERED
    assert registry.asked == 2


async def test_a_ttl_of_zero_asks_the_registry_every_time() -> None:
    """``AMELI_RFI_CACHE_TTL=0``: nothing is kept."""
    registry = CountingRegistry(Affiliation.PENDING)
    cached = CachedIdentityRegistry(registry, AffiliationCache(0))
    for _ in range(3):
        assert await cached.affiliation(NIR) is Affiliation.PENDING
    assert registry.asked == 3


def test_the_oldest_answers_go_first() -> None:
    """At most ``size`` entries: a new one pushes the oldest out."""
    cache = AffiliationCache(60, size=2)
    for key in ("a", "b", "c"):
        cache.remember(key, Affiliation.AFFILIATED)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (
        None,
        Affiliation.AFFILIATED,
        Affiliation.AFFILIATED,
    )


@pytest.mark.parametrize(("ttl", "size"), [(-1, 10), (60, 0)])
def test_a_negative_ttl_or_an_empty_cache_is_refused(ttl: float, size: int) -> None:
    """The settings are checked; a cache of no entry is not a cache."""
    with pytest.raises(ValueError, match="RFI cache"):
        AffiliationCache(ttl, size=size)
