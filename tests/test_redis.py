"""The Redis replay cache: atomic across replicas, fail closed, and recovering by itself.

These tests need a Redis server at REDIS_URL; they skip with the reason where there is none,
and CI makes them mandatory (WIMSE_REQUIRE_REDIS=1)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from wimse_wpt import DevIssuer, RedisReplayCache, ReplayStoreUnavailable, SigningKey, VerificationError, mint_wpt
from wimse_wpt.replay import replay_key

from .conftest import World, redis_url
from .servers import example_service, free_port
from .test_replay_store import own_redis_server


@pytest.fixture
def url() -> str:
    return redis_url()


@pytest.fixture
def prefix() -> str:
    return f"wimse-wpt-test:{secrets.token_hex(4)}:"


async def test_check_and_record_is_atomic_and_expires(url: str, prefix: str) -> None:
    cache = RedisReplayCache(url, prefix=prefix)
    sender = "wimse://example.com/a"
    key = replay_key(sender, "jti-1")
    results = await asyncio.gather(*(cache.check_and_record(key, 5.0, sender) for _ in range(50)))
    assert results.count(True) == 1 and results.count(False) == 49
    client = redis.Redis.from_url(url)
    # One key per sender, named by hashes only (never caller bytes), in its own hash slot.
    tag = hashlib.sha256(sender.encode()).hexdigest()
    assert set(client.keys(prefix + "*")) == {f"{prefix}{{{tag}}}".encode(), *HEALTH_KEYS(prefix)}
    stored = f"{prefix}{{{tag}}}"
    assert client.zrange(stored, 0, -1) == [key]
    assert 4000 < client.pttl(stored) <= 5001
    expiry_ms = client.zscore(stored, key)
    server_ms = int(client.time()[0]) * 1000
    assert 3000 < expiry_ms - server_ms <= 6000
    assert await cache.check_and_record(replay_key("wimse://example.com/b", "jti-1"), 5.0, "wimse://example.com/b")
    await cache.aclose()


def HEALTH_KEYS(prefix: str) -> set[bytes]:  # noqa: N802 - reads as the constant it is
    return {f"{prefix}{{health}}:canary".encode()}


async def test_an_existing_client_can_be_used(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    cache = RedisReplayCache(client, prefix=prefix)
    key = replay_key("wimse://example.com/a", "x")
    assert await cache.check_and_record(key, 1.0, "wimse://example.com/a")
    assert not await cache.check_and_record(key, 1.0, "wimse://example.com/a")
    await client.aclose()


async def test_verifier_with_redis_rejects_replays(url: str, prefix: str) -> None:
    world = World(replay_cache=RedisReplayCache(url, prefix=prefix))
    # The verifier's clock is injected (2027); Redis keeps time itself, from a relative TTL.
    headers = world.headers()
    assert (await world.verify(headers)).identifier
    assert (await world.reject(headers)).code == "wpt-replayed"


async def test_refusing_port_fails_closed_quickly() -> None:
    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ReplayStoreUnavailable):
        await cache.check_and_record(b"k" * 32, 1.0, "wimse://example.com/a")
    assert time.monotonic() - started < 2
    world = World(replay_cache=cache)
    problem = await world.reject()
    assert (problem.code, problem.status) == ("replay-store-unavailable", 503)


async def test_silent_server_times_out_and_fails_closed() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        cache = RedisReplayCache(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            await cache.check_and_record(b"k" * 32, 1.0, "wimse://example.com/a")
        assert time.monotonic() - started < 2


async def test_fail_open_switch_lets_requests_through_while_down() -> None:
    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3, fail_open=True)
    world = World(replay_cache=cache)
    headers = world.headers()
    assert await world.verify(headers)
    assert await world.verify(headers)  # the documented cost: no replay protection while down


@contextlib.contextmanager
def own_redis() -> Iterator[subprocess.Popen[bytes]]:
    with own_redis_server() as server:
        assert server.process is not None
        server.process.port = server.port  # type: ignore[attr-defined]
        yield server.process


async def test_outage_mid_run_gives_503_then_recovers_by_itself() -> None:
    with own_redis() as server:
        world = World(replay_cache=RedisReplayCache(f"redis://127.0.0.1:{server.port}/0", timeout=0.3))  # type: ignore[attr-defined]
        assert await world.verify()
        server.send_signal(signal.SIGSTOP)  # Redis hangs: no answers at all
        paused_proof = world.headers()
        for _ in range(3):
            problem = await world.reject(paused_proof)
            assert (problem.code, problem.status) == ("replay-store-unavailable", 503)
        server.send_signal(signal.SIGCONT)
        recovered = False
        for _ in range(50):
            try:
                await world.verify(world.headers())
                recovered = True
                break
            except Exception:
                await asyncio.sleep(0.1)
        assert recovered
        # The proof refused during the outage was never accepted. Its SET, sent before the
        # timeout, may still have landed when Redis resumed: then it is refused as a replay.
        # Either way it is accepted at most once, ever.
        outcomes = []
        for _ in range(3):
            try:
                await world.verifier.verify(paused_proof, path="/path")
                outcomes.append("accepted")
            except VerificationError as error:
                outcomes.append(error.problem.code)
        assert outcomes.count("accepted") <= 1
        assert outcomes[1:] == ["wpt-replayed", "wpt-replayed"]


async def _race(origin: str, headers: dict[str, str], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=origin, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post("/path", headers=headers) for _ in range(count)))


def _signed_headers(issuer: DevIssuer, origin: str) -> dict[str, str]:
    key = SigningKey.generate("ES256")
    wit = issuer.issue_wit("wimse://example.com/racer", key)
    return {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, origin + "/path", lifetime=120)}


def _outcome(responses: list[httpx.Response]) -> dict[str, int]:
    """How many of each answer: "accepted", or the problem code."""
    return dict(Counter("accepted" if r.status_code == 200 else r.json()["code"] for r in responses))


def test_four_workers_sharing_redis_accept_a_proof_exactly_once(url: str, tmp_path: Path) -> None:
    issuer = DevIssuer("example.com")
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": issuer.jwks}))
    env = {"WIMSE_TRUST_ANCHORS": str(anchors), "WIMSE_REPLAY_STORE": url}
    with example_service(env, workers=4) as origin:
        # Warm every worker so the race is not against start-up.
        for _ in range(3):
            asyncio.run(_race(origin, _signed_headers(issuer, origin), 40))
        responses = asyncio.run(_race(origin, _signed_headers(issuer, origin), 200))
    assert _outcome(responses) == {"accepted": 1, "wpt-replayed": 199}


def test_one_worker_with_the_memory_cache_accepts_a_proof_exactly_once(tmp_path: Path) -> None:
    issuer = DevIssuer("example.com")
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": issuer.jwks}))
    with example_service({"WIMSE_TRUST_ANCHORS": str(anchors), "WIMSE_REPLAY_STORE": "memory"}) as origin:
        responses = asyncio.run(_race(origin, _signed_headers(issuer, origin), 200))
    assert _outcome(responses) == {"accepted": 1, "wpt-replayed": 199}
