"""Replay caches: an atomic "first time I see this (workload, jti)?" with an expiry.

The verifier calls :meth:`ReplayCache.check_and_record` last, after every other check has
passed, so a refused request never burns a ``jti``. The TTL is relative (the verifier
computes it on its own clock), which is also what Redis wants. The verified workload
identifier comes with each check, so a cache can give every sender its own bounded share.

A cache that cannot answer raises :class:`ReplayStoreUnavailable` or :class:`ReplayCacheFull`;
the verifier turns both into 503 problems. Nothing is ever waved through by default. Two
narrower refusals: :class:`ReplayQuotaExceeded` (429, only the sender over its share) and
:class:`ReplayStoreUnsafe` (503, a store that may have forgotten live entries).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cachetools import Cache, TLRUCache

logger = logging.getLogger("wimse_wpt.replay")

#: A TTL below this is raised to it: an entry outlives the instant its proof was checked in,
#: whatever the clock's resolution.
MIN_TTL = 1.0
#: A TTL above this is a bug or an attack (the verifier caps proof lifetimes far below it).
MAX_TTL = 24 * 3600.0


class ReplayStoreUnavailable(Exception):
    """The store could not be asked (down, timed out, erroring)."""


class ReplayStoreUnsafe(ReplayStoreUnavailable):
    """The store may forget (or may have forgotten) entries whose proofs are still live."""


class ReplayCacheFull(Exception):
    """Every slot holds a live entry; forgetting one would re-open a replay window."""


class ReplayQuotaExceeded(ReplayCacheFull):
    """This workload holds its whole share of the cache; other workloads are unaffected."""


@runtime_checkable
class ReplayCache(Protocol):
    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        """Record ``key`` for ``ttl`` seconds on behalf of ``workload`` (the verified sender).

        Return True if it was new, False if it is a replay. ``workload`` is who pays for the
        entry: a cache may refuse a sender over its share with :class:`ReplayQuotaExceeded`.
        """
        ...


def replay_key(workload: str, jti: str) -> bytes:
    """SHA-256 over (workload, jti): scoped to the sender, fixed size, no caller bytes in a key.

    A workload identifier never contains a newline, so the join is unambiguous.
    """
    return hashlib.sha256(f"{workload}\n{jti}".encode("utf-8", "surrogatepass")).digest()


def replay_prefix(workload: str) -> Any:
    """The SHA-256 state after the workload part of :func:`replay_key`: the key of a jti is
    ``prefix.copy()``, updated with the jti's UTF-8 bytes. The verifier keeps one per cached
    WIT, so a request hashes only its jti (the same keys: a test holds them equal)."""
    return hashlib.sha256(f"{workload}\n".encode("utf-8", "surrogatepass"))


def checked_ttl(ttl: float) -> float:
    """``ttl`` raised to :data:`MIN_TTL`; ValueError (the check then fails closed) if absurd."""
    if not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl > MAX_TTL:
        raise ValueError("replay entry TTL must be a finite number of seconds, at most a day")
    return max(float(ttl), MIN_TTL)


_stored = Cache.__len__
_stored_key = Cache.__contains__
_tlru_expire = TLRUCache.expire


class _CountingTLRU(TLRUCache[bytes, str]):
    """A TLRUCache whose values are owners, with an exact live count per owner.

    Every way an entry leaves (expiry inside ``__setitem__``, an explicit ``expire``, an
    eviction) goes through ``expire`` or ``popitem``, which decrement the owner's count.
    """

    def __init__(self, maxsize: int, ttu: Any, timer: Callable[[], float], held: dict[str, int]) -> None:
        super().__init__(maxsize=maxsize, ttu=ttu, timer=timer)
        self.held = held

    def _release(self, owner: str) -> None:
        held = self.held
        left = held[owner] - 1
        if left:
            held[owner] = left
        else:
            del held[owner]  # no per-owner residue once its last entry is gone

    def expire(self, time: float | None = None) -> list[tuple[bytes, str]]:  # type: ignore[override]
        expired = _tlru_expire(self, time)  # every insert calls this: no super(), no copy
        for _key, owner in expired:
            self._release(owner)
        return expired  # type: ignore[no-any-return]

    def popitem(self) -> tuple[bytes, str]:
        key, owner = super().popitem()
        self._release(owner)
        return key, owner


class MemoryReplayCache:
    """Per-process replay cache on cachetools' ``TLRUCache``, bounded by ``maxsize`` entries.

    Each entry costs about 290 bytes (32-byte key, expiry, cachetools' bookkeeping; see
    ``bench/`` for the figure at 100k and 1M entries), so the default 100,000 entries take
    about 29 MB when full. Expired entries are dropped when room is needed; a cache full of
    live entries refuses (:class:`ReplayCacheFull`) instead of forgetting one.

    No workload holds more than ``max_per_workload`` live entries (default a tenth of
    ``maxsize``): a sender over its share is refused with :class:`ReplayQuotaExceeded`, and
    every other sender keeps its own room. Counts are exact: they follow every expiry.
    """

    def __init__(
        self,
        maxsize: int = 100_000,
        *,
        max_per_workload: int | None = None,
        timer: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError("maxsize must be a positive integer")
        if max_per_workload is None:
            max_per_workload = max(1, maxsize // 10)
        if not isinstance(max_per_workload, int) or not 1 <= max_per_workload <= maxsize:
            raise ValueError("max_per_workload must be an integer between 1 and maxsize")
        self.maxsize = maxsize
        self.max_per_workload = max_per_workload
        #: How many checks were refused because their sender was over its share.
        self.quota_refusals = 0
        self._held: dict[str, int] = {}
        self._ttl = 0.0  # the TTL of the entry being inserted, read by ttu under the lock
        self._entries = _CountingTLRU(maxsize, lambda _key, _owner, now: now + self._ttl, timer, self._held)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def held(self, workload: str) -> int:
        """How many live entries ``workload`` holds now."""
        with self._lock:
            self._entries.expire()
            return self._held.get(workload, 0)

    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        return self.check_and_record_sync(key, ttl, workload)

    def check_and_record_sync(self, key: bytes, ttl: float, workload: str) -> bool:
        if not MIN_TTL <= ttl <= MAX_TTL:  # NaN fails this too
            ttl = checked_ttl(ttl)
        entries = self._entries
        held = self._held
        with self._lock:
            # Cache.__contains__ first (a dict lookup): only a key stored already needs
            # TLRUCache's own check, which also asks whether it has expired.
            if _stored_key(entries, key) and key in entries:
                return False
            # Cache.__len__: the entries stored, without TLRUCache.__len__'s expiry pass (the
            # insert below runs one anyway); expired ones still count until then, which only
            # sends a cache at its bound to the exact check.
            if held.get(workload, 0) >= self.max_per_workload or _stored(entries) >= self.maxsize:
                entries.expire()
                if held.get(workload, 0) >= self.max_per_workload:
                    self.quota_refusals += 1
                    raise ReplayQuotaExceeded("this workload holds its whole share of the replay cache")
                if len(entries) >= self.maxsize:
                    raise ReplayCacheFull("replay cache is full of live entries")
            self._ttl = ttl
            entries[key] = workload
            held[workload] = held.get(workload, 0) + 1
            return True


# One atomic check for one sender, on one key (so one Redis Cluster hash slot): the sender's
# sorted set of replay keys scored by expiry in server milliseconds. In the same step it reads
# what tells whether the store may have forgotten entries since the last check: the instance's
# run_id (a restart or a failover) and its evicted_keys counter. Work per call is bounded:
# live entries are counted (ZCOUNT), and at most 8 expired ones are dropped per call (the
# key's own TTL drops the rest), so no sender can make one call clear a whole set at once.
# KEYS[1] the sender's set; ARGV[1] the replay key; ARGV[2] the TTL (ms); ARGV[3] the cap;
# ARGV[4] '1' to read evicted_keys (only while the policy evicts: under noeviction it cannot
# rise, and a policy changed at run time is seen by the periodic check).
# Returns {1 recorded | 0 replay | -1 over the cap, run_id, evicted_keys or -1 if not read}.
_RECORD_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local server = redis.call('INFO', 'server')
local at = string.find(server, 'run_id:', 1, true)
local run_id = at and string.sub(server, at + 7, at + 46) or ''
local evicted = '-1'
if ARGV[4] == '1' then
  local stats = redis.call('INFO', 'stats')
  at = string.find(stats, 'evicted_keys:', 1, true)
  evicted = at and string.match(stats, '^%d+', at + 13) or '-1'
end
local set = KEYS[1]
local score = redis.call('ZSCORE', set, ARGV[1])
if score and tonumber(score) > now then return {0, run_id, evicted} end
local old = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, 8)
if #old > 0 then redis.call('ZREM', set, unpack(old)) end
if redis.call('ZCOUNT', set, '(' .. now, '+inf') >= tonumber(ARGV[3]) then return {-1, run_id, evicted} end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', set, now + ttl, ARGV[1])
if redis.call('PTTL', set) < ttl then redis.call('PEXPIRE', set, ttl) end
return {1, run_id, evicted}
"""
_RECORD_SHA = hashlib.sha1(_RECORD_SCRIPT.encode()).hexdigest()


