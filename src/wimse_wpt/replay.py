"""Replay caches: an atomic "first time I see this (workload, jti)?" with an expiry.

The verifier calls :meth:`ReplayCache.check_and_record` last, after every other check has
passed, so a refused request never burns a ``jti``. The TTL is relative (the verifier
computes it on its own clock), which is also what Redis wants.

A cache that cannot answer raises :class:`ReplayStoreUnavailable` or :class:`ReplayCacheFull`;
the verifier turns both into 503 problems. Nothing is ever waved through by default.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable
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
    a URL (``redis://``, ``rediss://``, ``redis+cluster://``, ``redis+sentinel://``: see
    :mod:`wimse_wpt.redis_connect`; then on a bounded pool of ``max_connections``, so a burst
    of requests reuses connections instead of opening one each), or with any client redis-py
    provides (``Redis``, ``RedisCluster``, a Sentinel master). Any Redis failure, or no answer
    within ``timeout`` seconds (waiting for a pooled connection included), raises
    :class:`ReplayStoreUnavailable`, so the request is refused; with ``fail_open=True`` such a
    check passes instead, which drops replay protection while Redis is down.

    Redis acknowledges a write before its replicas have it, so a failover can forget an
    accepted proof, which could then be accepted once more until it expires. With
    ``wait_replicas=N`` a check is accepted only after ``WAIT N`` confirms that N replicas hold
    the write; fewer within ``wait_timeout`` seconds refuses (503).
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        prefix: str = "wimse-wpt:jti:",
        timeout: float = 1.0,
        max_connections: int = 64,
        fail_open: bool = False,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
    ) -> None:
        if not 0 < timeout <= 30:
            raise ValueError("timeout must be between 0 and 30 seconds")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty string")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError("max_connections must be a positive integer")
        if not isinstance(wait_replicas, int) or isinstance(wait_replicas, bool) or wait_replicas < 0:
            raise ValueError("wait_replicas must be a non-negative integer")
        if wait_replicas and not 0 < wait_timeout < timeout:
            raise ValueError("wait_timeout must be positive and shorter than timeout")
        if wait_replicas and fail_open:
            raise ValueError("wait_replicas and fail_open contradict each other: one waits for durability, one drops it")
        if isinstance(url_or_client, str):
            from .redis_connect import connect

            self._client = connect(url_or_client, timeout=timeout, max_connections=max_connections)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._prefix = prefix
        self._timeout = timeout
        self._max_connections = max_connections
        self.fail_open = fail_open
        self.wait_replicas = wait_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))
        self._node_clients: dict[str, Any] = {}  # Cluster + wait_replicas: one client per master

    async def check_and_record(self, key: bytes, ttl: float) -> bool:
        import asyncio

        from redis.exceptions import RedisClusterException, RedisError

        ms = max(1, int(ttl * 1000) + 1)
        name = self._prefix + key.hex()
        try:
            async with asyncio.timeout(self._timeout):
                if not self.wait_replicas:
                    created = await self._record(self._client, name, ms)
                else:
                    async with self._write_connection(name) as conn:
                        created = await self._record(conn, name, ms)
                        if created:
                            await self._wait_for_replicas(conn)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:  # a cluster's own errors are not RedisError
            if self.fail_open:
                return True
            raise ReplayStoreUnavailable(type(exc).__name__) from None
        return bool(created)

    @staticmethod
    async def _record(client: Any, name: str, ms: int) -> bool:
        """The atomic write: True if ``name`` was new."""
        return bool(await client.set(name, b"1", nx=True, px=ms))

    @contextlib.asynccontextmanager
    async def _write_connection(self, name: str) -> AsyncIterator[Any]:
        """For ``wait_replicas``: one held connection (WAIT counts the replicas holding this
        connection's own writes), on the master that owns ``name``'s slot in a cluster."""
        from redis.exceptions import AskError  # MovedError is a subclass

        client = self._client
        if hasattr(client, "get_node_from_key"):  # RedisCluster: a plain client on the slot's master
            await client.initialize()  # the slot table, once
            node = client.get_node_from_key(name)
            client = self._node_clients.get(node.name)
            if client is None:
                import redis.asyncio as redis_asyncio

                pool = redis_asyncio.BlockingConnectionPool(
                    connection_class=node.connection_class,
                    max_connections=self._max_connections,
                    timeout=self._timeout,
                    **node.connection_kwargs,
                )
                client = self._node_clients[node.name] = redis_asyncio.Redis(connection_pool=pool)
        async with client.client() as conn:  # single_connection_client: released on exit
            try:
                yield conn
            except AskError:  # MOVED or ASK: the slot moved (or is moving); learn where, refuse this check
                if hasattr(self._client, "nodes_manager"):
                    with contextlib.suppress(Exception):
                        await self._client.nodes_manager.initialize()
                raise

    async def _wait_for_replicas(self, conn: Any) -> None:
        """Accept only once ``wait_replicas`` replicas hold the write, so a failover cannot forget
        it. Fewer acks within ``wait_timeout`` refuses (the entry stays recorded on the master)."""
        acked = await conn.execute_command("WAIT", self.wait_replicas, self._wait_ms)
        if int(acked) < self.wait_replicas:
            raise ReplayStoreUnavailable(f"{acked} of {self.wait_replicas} replicas acknowledged in time")

    async def aclose(self) -> None:
        for client in self._node_clients.values():
            await client.aclose(close_connection_pool=True)
        if self._owns_client:
            await self._client.aclose()
