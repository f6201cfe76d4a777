"""Replay protection on a fleet of Redis servers: URL forms, a real Redis Cluster (slots, a live
slot migration, a lost master), Sentinel failover under the example service, and the write that
asynchronous replication loses (and ``wait_replicas``, which closes that window).

Every server is started here on loopback ports 6450-6499 (tests/redisfarm.py) and stopped when
the test ends; without redis-server the tests skip locally and fail in CI (WIMSE_REQUIRE_REDIS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from wimse_wpt import DevIssuer, RedisReplayCache, ReplayStoreUnavailable, SigningKey, mint_wpt
from wimse_wpt.replay import replay_key

from .conftest import World
from .redisfarm import Farm, Server, farm_or_skip, poll
from .servers import example_service

PREFIX = "wimse-wpt:jti:"


@pytest.fixture
def farm() -> Iterator[Farm]:
    yield from farm_or_skip()


def cluster_url(nodes: list[Server]) -> str:
    return "redis+cluster://" + ",".join(node.address for node in nodes)


def key_in(slots: range | set[int], workload: str = "wimse://example.com/w") -> bytes:
    """A replay key (as the verifier derives it) whose Redis key hashes into ``slots``."""
    while True:
        key = replay_key(workload, secrets.token_urlsafe(12))
        if key_slot((PREFIX + key.hex()).encode()) in slots:
            return key


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


async def test_cluster_records_each_proof_exactly_once_across_slots(farm: Farm) -> None:
    masters = farm.cluster(3)
    cache = RedisReplayCache(cluster_url(masters), max_connections=8, timeout=10)  # 1200 queued on 8: slow when loaded
    # 300 workloads sending the same jti, each proof raced 4 times: 1200 checks on 300 keys.
    keys = [replay_key(f"wimse://example.com/w{i}", "same-jti") for i in range(300)]
    results = await asyncio.gather(*(cache.check_and_record(key, 30) for key in keys for _ in range(4)))
    assert [results[i * 4:i * 4 + 4].count(True) for i in range(300)] == [1] * 300
    held = [master.client().dbsize() for master in masters]
    assert sum(held) == 300 and min(held) > 50  # spread over every master's slots
    # And through the verifier: accepted once, then refused as a replay, on whichever slot.
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
    before = key_in({slot})
    assert await cache.check_and_record(before, 60)

    # The migration starts: the target imports the slot, the source migrates it.
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    during = key_in({slot})
    assert await cache.check_and_record(during, 60)  # the source answers ASK: recorded on the target
    assert not await cache.check_and_record(during, 60)
    with pytest.raises(AskError):  # what the client was told: not here, ask the target
        source.client().get(PREFIX + during.hex())
    assert not await cache.check_and_record(before, 60)  # still on the source, found there
    source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", PREFIX + before.hex())
    assert not await cache.check_and_record(before, 60)  # moved: ASK to the target, found there

    # The migration ends: the slot belongs to the target, the client learns it from MOVED.
    for node in masters:
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    assert not await cache.check_and_record(before, 60)
    assert not await cache.check_and_record(during, 60)
    after = key_in({slot})
    assert await cache.check_and_record(after, 60)
    assert not await cache.check_and_record(after, 60)
    names = [(PREFIX + k.hex()).encode() for k in (before, during, after)]
    assert target.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 3
    assert all(0 < target.client().pttl(name) <= 60_000 for name in names)
    assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    # The redirects were real: the source now answers MOVED for the slot.
    with pytest.raises(MovedError):
        source.client().get(names[0])
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
            await cache.check_and_record(key_in({slot}), 60)
        await cache.aclose()


async def test_a_lost_cluster_master_fails_closed_until_its_replica_takes_over(farm: Farm) -> None:
    first, second, third, replica = farm.cluster(3, replicas_of_first=1)
    url = cluster_url([first, second, third])
    cache = RedisReplayCache(url, timeout=2)
    durable = RedisReplayCache(url, timeout=3, wait_replicas=1, wait_timeout=2)
    # WAIT goes to the master owning the key's slot: only the first master has a replica.
    kept = key_in(SLOTS[0])
    assert await durable.check_and_record(kept, 60)
    assert not await durable.check_and_record(kept, 60)
    with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
        await durable.check_and_record(key_in(SLOTS[1]), 60)
    assert await cache.check_and_record(key_in(SLOTS[1]), 60)  # a running service: topology known
    # An empty slot moves to the first master: the durable client's next check there meets MOVED,
    # refuses it, learns the new owner, and the one after is acknowledged by that owner's replica.
    moved = next(slot for slot in SLOTS[1] if second.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0)
    for node in (first, second, third):
        node.client().execute_command("CLUSTER", "SETSLOT", moved, "NODE", farm.node_id(first))
    with pytest.raises(ReplayStoreUnavailable, match="MovedError"):
        await durable.check_and_record(key_in({moved}), 60)
    assert await durable.check_and_record(key_in({moved}), 60)

    first.kill()
    # While the first master's slots have no master: refused (503), never accepted.
    with pytest.raises(ReplayStoreUnavailable):
        await cache.check_and_record(key_in(SLOTS[0]), 60)
    world = World(replay_cache=cache)
    problem = await world.reject(world.headers(world.wpt(jti=_jti_in(world, SLOTS[0]))))
    assert (problem.code, problem.status) == ("replay-store-unavailable", 503)
    # The other masters serve on (after a refusal or two while the client re-reads the topology).
    assert await _eventually_served(cache, SLOTS[1], tries=20)
    # The replica is promoted; the same client finds it and serves the slots again.
    assert await _eventually_served(cache, SLOTS[0], tries=200), "the replica never took over the lost master's slots"
    assert replica.info("replication")["role"] == "master"
    assert not await cache.check_and_record(kept, 60)  # acknowledged by the replica: not forgotten
    await cache.aclose()
    await durable.aclose()


async def _eventually_served(cache: RedisReplayCache, slots: range, tries: int) -> bool:
    """A fresh key in ``slots`` accepted within ``tries`` attempts; until then each is refused (503)."""
    for _ in range(tries):
        try:
            if await cache.check_and_record(key_in(slots), 60):
                return True
        except ReplayStoreUnavailable:
            await asyncio.sleep(0.05)
    return False


def _jti_in(world: World, slots: range) -> str:
    from .conftest import IDENTIFIER

    while True:
        jti = secrets.token_urlsafe(12)
        if key_slot((PREFIX + replay_key(IDENTIFIER, jti).hex()).encode()) in slots:
            return jti


# -- Sentinel failover under the example service -----------------------------------------------


class Caller:
    """One workload calling the example service with a fresh proof each time."""

    def __init__(self, issuer: DevIssuer, origin: str) -> None:
        self.origin = origin
        self.key = SigningKey.generate("ES256")
        self.wit = issuer.issue_wit("wimse://example.com/caller", self.key)
        self.http = httpx.Client(base_url=origin, timeout=10)

    def proof(self) -> dict[str, str]:
        return {"Workload-Identity-Token": self.wit,
                "Workload-Proof-Token": mint_wpt(self.key, self.wit, self.origin + "/path", lifetime=120)}

    def send(self, headers: dict[str, str]) -> str:
        """"accepted", or the problem code."""
        response = self.http.post("/path", headers=headers)
        return "accepted" if response.status_code == 200 else str(response.json()["code"])


async def _durable_check(store: str) -> bool:
    cache = RedisReplayCache(store, timeout=3, wait_replicas=1, wait_timeout=2, prefix="wimse-wpt-test:durable:")
    try:
        return await cache.check_and_record(replay_key("wimse://example.com/durable", "once"), 60)
    finally:
        await cache.aclose()


def anchors_for(issuer: DevIssuer, tmp_path: Path) -> str:
    anchors = tmp_path / "anchors.json"
    anchors.write_text(json.dumps({"example.com": issuer.jwks}))
    return str(anchors)


def replicated(master: Server, replica: Server) -> bool:
    return int(replica.info("replication")["slave_repl_offset"]) >= int(master.info("replication")["master_repl_offset"])


def test_sentinel_failover_fails_closed_then_recovers_without_a_restart(farm: Farm, tmp_path: Path) -> None:
    master = farm.standalone()
    replica = farm.replica(master)
    sentinels = farm.sentinels(master, service="fleet")
    store = "redis+sentinel://" + ",".join(s.address for s in sentinels) + "/fleet"
    issuer = DevIssuer("example.com")
    env = {"WIMSE_TRUST_ANCHORS": anchors_for(issuer, tmp_path), "WIMSE_REPLAY_STORE": store}
    with example_service(env, workers=2) as origin:
        caller = Caller(issuer, origin)
        accepted = []
        for _ in range(20):
            proof = caller.proof()
            assert caller.send(proof) == "accepted"
            accepted.append(proof)
        assert master.client().dbsize() == 20  # the sentinels' master holds them
        assert asyncio.run(_durable_check(store)) is True  # wait_replicas on the Sentinel form: the replica acks
        poll(lambda: replicated(master, replica), "the replica to hold every recorded proof")

        master.kill()
        during: list[str] = []
        replays_during: list[str] = []
        for _ in range(300):  # each refusal takes up to the store's 1 s timeout
            during.append(caller.send(caller.proof()))
            replays_during.append(caller.send(accepted[len(during) % len(accepted)]))
            if during[-1] == "accepted" and "replay-store-unavailable" in during:
                break
        else:
            pytest.fail(f"no recovery after the failover: {Counter(during)}")
        # Failed closed during the failover, then served by the new master, same processes.
        assert set(during) == {"replay-store-unavailable", "accepted"}
        assert during.index("accepted") > during.index("replay-store-unavailable")
        assert "accepted" not in replays_during
        assert farm.sentinel_master(sentinels[0]) == replica.port
        assert replica.info("replication")["role"] == "master"
        # After recovery: new proofs work, and no proof recorded before or after is accepted again.
        for _ in range(5):
            proof = caller.proof()
            assert caller.send(proof) == "accepted"
            accepted.append(proof)
        assert {caller.send(proof) for proof in accepted} == {"wpt-replayed"}
        caller.http.close()


# -- The write that asynchronous replication loses ----------------------------------------------


def cut_off(master: Server, replica: Server) -> None:
    """The replica stops hearing from the master: paused (SIGSTOP) and its link dropped, as a
    partition or a lagging replica leaves it. (SIGSTOP alone does not lose the write on loopback:
    the kernel buffers it for the replica, which applies it when resumed.)"""
    replica.signal(signal.SIGSTOP)
    master.client().client_kill_filter(_type="replica")
    poll(lambda: int(master.info("replication")["connected_slaves"]) == 0, "the master to drop the replica")


def fail_over(master: Server, replica: Server) -> None:
    """The master dies; the replica resumes and is promoted (what Sentinel would do)."""
    master.kill()
    replica.signal(signal.SIGCONT)
    replica.client().execute_command("REPLICAOF", "NO", "ONE")
    poll(lambda: replica.info("replication")["role"] == "master", "the replica's promotion")


class FollowsTheMaster:
    """The replay cache a service sees: whichever master it is pointed at (Sentinel does this)."""

    def __init__(self, cache: RedisReplayCache) -> None:
        self.cache = cache

    async def check_and_record(self, key: bytes, ttl: float) -> bool:
        return await self.cache.check_and_record(key, ttl)


async def test_without_wait_replicas_a_failover_can_forget_a_proof_and_its_replay_is_accepted(farm: Farm) -> None:
    """The window this documents: a proof accepted just before a failover may be accepted once
    more on the new master, until it expires (at most max_wpt_lifetime after it was minted)."""
    master = farm.standalone()
    replica = farm.replica(master)
    store = FollowsTheMaster(RedisReplayCache(master.url))
    world = World(replay_cache=store)
    headers = world.headers()
    cut_off(master, replica)
    assert await world.verify(headers)  # Redis acknowledged the SET; no replica has it
    fail_over(master, replica)
    store.cache = RedisReplayCache(replica.url)
    assert await world.verify(headers)  # the same proof, accepted a second time


async def test_with_wait_replicas_the_check_refuses_until_a_replica_holds_the_write(farm: Farm) -> None:
    master = farm.standalone()
    replica = farm.replica(master)
    store = FollowsTheMaster(RedisReplayCache(master.url, timeout=3, wait_replicas=1, wait_timeout=2))
    world = World(replay_cache=store)
    kept = world.headers()
    assert await world.verify(kept)  # the replica acknowledged: WAIT returned 1
    assert (await world.reject(kept)).code == "wpt-replayed"

    cut_off(master, replica)
    problem = await world.reject(world.headers())  # no replica acknowledges in time: fail closed
    assert (problem.code, problem.status) == ("replay-store-unavailable", 503)

    fail_over(master, replica)
    store.cache = RedisReplayCache(replica.url)
    assert (await world.reject(kept)).code == "wpt-replayed"  # what was accepted was not forgotten


def test_a_cluster_client_from_a_url_never_sends_a_check_twice() -> None:
    """redis-py's cluster client retries a command after a timeout or a dropped connection by
    default. A SET NX whose reply was lost has been applied; sent again it answers "exists", and
    a proof used once would be refused as a replay. Refused as 503 instead (seen under a burst)."""
    cache = RedisReplayCache("redis+cluster://127.0.0.1:6450")
    assert cache._client.retry.get_retries() == 0
    one_server = RedisReplayCache("redis://127.0.0.1:6450/0")._client.connection_pool
    assert one_server.make_connection().retry.get_retries() == 0  # redis-py's own default there
