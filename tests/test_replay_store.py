"""Issue 16: a Redis replay store never forgets a live proof in silence.

Each test starts its own redis-server on a loopback port in 6400-6449 (so it may flush,
reconfigure, fill, restart and pause it) and stops it, whatever the outcome. Where
redis-server is missing they skip with the reason; CI (WIMSE_REQUIRE_REDIS=1) fails instead."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from wimse_wpt import RedisReplayCache, VerificationError
from wimse_wpt.replay import ReplayQuotaExceeded, ReplayStoreUnavailable, ReplayStoreUnsafe, replay_key

from .conftest import IDENTIFIER, World

PORTS = range(6400, 6450)
EVICTING = ["allkeys-lru", "volatile-lru", "volatile-ttl"]


class Server:
    def __init__(self, port: int, args: tuple[str, ...], cwd: str | None = None) -> None:
        self.port = port
        self.args = args
        self.cwd = cwd
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *self.args],
            stdout=subprocess.DEVNULL,
            cwd=self.cwd,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _free_port(taken: tuple[int, ...] = ()) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free port in 6400-6449 for a test redis-server")


@contextlib.contextmanager
def own_redis_server(*args: str) -> Iterator[Server]:
    """A redis-server of the test's own on 127.0.0.1, stopped whatever happens."""
    if shutil.which("redis-server") is None:
        if os.environ.get("WIMSE_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required for the replay store tests")
        pytest.skip("redis-server is not installed: these tests start their own Redis")
    server = Server(_free_port(), args)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Clock:
    """The cache's monotonic timer, moved by the test (windows and intervals, not Redis)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def outcome(world: World, headers: Any) -> str:
    try:
        await world.verifier.verify(headers, path="/path")
    except VerificationError as error:
        return error.problem.code
    return "accepted"


def fill(server: Server, limit: int = 20_000) -> None:
    """Other data until the instance evicts or refuses writes: half the keys with a TTL."""
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for n in range(limit):
        if n % 2:
            pipe.set(f"other:{n}", b"x" * 1024, ex=3600)
        else:
            pipe.set(f"other:{n}", b"x" * 1024)
        if n % 100 == 99:
            try:
                pipe.execute()
            except redis.OutOfMemoryError:  # nothing (more) it may evict: writes refused
                return
            if int(client.info("stats")["evicted_keys"]) > 0 and n > 3000:
                return
    pipe.execute()


# --- eviction --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", EVICTING)
async def test_an_evicting_policy_is_refused_at_start(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with own_redis_server("--maxmemory", "2mb", "--maxmemory-policy", policy) as server:
        cache = RedisReplayCache(server.url, prefix="t:", timer=clock)
        with pytest.raises(ReplayStoreUnsafe) as caught:
            await cache.startup()
        message = str(caught.value)
        assert policy in message and "maxmemory-policy noeviction" in message and "allow_eviction=True" in message
        assert any(policy in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        # A request that comes anyway is refused with its own code, and counted.
        world = World(replay_cache=cache)
        problem = await world.reject()
        assert (problem.code, problem.status) == ("replay-store-unsafe", 503)
        assert cache.stats.unsafe_refusals == 1 and cache.stats.policy == policy
        assert cache.stats.unsafe_reason == f"policy: maxmemory-policy is {policy}"
        # The operator fixes the policy: the next periodic check lets requests through again.
        server.client().config_set("maxmemory-policy", "noeviction")
        clock.now += 1.0  # health_interval
        assert (await world.verify()).identifier == IDENTIFIER
        await cache.aclose()


async def test_noeviction_is_accepted_at_start() -> None:
    with own_redis_server("--maxmemory", "2mb", "--maxmemory-policy", "noeviction") as server:
        cache = RedisReplayCache(server.url, prefix="t:")
        await cache.startup()
        assert cache.stats.policy == "noeviction" and cache.stats.unsafe_reason is None
        await cache.aclose()


async def test_the_policy_is_read_from_info_where_config_is_disabled() -> None:
    with own_redis_server("--maxmemory-policy", "volatile-lru", "--rename-command", "CONFIG", "") as server:
        with pytest.raises(redis.ResponseError):
            server.client().config_get("maxmemory-policy")
        cache = RedisReplayCache(server.url, prefix="t:")
        with pytest.raises(ReplayStoreUnsafe, match="volatile-lru"):
            await cache.startup()
        await cache.aclose()


@pytest.mark.parametrize("policy", [*EVICTING, "noeviction"])
async def test_under_memory_pressure_no_replay_is_ever_accepted(policy: str) -> None:
    with own_redis_server("--maxmemory", "2mb", "--maxmemory-policy", policy) as server:
        cache = RedisReplayCache(server.url, prefix="t:", allow_eviction=policy != "noeviction")
        await cache.startup()
        world = World(replay_cache=cache)
        proofs = [world.headers() for _ in range(100)]
        assert [await outcome(world, p) for p in proofs] == ["accepted"] * 100
        fill(server)
        evicted = int(server.client().info("stats")["evicted_keys"])
        replays = Counter([await outcome(world, p) for p in proofs])
        assert "accepted" not in replays
        if policy == "noeviction":
            assert evicted == 0 and replays == {"wpt-replayed": 100}
        else:
            assert evicted > 0
            # Every eviction is seen: the store fails closed for one entry lifetime. A script
            # Redis refuses outright while it is out of memory is a refusal too.
            assert replays["replay-store-unsafe"] > 0
            assert set(replays) <= {"replay-store-unsafe", "replay-store-unavailable"}
            assert cache.stats.evicted_keys >= 1 and cache.stats.losses["eviction"] >= 1
            assert (await world.reject()).code == "replay-store-unsafe"
        await cache.aclose()


async def test_the_opt_out_logs_a_warning_counts_evictions_and_closes_for_one_lifetime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    with own_redis_server("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as server:
        cache = RedisReplayCache(server.url, prefix="t:", allow_eviction=True, max_ttl=120, timer=clock)
        with caplog.at_level(logging.WARNING, logger="wimse_wpt.replay"):
            await cache.startup()
        assert any("allkeys-lru" in r.getMessage() and "allow_eviction=True" in r.getMessage() for r in caplog.records)
        world = World(replay_cache=cache)
        first = world.headers()
        assert await outcome(world, first) == "accepted"
        fill(server)
        assert await outcome(world, first) == "replay-store-unsafe"
        assert cache.stats.evicted_keys > 0 and cache.stats.losses["eviction"] == 1
        assert "eviction" in (cache.stats.unsafe_reason or "")
        assert any(r.levelno == logging.ERROR and "evicted" in r.getMessage() for r in caplog.records)
        clock.now += 119  # still inside one entry lifetime: closed
        assert await outcome(world, world.headers()) == "replay-store-unsafe"
        flushes = cache.stats.losses.get("flush", 0)  # the canary may have been evicted too
        server.client().flushall()  # the pressure gone (and the canary with it: that is a loss too)
        clock.now += 2
        assert await outcome(world, world.headers()) == "replay-store-unsafe"
        assert cache.stats.losses["flush"] == flushes + 1
        clock.now += 121
        assert await outcome(world, world.headers()) == "accepted"
        assert cache.stats.unsafe_reason is None
        await cache.aclose()


# --- everything else that forgets ------------------------------------------------------------


async def test_a_restart_without_persistence_is_detected_by_the_next_check() -> None:
    clock = Clock()
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_ttl=60, timer=clock)
        world = World(replay_cache=cache)
        proof = world.headers()
        assert await outcome(world, proof) == "accepted"
        server.restart()  # the dataset is gone; the run_id is new
        # The very next check sees the new run_id in the same script that would record.
        codes = [await outcome(world, proof) for _ in range(3)]
        assert "accepted" not in codes and set(codes) <= {"replay-store-unsafe", "replay-store-unavailable"}
        assert codes[-1] == "replay-store-unsafe"
        assert cache.stats.losses.get("restart") == 1
        clock.now += 61
        assert await outcome(world, world.headers()) == "accepted"
        await cache.aclose()


async def test_durable_cannot_hide_a_lost_dataset() -> None:
    """durable=True trusts a new run_id, not a store whose canary is gone."""
    clock = Clock()
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", durable=True, max_ttl=60, timer=clock)
        world = World(replay_cache=cache)
        proof = world.headers()
        assert await outcome(world, proof) == "accepted"
        server.restart()
        clock.now += 2  # the next periodic check
        codes = [await outcome(world, proof) for _ in range(3)]
        assert "accepted" not in codes and codes[-1] == "replay-store-unsafe"
        assert "restart" not in cache.stats.losses and cache.stats.losses["flush"] == 1
        await cache.aclose()


@pytest.mark.parametrize("how", ["flushall", "flushdb", "delete"])
async def test_a_flush_or_deletion_is_detected_by_the_next_check(how: str) -> None:
    clock = Clock()
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_ttl=60, timer=clock)
        world = World(replay_cache=cache)
        proof = world.headers()
        assert await outcome(world, proof) == "accepted"
        client = server.client()
        if how == "flushall":
            client.flushall()
        elif how == "flushdb":
            client.flushdb()
        else:  # another client removing the prefix's keys
            client.delete(*client.keys("t:*"))
        clock.now += 1.0  # health_interval: the bounded window this leaves is one interval
        assert await outcome(world, proof) == "replay-store-unsafe"
        assert cache.stats.losses == {"flush": 1}
        await cache.aclose()


async def test_a_replica_that_starts_later_inherits_the_window() -> None:
    clock = Clock()
    with own_redis_server() as server:
        first = RedisReplayCache(server.url, prefix="t:", max_ttl=60, timer=clock)
        world = World(replay_cache=first)
        assert await outcome(world, world.headers()) == "accepted"
        server.client().flushall()
        clock.now += 1.0
        assert await outcome(world, world.headers()) == "replay-store-unsafe"
        # A verifier started now never saw the canary: the marker tells it.
        later = RedisReplayCache(server.url, prefix="t:", timer=clock)
        with pytest.raises(ReplayStoreUnsafe):
            await later.startup()
        assert server.client().pttl("t:{health}:unsafe") > 58_000
        clock.now += 61
        server.client().delete("t:{health}:unsafe")  # what Redis does on its own clock by now
        await later.startup()
        await first.aclose()
        await later.aclose()


async def test_a_policy_changed_at_run_time_is_refused_at_the_next_check() -> None:
    clock = Clock()
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", timer=clock)
        world = World(replay_cache=cache)
        assert await outcome(world, world.headers()) == "accepted"
        server.client().config_set("maxmemory-policy", "volatile-ttl")
        clock.now += 1.0
        assert await outcome(world, world.headers()) == "replay-store-unsafe"
        await cache.aclose()


async def test_a_server_clock_jump_is_detected() -> None:
    """Redis expires by its wall clock: seen here as the server clock outrunning ours."""
    clock = Clock()
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_ttl=60, timer=clock)
        cache._clock_tolerance = 0.05  # noqa: SLF001 - a jump the test can make without root
        await cache.startup()
        await asyncio.sleep(0.2)  # the server's clock moves 0.2 s; ours moves none
        with pytest.raises(ReplayStoreUnsafe, match="clock"):
            await cache.check()
        assert cache.stats.losses == {"clock-jump": 1}
        await cache.aclose()


# --- the per-workload cap on Redis -----------------------------------------------------------


async def test_the_cap_holds_exactly_under_concurrency_and_spares_other_senders() -> None:
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_per_workload=5)
        flooder = "wimse://example.com/flooder"

        async def one(n: int) -> str:
            try:
                return "new" if await cache.check_and_record(replay_key(flooder, f"j{n}"), 30, flooder) else "replay"
            except ReplayQuotaExceeded:
                return "quota"

        results = Counter(await asyncio.gather(*(one(n) for n in range(60))))
        assert results == {"new": 5, "quota": 55}
        assert cache.stats.quota_refusals == 55
        # A replay of a recorded proof is still a replay, not a quota refusal.
        assert not await cache.check_and_record(replay_key(flooder, "j0"), 30, flooder)
        # Another sender, even one whose identifier spells the flooder's hash tag, has its own share.
        tag = hashlib.sha256(flooder.encode()).hexdigest()
        for other in ["wimse://example.com/other", f"wimse://example.com/{{{tag}}}", flooder + "}"]:
            assert await cache.check_and_record(replay_key(other, "j0"), 30, other)
        keys = server.client().keys("t:{*}")
        assert len([k for k in keys if b"health" not in k]) == 4
        await cache.aclose()


async def test_a_slow_redis_at_the_quota_boundary_never_lets_the_sender_over() -> None:
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_per_workload=3, timeout=0.3)
        sender = "wimse://example.com/s"
        for n in range(2):
            assert await cache.check_and_record(replay_key(sender, f"j{n}"), 30, sender)
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(ReplayStoreUnavailable):  # the third, at the boundary, times out
                await cache.check_and_record(replay_key(sender, "j2"), 30, sender)
        finally:
            server.process.send_signal(signal.SIGCONT)
        accepted = 0
        for n in range(3, 13):
            for _ in range(20):  # the pool reconnects by itself
                try:
                    accepted += await cache.check_and_record(replay_key(sender, f"j{n}"), 30, sender)
                    break
                except ReplayQuotaExceeded:
                    break
                except ReplayStoreUnavailable:
                    await asyncio.sleep(0.05)
        held = server.client().zcard(f"t:{{{hashlib.sha256(sender.encode()).hexdigest()}}}")
        assert held == 3 and accepted + 2 <= 3
        await cache.aclose()


@pytest.mark.parametrize("ttl", [0.0, -5.0, 1e-9])
async def test_a_tiny_or_negative_ttl_is_kept_for_at_least_a_second(ttl: float) -> None:
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:")
        sender = "wimse://example.com/s"
        assert await cache.check_and_record(b"k" * 32, ttl, sender)
        assert not await cache.check_and_record(b"k" * 32, ttl, sender)
        assert 900 < server.client().pttl(f"t:{{{hashlib.sha256(sender.encode()).hexdigest()}}}") <= 1000
        await cache.aclose()


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 1e300, 10 * 24 * 3600.0])
async def test_an_absurd_ttl_is_refused_not_stored(ttl: float) -> None:
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:")
        with pytest.raises(ValueError):
            await cache.check_and_record(b"k" * 32, ttl, "wimse://example.com/s")
        assert server.client().keys("t:{[0-9a-f]*}") == []
        await cache.aclose()


def test_a_prefix_cannot_choose_the_hash_tag() -> None:
    for prefix in ["a{b}:", "a{", "}"]:
        with pytest.raises(ValueError):
            RedisReplayCache("redis://127.0.0.1:6400/0", prefix=prefix)


def test_without_redis_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"wimse-wpt\[redis\]"):
        RedisReplayCache("redis://127.0.0.1:6400/0")




async def test_expired_entries_never_count_and_each_call_clears_only_a_few() -> None:
    """Bounded work per call: a sender cannot make one check clear a whole set at once."""
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_per_workload=3)
        sender = "wimse://example.com/s"
        stored = f"t:{{{hashlib.sha256(sender.encode()).hexdigest()}}}"
        client = server.client()
        client.zadd(stored, {f"old-{n}".encode(): 1 for n in range(20)})  # long expired
        assert await cache.check_and_record(replay_key(sender, "a"), 30, sender)
        assert client.zcard(stored) == 20 - 8 + 1
        for jti in ["b", "c"]:
            assert await cache.check_and_record(replay_key(sender, jti), 30, sender)
        with pytest.raises(ReplayQuotaExceeded):  # three live entries: the cap, whatever expired
            await cache.check_and_record(replay_key(sender, "d"), 30, sender)
        assert client.zcard(stored) == 3
        await cache.aclose()


@contextlib.contextmanager
def own_redis_cluster(tmp: Path) -> Iterator[list[Server]]:
    """Three masters on loopback, slots split by redis-cli, each in its own directory."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("WIMSE_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server and redis-cli are required for the cluster test")
        pytest.skip("redis-server/redis-cli are not installed: this test starts its own cluster")
    servers: list[Server] = []
    try:
        for _ in range(3):
            port = _free_port(tuple(s.port for s in servers))
            (tmp / str(port)).mkdir()
            server = Server(port, ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"), str(tmp / str(port)))
            servers.append(server)
            server.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, timeout=30,
        )
        deadline = time.monotonic() + 20
        while any(s.client().cluster("info").get("cluster_state") != "ok" for s in servers):
            assert time.monotonic() < deadline, "the test cluster did not converge"
            time.sleep(0.1)
        yield servers
    finally:
        for server in servers:
            server.stop()


