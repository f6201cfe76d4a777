"""Real Redis deployments for tests and the soak: servers, replicas, a cluster and sentinels.

Everything runs on 127.0.0.1, on ports 6450-6499 (cluster bus ports are 10000 higher), in a
temporary directory, without persistence; a :class:`Farm` stops every process it started and
removes its directory when its ``with`` block ends, whatever the outcome. Readiness is polled,
never slept for.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import redis

PORTS = range(6450, 6500)
_taken: set[int] = set()  # ports handed out in this process and not yet given back


class FarmUnavailable(RuntimeError):
    """redis-server is missing or a server could not start: tests skip (or fail in CI)."""


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise FarmUnavailable("redis-server is not installed")
    return path


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_port(bus: bool = False) -> int:
    for port in PORTS:
        if port not in _taken and _bindable(port) and (not bus or _bindable(port + 10000)):
            _taken.add(port)
            return port
    raise FarmUnavailable("no free port in 6450-6499")


def poll(condition: Callable[[], Any], what: str, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Call ``condition`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what} (last error: {last!r})")
        time.sleep(interval)


class Server:
    """One redis-server (or sentinel) process."""

    def __init__(self, farm: Farm, port: int, args: list[str], name: str) -> None:
        self.farm = farm
        self.port = port
        self.name = name
        self.dir = farm.dir / name
        self.dir.mkdir(exist_ok=True)
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=1, **options)

    def start(self) -> Server:
        try:
            log = open(self.dir / "log", "ab")  # noqa: SIM115 - the process holds it
            self.process = subprocess.Popen(
                [require_redis_server(), *self.args], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            poll(lambda: self._alive() and self.client().ping(), f"{self.name} on port {self.port} to answer")
        except FarmUnavailable as exc:
            self.farm.unavailable(exc)
        return self

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            tail = (self.dir / "log").read_text(errors="replace")[-400:]
            raise FarmUnavailable(f"{self.name} exited: {tail}")
        return True

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, nothing flushed, nothing said to peers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def info(self, section: str) -> dict[str, Any]:
        return self.client().info(section)


class Farm:
    """Owns every process it starts; ``with Farm() as farm:`` stops them all at the end."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wimse-wpt-redisfarm-"))
        self.servers: list[Server] = []

    def unavailable(self, reason: FarmUnavailable) -> NoReturn:
        """A server cannot be started: raise (tests replace this with a skip, or a failure in CI)."""
        raise reason

    def port(self, bus: bool = False) -> int:
        try:
            return allocate_port(bus)
        except FarmUnavailable as exc:
            self.unavailable(exc)

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for server in reversed(self.servers):
                try:
                    server.stop()
                finally:
                    _taken.discard(server.port)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _server(self, args: list[str], name: str, bus: bool = False, port: int | None = None) -> Server:
        port = port or self.port(bus=bus)
        base = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not after 5 s
        server = Server(self, port, [*base, *args], name)
        self.servers.append(server)
        return server.start()

    def standalone(self, *args: str) -> Server:
        return self._server(list(args), f"server-{len(self.servers)}")

    def replica(self, master: Server, *args: str) -> Server:
        server = self._server(["--replicaof", "127.0.0.1", str(master.port), *args], f"replica-{len(self.servers)}")
        poll(lambda: server.info("replication").get("master_link_status") == "up", "the replica to sync")
        poll(lambda: self.replica_acks(master), "the replica to acknowledge writes")
        return server

    @staticmethod
    def replica_acks(master: Server) -> bool:
        """A write on the master is acknowledged by a replica (WAIT). A freshly synced replica
        is "online" at once but answers its first acknowledgement only about 1 s later."""
        pipe = master.client().pipeline(transaction=False)  # one connection: WAIT counts its writes
        pipe.set("redisfarm:ready", 1)  # slot 697: the first cluster master's
        pipe.delete("redisfarm:ready")
        pipe.execute_command("WAIT", 1, 100)
        return int(pipe.execute()[-1]) >= 1

    # -- Redis Cluster ------------------------------------------------------------------------

    def cluster_node(self, *args: str) -> Server:
        return self._server(
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
             "--cluster-require-full-coverage", "no", *args],
            f"cluster-{len(self.servers)}",
            bus=True,
        )

    def cluster(self, masters: int = 3, replicas_of_first: int = 0) -> list[Server]:
        """``masters`` masters sharing the 16384 slots evenly (then ``replicas_of_first`` replicas of
        the first master), met and agreed: every node reports ``cluster_state:ok``."""
        nodes = [self.cluster_node() for _ in range(masters)]
        share = 16384 // masters
        for index, node in enumerate(nodes):
            last = 16383 if index == masters - 1 else (index + 1) * share - 1
            node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for node in nodes[1:]:
            nodes[0].client().execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        replicas = [self.cluster_node() for _ in range(replicas_of_first)]
        for replica in replicas:
            nodes[0].client().execute_command("CLUSTER", "MEET", "127.0.0.1", replica.port)
        everyone = nodes + replicas
        poll(lambda: all(int(n.client().cluster("info")["cluster_known_nodes"]) == len(everyone) for n in everyone),
             "every cluster node to know every other")
        first_id = self.node_id(nodes[0])
        for replica in replicas:
            replica.client().execute_command("CLUSTER", "REPLICATE", first_id)
            poll(lambda r=replica: r.info("replication").get("master_link_status") == "up", "the cluster replica to sync")
            poll(lambda: self.replica_acks(nodes[0]), "the cluster replica to acknowledge writes")
        self.wait_cluster_ok(everyone)
        return everyone

    @staticmethod
    def node_id(node: Server) -> str:
        return str(node.client().execute_command("CLUSTER", "MYID").decode())

    @staticmethod
    def wait_cluster_ok(nodes: list[Server], timeout: float = 20.0) -> None:
        def agreed() -> bool:
            return all(n.client().cluster("info")["cluster_state"] == "ok" for n in nodes) and all(
                len(n.client().execute_command("CLUSTER", "SLOTS")) >= 1 for n in nodes
            )

        poll(agreed, "cluster_state:ok on every node", timeout)

    # -- Sentinel -----------------------------------------------------------------------------

    def sentinels(
        self, master: Server, count: int = 3, service: str = "fleet", quorum: int = 2, replicas: int = 1
    ) -> list[Server]:
        """``count`` sentinels watching ``master`` as ``service``; returns once each knows its peers
        and the master's ``replicas`` (so a failover can start as soon as the master is lost)."""
        started = []
        for _ in range(count):
            port = self.port()
            conf_dir = self.dir / f"sentinel-{port}"
            conf_dir.mkdir()
            (conf_dir / "sentinel.conf").write_text(
                f"port {port}\nbind 127.0.0.1\ndir {conf_dir}\n"
                f"sentinel monitor {service} 127.0.0.1 {master.port} {quorum}\n"
                f"sentinel down-after-milliseconds {service} 500\n"
                f"sentinel failover-timeout {service} 3000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
            server = Server(self, port, [str(conf_dir / "sentinel.conf"), "--sentinel"], f"sentinel-{port}")
            server.dir = conf_dir
            self.servers.append(server)
            server.start()
            started.append(server)

        def all_see_replicas_and_peers() -> bool:
            for sentinel in started:
                state = sentinel.client().sentinel_master(service)
                if int(state["num-other-sentinels"]) < count - 1 or int(state["num-slaves"]) < replicas:
                    return False
            return True

        poll(all_see_replicas_and_peers, "the sentinels to find each other", 30)
        return started

    @staticmethod
    def sentinel_master(sentinel: Server, service: str = "fleet") -> int:
        host, port = sentinel.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
        return int(port)


def farm_or_skip() -> Iterator[Farm]:
    """A pytest fixture body: a Farm, or a skip (a failure in CI, WIMSE_REQUIRE_REDIS=1) if it cannot run."""
    import pytest

    def unavailable(reason: FarmUnavailable) -> NoReturn:
        if os.environ.get("WIMSE_REQUIRE_REDIS") == "1":
            pytest.fail(f"WIMSE_REQUIRE_REDIS=1 but {reason}", pytrace=False)
        pytest.skip(f"{reason}: the fleet tests start their own Redis servers")

    try:
        require_redis_server()
    except FarmUnavailable as exc:
        unavailable(exc)
    with Farm() as farm:
        farm.unavailable = unavailable  # type: ignore[method-assign]
        yield farm