@dataclass
class ReplayStoreStats:
    """What a :class:`RedisReplayCache` has seen of its store, for metrics and health checks."""

    #: The instance's ``maxmemory-policy`` at the last check.
    policy: str | None = None
    #: Keys the instance evicted while this cache watched it (any keys: Redis does not say which).
    evicted_keys: int = 0
    #: Detected ways entries may have been forgotten, by cause (``eviction``, ``restart``, ...).
    losses: dict[str, int] = field(default_factory=dict)
    #: Why the store is unsafe now, or None.
    unsafe_reason: str | None = None
    #: Checks refused because the store was unsafe (an evicting policy or a loss window).
    unsafe_refusals: int = 0
    #: Checks refused because their sender was over its share.
    quota_refusals: int = 0


class RedisReplayCache:
    """Replay cache shared by every replica, on redis-py's asyncio client.

    One atomic Lua script per check (EVALSHA, falling back to EVAL on NOSCRIPT) on one key per
    sender: ``<prefix>{<sha256 of the workload>}``, a sorted set of replay keys scored by their
    expiry on the server's clock. The script refuses a replay, refuses a sender holding
    ``max_per_workload`` live entries (:class:`ReplayQuotaExceeded`, 429) and records the rest.

    Works with a URL (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
    ``redis+sentinel://``: see :mod:`wimse_wpt.redis_connect`; then on a bounded pool of
    ``max_connections``) or with any redis-py asyncio client. Any Redis failure, or no answer
    within ``timeout`` seconds, raises :class:`ReplayStoreUnavailable`, so the request is
    refused; with ``fail_open=True`` such a check passes instead, which drops replay protection
    while Redis is down.

    Redis acknowledges a write before its replicas have it, so a failover can forget an
    accepted proof. With ``wait_replicas=N`` a recorded check is accepted only after ``WAIT N``
    (on the connection that ran the script; on a cluster, the master owning the sender's key)
    confirms that N replicas hold it; fewer within ``wait_timeout`` seconds refuses (503).

    The store must never forget a live entry. :meth:`check` (call it from the app's lifespan
    via :meth:`startup`; otherwise the first check runs it) reads the eviction policy and
    refuses anything but ``noeviction`` with :class:`ReplayStoreUnsafe`, unless
    ``allow_eviction=True``. Every check then watches for signs of forgetting: a rise of
    ``evicted_keys`` or a new ``run_id`` (read atomically with the record), a missing canary
    key (a flush or deletion; checked every ``health_interval`` seconds), a jump of the server
    clock. Each opens a window of ``max_ttl`` seconds (the longest entry TTL: the verifier's
    ``max_wpt_lifetime`` plus its leeway) during which every check fails closed with
    :class:`ReplayStoreUnsafe`. ``durable=True`` declares that acknowledged writes survive a
    restart or failover (AOF with ``appendfsync always``; ``wait_replicas`` for a failover): a
    new ``run_id`` then opens no window. :attr:`stats` counts all of it.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        prefix: str = "wimse-wpt:jti:",
        timeout: float = 1.0,
        max_connections: int = 64,
        fail_open: bool = False,
        max_per_workload: int = 100_000,
        max_ttl: float = 300.0,
        allow_eviction: bool = False,
        durable: bool = False,
        health_interval: float = 1.0,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - only to name the extra when it is missing
        except ImportError:
            raise ImportError(
                "RedisReplayCache needs the redis package: install wimse-wpt[redis]"
            ) from None

        if not 0 < timeout <= 30:
            raise ValueError("timeout must be between 0 and 30 seconds")
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be a non-empty string without { or } (the hash tag is the cache's)")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError("max_connections must be a positive integer")
        if not isinstance(max_per_workload, int) or max_per_workload < 1:
            raise ValueError("max_per_workload must be a positive integer")
        if not MIN_TTL <= max_ttl <= MAX_TTL:
            raise ValueError("max_ttl must be between 1 second and 1 day")
        if not 0 < health_interval <= 60:
            raise ValueError("health_interval must be more than 0 and at most 60 seconds")
        if not isinstance(wait_replicas, int) or isinstance(wait_replicas, bool) or wait_replicas < 0:
            raise ValueError("wait_replicas must be a non-negative integer")
        if wait_replicas and not 0 < wait_timeout < timeout:
            raise ValueError("wait_timeout must be positive and shorter than timeout")
        if wait_replicas and fail_open:
            raise ValueError("wait_replicas and fail_open contradict each other: one waits for durability, one drops it")
        if isinstance(url_or_client, str):
            from .redis_connect import connect

            self._client: Any = connect(url_or_client, timeout=timeout, max_connections=max_connections)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._prefix = prefix
        self._canary_key = prefix + "{health}:canary"
        self._marker_key = prefix + "{health}:unsafe"
        self._timeout = timeout
        self._max_connections = max_connections
        self.fail_open = fail_open
        self.wait_replicas = wait_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))
        self._node_clients: dict[str, Any] = {}  # Cluster + wait_replicas: one plain client per master
        self.max_per_workload = max_per_workload
        self.max_ttl = float(max_ttl)
        self.allow_eviction = allow_eviction
        self.durable = durable
        self.health_interval = float(health_interval)
        self.stats = ReplayStoreStats()
        self._timer = timer
        self._checked = False
        self._check_task: Any = None
        self._next_check = 0.0
        self._unsafe_policy: str | None = None
        self._warned_policy: str | None = None
        self._unsafe_until = -math.inf
        self._nodes: dict[str, int] = {}  # run_id -> evicted_keys last seen there
        self._canary: bytes | None = None
        self._clock: tuple[float, float] | None = None  # (local timer, server time) at the last check
        self._clock_tolerance = 1.0  # seconds the server clock may run ahead between checks
        self._pending_marker = False
        self._id = secrets.token_hex(8)  # marks the loss markers this cache writes

    # -- the check --------------------------------------------------------------------------

    def _set_key(self, workload: str) -> str:
        # A hash of the identifier as the hash tag: fixed size, no caller bytes, and no
        # identifier can choose another's tag (or key) without a SHA-256 second preimage.
        return f"{self._prefix}{{{hashlib.sha256(workload.encode('utf-8', 'surrogatepass')).hexdigest()}}}"

    async def check_and_record(self, key: bytes, ttl: float, workload: str) -> bool:
        ms = max(1, math.ceil(checked_ttl(ttl) * 1000))
        if ttl > self.max_ttl:  # the loss window must cover the longest entry
            logger.warning("replay entry TTL %.0f s exceeds max_ttl %.0f s; raising max_ttl", ttl, self.max_ttl)
            self.max_ttl = float(ttl)
        try:
            if not self._checked or self._timer() >= self._next_check:
                await self._periodic_check()
            self._refuse_if_unsafe()
            status, run_id, evicted, acked = await self._record(self._set_key(workload), key, ms)
        except ReplayStoreUnsafe:
            self.stats.unsafe_refusals += 1
            raise
        except ReplayStoreUnavailable:
            if self.fail_open:
                return True
            raise
        self._observe(run_id, evicted)
        if self._timer() < self._unsafe_until:  # this very check saw the loss: refuse it too
            self.stats.unsafe_refusals += 1
            raise ReplayStoreUnsafe(self.stats.unsafe_reason or "replay store may have forgotten entries")
        if status == -1:
            self.stats.quota_refusals += 1
            raise ReplayQuotaExceeded("this workload holds its whole share of the replay store")
        if acked < self.wait_replicas and status == 1:  # recorded, but a failover could forget it
            raise ReplayStoreUnavailable(f"{acked} of {self.wait_replicas} replicas acknowledged in time")
        return status == 1

    async def _record(self, set_key: str, member: bytes, ms: int) -> tuple[int, str, int, int]:
        """The one atomic check-and-record (one key, one slot); every Redis failure is unavailable.

        Returns (status, run_id, evicted_keys, replicas that acknowledged the record). With
        ``wait_replicas`` the script and then ``WAIT`` run on one held connection: ``WAIT``
        counts the replicas holding that connection's own writes.
        """
        import asyncio

        from redis.exceptions import RedisClusterException, RedisError

        watch_evictions = "0" if self.stats.policy == "noeviction" else "1"
        args = (set_key, member, ms, self.max_per_workload, watch_evictions)
        try:
            async with asyncio.timeout(self._timeout):
                if not self.wait_replicas:
                    reply, acked = await self._run_script(self._client, args), 0
                else:
                    async with self._write_connection(set_key) as conn:
                        reply = await self._run_script(conn, args)
                        acked = self.wait_replicas
                        if int(reply[0]) == 1:  # only a record needs its replicas; a refusal is safe
                            acked = int(await conn.execute_command("WAIT", self.wait_replicas, self._wait_ms))
            status, run_id, evicted = reply
            run_id = run_id.decode() if isinstance(run_id, bytes) else str(run_id)
            return int(status), run_id, int(evicted), acked
        # A cluster's own errors (no slot owner, no reachable node) are not RedisError.
        except (RedisError, RedisClusterException, OSError, TimeoutError, ValueError, TypeError) as exc:
            raise ReplayStoreUnavailable(type(exc).__name__) from None

    @staticmethod
    async def _run_script(client: Any, args: tuple[Any, ...]) -> Any:
        from redis.exceptions import NoScriptError

        try:
            return await client.evalsha(_RECORD_SHA, 1, *args)
        except NoScriptError:  # a server (or cluster node) that has not seen it yet
            return await client.eval(_RECORD_SCRIPT, 1, *args)

    @contextlib.asynccontextmanager
    async def _write_connection(self, set_key: str) -> AsyncIterator[Any]:
        """For ``wait_replicas``: one held connection, on the master owning ``set_key``'s slot
        in a cluster (a plain client there: a cluster client may run two commands on two
        connections). A slot that moved (MOVED) or is moving (ASK) refuses this check once; the
        cluster client re-reads the slot table for the next."""
        from redis.exceptions import MovedError

        client = self._client
        if hasattr(client, "get_node_from_key"):  # RedisCluster
            await client.initialize()  # the slot table, once
            node = client.get_node_from_key(set_key)
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
            except MovedError as exc:  # the slot has a new owner: learn it from the redirect
                await self._learn_slot_owner(exc)
                raise
            # AskError: the slot is moving; the next check asks again (a redirect is not followed
            # here: WAIT would then count the replicas of another master's connection)

    async def _learn_slot_owner(self, moved: Any) -> None:
        """Patch the cluster client's slot table as redis-py does on MOVED (a full re-read
        could come from a node that has not heard of the move yet)."""
        import inspect

        manager = getattr(self._client, "nodes_manager", None)
        with contextlib.suppress(Exception):
            move = getattr(manager, "move_slot", None)
            result = move(moved) if callable(move) else manager.initialize()  # type: ignore[union-attr]
            if inspect.isawaitable(result):
                await result

    def _refuse_if_unsafe(self) -> None:
        if self._unsafe_policy is not None:
            raise ReplayStoreUnsafe(f"Redis maxmemory-policy is {self._unsafe_policy}, which evicts entries")
        if self._timer() < self._unsafe_until:
            raise ReplayStoreUnsafe(self.stats.unsafe_reason or "replay store may have forgotten entries")

    # -- what may forget ----------------------------------------------------------------------

    def _lost(self, cause: str, detail: str, window: float | None = None) -> None:
        """Entries may be gone: fail closed until every entry they could have held has expired."""
        window = self.max_ttl if window is None else window
        self._unsafe_until = max(self._unsafe_until, self._timer() + window)
        self.stats.losses[cause] = self.stats.losses.get(cause, 0) + 1
        self.stats.unsafe_reason = f"{cause}: {detail}"
        self._pending_marker = True  # the next check tells replicas that start later
        logger.error(
            "replay store may have forgotten live entries (%s: %s); refusing every proof for %.0f s",
            cause, detail, window,
        )

    def _observe(self, run_id: str, evicted: int, *, seeding: bool = False) -> None:
        """Compare one node's run_id and evicted_keys with what this cache saw there before.

        ``seeding``: the first check, which learns every node (all masters of a cluster).
        """
        nodes = self._nodes
        seen = nodes.get(run_id)
        if seen is None:
            if seeding:
                pass
            elif nodes and not self.durable:
                self._lost("restart", f"Redis run_id changed to {run_id[:8]}: restarted or failed over")
                self._canary = None  # its loss is this loss, already counted
            elif nodes:
                logger.warning("replay store run_id changed to %s; durable=True: no loss window", run_id[:8])
            if len(nodes) >= 64:
                del nodes[next(iter(nodes))]
            nodes[run_id] = max(evicted, 0)
        elif evicted < 0:  # not read this time (a noeviction store)
            pass
        elif evicted > seen:
            self.stats.evicted_keys += evicted - seen
            nodes[run_id] = evicted
            self._lost("eviction", f"Redis evicted {evicted - seen} key(s)")
        elif evicted < seen:  # CONFIG RESETSTAT (or replies crossing): follow, rises still count
            nodes[run_id] = evicted

    # -- health checks ------------------------------------------------------------------------

    async def startup(self) -> None:
        """Run :meth:`check` once; raise a clear error if the store is unsafe or unreachable.

        Call it from the application's lifespan so a misconfigured Redis stops the deploy.
        """
        await self.check()

    async def _periodic_check(self) -> None:
        """One check in flight at a time: until the first has answered every request waits
        for it; after that, the request that finds the interval over runs the next one."""
        import asyncio

        task = self._check_task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            if not self._checked:
                await asyncio.shield(task)
            return
        self._next_check = self._timer() + self.health_interval
        task = self._check_task = asyncio.ensure_future(self.check())
        try:
            await asyncio.shield(task)
        except ReplayStoreUnsafe:
            raise
        except ReplayStoreUnavailable:
            self._next_check = 0.0  # not checked: the next request tries again
            raise

    async def check(self) -> None:
        """Read the store's health now; raise :class:`ReplayStoreUnsafe` or :class:`ReplayStoreUnavailable`."""
        import asyncio

        from redis.exceptions import RedisClusterException, RedisError

        try:
            async with asyncio.timeout(self._timeout * 4):
                policy = "noeviction"
                for node in await self._primaries():  # every master of a Redis Cluster
                    on = {} if node is None else {"target_nodes": node}
                    node_policy = await self._read_policy(**on)
                    if node_policy != "noeviction":
                        policy = node_policy
                    info = await self._client.info("server", **on)
                    stats = await self._client.info("stats", **on)
                    self._observe(str(info["run_id"]), int(stats["evicted_keys"]), seeding=not self._checked)
                seconds, micros = await self._client.time()
                canary, marker_ms = await self._read_canary()
                self._check_clock(seconds + micros / 1e6)
                if marker_ms > 0:  # another replica saw a loss: its window holds here too
                    self._unsafe_until = max(self._unsafe_until, self._timer() + marker_ms / 1000)
                    self.stats.unsafe_reason = self.stats.unsafe_reason or "another replica saw a loss"
                await self._check_canary(canary)
                left = self._unsafe_until - self._timer()
                if self._pending_marker and left > 0:
                    marker = f"{self._id} {self.stats.unsafe_reason}"
                    await self._client.set(self._marker_key, marker, px=math.ceil(left * 1000))
                self._pending_marker = False
                self._checked = True
                self._apply_policy(policy)
        except ReplayStoreUnavailable:
            raise
        except (RedisError, RedisClusterException, OSError, TimeoutError, KeyError, ValueError, TypeError) as exc:
            raise ReplayStoreUnavailable(f"replay store health check failed: {type(exc).__name__}") from None
        if self._unsafe_policy is None and self._timer() >= self._unsafe_until:
            self.stats.unsafe_reason = None
        self._refuse_if_unsafe()

    async def _primaries(self) -> list[Any]:
        """The masters of a Redis Cluster client; ``[None]`` (the one server) for any other."""
        get = getattr(self._client, "get_primaries", None)
        if not callable(get):
            return [None]
        if not get():
            await self._client.ping()  # a cluster client learns its nodes on first use
        return list(get())

    async def _read_policy(self, **on: Any) -> str:
        from redis.exceptions import ResponseError

        try:
            reply = await self._client.config_get("maxmemory-policy", **on)
            policy = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
            if policy:
                return policy.decode() if isinstance(policy, bytes) else str(policy)
        except ResponseError:  # CONFIG disabled or renamed (managed services): INFO says it too
            pass
        memory = await self._client.info("memory", **on)
        return str(memory["maxmemory_policy"])

    def _apply_policy(self, policy: str) -> None:
        self.stats.policy = policy
        if policy == "noeviction":
            self._unsafe_policy = None
            return
        if not self.allow_eviction:
            self._unsafe_policy = policy
            self.stats.unsafe_reason = f"policy: maxmemory-policy is {policy}"
            logger.error(
                "Redis maxmemory-policy is %s: it can evict recorded proofs and let replays through. "
                "Set maxmemory-policy noeviction, or pass allow_eviction=True to accept the risk", policy,
            )
            raise ReplayStoreUnsafe(
                f"Redis maxmemory-policy is {policy}, which can evict live replay entries: set "
                "'maxmemory-policy noeviction' (redis.conf or CONFIG SET), or pass "
                "RedisReplayCache(allow_eviction=True) to accept the risk"
            )
        self._unsafe_policy = None
        if self._warned_policy != policy:
            self._warned_policy = policy
            logger.warning(
                "Redis maxmemory-policy is %s and allow_eviction=True: any eviction will refuse "
                "every proof for %.0f s", policy, self.max_ttl,
            )

    async def _read_canary(self) -> tuple[bytes | None, int]:
        """The canary, and how long the loss window another replica shared has left (ms)."""
        canary = await self._client.get(self._canary_key)
        marker = await self._client.get(self._marker_key)
        if marker is None or marker.startswith(self._id.encode()):  # none, or our own
            return canary, 0
        return canary, int(await self._client.pttl(self._marker_key))

    async def _check_canary(self, canary: bytes | None) -> None:
        """A key without TTL that only a flush, a deletion or a lost dataset removes."""
        if canary is not None and canary == self._canary:
            return
        if canary is None:
            if self._canary is not None:
                self._lost("flush", "the canary key is gone: flushed, deleted, or the dataset was lost")
            await self._client.set(self._canary_key, secrets.token_hex(16), nx=True)
            canary = await self._client.get(self._canary_key)
        elif self._canary is not None:
            self._lost("flush", "the canary key was replaced: another replica saw it gone")
        self._canary = canary

    def _check_clock(self, server_now: float) -> None:
        """Redis expires by its own wall clock: a jump forward ends entries early."""
        local_now = self._timer()
        if self._clock is not None:
            local_then, server_then = self._clock
            ahead = (server_now - server_then) - (local_now - local_then)
            if ahead > self._clock_tolerance:
                self._lost("clock-jump", f"the Redis clock jumped {ahead:.1f} s ahead")
        self._clock = (local_now, server_now)

    async def aclose(self) -> None:
        for client in self._node_clients.values():
            await client.aclose(close_connection_pool=True)
        if self._owns_client:
            await self._client.aclose()