async def test_on_a_cluster_every_master_is_watched_and_each_check_is_one_slot(tmp_path: Path) -> None:
    from redis.asyncio.cluster import RedisCluster

    clock = Clock()
    with own_redis_cluster(tmp_path) as servers:
        client = RedisCluster(host="127.0.0.1", port=servers[0].port)
        cache = RedisReplayCache(client, prefix="t:", max_per_workload=3, max_ttl=60, timer=clock)
        await cache.startup()  # three masters seen, none taken for a restart
        assert cache.stats.losses == {} and len(cache._nodes) == 3  # noqa: SLF001
        senders = [f"wimse://example.com/w{n}" for n in range(24)]
        for sender in senders:  # spread over the slots of all three masters
            results = await asyncio.gather(
                *(cache.check_and_record(replay_key(sender, "j"), 30, sender) for _ in range(5))
            )
            assert results.count(True) == 1
        holders = {int(s.client().dbsize()) > 0 for s in servers}
        assert holders == {True}
        flooder = senders[0]
        with pytest.raises(ReplayQuotaExceeded):
            for n in range(3):
                await cache.check_and_record(replay_key(flooder, f"more-{n}"), 30, flooder)
        # One master restarts without persistence: its records are gone, and so is its run_id.
        servers[1].restart()
        outcomes = Counter()
        for sender in senders:
            try:
                outcomes[await cache.check_and_record(replay_key(sender, "j"), 30, sender)] += 1
            except ReplayStoreUnavailable as error:
                outcomes[type(error).__name__] += 1
        assert True not in outcomes and outcomes["ReplayStoreUnsafe"] > 0
        assert cache.stats.losses.get("restart") == 1
        await client.aclose()


