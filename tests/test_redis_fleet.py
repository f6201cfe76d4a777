"""Replay protection on a fleet of Redis servers: URL forms, a real Redis Cluster (slots, a live
slot migration, a lost master), Sentinel failover under the example service, and the write that
asynchronous replication loses: the loss window that closes the store after a failover, what is
left open with ``durable=True`` alone, and ``wait_replicas``, which closes it.

Each check is one Lua script on the sender's sorted set ``<prefix>{sha256(workload)}``, so the
sender (not the jti) chooses the hash slot; tests pick senders to land in the slots they need.

Every server is started here on loopback ports 6450-6499 (tests/redisfarm.py) and stopped when
the test ends; without redis-server the tests skip locally and fail in CI (WIMSE_REQUIRE_REDIS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from wimse_wpt import DevIssuer, RedisReplayCache, ReplayStoreUnavailable, SigningKey, mint_wpt
from wimse_wpt.replay import ReplayStoreUnsafe, replay_key

from .conftest import IDENTIFIER, World
from .redisfarm import Farm, Server, farm_or_skip, poll
from .servers import example_service

PREFIX = "wimse-wpt:jti:"


@pytest.fixture
def farm() -> Iterator[Farm]:
    yield from farm_or_skip()


def cluster_url(nodes: list[Server]) -> str:
    return "redis+cluster://" + ",".join(node.address for node in nodes)


def set_key(workload: str, prefix: str = PREFIX) -> str:
    """The sender's sorted set, as RedisReplayCache names it."""
    return prefix + "{" + hashlib.sha256(workload.encode()).hexdigest() + "}"


def sender_in(slots: range | set[int]) -> str:
    """A workload identifier whose set hashes into ``slots``."""
    while True:
        workload = f"wimse://example.com/w-{secrets.token_urlsafe(8)}"
        if key_slot(set_key(workload).encode()) in slots:
            return workload


Proof = tuple[bytes, str]  # (replay key, sender)


def proof_in(slots: range | set[int], workload: str | None = None) -> Proof:
    """A fresh proof (as the verifier derives its key) whose sender's set hashes into ``slots``."""
    workload = workload or sender_in(slots)
    return replay_key(workload, secrets.token_urlsafe(12)), workload


async def check(cache: RedisReplayCache, proof: Proof, ttl: float = 60) -> bool:
    key, workload = proof
    return await cache.check_and_record(key, ttl, workload)


# -- URL forms ------------------------------------------------------------------------------------


async def test_url_forms_build_the_client_each_deployment_needs() -> None:
    one = RedisReplayCache("redis://:secret@127.0.0.1:6450/3", max_connections=7)
    pool = one._client.connection_pool
    assert isinstance(pool, BlockingConnectionPool) and pool.max_connections == 7
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "secret"

    cluster = RedisReplayCache("redis+cluster://user:pw@127.0.0.1:6450,127.0.0.1:6451,[::1]:6452")
    assert isinstance(cluster._client, RedisCluster)
    startup = cluster._client.nodes_manager.startup_nodes
    assert set(startup) == {"127.0.0.1:6450", "127.0.0.1:6451", "::1:6452"}
    assert startup["127.0.0.1:6450"].connection_kwargs["password"] == "pw"

    sentinel = RedisReplayCache("redis+sentinel://:pw@127.0.0.1:6450,127.0.0.1/mymaster/2", max_connections=5)
    pool = sentinel._client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and isinstance(pool, BlockingConnectionPool)
    assert pool.service_name == "mymaster" and pool.max_connections == 5
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [6450, 26379]
    assert pool.sentinel_manager.min_other_sentinels == 1  # an isolated sentinel is not believed
    for cache in (one, cluster, sentinel):
        await cache.aclose()


