"""Replay caches: an atomic "first time I see this (workload, jti)?" with an expiry.

The verifier calls :meth:`ReplayCache.check_and_record` last, after every other check has
passed, so a refused request never burns a ``jti``. The TTL is relative (the verifier
computes it on its own clock), which is also what Redis wants.

A cache that cannot answer raises :class:`ReplayStoreUnavailable` or :class:`ReplayCacheFull`;
the verifier turns both into 503 problems. Nothing is ever waved through by default.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from cachetools import TLRUCache


class ReplayStoreUnavailable(Exception):
    """The store could not be asked (down, timed out, erroring)."""


class ReplayCacheFull(Exception):
    """Every slot holds a live entry; forgetting one would re-open a replay window."""


@runtime_checkable
class ReplayCache(Protocol):
    async def check_and_record(self, key: bytes, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was new, False if it is a replay."""
        ...


def replay_key(workload: str, jti: str) -> bytes:
    """SHA-256 over (workload, jti): scoped to the sender, fixed size, no caller bytes in a key.

    A workload identifier never contains a newline, so the join is unambiguous.
    """
    return hashlib.sha256(f"{workload}\n{jti}".encode("utf-8", "surrogatepass")).digest()


class MemoryReplayCache:
    """Per-process replay cache on cachetools' ``TLRUCache``, bounded by ``maxsize`` entries.

    Each entry costs about 310 bytes (32-byte key, expiry, cachetools' bookkeeping; see
    ``bench/`` for the figure at 100k and 1M entries), so the default 100,000 entries take
    about 31 MB when full. Expired entries are dropped when room is needed; a cache full of
    live entries refuses (:class:`ReplayCacheFull`) instead of forgetting one.
    """

    def __init__(self, maxsize: int = 100_000, *, timer: Callable[[], float] = time.monotonic):
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError("maxsize must be a positive integer")
        self.maxsize = maxsize
        self._entries: TLRUCache[bytes, float] = TLRUCache(
            maxsize=maxsize, ttu=lambda _key, ttl, now: now + ttl, timer=timer
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def check_and_record(self, key: bytes, ttl: float) -> bool:
        return self.check_and_record_sync(key, ttl)

    def check_and_record_sync(self, key: bytes, ttl: float) -> bool:
        entries = self._entries
        with self._lock:
            if key in entries:
                return False
            if len(entries) >= self.maxsize:
                entries.expire()
                if len(entries) >= self.maxsize:
                    raise ReplayCacheFull("replay cache is full of live entries")
            entries[key] = ttl
            return True


class RedisReplayCache:
    """Replay cache shared by every replica, on redis-py's asyncio client.

    One atomic command per check: ``SET <prefix><sha256 hex> 1 NX PX <ttl ms>``. Works with
    a URL (then on a bounded pool of ``max_connections``, so a burst of requests reuses
    connections instead of opening one each), or with any client redis-py provides
    (``Redis``, ``RedisCluster``, a Sentinel master). Any Redis failure, or no answer within
    ``timeout`` seconds (waiting for a pooled connection included), raises
    :class:`ReplayStoreUnavailable`, so the request is refused; with ``fail_open=True`` such a
    check passes instead, which drops replay protection while Redis is down.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        prefix: str = "wimse-wpt:jti:",
        timeout: float = 1.0,
        max_connections: int = 64,
        fail_open: bool = False,
    ) -> None:
        import redis.asyncio as redis_asyncio

        if not 0 < timeout <= 30:
            raise ValueError("timeout must be between 0 and 30 seconds")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty string")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError("max_connections must be a positive integer")
        if isinstance(url_or_client, str):
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                url_or_client,
                max_connections=max_connections,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=30,
            )
            self._client = redis_asyncio.Redis(connection_pool=pool)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._prefix = prefix
        self._timeout = timeout
        self.fail_open = fail_open

    async def check_and_record(self, key: bytes, ttl: float) -> bool:
        import asyncio

        from redis.exceptions import RedisError

        ms = max(1, int(ttl * 1000) + 1)
        try:
            async with asyncio.timeout(self._timeout):
                created = await self._client.set(self._prefix + key.hex(), b"1", nx=True, px=ms)
        except (RedisError, OSError, TimeoutError) as exc:
            if self.fail_open:
                return True
            raise ReplayStoreUnavailable(type(exc).__name__) from None
        return bool(created)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