async def test_the_verifier_answers_429_for_the_sender_over_its_redis_share() -> None:
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_per_workload=1)
        world = World(replay_cache=cache)
        first = world.headers()
        assert await outcome(world, first) == "accepted"
        problem = await world.reject()
        assert (problem.code, problem.status) == ("replay-quota-exceeded", 429)
        assert await outcome(world, first) == "wpt-replayed"
        await cache.aclose()


async def test_prometheus_exports_what_the_store_detected() -> None:
    """Issue 16: the detected condition and the refusals it causes, as metrics."""
    prometheus_client = pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
    from wimse_wpt import PrometheusObserver

    registry = prometheus_client.CollectorRegistry()
    clock = Clock()
    with own_redis_server() as server:
        cache = RedisReplayCache(server.url, prefix="t:", max_ttl=60, timer=clock)
        PrometheusObserver(registry, replay_store=cache)
        world = World(replay_cache=cache)
        proof = world.headers()
        assert await outcome(world, proof) == "accepted"
        assert registry.get_sample_value("wimse_wpt_replay_store_unsafe") == 0
        client = server.client()
        client.delete(*client.keys("t:*"))  # another client removes the store's keys
        clock.now += 1.0
        assert await outcome(world, proof) == "replay-store-unsafe"
        assert registry.get_sample_value("wimse_wpt_replay_store_unsafe") == 1
        assert registry.get_sample_value("wimse_wpt_replay_store_losses_total", {"cause": "flush"}) == 1
        assert registry.get_sample_value("wimse_wpt_replay_store_unsafe_refusals_total") == 1
        await cache.aclose()
