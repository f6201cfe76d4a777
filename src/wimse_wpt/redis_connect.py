"""Replay-store URLs to redis-py asyncio clients: one server, a Redis Cluster, or a Sentinel master.

Forms (``user:password@`` optional in each, as redis-py takes it):

- ``redis://host:port/db``, ``rediss://...`` (TLS), ``unix:///path?db=N``: one server, on a
  bounded ``BlockingConnectionPool`` (redis-py's ``from_url`` reads the rest of the URL).
- ``redis+cluster://host:port[,host:port...]``: startup nodes of a Redis Cluster
  (``RedisCluster``; a cluster has only database 0).
- ``redis+sentinel://host:port[,host:port...]/service-name[/db]``: the master of
  ``service-name`` as the sentinels report it (``Sentinel.master_for``); the password is the
  master's. Connections re-discover the master after a failover. With two or more sentinels
  listed, a sentinel that sees no peer is not believed.

Every client answers or fails within ``timeout`` seconds (connecting included) and holds at
most ``max_connections`` connections (per node for a cluster).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

CLUSTER_FORM = "redis+cluster://[user:password@]host:port[,host:port...]"
SENTINEL_FORM = "redis+sentinel://[user:password@]host:port[,host:port...]/service-name[/db]"
SERVER_FORM = "redis://[user:password@]host:port[/db], rediss://... or unix:///path"


def connect(url: str, *, timeout: float, max_connections: int) -> Any:
    """A redis-py asyncio client for ``url``; ValueError naming the expected form if it is malformed."""
    if not isinstance(url, str):
        raise ValueError(f"a Redis URL is a string: {SERVER_FORM}, {CLUSTER_FORM} or {SENTINEL_FORM}")
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return _server(url, timeout, max_connections)
    if scheme == "redis+cluster":
        return _cluster(url, timeout, max_connections)
    if scheme == "redis+sentinel":
        return _sentinel(url, timeout, max_connections)
    raise ValueError(f"unsupported Redis URL scheme {scheme!r}: expected {SERVER_FORM}, {CLUSTER_FORM} or {SENTINEL_FORM}")


def _server(url: str, timeout: float, max_connections: int) -> Any:
    import redis.asyncio as redis_asyncio

    try:
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed Redis URL ({exc}): expected {SERVER_FORM}") from None
    return redis_asyncio.Redis(connection_pool=pool)


def _split_hosts(url: str, form: str, default_port: int) -> tuple[list[tuple[str, int]], str | None, str | None, str]:
    """(hosts, username, password, path) of a multi-host URL; its query must be empty."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"no query or fragment is read from this URL: expected {form}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"a host is missing in the Redis URL: expected {form}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"bad port {port_text!r} in the Redis URL: expected {form}") from None
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port} in the Redis URL: expected {form}")
        hosts.append((host, port))
    return hosts, username, password, parts.path


def _cluster(url: str, timeout: float, max_connections: int) -> Any:
    import asyncio

    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    class BoundedRedisCluster(RedisCluster):
        """At most ``max_connections`` commands in flight; the next one waits its turn.

        redis-py's cluster nodes refuse (``MaxConnectionsError``) rather than wait when their
        connections are all busy, so a burst would be refused where one server's blocking pool
        queues it; this queues it the same way (the caller's timeout bounds the wait). The slot
        table is read before any command starts: commands racing redis-py's first read of the
        topology had their connections closed under them (seen with 1200 concurrent first checks).
        """

        _in_flight = asyncio.Semaphore(max_connections)

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            await self.initialize()  # once; later calls return at once
            async with self._in_flight:
                return await super().execute_command(*args, **kwargs)

    hosts, username, password, path = _split_hosts(url, CLUSTER_FORM, 6379)
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0: expected {CLUSTER_FORM}")
    return BoundedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in hosts],
        username=username,
        password=password,
        max_connections=max_connections,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # No retry: a SET NX whose reply was lost (a timeout) has been applied; sent again it
        # answers "exists", and a first use would be refused as a replay. Refuse it as 503 instead.
        retry=Retry(NoBackoff(), 0),
    )


def _sentinel(url: str, timeout: float, max_connections: int) -> Any:
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

    hosts, username, password, path = _split_hosts(url, SENTINEL_FORM, 26379)
    segments = [unquote(s) for s in path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()
    if len(segments) not in (1, 2) or not segments[0]:
        raise ValueError(f"the service name is missing from the Redis URL: expected {SENTINEL_FORM}")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"bad database number {segments[1]!r}: expected {SENTINEL_FORM}")
        db = int(segments[1])

    class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
        """A Sentinel pool that waits up to ``timeout`` for a free connection, as the one-server pool does."""

    sentinel = Sentinel(
        hosts,
        # With several sentinels listed, believe only one that sees a peer: an isolated sentinel
        # may still name a master the others have replaced (writes there would be forgotten).
        min_other_sentinels=1 if len(hosts) > 1 else 0,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return sentinel.master_for(
        segments[0],
        connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=max_connections,
        timeout=timeout,
        db=db,
        username=username,
        password=password,
        health_check_interval=30,
    )
