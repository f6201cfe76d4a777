"""1,000 concurrent copies of one valid request: exactly one is accepted, every other one is a
replay. Real uvicorn servers on 127.0.0.1, a real httpx AsyncClient on a bounded pool; the
replay cache in memory (one process) and on Redis (four uvicorn workers sharing it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from wimse_wpt import DevIssuer, SigningKey, mint_wpt

from .conftest import redis_url
from .servers import ROOT, free_port, running, serve

COPIES = 1000
# A few seconds on a quiet machine; the default per-test cap is too tight when 8 sessions share 2 cores.
pytestmark = pytest.mark.timeout(300)
IDENTIFIER = "wimse://example.com/racer"


def build_app(anchors: dict[str, Any], origin: str, replay_cache: Any = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from wimse_wpt import Verifier, WPTMiddleware

    async def path(request: Request) -> JSONResponse:
        return JSONResponse({"workload": request.state.workload.identifier, "pid": os.getpid()})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"pid": os.getpid()})

    verifier = Verifier(anchors, [origin], replay_cache=replay_cache)
    app = Starlette(routes=[Route("/path", path, methods=["POST"]), Route("/healthz", healthz)])
    return WPTMiddleware(app, verifier, exclude=["/healthz"])


def factory() -> Any:
    """The app each uvicorn worker builds (``--factory``), configured from the environment."""
    from wimse_wpt import MemoryReplayCache, RedisReplayCache

    store = os.environ["H4_STORE"]
    # A generous store timeout: this is about atomicity, not latency. On a loaded machine the 1 s
    # default refuses a few copies as replay-store-unavailable (fail closed, but the count would vary).
    cache = (MemoryReplayCache() if store == "memory"
             else RedisReplayCache(store, prefix=os.environ["H4_PREFIX"], timeout=20, max_connections=128))
    return build_app(json.loads(os.environ["H4_ANCHORS"]), os.environ["H4_ORIGIN"], cache)


@contextlib.contextmanager
def uvicorn_workers(store: str, workers: int, prefix: str = "") -> Iterator[tuple[str, DevIssuer]]:
    """``workers`` uvicorn processes (a separate process from the client, as in production)."""
    issuer = DevIssuer("example.com")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {**os.environ, "H4_STORE": store, "H4_PREFIX": prefix, "H4_ORIGIN": origin,
           "H4_ANCHORS": json.dumps({"example.com": issuer.jwks})}
    command = [sys.executable, "-m", "uvicorn", "--factory", "tests.test_concurrency:factory", "--app-dir", str(ROOT),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with running(command, env, origin, "uvicorn"):
        yield origin, issuer


def one_request(issuer: DevIssuer, origin: str) -> dict[str, str]:
    key = SigningKey.generate("ES256")
    wit = issuer.issue_wit(IDENTIFIER, key)
    return {"Workload-Identity-Token": wit, "Workload-Proof-Token": mint_wpt(key, wit, origin + "/path", lifetime=120)}


async def race(origin: str, headers: dict[str, str], copies: int = COPIES) -> Counter[str]:
    """Send ``copies`` identical requests at once; count the answers (the problem code, or accepted)."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    # No pool timeout: on a loaded machine the last of 1,000 requests waits long for a connection.
    timeout = httpx.Timeout(60, pool=None)
    async with httpx.AsyncClient(base_url=origin, limits=limits, timeout=timeout) as client:
        responses = await asyncio.gather(*(client.post("/path", headers=headers) for _ in range(copies)))
    return Counter("accepted" if r.status_code == 200 else r.json()["code"] for r in responses)


def test_memory_cache_accepts_one_of_a_thousand_concurrent_copies() -> None:
    with uvicorn_workers("memory", 1) as (origin, issuer):
        outcome = asyncio.run(race(origin, one_request(issuer, origin)))
        again = asyncio.run(race(origin, one_request(issuer, origin), 50))  # the cache keeps working
    assert outcome == {"accepted": 1, "wpt-replayed": COPIES - 1}
    assert again == {"accepted": 1, "wpt-replayed": 49}


def test_memory_cache_in_process_under_uvicorn_thread() -> None:
    # The same race against a server in this process (the set-up most tests use), at 200 copies.
    issuer = DevIssuer("example.com")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with serve(build_app({"example.com": issuer.jwks}, origin), port=port) as url:
        outcome = asyncio.run(race(url, one_request(issuer, origin), 200))
    assert outcome == {"accepted": 1, "wpt-replayed": 199}


@pytest.fixture
def redis_workers() -> Iterator[tuple[str, DevIssuer, str, str]]:
    """Four uvicorn workers sharing one Redis under this test's own key prefix."""
    url = redis_url()
    prefix = f"wimse-wpt-h4-concurrency:{secrets.token_hex(4)}:"
    try:
        with uvicorn_workers(url, 4, prefix) as (origin, issuer):
            yield origin, issuer, url, prefix
    finally:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def test_redis_with_four_workers_accepts_one_of_a_thousand_concurrent_copies(
    redis_workers: tuple[str, DevIssuer, str, str],
) -> None:
    origin, issuer, url, prefix = redis_workers
    async def warm() -> set[int]:
        # Until every worker has answered, so the race is not against their start-up.
        pids: set[int] = set()
        deadline = time.monotonic() + 90
        limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)  # new connections reach new workers
        async with httpx.AsyncClient(base_url=origin, timeout=30, limits=limits) as client:
            while len(pids) < 4 and time.monotonic() < deadline:
                answers = await asyncio.gather(*(client.get("/healthz") for _ in range(40)))
                pids |= {r.json()["pid"] for r in answers}
                await asyncio.sleep(0.2)
        return pids

    assert len(asyncio.run(warm())) == 4
    outcome = asyncio.run(race(origin, one_request(issuer, origin)))
    assert outcome == {"accepted": 1, "wpt-replayed": COPIES - 1}
    import redis

    client = redis.Redis.from_url(url)
    try:
        # One sender, one sorted set of its entries (besides the store's own {health} keys),
        # holding one entry: one proof.
        sets = [k for k in client.scan_iter(match=prefix + "*") if b"{health}" not in k]
        assert len(sets) == 1
        assert client.zcard(sets[0]) == 1
    finally:
        client.close()
