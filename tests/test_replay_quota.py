"""Issue 13, defect 3: one workload may not lock every other out of the shared replay cache.

With valid proofs alone, a sender used to fill the in-memory cache and every other workload
then got 503. Now each workload holds at most its share: only the sender over its share is
refused (429 replay-quota-exceeded), everyone else keeps working."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from wimse_wpt import DevIssuer, MemoryReplayCache, SigningKey, Verifier, WPTAuth
from wimse_wpt.middleware import WPTMiddleware
from wimse_wpt.replay import ReplayCacheFull, ReplayQuotaExceeded, replay_key

from .conftest import World
from .servers import free_port, serve


async def who(request: Request) -> JSONResponse:
    return JSONResponse({"workload": request.state.workload.identifier})


class Shared:
    """A real uvicorn service with one small shared MemoryReplayCache, and its callers."""

    def __init__(self, cache: MemoryReplayCache) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.issuer = DevIssuer("example.com")
        self.cache = cache
        verifier = Verifier({"example.com": self.issuer.jwks}, [self.origin], replay_cache=cache)
        self.app = WPTMiddleware(Starlette(routes=[Route("/path", who, methods=["POST"])]), verifier)

    def client(self, identifier: str) -> httpx.Client:
        key = SigningKey.generate("Ed25519")
        return httpx.Client(base_url=self.origin, auth=WPTAuth(key, self.issuer.issue_wit(identifier, key)))


@pytest.fixture
def shared() -> Iterator[Shared]:
    service = Shared(MemoryReplayCache(maxsize=200))
    with serve(service.app, port=service.port):
        yield service


def test_one_sender_filling_the_cache_locks_out_only_itself(shared: Shared) -> None:
    flooder = shared.client("wimse://example.com/flooder")
    statuses = []
    for _ in range(60):  # more valid, fresh proofs than its share (200 // 10 = 20) allows
        response = flooder.post("/path")
        statuses.append(response.status_code)
    assert statuses[:20] == [200] * 20
    refused = flooder.post("/path")
    assert refused.status_code == 429
    assert refused.json()["code"] == "replay-quota-exceeded"
    assert set(statuses[20:]) == {429}
    # Everyone else keeps working, each up to its own share.
    for n in range(5):
        other = shared.client(f"wimse://example.com/other-{n}")
        assert [other.post("/path").status_code for _ in range(3)] == [200, 200, 200]
    assert len(shared.cache) == 20 + 5 * 3


def test_a_replay_is_still_a_replay_when_the_sender_is_over_its_share() -> None:
    world = World(replay_cache=MemoryReplayCache(maxsize=10, max_per_workload=2))
    first = world.headers()
    asyncio.run(world.verify(first))
    asyncio.run(world.verify())
    assert asyncio.run(world.reject()).code == "replay-quota-exceeded"
    # The replay of an accepted proof is reported as what it is.
    assert asyncio.run(world.reject(first)).code == "wpt-replayed"


def test_the_default_share_is_a_tenth_of_the_cache() -> None:
    assert MemoryReplayCache().max_per_workload == 10_000
    assert MemoryReplayCache(maxsize=5).max_per_workload == 1
    with pytest.raises(ValueError):
        MemoryReplayCache(maxsize=10, max_per_workload=0)
    with pytest.raises(ValueError):
        MemoryReplayCache(maxsize=10, max_per_workload=11)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_shares_free_up_as_entries_expire_and_counts_never_drift() -> None:
    """A model of the live entries, checked against the cache's own count after every step."""
    clock = Clock()
    cache = MemoryReplayCache(maxsize=300, max_per_workload=40, timer=clock)
    rng = random.Random(13)
    workloads = [f"wimse://example.com/w{i}" for i in range(6)]
    live: dict[bytes, tuple[str, float]] = {}  # key -> (workload, expiry)
    for step in range(4000):
        clock.now += rng.choice([0.0, 0.0, 0.01, 0.5, 3.0])
        live = {k: v for k, v in live.items() if v[1] > clock.now}
        workload = rng.choice(workloads)
        if live and rng.random() < 0.1:
            key = rng.choice(list(live))  # a replay, maybe of another sender's entry
        else:
            key = replay_key(workload, f"jti-{step}")
        ttl = rng.choice([1.0, 2.5, 10.0, 60.0])
        mine = sum(1 for w, _ in live.values() if w == workload)
        try:
            first = cache.check_and_record_sync(key, ttl, workload)
        except ReplayQuotaExceeded:
            assert mine >= 40 and key not in live
            continue
        except ReplayCacheFull:
            assert len(live) >= 300
            continue
        assert first == (key not in live)
        if first:
            assert mine < 40
            live[key] = (workload, clock.now + ttl)
        for w in workloads:
            assert cache.held(w) == sum(1 for owner, _ in live.values() if owner == w)
    clock.now += 61
    assert len(cache) == 0 and all(cache.held(w) == 0 for w in workloads)
    assert cache._held == {}  # noqa: SLF001 - nothing left behind per workload


@pytest.mark.parametrize("ttl", [0.0, -5.0, 1e-9])
def test_a_tiny_or_negative_ttl_still_outlives_the_instant(ttl: float) -> None:
    clock = Clock()
    cache = MemoryReplayCache(maxsize=10, timer=clock)
    key = replay_key("wimse://example.com/a", "j")
    assert cache.check_and_record_sync(key, ttl, "wimse://example.com/a")
    clock.now += 0.5
    assert not cache.check_and_record_sync(key, ttl, "wimse://example.com/a")
    assert cache.held("wimse://example.com/a") == 1


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 1e300, 10 * 24 * 3600.0])
def test_an_absurd_ttl_is_refused_not_stored(ttl: float) -> None:
    cache = MemoryReplayCache(maxsize=10)
    with pytest.raises(ValueError):
        cache.check_and_record_sync(b"k" * 32, ttl, "wimse://example.com/a")
    assert len(cache) == 0