@pytest.mark.parametrize(
    ("url", "form"),
    [
        ("memcached://127.0.0.1:11211", "redis+cluster://"),
        ("redis+cluster://", "redis+cluster://"),
        ("redis+cluster://127.0.0.1:notaport", "redis+cluster://"),
        ("redis+cluster://127.0.0.1:70000", "redis+cluster://"),
        ("redis+cluster://127.0.0.1:6450/2", "redis+cluster://"),  # a cluster has only db 0
        ("redis+cluster://127.0.0.1:6450?read_from_replicas=yes", "redis+cluster://"),  # never ignored in silence
        ("redis+cluster://127.0.0.1:6450,,127.0.0.1:6451", "redis+cluster://"),
        ("redis+sentinel://127.0.0.1:26379", "redis+sentinel://"),  # no service name
        ("redis+sentinel://127.0.0.1:26379/", "redis+sentinel://"),
        ("redis+sentinel://127.0.0.1:26379/svc/x", "redis+sentinel://"),
        ("redis+sentinel://127.0.0.1:26379/svc/1/extra", "redis+sentinel://"),
        ("redis://127.0.0.1:notaport/0", "redis://"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_form(url: str, form: str) -> None:
    with pytest.raises(ValueError) as caught:
        RedisReplayCache(url)
    assert form in str(caught.value)


def test_wait_options_are_checked_once() -> None:
    for bad in ({"wait_replicas": -1}, {"wait_replicas": True}, {"wait_replicas": 1, "wait_timeout": 1.0},
                {"wait_replicas": 1, "fail_open": True}):
        with pytest.raises(ValueError):
            RedisReplayCache("redis://127.0.0.1:6450/0", **bad)  # type: ignore[arg-type]


# -- Redis Cluster --------------------------------------------------------------------------------

SHARE = 16384 // 3
SLOTS = [range(0, SHARE), range(SHARE, 2 * SHARE), range(2 * SHARE, 16384)]  # as Farm.cluster assigns them


def sender_sets(node: Server, prefix: str = PREFIX) -> list[bytes]:
    """The senders' sets ``node`` holds (the health keys, ``{health}``, are not a sender's)."""
    return [key for key in node.client().scan_iter(match=prefix + "{*", count=1000) if b"{health}" not in key]


async def test_cluster_records_each_proof_exactly_once_across_slots(farm: Farm) -> None:
    masters = farm.cluster(3)
    cache = RedisReplayCache(cluster_url(masters), max_connections=8, timeout=10)  # 1200 queued on 8: slow when loaded
    # 300 workloads sending the same jti, each proof raced 4 times: 1200 checks on 300 sets.
    senders = [f"wimse://example.com/w{i}" for i in range(300)]
    proofs = [(replay_key(sender, "same-jti"), sender) for sender in senders]
    results = await asyncio.gather(*(check(cache, proof, 30) for proof in proofs for _ in range(4)))
    assert [results[i * 4:i * 4 + 4].count(True) for i in range(300)] == [1] * 300
    held = [sender_sets(master) for master in masters]
    assert sum(map(len, held)) == 300 and min(map(len, held)) > 50  # spread over every master's slots
    for master, sets in zip(masters, held, strict=True):
        assert all(master.client().zcard(name) == 1 for name in sets)  # one entry per sender
    # And through the verifier: accepted once, then refused as a replay.
    world = World(replay_cache=cache)
    for _ in range(5):
        headers = world.headers()
        assert await world.verify(headers)
        assert (await world.reject(headers)).code == "wpt-replayed"
    await cache.aclose()


async def test_a_live_slot_migration_redirects_and_stays_exactly_once(farm: Farm) -> None:
    source, target, _ = masters = farm.cluster(3)
    slot = SHARE // 2  # owned by the first master
    source_id, target_id = farm.node_id(source), farm.node_id(target)
    cache = RedisReplayCache(cluster_url(masters), timeout=5)
    before = proof_in({slot})
    assert await check(cache, before)

    # The migration starts: the target imports the slot, the source migrates it.
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    during = proof_in({slot})
    assert await check(cache, during)  # the source answers ASK for a set it lacks: recorded on the target
    assert not await check(cache, during)
    with pytest.raises(AskError):  # what the client was told: not here, ask the target
        source.client().zscore(set_key(during[1]), during[0])
    assert not await check(cache, before)  # still on the source, found there
    source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", set_key(before[1]))
    assert not await check(cache, before)  # moved: ASK to the target, found there

    # The migration ends: the slot belongs to the target, the client learns it from MOVED.
    for node in masters:
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    assert not await check(cache, before)
    assert not await check(cache, during)
    after = proof_in({slot})
    assert await check(cache, after)
    assert not await check(cache, after)
    # The same sender's next proof goes to the same set, on the slot's new owner.
    again = proof_in({slot}, workload=before[1])
    assert await check(cache, again)
    names = [set_key(proof[1]) for proof in (before, during, after)]
    assert target.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 3
    assert target.client().zcard(names[0]) == 2  # before and again, one sender's set
    for name, proof in zip(names, (before, during, after), strict=True):
        assert target.client().zscore(name, proof[0]) is not None
        assert 0 < target.client().pttl(name) <= 60_000
    assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    # The redirects were real: the source now answers MOVED for the slot.
    with pytest.raises(MovedError):
        source.client().zcard(names[0])
    await cache.aclose()


async def test_a_slot_no_master_serves_fails_closed(farm: Farm) -> None:
    masters = farm.cluster(3)
    slot = SHARE + 7
    for node in masters:  # nobody owns the slot (the cluster still serves the others)
        with contextlib.suppress(redis.ResponseError):  # "already unassigned": gossip was faster
            node.client().execute_command("CLUSTER", "DELSLOTS", slot)
    farm.wait_cluster_ok(masters)
    # redis-py refuses a cluster with a hole (RedisClusterException, not a RedisError): a 503.
    for cache in (RedisReplayCache(cluster_url(masters)), RedisReplayCache(cluster_url(masters), wait_replicas=1)):
        with pytest.raises(ReplayStoreUnavailable):
            await check(cache, proof_in({slot}))
        await cache.aclose()


async def _until_served(cache: RedisReplayCache, slots: range, ttl: float, timeout: float = 60) -> list[str]:
    """Fresh proofs in ``slots`` until one is accepted: the refusals met on the way (by class), then
    "accepted". Fails if none is accepted within ``timeout`` seconds."""
    outcomes: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check(cache, proof_in(slots), ttl):
                return [*outcomes, "accepted"]
            outcomes.append("replay")  # a fresh proof refused as a replay: must never happen
        except ReplayStoreUnavailable as exc:  # ReplayStoreUnsafe included, named by its class
            outcomes.append(type(exc).__name__)
        await asyncio.sleep(0.05)
    pytest.fail(f"not served again within {timeout} s: {Counter(outcomes)}")


async def test_a_lost_cluster_master_fails_closed_then_opens_a_loss_window_unless_durable(
    farm: Farm, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, third, replica = farm.cluster(3, replicas_of_first=1)
    url = cluster_url([first, second, third])
    window = 3.0  # max_ttl: the longest entry this cache records
    cache = RedisReplayCache(url, timeout=2, max_ttl=window)
    durable = RedisReplayCache(url, timeout=3, wait_replicas=1, wait_timeout=2, durable=True)
    # WAIT goes to the master owning the sender's slot: only the first master has a replica.
    kept = proof_in(SLOTS[0])
    assert await check(durable, kept)
    assert not await check(durable, kept)
    with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
        await check(durable, proof_in(SLOTS[1]))
    assert await check(cache, proof_in(SLOTS[1]), window)  # a running service: every master seen
    # An empty slot moves to the first master: the durable client's next check there meets MOVED,
    # refuses it, learns the new owner, and the one after is acknowledged by that owner's replica.
    moved = next(slot for slot in SLOTS[1] if second.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0)
    for node in (first, second, third):
        node.client().execute_command("CLUSTER", "SETSLOT", moved, "NODE", farm.node_id(first))
    with pytest.raises(ReplayStoreUnavailable, match="MovedError"):
        await check(durable, proof_in({moved}))
    assert await check(durable, proof_in({moved}))

    first.kill()
    # While the first master is gone: its slots are refused (503), never accepted. (The others
    # serve until the next health check, every health_interval, fails to read the lost master.)
    with pytest.raises(ReplayStoreUnavailable):
        await check(cache, proof_in(SLOTS[0]), window)
    world = World(replay_cache=cache)
    wit = world.issuer.issue_wit(sender_in(SLOTS[0]), world.key, now=world.now)
    problem = await world.reject(world.headers(world.wpt(wit=wit, lifetime=window), wit))
    assert (problem.code, problem.status) == ("replay-store-unavailable", 503)
    # The replica is promoted with a run_id this cache never saw: without durable=True that is a
    # possible loss (its writes may not all have reached the replica), so the cache refuses every
    # check for max_ttl (503 replay-store-unsafe), then serves again: the same client, no restart.
    outcomes = await _until_served(cache, SLOTS[0], window)
    served_at = time.time()
    assert outcomes[0] == "ReplayStoreUnavailable" and outcomes[-1] == "accepted"
    assert "replay" not in outcomes
    assert replica.info("replication")["role"] == "master"
    assert cache.stats.losses.get("restart", 0) >= 1
    assert cache.stats.unsafe_refusals == outcomes.count("ReplayStoreUnsafe")
    # Nothing is accepted within the window: checks that reach the promoted replica in it are
    # refused as unsafe, and a cluster still converging when the window ends has refused every
    # check in it as unavailable, which is as closed (seen in CI on 2026-12-07: no unsafe refusal).
    opened = [r.created for r in caplog.records if "refusing every proof for" in r.getMessage()]
    assert opened, "the loss was not reported"
    assert "ReplayStoreUnsafe" in outcomes or served_at >= opened[0] + window - 0.05
    assert not await check(cache, kept, window)  # acknowledged by the replica: not forgotten
    assert (await _until_served(cache, SLOTS[1], window))[-1] == "accepted"  # every master serves again
    # durable=True with WAIT: the promoted replica held every acknowledged record, so its new
    # run_id opens no window; what was accepted stays refused as a replay, never as unsafe.
    deadline = time.monotonic() + 30
    while True:
        try:
            assert not await check(durable, kept)
            break
        except ReplayStoreUnsafe:
            raise
        except ReplayStoreUnavailable:  # still reading the new topology
            assert time.monotonic() < deadline, "the durable client never reached the promoted replica"
            await asyncio.sleep(0.05)
    assert "restart" not in durable.stats.losses and durable.stats.unsafe_refusals == 0
    # The promoted master has no replica of its own: a new record cannot be acknowledged (503).
    with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
        await check(durable, proof_in(SLOTS[0]))
    await cache.aclose()
    await durable.aclose()


# -- Sentinel failover ------------------------------------------------------------------------------


class Caller:
    """One workload calling the example service with a fresh proof each time."""

    def __init__(self, issuer: DevIssuer, origin: str, lifetime: float) -> None:
        self.origin = origin
        self.lifetime = lifetime
        self.key = SigningKey.generate("ES256")
        self.wit = issuer.issue_wit("wimse://example.com/caller", self.key)
        self.http = httpx.Client(base_url=origin, timeout=10)

    def proof(self) -> dict[str, str]:
        return {"Workload-Identity-Token": self.wit,
                "Workload-Proof-Token": mint_wpt(self.key, self.wit, self.origin + "/path", lifetime=self.lifetime)}

    def send(self, headers: dict[str, str]) -> str:
        """"accepted", or the problem code."""
        response = self.http.post("/path", headers=headers)
        return "accepted" if response.status_code == 200 else str(response.json()["code"])


async def _durable_check(store: str) -> bool:
    cache = RedisReplayCache(store, timeout=3, wait_replicas=1, wait_timeout=2, prefix="wimse-wpt-test:durable:")
    try:
        return await check(cache, proof_in(range(16384)))
    finally:
        await cache.aclose()


def anchors_for(issuer: DevIssuer, tmp_path: Path) -> str:
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": issuer.jwks}))
    return str(anchors)


def replicated(master: Server, replica: Server) -> bool:
    return int(replica.info("replication")["slave_repl_offset"]) >= int(master.info("replication")["master_repl_offset"])


def test_sentinel_failover_fails_closed_for_one_lifetime_then_recovers_without_a_restart(
    farm: Farm, tmp_path: Path
) -> None:
    master = farm.standalone()
    replica = farm.replica(master)
    sentinels = farm.sentinels(master, service="fleet")
    store = "redis+sentinel://" + ",".join(s.address for s in sentinels) + "/fleet"
    issuer = DevIssuer("example.com")
    lifetime = 6  # WIMSE_MAX_WPT_LIFETIME: the settings make it the store's max_ttl, the loss window
    env = {"WIMSE_TRUST_ANCHORS": anchors_for(issuer, tmp_path), "WIMSE_REPLAY_STORE": store,
           "WIMSE_MAX_WPT_LIFETIME": str(lifetime)}
    with example_service(env, workers=2) as origin:
        caller = Caller(issuer, origin, lifetime)
        accepted = []
        for _ in range(20):
            proof = caller.proof()
            assert caller.send(proof) == "accepted"
            accepted.append(proof)
        assert len(sender_sets(master)) == 1  # the sentinels' master holds the caller's set
        assert master.client().zcard(set_key("wimse://example.com/caller")) == 20
        assert asyncio.run(_durable_check(store)) is True  # wait_replicas on the Sentinel form: the replica acks
        poll(lambda: replicated(master, replica), "the replica to hold every recorded proof")

        master.kill()
        during: list[str] = []
        replays_during: list[str] = []
        deadline = time.monotonic() + 90
        while during[-5:] != ["accepted"] * 5:  # both workers past their window
            assert time.monotonic() < deadline, f"no recovery after the failover: {Counter(during)}"
            during.append(caller.send(caller.proof()))
            replays_during.append(caller.send(accepted[len(during) % len(accepted)]))
        # Unavailable while no master answers; then the promoted replica's new run_id closes the
        # store for one lifetime (a failover may have lost writes); then served, same processes.
        assert during[0] == "replay-store-unavailable"
        assert set(during) == {"replay-store-unavailable", "replay-store-unsafe", "accepted"}
        assert during.index("replay-store-unsafe") < during.index("accepted")
        assert "accepted" not in replays_during
        assert farm.sentinel_master(sentinels[0]) == replica.port
        assert replica.info("replication")["role"] == "master"
        # After recovery: new proofs work, and no proof recorded before or after is accepted again
        # (the first ones may have expired meanwhile: refused either way).
        fresh = []
        for _ in range(5):
            proof = caller.proof()
            assert caller.send(proof) == "accepted"
            fresh.append(proof)
        assert {caller.send(proof) for proof in fresh} == {"wpt-replayed"}
        assert {caller.send(proof) for proof in accepted} <= {"wpt-replayed", "wpt-expired"}
        caller.http.close()


async def test_sentinel_failover_with_wait_replicas_and_durable_opens_no_window(farm: Farm) -> None:
    master = farm.standalone()
    replicas = [farm.replica(master), farm.replica(master)]
    sentinels = farm.sentinels(master, service="fleet", replicas=2)
    store = "redis+sentinel://" + ",".join(s.address for s in sentinels) + "/fleet"
    cache = RedisReplayCache(store, timeout=3, wait_replicas=1, wait_timeout=2, durable=True, max_ttl=60)
    sender = "wimse://example.com/durable"
    accepted = [proof_in(range(16384), sender) for _ in range(10)]
    for proof in accepted:
        assert await check(cache, proof)  # each acknowledged by a replica before it is accepted

    master.kill()
    outcomes: list[str] = []
    deadline = time.monotonic() + 90
    while outcomes[-3:] != ["accepted"] * 3:
        assert time.monotonic() < deadline, f"no recovery after the failover: {Counter(outcomes)}"
        for proof in accepted:  # never accepted again, before, during or after
            with contextlib.suppress(ReplayStoreUnavailable):
                assert not await check(cache, proof)
        try:
            outcomes.append("accepted" if await check(cache, proof_in(range(16384), sender)) else "replay")
        except ReplayStoreUnavailable as exc:
            outcomes.append(type(exc).__name__)
            await asyncio.sleep(0.05)
    # 503 while no master answers (or the new master's replica has not acknowledged yet), then
    # served at once: the promoted replica held every record, and durable=True says so.
    assert outcomes[0] == "ReplayStoreUnavailable"
    assert set(outcomes) == {"ReplayStoreUnavailable", "accepted"}
    assert cache.stats.losses == {} and cache.stats.unsafe_refusals == 0
    new_master = farm.sentinel_master(sentinels[0])
    assert new_master in {r.port for r in replicas}
    assert [await check(cache, proof) for proof in accepted] == [False] * len(accepted)
    await cache.aclose()


# -- The write that asynchronous replication loses ----------------------------------------------


def cut_off(master: Server, replica: Server) -> None:
    """The replica stops hearing from the master: paused (SIGSTOP) and its link dropped, as a
    partition or a lagging replica leaves it. (SIGSTOP alone does not lose the write on loopback:
    the kernel buffers it for the replica, which applies it when resumed.)"""
    replica.signal(signal.SIGSTOP)
    master.client().execute_command("CLIENT", "KILL", "TYPE", "replica")  # any redis-py: "replica" is Redis 5+ syntax
    poll(lambda: int(master.info("replication")["connected_slaves"]) == 0, "the master to drop the replica")


def fail_over(master: Server, replica: Server) -> None:
    """The master dies; the replica resumes and is promoted (what Sentinel would do)."""
    master.kill()
    replica.signal(signal.SIGCONT)
    replica.client().execute_command("REPLICAOF", "NO", "ONE")
    poll(lambda: replica.info("replication")["role"] == "master", "the replica's promotion")


class FollowsTheMaster:
    """A redis-py client that a failover repoints at the promoted replica, as Sentinel's pool
    does: one running cache sees the old master, then the new one."""

    def __init__(self, master: Server) -> None:
        self.client = Redis(host="127.0.0.1", port=master.port, socket_timeout=3, socket_connect_timeout=1)

    async def now_on(self, server: Server) -> None:
        pool = self.client.connection_pool
        await pool.disconnect()
        pool.connection_kwargs["port"] = server.port
        pool.reset()  # new connections, to the new master

    async def aclose(self) -> None:
        await self.client.aclose()


async def _lost_write(farm: Farm, **options: object) -> tuple[World, list[tuple[bytes, bytes]], RedisReplayCache]:
    """A proof accepted while the replica was cut off, then the master lost and the replica
    promoted under the same running cache: its entry is gone from the store."""
    master = farm.standalone()
    replica = farm.replica(master)
    redis_client = FollowsTheMaster(master)
    cache = RedisReplayCache(redis_client.client, timeout=2, **options)  # type: ignore[arg-type]
    world = World(replay_cache=cache)
    assert await world.verify(world.headers(world.wpt(lifetime=2)))  # a first check: the master is known
    headers = world.headers(world.wpt(lifetime=2))
    cut_off(master, replica)
    assert await world.verify(headers)  # Redis acknowledged the record; no replica has it
    fail_over(master, replica)
    await redis_client.now_on(replica)
    assert replica.client().zcard(set_key(IDENTIFIER)) == 1  # the first proof's entry only
    return world, headers, cache


async def test_a_failover_that_lost_a_write_closes_the_store_for_one_lifetime(farm: Farm) -> None:
    """The default: the promoted replica's run_id is new, so the cache cannot know what it lost.
    The replay of the forgotten proof is refused (503 replay-store-unsafe) for max_ttl, the
    longest TTL an entry had: by then every forgotten proof has expired."""
    world, headers, cache = await _lost_write(farm, max_ttl=2)
    problem = await world.reject(headers)  # the forgotten proof, sent again
    assert (problem.code, problem.status) == ("replay-store-unsafe", 503)
    assert cache.stats.losses == {"restart": 1}
    problem = await world.reject(world.headers(world.wpt(lifetime=2)))  # a fresh proof too, for the window
    assert problem.code == "replay-store-unsafe"
    # After the window (measured in real seconds on the cache's clock), the forgotten proof has
    # expired (its entry's TTL was at most max_ttl): the clock the verifier reads moves as far.
    poll(lambda: cache._timer() >= cache._unsafe_until, "the loss window to end", timeout=10)
    world.now += 3
    assert (await world.reject(headers)).code == "wpt-expired"
    assert await world.verify(world.headers(world.wpt(lifetime=2)))  # served again, no restart
    await cache.aclose()


async def test_durable_without_wait_replicas_a_failover_can_forget_a_proof_and_its_replay_is_accepted(
    farm: Farm,
) -> None:
    """The window left open when durable=True is claimed without WAIT: a proof accepted just
    before a failover may be accepted once more on the new master, until it expires."""
    world, headers, cache = await _lost_write(farm, durable=True)
    assert await world.verify(headers)  # the same proof, accepted a second time
    assert cache.stats.losses == {}
    await cache.aclose()


async def test_with_wait_replicas_the_check_refuses_until_a_replica_holds_the_write(farm: Farm) -> None:
    master = farm.standalone()
    replica = farm.replica(master)
    redis_client = FollowsTheMaster(master)
    cache = RedisReplayCache(redis_client.client, timeout=3, wait_replicas=1, wait_timeout=2, durable=True)
    world = World(replay_cache=cache)
    kept = world.headers()
    assert await world.verify(kept)  # the replica acknowledged: WAIT returned 1
    assert (await world.reject(kept)).code == "wpt-replayed"

    cut_off(master, replica)
    problem = await world.reject(world.headers())  # no replica acknowledges in time: fail closed
    assert (problem.code, problem.status) == ("replay-store-unavailable", 503)

    fail_over(master, replica)
    await redis_client.now_on(replica)
    # What was accepted was not forgotten, and durable=True opens no window: a replay, not unsafe.
    assert (await world.reject(kept)).code == "wpt-replayed"
    assert cache.stats.losses == {} and cache.stats.unsafe_refusals == 0
    await cache.aclose()
    await redis_client.aclose()


def test_a_cluster_client_from_a_url_never_sends_a_check_twice() -> None:
    """redis-py's cluster client retries a command after a timeout or a dropped connection by
    default. A record whose reply was lost has been applied; sent again it answers "replay", and
    a proof used once would be refused as a replay. Refused as 503 instead (seen under a burst)."""
    cache = RedisReplayCache("redis+cluster://127.0.0.1:6450")
    assert cache._client.retry.get_retries() == 0
    one_server = RedisReplayCache("redis://127.0.0.1:6450/0")._client.connection_pool
    assert one_server.make_connection().retry.get_retries() == 0  # redis-py's own default there
