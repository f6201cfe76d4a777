"""The cache of verified WITs: bounded, expired entries first, then the oldest, at bounded work per insert."""

from __future__ import annotations

from typing import Any

import pytest

from wimse_wpt import DevIssuer, SigningKey, TrustAnchors
from wimse_wpt import wit as wit_module
from wimse_wpt.problems import Reject
from wimse_wpt.replay import replay_key
from wimse_wpt.tokens import DEFAULT_ALGORITHMS, DEFAULT_MAX_TOKEN_BYTES
from wimse_wpt.wit import WITValidator

from .conftest import IDENTIFIER, NOW

LEEWAY = 60.0


class CountingNow(float):
    """A time that counts every comparison made with it (or with a sum or difference of it):
    how many cache entries an insert looks at, whatever the form of the expiry test."""

    compared = 0


def _comparison(name: str) -> Any:
    method = getattr(float, name)

    def compare(self: float, other: Any) -> Any:
        CountingNow.compared += 1
        return method(self, other)

    return compare


def _arithmetic(name: str) -> Any:
    method = getattr(float, name)
    return lambda self, other: CountingNow(method(self, other))


for _name in ("__lt__", "__le__", "__gt__", "__ge__"):
    setattr(CountingNow, _name, _comparison(_name))
for _name in ("__add__", "__radd__", "__sub__", "__rsub__"):
    setattr(CountingNow, _name, _arithmetic(_name))


class Scene:
    def __init__(self, cache_size: int) -> None:
        self.issuer = DevIssuer("example.com")
        self.key = SigningKey.generate("Ed25519")
        self.now = NOW
        self.validator = WITValidator(
            TrustAnchors({"example.com": self.issuer.jwks}),
            DEFAULT_ALGORITHMS,
            leeway=LEEWAY,
            max_lifetime=86400.0,
            max_token_bytes=DEFAULT_MAX_TOKEN_BYTES,
            cache_size=cache_size,
            clock=lambda: CountingNow(self.now),
        )

    def wit(self, lifetime: float = 3600) -> bytes:
        return self.issuer.issue_wit(IDENTIFIER, self.key, now=self.now, lifetime=lifetime).encode()

    async def insert(self, token: bytes) -> None:
        await self.validator.validate(token, self.now)

    def cached(self, token: bytes) -> bool:
        return self.validator.lookup(token, self.now) is not None


async def test_inserts_into_a_full_cache_look_at_a_bounded_number_of_entries() -> None:
    # Was: every insert into a full cache with nothing expired scanned the whole cache
    # (10,000 entries by default), so a fleet of distinct WITs made each cold request O(size).
    size = 256
    scene = Scene(size)
    for _ in range(size):
        await scene.insert(scene.wit())
    CountingNow.compared = 0
    inserts = 2 * size
    for _ in range(inserts):
        await scene.insert(scene.wit())
        assert len(scene.validator._cache) <= size
    # Amortised: a constant number of entries per insert, whatever the cache size.
    assert CountingNow.compared <= 12 * inserts, CountingNow.compared / inserts


@pytest.mark.parametrize("size", [1, 3, 32])
async def test_the_cache_never_holds_more_than_its_size_and_evicts_the_oldest_first(size: int) -> None:
    scene = Scene(size)
    tokens = []
    for _ in range(3 * size + 5):
        token = scene.wit()
        await scene.insert(token)
        tokens.append(token)
        assert 1 <= len(scene.validator._cache) <= size
        # What is cached is always the newest WITs: a suffix of the insertion order.
        kept = [scene.cached(t) for t in tokens]
        first = kept.index(True)
        assert all(kept[first:]) and not any(kept[:first])
    assert scene.cached(tokens[-1]) and not scene.cached(tokens[0])


async def test_expired_entries_go_before_any_live_one() -> None:
    size = 16
    scene = Scene(size)
    short = [scene.wit(lifetime=10) for _ in range(size // 2)]
    long = [scene.wit() for _ in range(size // 2)]
    for token in short + long:
        await scene.insert(token)
    scene.now += 10 + LEEWAY  # the short-lived WITs have expired
    newest = scene.wit()
    await scene.insert(newest)
    assert all(scene.cached(t) for t in [*long, newest])
    assert not any(scene.cached(t) for t in short)
    assert not any(t in scene.validator._cache for t in short)  # gone, not only refused


async def test_a_workload_whose_wit_verified_is_not_parsed_again(monkeypatch: Any) -> None:
    parsed: list[object] = []
    real = wit_module.parse_identifier
    monkeypatch.setattr(wit_module, "parse_identifier", lambda value: parsed.append(value) or real(value))
    scene = Scene(16)
    first, second = scene.wit(), scene.wit()
    await scene.insert(first)
    await scene.insert(second)
    assert parsed == [IDENTIFIER]
    one, two = scene.validator.lookup(first, scene.now), scene.validator.lookup(second, scene.now)
    assert one is not None and two is not None and one.identifier == two.identifier == IDENTIFIER
    # The shared SHA-256 state is only ever copied: each WIT's replay keys stay those of its workload.
    for wit in (one, two, one):
        digest = wit.replay_prefix.copy()
        digest.update(b"jti-1")
        assert digest.digest() == replay_key(IDENTIFIER, "jti-1")


async def test_only_a_workload_whose_wit_verified_is_remembered(monkeypatch: Any) -> None:
    parsed: list[object] = []
    real = wit_module.parse_identifier
    monkeypatch.setattr(wit_module, "parse_identifier", lambda value: parsed.append(value) or real(value))
    scene = Scene(16)
    head, body, _ = scene.wit().decode().split(".")
    forged = f"{head}.{body}.{'A' * 86}".encode()  # the right claims, not the issuer's signature
    for _ in range(2):
        with pytest.raises(Reject) as refused:
            await scene.insert(forged)
        assert refused.value.code == "wit-signature"
    assert parsed == [IDENTIFIER, IDENTIFIER]


async def test_remembered_workloads_are_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(wit_module, "_WORKLOADS_KEPT", 3)
    scene = Scene(16)
    for index in range(7):
        token = scene.issuer.issue_wit(f"{IDENTIFIER}-{index}", scene.key, now=scene.now).encode()
        await scene.insert(token)
        assert scene.validator.lookup(token, scene.now).identifier == f"{IDENTIFIER}-{index}"  # type: ignore[union-attr]
        assert len(scene.validator._workloads) <= 3
